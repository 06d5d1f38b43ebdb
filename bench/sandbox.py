"""Sandbox latency benchmark: start, warm-pool acquire and cell round trip.

What it measures, all in one run and on one machine:

* bare kernel (the floor): an ipykernel started on the host with no container,
  over the same ipc transport, driven by rlm-host's own ``KernelChannel``:
  start time (process spawn until kernel_info answers) and the round trip of a
  trivial cell. With a document it loads the same text as ``context`` the way
  the sandbox does (read from a file inside the kernel).
* per runtime (runc = policy "standard", runsc = policy "strict"):
  1. cold start: ``DockerSandbox.start(policy)`` until container and kernel are
     ready (median and max over ``--reps``);
  2. warm-pool acquire: ``WarmPool(policy, size=2).acquire()`` with a full
     pool, refilled (``wait_ready``) between acquisitions (median);
  3. round trip of the trivial cell ``1`` via ``sandbox.execute`` (p50/p99 over
     ``--cells`` cells after ``--warmup`` discarded ones);
  4. the same with a ``--doc-mb`` MiB text document loaded, and the time that
     ``DockerSandbox.start(policy, [doc])`` took (the file is world-readable
     on the same filesystem, so it is hard-linked, not copied).

Steps 3 and 4 (and the bare kernel's two series) run on two kernels open side
by side that take turns in blocks of 10 cells, so load drift on the machine
hits both series alike. Other processes' rlm-host containers seen during the
run are recorded and reported as a warning; this run's own leftovers (found
by the owner-pid or session label) are removed at the end, no one else's.

Round trips are wall-clock times around the call the caller makes
(``execute`` / ``send`` + ``collect``), not the sandbox's ``duration_ms``.
Targets (cold start < 1 s, acquire < 20 ms, runc p50 within 1.25x of the bare
kernel, no growth of p50 with the document) are reported as PASS/MISS, never
asserted.

Run (as root, Docker running, kernel image built, ``pip install -e .[bench]``):

    python3 bench/sandbox.py [--runtimes runc,runsc] [--cells 200] [--doc-mb 100] [--out bench/results]

It prints tables and writes ``sandbox.json`` and ``sandbox.md`` to ``--out``.
A default run takes about two to three minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (FOREIGN_SEEN, POLICY_OF, TRIVIAL, RunCell, bare_kernel, fmt, is_mine,  # bench/common.py
                    labelled_containers, machine_info, make_document, median, note_foreign, p99, ratio, remember,
                    remove_leftovers, round_trips, sandbox_runner, timed_start)
from report import RESULTS, md_table, text_table, write_results  # bench/report.py

from rlm_host.policy import Policy, load_policy
from rlm_host.sandbox import DockerSandbox, WarmPool

VERSIONS_CELL = ("import sys, IPython, ipykernel; "
                 "print(sys.version.split()[0], ipykernel.__version__, IPython.__version__)")

TARGET_START_S = 1.0
TARGET_ACQUIRE_MS = 20.0
TARGET_BARE_RATIO = 1.25
TARGET_DOC_RATIO = 1.10  # "no growth": with-document p50 within 10% of without


@dataclass
class Params:
    runtimes: list[str]
    cells: int
    warmup: int
    doc_mb: int
    reps: int
    acquires: int
    out: Path


@dataclass
class Row:
    """Everything measured for one row of the table (bare kernel or a runtime)."""

    name: str
    policy: str | None = None
    start_s: list[float] = field(default_factory=list)
    acquire_ms: list[float] = field(default_factory=list)
    rt_ms: list[float] = field(default_factory=list)
    doc_start_s: float | None = None
    doc_rt_ms: list[float] = field(default_factory=list)
    versions: str | None = None
    errors: list[str] = field(default_factory=list)


# -- the bare kernel (no container) --------------------------------------------

def measure_bare(p: Params, tmp: Path, doc: Path) -> Row:
    row = Row("bare kernel (host)")
    _guard(row, "start", lambda: _bare_starts(row, p, tmp))
    _guard(row, "round trip", lambda: _bare_round_trips(row, p, tmp, doc))
    return row


def _bare_starts(row: Row, p: Params, tmp: Path) -> None:
    for i in range(p.reps):
        with bare_kernel(tmp / f"bare-start-{i}") as (_, started):
            row.start_s.append(started)


def _bare_round_trips(row: Row, p: Params, tmp: Path, doc: Path) -> None:
    with bare_kernel(tmp / "bare-rt") as (kernel, _), bare_kernel(tmp / "bare-doc") as (doc_kernel, _):
        row.versions = kernel.run(VERSIONS_CELL).strip()
        doc_kernel.run(f"context = open({str(doc)!r}, encoding='utf-8').read()")
        _check_context(doc_kernel.run, doc)
        row.rt_ms, row.doc_rt_ms = round_trips(kernel.run, doc_kernel.run, p.cells, p.warmup)


def _check_context(run_cell: RunCell, doc: Path) -> None:
    got = int(run_cell("print(len(context))").strip())
    if got != doc.stat().st_size:
        raise RuntimeError(f"context has {got} characters, the document {doc.stat().st_size} bytes")


# -- a container runtime -------------------------------------------------------

def measure_runtime(runtime: str, p: Params, doc: Path) -> Row:
    policy = load_policy(POLICY_OF[runtime])
    row = Row(runtime, policy=policy.name)
    _guard(row, "cold start", lambda: _cold_starts(row, policy, p))
    _guard(row, "warm pool", lambda: _pool_acquires(row, policy, p))
    _guard(row, "round trips without and with the document", lambda: _sandbox_round_trips(row, policy, p, doc))
    return row


def _cold_starts(row: Row, policy: Policy, p: Params) -> None:
    for _ in range(p.reps):
        sb, took = timed_start(policy)
        sb.close()
        row.start_s.append(took)


def _pool_acquires(row: Row, policy: Policy, p: Params) -> None:
    pool = WarmPool(policy, size=2)
    try:
        for _ in range(p.acquires):
            if not pool.wait_ready(timeout=120):
                raise RuntimeError("warm pool did not fill in 120 s")
            t0 = time.perf_counter()
            sb = pool.acquire()
            took = (time.perf_counter() - t0) * 1000
            remember(sb)
            sb.close()
            row.acquire_ms.append(took)
    finally:
        pool.close()


def _sandbox_round_trips(row: Row, policy: Policy, p: Params, doc: Path) -> None:
    """Start a sandbox with the document (timed) and one without; time cells on both."""
    opened: list[DockerSandbox] = []
    try:
        sb_doc, row.doc_start_s = timed_start(policy, [doc])
        opened.append(sb_doc)
        sb, _ = timed_start(policy)
        opened.append(sb)
        plain, with_doc = sandbox_runner(sb), sandbox_runner(sb_doc)
        row.versions = plain(VERSIONS_CELL).strip()
        _check_context(with_doc, doc)
        row.rt_ms, row.doc_rt_ms = round_trips(plain, with_doc, p.cells, p.warmup)
    finally:
        for opened_sb in opened:
            opened_sb.close()


def _guard(row: Row, step: str, fn: Callable[[], None]) -> None:
    """Run one measurement; record a failure on the row instead of ending the run."""
    print(f"  {row.name}: {step} ...", flush=True)
    note_foreign()
    try:
        fn()
    except Exception as exc:  # the benchmark reports failures and goes on
        row.errors.append(f"{step}: {type(exc).__name__}: {exc}"[:500])
        print(f"  {row.name}: {step} FAILED: {exc}", file=sys.stderr, flush=True)


# -- summary and output ----------------------------------------------------------

def summarize(row: Row, bare: Row | None) -> dict[str, Any]:
    rt50, doc50 = median(row.rt_ms), median(row.doc_rt_ms)
    return {
        "name": row.name, "policy": row.policy, "versions": row.versions,
        "start_median_s": median(row.start_s), "start_max_s": max(row.start_s, default=None),
        "acquire_median_ms": median(row.acquire_ms),
        "rt_p50_ms": rt50, "rt_p99_ms": p99(row.rt_ms),
        "doc_start_s": row.doc_start_s,
        "doc_rt_p50_ms": doc50, "doc_rt_p99_ms": p99(row.doc_rt_ms),
        "rt_p50_vs_bare": ratio(rt50, median(bare.rt_ms)) if bare and bare is not row else None,
        "doc_vs_nodoc_p50": ratio(doc50, rt50),
        "errors": row.errors,
        "samples": {"start_s": row.start_s, "acquire_ms": row.acquire_ms,
                    "rt_ms": row.rt_ms, "doc_rt_ms": row.doc_rt_ms},
    }


def targets(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in summaries:
        if s["policy"] is None:
            continue  # the bare kernel is the floor, not a candidate
        out.append(_target(s, "cold start median < 1 s", s["start_median_s"], TARGET_START_S, "s"))
        out.append(_target(s, "warm-pool acquire median < 20 ms", s["acquire_median_ms"], TARGET_ACQUIRE_MS, "ms"))
        if s["name"] == "runc":
            out.append(_target(s, "round-trip p50 <= 1.25x bare kernel", s["rt_p50_vs_bare"], TARGET_BARE_RATIO, "x"))
        out.append(_target(s, "no growth with document (p50 <= 1.10x)", s["doc_vs_nodoc_p50"], TARGET_DOC_RATIO, "x"))
    return out


def _target(s: dict[str, Any], what: str, value: float | None, limit: float, unit: str) -> dict[str, Any]:
    verdict = "n/a" if value is None else ("PASS" if value <= limit else "MISS")
    return {"runtime": s["name"], "target": what, "measured": value, "unit": unit, "verdict": verdict}


MAIN_HEADERS = ["", "start med s", "start max s", "acquire med ms", "rt p50 ms", "rt p99 ms",
                "p50 / bare", "doc start s", "doc rt p50 ms", "doc rt p99 ms", "doc / no-doc p50"]


def main_rows(summaries: list[dict[str, Any]]) -> list[list[str]]:
    return [[s["name"], fmt(s["start_median_s"], 3), fmt(s["start_max_s"], 3), fmt(s["acquire_median_ms"]),
             fmt(s["rt_p50_ms"]), fmt(s["rt_p99_ms"]), fmt(s["rt_p50_vs_bare"]), fmt(s["doc_start_s"], 3),
             fmt(s["doc_rt_p50_ms"]), fmt(s["doc_rt_p99_ms"]), fmt(s["doc_vs_nodoc_p50"])]
            for s in summaries]


TARGET_HEADERS = ["runtime", "target", "measured", "verdict"]


def target_rows(checks: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["runtime"], c["target"], f"{fmt(c['measured'], 3)} {c['unit']}", c["verdict"]] for c in checks]


def markdown(report: dict[str, Any]) -> str:
    m, prm = report["machine"], report["parameters"]
    parts = [
        "# Sandbox latency benchmark", "",
        f"{m['date']} — {m['nproc']} CPUs, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Docker {m['docker']['Version']}, Python {m['python']}", "",
        f"Parameters: runtimes {','.join(prm['runtimes'])}, {prm['cells']} cells (+{prm['warmup']} warm-up), "
        f"{prm['doc_mb']} MiB document, {prm['reps']} cold starts, {prm['acquires']} pool acquisitions. "
        f"Trivial cell: `{TRIVIAL}`. Times are wall clock at the caller.", "",
        md_table(MAIN_HEADERS, main_rows(report["results"])), "",
        "## Targets (reported, not asserted)", "",
        md_table(TARGET_HEADERS, target_rows(report["targets"])), "",
        "Kernel versions (python, ipykernel, IPython): "
        + "; ".join(f"{s['name']}: {s['versions']}" for s in report["results"]), "",
    ]
    if report["foreign_containers_seen"]:
        parts += [f"**Warning:** {len(report['foreign_containers_seen'])} sandbox containers of other "
                  "processes ran during this run; the numbers may be skewed.", ""]
    parts += [f"Load average before/after: {fmt(report['loadavg_before'][0])} / "
              f"{fmt(report['loadavg_after'][0])}", ""]
    errors = [f"- {s['name']}: {e}" for s in report["results"] for e in s["errors"]]
    if errors:
        parts += ["## Errors", "", *errors, ""]
    parts += ["Regenerate: `python3 bench/sandbox.py` (see the module docstring).", ""]
    return "\n".join(parts)


# -- main ------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> Params:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runtimes", default="runc,runsc", help="comma-separated: runc, runsc")
    ap.add_argument("--cells", type=int, default=200, help="measured cells per round-trip series")
    ap.add_argument("--warmup", type=int, default=10, help="discarded cells before each series")
    ap.add_argument("--doc-mb", type=int, default=100, help="size of the text document in MiB")
    ap.add_argument("--reps", type=int, default=5, help="cold starts per runtime")
    ap.add_argument("--acquires", type=int, default=5, help="warm-pool acquisitions per runtime")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    runtimes = [r.strip() for r in a.runtimes.split(",") if r.strip()]
    unknown = [r for r in runtimes if r not in POLICY_OF]
    if unknown:
        ap.error(f"unknown runtime(s) {unknown}; use {', '.join(POLICY_OF)}")
    if a.cells < 2 or a.reps < 1 or a.acquires < 1 or a.doc_mb < 1 or a.warmup < 0:
        ap.error("--cells >= 2, --reps/--acquires/--doc-mb >= 1, --warmup >= 0")
    return Params(runtimes, a.cells, a.warmup, a.doc_mb, a.reps, a.acquires, a.out)


def run(p: Params) -> dict[str, Any]:
    load_before = os.getloadavg()
    began = time.monotonic()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="rlmbench-", dir="/tmp") as tmp_name:
            tmp = Path(tmp_name)
            print(f"generating a {p.doc_mb} MiB document ...", flush=True)
            doc = make_document(tmp, p.doc_mb)
            rows.append(measure_bare(p, tmp, doc))
            for runtime in p.runtimes:
                rows.append(measure_runtime(runtime, p, doc))
    finally:
        note_foreign()
        leftovers = remove_leftovers()
    summaries = [summarize(r, rows[0]) for r in rows]
    return {
        "machine": machine_info(),
        "parameters": {"runtimes": p.runtimes, "policies": {r: POLICY_OF[r] for r in p.runtimes},
                       "cells": p.cells, "warmup": p.warmup, "doc_mb": p.doc_mb, "reps": p.reps,
                       "acquires": p.acquires, "pool_size": 2, "trivial_cell": TRIVIAL},
        "results": summaries,
        "targets": targets(summaries),
        "leftover_containers_removed": leftovers,
        "foreign_containers_seen": sorted(FOREIGN_SEEN),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "wall_time_s": round(time.monotonic() - began, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = parse_args(argv)
    report = run(p)
    print()
    print(text_table(MAIN_HEADERS, main_rows(report["results"])))
    print()
    print(text_table(TARGET_HEADERS, target_rows(report["targets"])))
    for s in report["results"]:
        for e in s["errors"]:
            print(f"ERROR {s['name']}: {e}")
    left = labelled_containers()
    print(f"\nleftover containers of this run removed: {len(report['leftover_containers_removed'])}; "
          f"still there: {sum(is_mine(c) for c in left)}; wall time {report['wall_time_s']} s")
    if report["foreign_containers_seen"]:
        print(f"WARNING: other processes ran rlm-host sandboxes during the run "
              f"({len(report['foreign_containers_seen'])} seen); the numbers may be skewed")
    written = write_results(p.out, "sandbox", report, markdown(report))
    print("wrote " + ", ".join(map(str, written)))
    return 1 if any(s["errors"] for s in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
