"""Batch throughput: sequential `rlm-host run`s against `rlm-host batch` at several concurrencies, in one run.

Every task is the same two-turn run through the real sandbox (runc) with the scripted model answering
each call after ``--latency`` seconds (200 ms: a fast hosted model): the first cell prints the
context's length and makes one ``llm_query``, the second answers. Configurations, one after the other
on the same tasks:

* ``sequential``: one ``rlm-host run --json`` process per task, one after another (the bare session);
* ``batch cN``: ``rlm-host batch --concurrency N`` over all tasks;
* ``ray N node(s)``: ``rlm-host batch --ray`` on a real Ray cluster of a head (no sandbox slots) and N
  worker nodes offering ``--ray-slots`` each, every node its own ``ray start`` inside a network
  namespace with only ``lo`` (``rlm_host.testing_ray``), the scripted model and the driver in it too.

All of them use one policy: ``standard`` with ``limits.cpus`` lowered to 0.25 so that admission on a
2-core host allows 8 runs at once (a cell here uses almost no CPU; the model's latency is the work).
Reported per configuration: wall time, tasks/min, mean per-task wall time (the batch's result lines;
for sequential, each process), and the host's peak memory in use (MemTotal - MemAvailable, sampled
every 0.2 s, less the idle figure before the run; for Ray, the idle figure is taken with the cluster
up, whose own memory is reported apart as ``cluster MiB``). Ray's cost is the ``ray`` row against the
``batch cN`` row with as many sessions at once (N = nodes x slots): everything ``--ray`` adds
(joining the cluster, the node checks, scheduling, the stop flag's polls, the closing sweep), over
the whole batch and per task.

    python3 bench/batch.py [--tasks 64] [--latency 0.2] [--concurrency 1,2,4,8] [--ray-nodes 1,2]
                           [--ray-slots 4] [--out bench/results]

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
from rlm_host.testing_ray import LoopbackRayCluster

BENCH = Path(__file__).resolve().parent

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


def write_tasks(path: Path, policy: Path, tasks: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"t{n}", "query": f"Say {n}", "context": [str(DOC)],
                                        "policy": str(policy)}) + "\n" for n in range(1, tasks + 1)))
    return path


def batched(lm: ScriptedLM, policy: Path, tasks: int, work: Path, concurrency: int) -> dict[str, Any]:
    out = work / f"out-c{concurrency}"
    with MemoryPeak() as memory:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "rlm_host", "batch",
                               str(write_tasks(work / f"tasks-c{concurrency}.jsonl", policy, tasks)),
                               "--out", str(out), "--base-url", lm.base_url, "--model", "root",
                               "--concurrency", str(concurrency)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - started
    return {"config": f"batch c{concurrency}", "wall_s": wall, "exit": proc.returncode, "peak_mib": memory.peak_mib,
            "sessions": concurrency, **_tally(out, tasks)}


def on_ray(policy: Path, tasks: int, work: Path, nodes: int, slots: int, latency: float) -> dict[str, Any]:
    """The same tasks through ``batch --ray`` on a head and ``nodes`` workers of ``slots`` each."""
    before = _in_use_mib()
    with LoopbackRayCluster(work / f"ray-{nodes}") as cluster:
        for n in range(nodes):
            cluster.add_worker(f"w{n + 1}", slots=slots)
        server = cluster.start([sys.executable, "-m", "rlm_host.testing", "batch:root_rule", "--model", "root",
                                "--latency", str(latency)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               text=True, env={"PYTHONPATH": str(BENCH)})
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        cluster_mib = _in_use_mib() - before
        out = work / f"out-ray{nodes}"
        with MemoryPeak() as memory:
            started = time.monotonic()
            proc = cluster.run([sys.executable, "-m", "rlm_host", "batch",
                                str(write_tasks(work / f"tasks-ray{nodes}.jsonl", policy, tasks)), "--out", str(out),
                                "--base-url", base_url, "--model", "root", "--ray", cluster.address], timeout=3600)
            wall = time.monotonic() - started
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return {"config": f"ray {nodes} node{'s' if nodes > 1 else ''}", "wall_s": wall, "exit": proc.returncode,
            "peak_mib": memory.peak_mib, "cluster_mib": cluster_mib, "sessions": nodes * slots, **_tally(out, tasks)}


def _tally(out: Path, tasks: int) -> dict[str, Any]:
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()] \
        if (out / "results.jsonl").exists() else []
    failed = sum(r["status"] != "answered" or r["answer"] != r["id"][1:] for r in results) + tasks - len(results)
    return {"task_wall_s": sum(r["wall_s"] for r in results) / max(1, len(results)), "failed": failed,
            "nodes_used": len({r["node"] for r in results})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--ray-nodes", default="1,2", help="worker counts of the Ray rows ('' for none)")
    parser.add_argument("--ray-slots", type=int, default=4, help="rlm_sandbox slots per worker node")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    ray_nodes = [int(n) for n in args.ray_nodes.split(",") if n.strip()]
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
        for nodes in ray_nodes:
            print(f"batch --ray on {nodes} worker node(s) of {args.ray_slots} slots", flush=True)
            rows.append(on_ray(policy, args.tasks, work, nodes, args.ray_slots, args.latency))
        remove_leftovers()
    base = rows[0]
    for row in rows:
        row["tasks_per_min"] = args.tasks / row["wall_s"] * 60
        row["speedup"] = base["wall_s"] / row["wall_s"]
        row["task_wall_ratio"] = row["task_wall_s"] / base["task_wall_s"]
        local = next((r for r in rows if r["config"] == f"batch c{row.get('sessions')}"), None)
        if row["config"].startswith("ray") and local is not None:  # what --ray adds, against as many sessions here
            row["vs_local"] = row["wall_s"] / local["wall_s"]
            row["added_per_task_s"] = (row["wall_s"] - local["wall_s"]) / args.tasks * row["sessions"]
            row["added_per_task"] = row["added_per_task_s"] / local["task_wall_s"]
    headers = ["config", "wall s", "tasks/min", "speed-up", "task wall s", "vs bare", "failed", "peak MiB",
               "Ray vs batch cN", "cluster MiB"]
    table = [[r["config"], f"{r['wall_s']:.1f}", f"{r['tasks_per_min']:.1f}", f"{r['speedup']:.2f}x",
              f"{r['task_wall_s']:.2f}", f"{r['task_wall_ratio']:.2f}x", str(r["failed"]), str(r["peak_mib"]),
              f"{r['vs_local']:.2f}x wall, {r['added_per_task'] * 100:+.1f}% per task" if "vs_local" in r else "-",
              str(r.get("cluster_mib", "-"))]
             for r in rows]
    print(text_table(headers, table))
    report = {"machine": machine_info(), "tasks": args.tasks, "latency_s": args.latency, "rows": rows}
    markdown = (f"{args.tasks} tasks, scripted model at {args.latency * 1000:.0f} ms per call, "
                f"{report['machine']['nproc']} cores, {report['machine']['date']}\n\n{md_table(headers, table)}\n")
    write_results(args.out, "batch", report, markdown)
    return 0 if not any(r["failed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
