"""Batch throughput: sequential `rlm-host run`s against `rlm-host batch` at several concurrencies, in one run.

Every task is the same two-turn run through the real sandbox (runc) with the scripted model answering
each call after ``--latency`` seconds (200 ms: a fast hosted model): the first cell prints the
context's length and makes one ``llm_query``, the second answers. Configurations, one after the other
on the same tasks:

* ``sequential``: one ``rlm-host run --json`` process per task, one after another (the bare session);
* ``batch cN``: ``rlm-host batch --concurrency N`` over all tasks.

All of them use one policy: ``standard`` with ``limits.cpus`` lowered to 0.25 so that admission on a
2-core host allows 8 runs at once (a cell here uses almost no CPU; the model's latency is the work).
Reported per configuration: wall time, tasks/min, mean per-task wall time (the batch's result lines;
for sequential, each process), and the host's peak memory in use (MemTotal - MemAvailable, sampled
every 0.2 s, less the idle figure before the run). Ray is not measured: `batch --ray` is not built.

    python3 bench/batch.py [--tasks 64] [--latency 0.2] [--concurrency 1,2,4,8] [--out bench/results]

Writes ``batch.json`` and ``batch.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from common import machine_info, remove_leftovers  # bench/common.py
from report import RESULTS, md_table, text_table, write_results  # bench/report.py

from rlm_host.policy import policies_dir
from rlm_host.testing import ScriptedLM

DOC = Path(__file__).resolve().parent.parent / "examples" / "clauses.txt"


def root_rule(messages: list[dict[str, Any]]) -> str:
    """Two turns: look and ask a sub-call, then answer the number the question names."""
    text = "\n".join(str(m.get("content")) for m in messages)
    asked = re.search(r"Question: Say (\d+)", text)
    if "Output of your cell" not in text:
        return "```python\nprint(len(context))\nnote = llm_query('Say yes.')\nprint(note)\n```"
    return f"```python\nanswer('{asked.group(1) if asked else '?'}')\n```"


class MemoryPeak:
    """The host's memory in use (MemTotal - MemAvailable), sampled in a thread; ``peak_mib`` above the idle figure."""

    def __init__(self) -> None:
        self.idle = self.peak = _in_use_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _in_use_mib())

    @property
    def peak_mib(self) -> int:
        return self.peak - self.idle


def _in_use_mib() -> int:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) // 1024


def sequential(lm: ScriptedLM, policy: Path, tasks: int, work: Path) -> dict[str, Any]:
    walls, failed = [], 0
    env = {**os.environ, "RLM_HOST_AUDIT_DIR": str(work / "seq-audit")}
    with MemoryPeak() as memory:
        started = time.monotonic()
        for n in range(1, tasks + 1):
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "rlm_host", "run", "--json", "-q", f"Say {n}", "--context",
                                   str(DOC), "--policy", str(policy), "--base-url", lm.base_url, "--model", "root"],
                                  capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
            walls.append(time.monotonic() - t0)
            failed += proc.returncode != 0 or json.loads(proc.stdout or "{}").get("answer") != str(n)
        wall = time.monotonic() - started
    return {"config": "sequential", "wall_s": wall, "task_wall_s": sum(walls) / len(walls), "failed": failed,
            "peak_mib": memory.peak_mib}


def batched(lm: ScriptedLM, policy: Path, tasks: int, work: Path, concurrency: int) -> dict[str, Any]:
    lines = "".join(json.dumps({"id": f"t{n}", "query": f"Say {n}", "context": [str(DOC)], "policy": str(policy)})
                    + "\n" for n in range(1, tasks + 1))
    (work / f"tasks-c{concurrency}.jsonl").write_text(lines)
    out = work / f"out-c{concurrency}"
    with MemoryPeak() as memory:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "rlm_host", "batch", str(work / f"tasks-c{concurrency}.jsonl"),
                               "--out", str(out), "--base-url", lm.base_url, "--model", "root",
                               "--concurrency", str(concurrency)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - started
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    failed = sum(r["status"] != "answered" or r["answer"] != r["id"][1:] for r in results) + tasks - len(results)
    return {"config": f"batch c{concurrency}", "wall_s": wall, "exit": proc.returncode,
            "task_wall_s": sum(r["wall_s"] for r in results) / max(1, len(results)), "failed": failed,
            "peak_mib": memory.peak_mib}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rlm-bench-batch-") as tmp, ScriptedLM(latency_s=args.latency) as lm:
        work = Path(tmp)
        lm.rule("root", root_rule)
        raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
        raw["limits"]["cpus"] = 0.25
        policy = work / "bench.yaml"
        policy.write_text(yaml.safe_dump(raw))
        print(f"sequential: {args.tasks} tasks", flush=True)
        rows.append(sequential(lm, policy, args.tasks, work))
        for level in levels:
            print(f"batch --concurrency {level}", flush=True)
            rows.append(batched(lm, policy, args.tasks, work, level))
        remove_leftovers()
    base = rows[0]
    for row in rows:
        row["tasks_per_min"] = args.tasks / row["wall_s"] * 60
        row["speedup"] = base["wall_s"] / row["wall_s"]
        row["task_wall_ratio"] = row["task_wall_s"] / base["task_wall_s"]
    headers = ["config", "wall s", "tasks/min", "speed-up", "task wall s", "vs bare", "failed", "peak MiB"]
    table = [[r["config"], f"{r['wall_s']:.1f}", f"{r['tasks_per_min']:.1f}", f"{r['speedup']:.2f}x",
              f"{r['task_wall_s']:.2f}", f"{r['task_wall_ratio']:.2f}x", str(r["failed"]), str(r["peak_mib"])]
             for r in rows]
    print(text_table(headers, table))
    report = {"machine": machine_info(), "tasks": args.tasks, "latency_s": args.latency, "rows": rows}
    markdown = (f"{args.tasks} tasks, scripted model at {args.latency * 1000:.0f} ms per call, "
                f"{report['machine']['nproc']} cores, {report['machine']['date']}\n\n{md_table(headers, table)}\n")
    write_results(args.out, "batch", report, markdown)
    return 0 if not any(r["failed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
