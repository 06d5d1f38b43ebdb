"""Context scaling inside rlm-host: load time, search throughput and memory, 1M to 100M tokens.

For each runtime (runc = policy "standard", runsc = policy "strict") and each context size
(4, 40 and 400 MiB of text: about 1M, 10M and 100M tokens at the project's 4 bytes per token):

1. load: the time of ``DockerSandbox.start(policy, [doc])`` against a start with no document
   (the median of 3), and the kernel reading the file again from ``/docs`` into a str (timed in
   the kernel: start times vary by a few hundred ms, so a small document's load hides in them);
2. search throughput: the in-kernel ``search`` for a pattern that never matches (a full scan),
   MiB/s over the median of 3 scans; and a plain ``str.count`` for scale;
3. memory: the container's working set (cgroup usage minus inactive file cache, as `docker stats`
   counts it) idle and with the context loaded.

Then how many idle sandboxes fit: ``--fleet`` idle runc sandboxes started at once, the drop in the
host's MemAvailable per sandbox, and what that gives for this machine's memory.

    python3 bench/context.py [--sizes 4,40,400] [--runtimes runc,runsc] [--fleet 20] [--out bench/results]

Writes ``context.json``, ``context.md`` and ``context.png`` to ``--out``. About 3-4 minutes here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import MiB, POLICY_OF, make_document, timed_start  # bench/common.py
from report import RESULTS, write_results  # bench/report.py

from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.policy import load_policy
from rlm_host.sandbox import DockerSandbox

SCAN = """
import time, json
_t = []
for _ in range(3):
    _a = time.perf_counter(); _h = search(r'zq-never-there-[0-9]{3}'); _t.append(time.perf_counter() - _a)
_b = time.perf_counter(); _n = context.count('zq-never-there'); _c = time.perf_counter() - _b
_d = time.perf_counter(); _x = open('/docs/00000.doc', encoding='utf-8').read(); _e = time.perf_counter() - _d
del _x
print(json.dumps({"search_s": sorted(_t)[1], "count_s": _c, "read_s": _e, "chars": len(context)}))
"""


def working_set_mb(sandbox: DockerSandbox) -> float:
    """cgroup memory usage minus inactive file cache, in MiB (what `docker stats` shows)."""
    stats = docker_client().api.stats(sandbox.container_id, stream=False)["memory_stats"]
    inner = stats.get("stats", {})
    cache = inner.get("total_inactive_file", inner.get("inactive_file", 0))
    return (stats["usage"] - cache) / MiB


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def one_runtime(runtime: str, docs: dict[int, Path]) -> dict:
    policy = load_policy(POLICY_OF[runtime]).with_limits(cell_timeout_s=600, start_timeout_s=300)
    empty_starts, idle_mb = [], []
    for _ in range(3):
        sandbox, took = timed_start(policy, [])
        with sandbox:
            empty_starts.append(took)
            time.sleep(1)
            idle_mb.append(working_set_mb(sandbox))
    base = statistics.median(empty_starts)
    rows = []
    for mb, doc in docs.items():
        sandbox, took = timed_start(policy, [doc])
        with sandbox:
            result = sandbox.execute(SCAN, timeout=600)
            if not result.ok:
                raise RuntimeError(f"{runtime} {mb} MiB: scan failed: {result.error or result.reason}")
            scan = json.loads(result.stdout)
            loaded = working_set_mb(sandbox)
        rows.append({"mib": mb, "tokens_m": round(mb * MiB / 4 / 1e6, 1), "start_s": took,
                     "read_s": scan["read_s"], "search_mib_s": mb / scan["search_s"],
                     "count_mib_s": mb / scan["count_s"], "memory_mb": loaded})
        print(f"  {runtime} {mb:>4} MiB: start {took:.2f} s (empty {base:.2f} s), read {scan['read_s']:.2f} s, search "
              f"{mb / scan['search_s']:.0f} MiB/s, "
              f"memory {loaded:.0f} MB", flush=True)
    return {"runtime": runtime, "start_empty_s": base, "idle_mb": statistics.median(idle_mb), "sizes": rows}


def fleet(count: int) -> dict:
    """Start ``count`` idle runc sandboxes together; the host memory each one costs."""
    policy = load_policy("standard")
    before = mem_available_mb()
    sandboxes = []
    try:
        for _ in range(count):
            sandboxes.append(DockerSandbox.start(policy))
        time.sleep(2)
        after = mem_available_mb()
        sets = [working_set_mb(s) for s in sandboxes]
    finally:
        for sandbox in sandboxes:
            sandbox.close()
    per = (before - after) / count
    return {"count": count, "host_mb_per_sandbox": per, "working_set_mb": statistics.median(sets),
            "mem_available_before_mb": before, "fit": int(before / per) if per > 0 else None}


def markdown(report: dict) -> str:
    lines = ["# Context scaling", "", f"{report['date']} · {report['machine']}", "",
             "| runtime | context | tokens | start | read from /docs | search (full scan) | str.count | working set |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["runtimes"]:
        lines.append(f"| {r['runtime']} | none (idle) | - | {r['start_empty_s']:.2f} s | - | - | - | "
                     f"{r['idle_mb']:.0f} MB |")
        for s in r["sizes"]:
            lines.append(f"| {r['runtime']} | {s['mib']} MiB | {s['tokens_m']}M | {s['start_s']:.2f} s | "
                         f"{s['read_s']:.2f} s | "
                         f"{s['search_mib_s']:.0f} MiB/s | {s['count_mib_s']:.0f} MiB/s | {s['memory_mb']:.0f} MB |")
    f = report.get("fleet")
    if f:
        lines += ["", f"{f['count']} idle runc sandboxes at once: {f['host_mb_per_sandbox']:.0f} MB of host memory "
                      f"each (working set {f['working_set_mb']:.0f} MB); with "
                      f"{f['mem_available_before_mb'] / 1024:.1f} "
                      f"GiB available that is about {f['fit']} idle sandboxes by memory (CPU, 2 cores, is the "
                      "limit long before for busy ones)."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in report["runtimes"]:
        tokens = [s["tokens_m"] for s in r["sizes"]]
        left.plot(tokens, [s["start_s"] for s in r["sizes"]], marker="o", label=f"{r['runtime']} start with context")
        right.plot(tokens, [s["memory_mb"] for s in r["sizes"]], marker="o", label=f"{r['runtime']} loaded")
        right.axhline(r["idle_mb"], linestyle=":", color=right.lines[-1].get_color(), label=f"{r['runtime']} idle")
    for ax, title, unit in ((left, "start with the context loaded", "seconds"), (right, "sandbox memory", "MB")):
        ax.set_xscale("log")
        ax.set_xlabel("context (million tokens)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,40,400", help="context sizes in MiB")
    parser.add_argument("--runtimes", default="runc,runsc")
    parser.add_argument("--fleet", type=int, default=20, help="idle sandboxes started at once (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="rlm-bench-ctx-") as scratch:
        docs = {mb: make_document(Path(scratch), mb) for mb in sizes}
        runtimes = []
        for runtime in args.runtimes.split(","):
            print(f"{runtime}:", flush=True)
            runtimes.append(one_runtime(runtime, docs))
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{os.cpu_count()} cores, {mem_available_mb() / 1024:.1f} GiB available",
              "runtimes": runtimes}
    if args.fleet:
        print(f"fleet of {args.fleet} idle sandboxes", flush=True)
        report["fleet"] = fleet(args.fleet)
    text = markdown(report)
    write_results(args.out, "context", report, text, plot)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
