"""Sandbox overhead against the reference implementation (PyPI ``rlms`` 0.1.3), one run, side by side.

Environments, each measured with no context and with 1M, 10M and 100M tokens of context
(4, 40 and 400 MiB of text at the project's 4 bytes per token) loaded:

* the reference's ``LocalREPL`` (``exec`` in the caller's process), ``IPythonREPL`` in process and
  ``IPythonREPL`` with an ipykernel subprocess (none of them isolated), driven by
  ``bench/reference_driver.py`` in a separate venv (``rlms`` is never a dependency of rlm-host:
  the venv is created under the cache dir with ``pip install 'rlms[ipython]==0.1.3'`` and reused);
* the reference's ``DockerREPL``: its own per-cell code, unchanged, with only its setup replaced by
  a container with no network (see the driver's docstring for exactly what is replaced);
* a bare ipykernel on the host over ipc (``bench/sandbox.py``'s, the floor of a kernel round trip);
* rlm-host: ``DockerSandbox`` on runc (policy ``standard``) and runsc (policy ``strict``), the
  context given as a document.

For each: the time to the first cell (construction until a trivial cell returned, no context),
the trivial cell's (``1``) round trip p50/p99 with no context, and its p50 with each context
loaded. For rlm-host, each size also runs a plain sandbox alongside, the two taking turns in blocks
of 10 cells (``bench/sandbox.py``'s ``round_trips``), so "flat in context size" is judged on a ratio
that the machine's load hits alike. Every context is checked from inside the environment
(``len(context)``). The contexts are the standard library's ASCII source text repeated, built
once and cached under ``<cache>/bench``. The sizes run in order, every environment at one size
before the next.

    python3 bench/reference.py [--quick] [--sizes 4,40,400] [--out bench/results]

``--quick``: 1M tokens only and few cells (under 2 minutes). Writes ``reference.json``,
``reference.md`` and ``reference.png`` to ``--out``. A full run took 17 minutes here under heavy load,
most of it the reference's Docker environment at 400 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (FOREIGN_SEEN, MiB, POLICY_OF, TRIVIAL, RunCell, bare_kernel, fmt,  # bench/common.py
                    machine_info, median, note_foreign, p99, ratio, remember, remove_leftovers, round_trips,
                    sandbox_runner)
from report import RESULTS, md_table, text_table, write_results  # bench/report.py

from rlm_host import settings
from rlm_host.sandbox.image import require_image
from rlm_host.policy import load_policy
from rlm_host.sandbox import DockerSandbox

RLMS = "rlms[ipython]==0.1.3"
DRIVER = Path(__file__).resolve().parent / "reference_driver.py"
FLAT_RATIO = 1.25  # "flat in context size": p50 with a context within this of a plain kernel's alongside


@dataclass(frozen=True)
class Env:
    """One environment: how it is driven, and how many cells it gets per context size."""

    key: str
    label: str
    isolated: bool
    slow: bool = False


ENVS = [
    Env("rlms-local", "rlms LocalREPL (exec in process)", False),
    Env("rlms-ipython", "rlms IPythonREPL in process", False),
    Env("rlms-ipykernel", "rlms IPythonREPL, ipykernel subprocess", False),
    Env("rlms-docker", "rlms DockerREPL per-cell code, offline", False, slow=True),
    Env("bare", "bare ipykernel on the host (ipc)", False),
    Env("runc", "rlm-host runc (standard)", True),
    Env("runsc", "rlm-host runsc (strict)", True),
]


@dataclass
class Counts:
    """Measured cells (and discarded warm-up cells) per context size, fast and slow environments."""

    fast: dict[int, int]
    slow: dict[int, int]
    warmup_fast: int
    warmup_slow: int

    def of(self, env: Env, mib: int) -> tuple[int, int]:
        return ((self.slow[mib], self.warmup_slow) if env.slow else (self.fast[mib], self.warmup_fast))


FULL = Counts(fast={0: 200, 4: 200, 40: 200, 400: 200}, slow={0: 20, 4: 10, 40: 5, 400: 3},
              warmup_fast=10, warmup_slow=1)
QUICK = Counts(fast={0: 30, 4: 20}, slow={0: 5, 4: 3}, warmup_fast=3, warmup_slow=1)


@dataclass(frozen=True)
class Setup:
    """What every measurement shares: the reference's python, a scratch dir, the kernel image."""

    python: Path
    workdir: Path
    image: str


@dataclass
class Measured:
    """One environment at one context size."""

    ready_s: float | None = None
    first_cell_s: float | None = None
    rt_ms: list[float] = field(default_factory=list)
    paired_none_ms: list[float] = field(default_factory=list)  # a plain kernel's, in the same window
    error: str | None = None


# -- the contexts -----------------------------------------------------------------

def context_file(mib: int) -> Path:
    """``mib`` MiB of the standard library's ASCII source text, repeated; built once, cached."""
    path = settings.cache_dir() / "bench" / f"stdlib-{mib}mib.txt"
    if path.exists() and path.stat().st_size == mib * MiB:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    corpus = _stdlib_text()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        remaining = mib * MiB
        while remaining:
            chunk = corpus[:remaining]
            fh.write(chunk)
            remaining -= len(chunk)
    tmp.chmod(0o644)  # world-readable, so rlm-host hard-links it instead of copying
    tmp.replace(path)
    return path


def _stdlib_text() -> bytes:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py"))
    return b"".join(p.read_bytes().decode("utf-8", "ignore").encode("ascii", "ignore") for p in files)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(MiB):
            digest.update(block)
    return digest.hexdigest()


# -- the reference, in its own venv ---------------------------------------------------

def rlms_python() -> Path:
    """The separate venv's python with ``rlms`` installed; created on first use, then reused."""
    venv = settings.cache_dir() / "bench-rlms-venv"
    python = venv / "bin" / "python"
    probe = "import importlib.metadata as m, ipykernel, dill; print(m.version('rlms'))"
    if python.exists() and _run_quiet([str(python), "-c", probe]).strip() == RLMS.split("==")[1]:
        return python
    print(f"creating {venv} with {RLMS} (once) ...", flush=True)
    subprocess.run([sys._base_executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", RLMS], check=True)
    return python


def _run_quiet(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def measure_rlms(kind: str, ctx: Path | None, cells: int, warmup: int, setup: Setup) -> Measured:
    session = f"bench-reference-{secrets.token_hex(6)}"
    cmd = [str(setup.python), str(DRIVER), kind, "--cells", str(cells), "--warmup", str(warmup),
           "--image", setup.image, "--label", f"{settings.SESSION_LABEL}={session}",
           "--label", f"{settings.OWNER_LABEL}={os.getpid()}"]
    if ctx is not None:
        cmd += ["--context", str(ctx)]
    env = {**os.environ, "RLM_DOCKER_WORKSPACE_DIR": str(setup.workdir), "TMPDIR": str(setup.workdir)}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=setup.workdir, env=env, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"driver {kind} exited {done.returncode}: {done.stderr[-1500:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return Measured(out["ready_s"], out["first_cell_s"], out["rt_ms"])


# -- the bare kernel and rlm-host ----------------------------------------------------

def timed_series(run_cell: RunCell, ctx: Path | None, cells: int, warmup: int, t0: float, ready: float,
                 plain: RunCell | None = None) -> Measured:
    """First cell, the context check, then ``cells`` timed trivial cells after ``warmup``.

    With ``plain`` (a kernel with no context), both take turns in blocks of 10 cells, so the
    machine's load hits both series alike and their ratio shows growth with the context alone.
    """
    run_cell(TRIVIAL)
    first = time.perf_counter() - t0
    if ctx is not None:
        got = int(run_cell("print(len(context))").strip())
        if got != ctx.stat().st_size:
            raise RuntimeError(f"context has {got} characters, the file {ctx.stat().st_size} bytes")
    if plain is not None:
        paired, samples = round_trips(plain, run_cell, cells, warmup)
        return Measured(ready, first, samples, paired)
    for _ in range(warmup):
        run_cell(TRIVIAL)
    samples = []
    for _ in range(cells):
        t1 = time.perf_counter()
        run_cell(TRIVIAL)
        samples.append((time.perf_counter() - t1) * 1000)
    return Measured(ready, first, samples)


def measure_bare(ctx: Path | None, cells: int, warmup: int, workdir: Path) -> Measured:
    t0 = time.perf_counter()
    with bare_kernel(workdir / f"bare-{secrets.token_hex(4)}") as (kernel, _):
        if ctx is not None:
            kernel.run(f"context = open({str(ctx)!r}, encoding='utf-8').read()")
        return timed_series(kernel.run, ctx, cells, warmup, t0, time.perf_counter() - t0)


def measure_sandbox(runtime: str, ctx: Path | None, cells: int, warmup: int, image: str) -> Measured:
    """A sandbox with the context (its start timed); with a context, a plain one alongside."""
    policy = load_policy(POLICY_OF[runtime]).with_limits(cell_timeout_s=600, start_timeout_s=300)
    t0 = time.perf_counter()
    with remember(DockerSandbox.start(policy, [ctx] if ctx else [], image=image)) as sandbox:
        ready = time.perf_counter() - t0
        if ctx is None:
            return timed_series(sandbox_runner(sandbox), ctx, cells, warmup, t0, ready)
        with remember(DockerSandbox.start(policy, image=image)) as plain:
            return timed_series(sandbox_runner(sandbox), ctx, cells, warmup, t0, ready,
                                plain=sandbox_runner(plain))


def measure(env: Env, ctx: Path | None, cells: int, warmup: int, setup: Setup) -> Measured:
    """One environment at one size; a failure is recorded, never ends the run."""
    note_foreign()
    try:
        if env.key.startswith("rlms-"):
            return measure_rlms(env.key[5:], ctx, cells, warmup, setup)
        if env.key == "bare":
            return measure_bare(ctx, cells, warmup, setup.workdir)
        return measure_sandbox(env.key, ctx, cells, warmup, setup.image)
    except Exception as exc:  # the benchmark reports failures and goes on
        print(f"  {env.key}: FAILED: {exc}", file=sys.stderr, flush=True)
        return Measured(error=f"{type(exc).__name__}: {exc}"[:800])


# -- summary ------------------------------------------------------------------------

def summarize(env: Env, by_size: dict[int, Measured]) -> dict[str, Any]:
    sizes = {}
    for mib, m in by_size.items():
        sizes[str(mib)] = {"mib": mib, "tokens_m": round(mib * MiB / 4 / 1e6, 2), "cells": len(m.rt_ms),
                           "ready_s": m.ready_s, "first_cell_s": m.first_cell_s,
                           "p50_ms": median(m.rt_ms), "p99_ms": p99(m.rt_ms), "error": m.error,
                           "paired_none_p50_ms": median(m.paired_none_ms),
                           "vs_paired_none": ratio(median(m.rt_ms), median(m.paired_none_ms)),
                           "rt_ms": m.rt_ms, "paired_none_ms": m.paired_none_ms}
    none = sizes.get("0", {})
    p50s = [s["p50_ms"] for s in sizes.values() if s["p50_ms"] is not None]
    paired = [s["vs_paired_none"] for s in sizes.values() if s["vs_paired_none"] is not None]
    return {"key": env.key, "label": env.label, "isolated": env.isolated,
            "first_cell_s": none.get("first_cell_s"), "sizes": sizes,
            "growth_max_over_none": max(p50s) / none["p50_ms"] if p50s and none.get("p50_ms") else None,
            "growth_max_vs_paired": max(paired) if paired else None}


def p50_of(results: list[dict[str, Any]], key: str, mib: int) -> float | None:
    for r in results:
        if r["key"] == key:
            return r["sizes"].get(str(mib), {}).get("p50_ms")
    return None


def targets(results: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and PASS/MISS (reported, never asserted)."""
    top = max(sizes)
    checks = [
        ("runc p50 / rlms ipykernel p50 (no context)", "<= 1",
         ratio(p50_of(results, "runc", 0), p50_of(results, "rlms-ipykernel", 0)), lambda v: v <= 1),
        ("rlms Docker p50 / runc p50 (no context)", ">= 50",
         ratio(p50_of(results, "rlms-docker", 0), p50_of(results, "runc", 0)), lambda v: v >= 50),
        (f"rlms Docker p50 / runc p50 ({top} MiB)", ">= 5000 at 400 MiB",
         ratio(p50_of(results, "rlms-docker", top), p50_of(results, "runc", top)),
         lambda v: v >= 5000 if top == 400 else None),
    ]
    for key in ("runc", "runsc"):
        growth = next((r["growth_max_vs_paired"] for r in results if r["key"] == key), None)
        checks.append((f"{key} flat: max over sizes of p50 with context / p50 of a plain sandbox alongside",
                       f"<= {FLAT_RATIO}", growth, lambda v: v <= FLAT_RATIO))
    out = []
    for what, aim, value, ok in checks:
        verdict = "n/a" if value is None or ok(value) is None else ("PASS" if ok(value) else "MISS")
        out.append({"target": what, "aim": aim, "measured": value, "verdict": verdict})
    return out


# -- output -------------------------------------------------------------------------

def table(results: list[dict[str, Any]], sizes: list[int]) -> tuple[list[str], list[list[str]]]:
    headers = ["environment", "isolated", "first cell s", "trivial p50 ms", "trivial p99 ms",
               *[f"p50 ms @ {tokens(m)}" for m in sizes], "max / none", "max / plain alongside"]
    rows = []
    for r in results:
        none = r["sizes"].get("0", {})
        rows.append([r["label"], "yes" if r["isolated"] else "no", fmt(r["first_cell_s"], 3),
                     fmt(none.get("p50_ms"), 3), fmt(none.get("p99_ms"), 3),
                     *[fmt(r["sizes"].get(str(m), {}).get("p50_ms"), 3) for m in sizes],
                     fmt(r["growth_max_over_none"]), fmt(r["growth_max_vs_paired"])])
    return headers, rows


def tokens(mib: int) -> str:
    return f"{round(mib * MiB / 4 / 1e6)}M tokens ({mib} MiB)"


def target_rows(checks: list[dict[str, Any]]) -> list[list[str]]:
    return [[c["target"], c["aim"], fmt(c["measured"], 2), c["verdict"]] for c in checks]


def markdown(report: dict[str, Any]) -> str:
    m, prm = report["machine"], report["parameters"]
    headers, rows = table(report["results"], prm["sizes_mib"])
    errors = [f"- {r['label']} @ {s['mib']} MiB: {s['error']}" for r in report["results"]
              for s in r["sizes"].values() if s["error"]]
    parts = [
        "# Sandbox overhead against the reference implementation (rlms 0.1.3)", "",
        f"{m['date']}: {m['nproc']} CPUs, {m['memory_gib']} GiB, Linux {m['kernel']}, Docker "
        f"{m['docker']['Version']}, Python {m['python']}, rlms {prm['rlms']}. Load average before/after: "
        f"{fmt(report['loadavg_before'][0])} / {fmt(report['loadavg_after'][0])}"
        + (f"; {len(report['foreign_containers_seen'])} other processes' sandboxes ran meanwhile"
           if report["foreign_containers_seen"] else "") + ".", "",
        f"Cells per size (fast environments / rlms Docker): {prm['cells_fast']} / {prm['cells_slow']}, "
        f"after {prm['warmup_fast']} / {prm['warmup_slow']} discarded. Trivial cell `{TRIVIAL}`; wall clock "
        "at the caller. Contexts: the standard library's ASCII source, repeated.", "",
        md_table(headers, rows), "",
        "## Targets (reported, not asserted)", "",
        md_table(["target", "aim", "measured", "verdict"], target_rows(report["targets"])), "",
    ]
    if errors:
        parts += ["## Errors", "", *errors, ""]
    parts += ["Regenerate: `python3 bench/reference.py` (see its docstring).", ""]
    return "\n".join(parts)


def plot(report: dict[str, Any], path: Path) -> None:
    """Per-cell p50 against context size, log-log, one line per environment (no context at 0.1M)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [0, *report["parameters"]["sizes_mib"]]
    xs = {m: (m * MiB / 4 / 1e6 if m else 0.1) for m in sizes}
    fig, ax = plt.subplots(figsize=(11, 5))
    for r in report["results"]:
        points = [(xs[m], r["sizes"][str(m)]["p50_ms"]) for m in sizes
                  if r["sizes"].get(str(m), {}).get("p50_ms") is not None]
        if points:
            ax.plot(*zip(*points, strict=False), marker="o", linestyle="-" if r["isolated"] else "--", label=r["label"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([xs[m] for m in sizes], ["none", *[f"{xs[m]:.0f}M" for m in sizes[1:]]])
    ax.set_xlabel("context loaded (tokens; 4 bytes each)")
    ax.set_ylabel("trivial cell round trip, p50 (ms)")
    ax.set_title("Per-cell overhead against context size (solid: isolated)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# -- main ---------------------------------------------------------------------------

def run(sizes: list[int], counts: Counts) -> dict[str, Any]:
    load_before = os.getloadavg()
    began = time.monotonic()
    python, image = rlms_python(), require_image()  # one image for the whole run
    contexts = {mib: context_file(mib) for mib in sizes}
    by_env: dict[str, dict[int, Measured]] = {env.key: {} for env in ENVS}
    try:
        with tempfile.TemporaryDirectory(prefix="rlm-bench-ref-") as scratch:
            setup = Setup(python, Path(scratch), image)
            for mib in [0, *sizes]:
                print(f"context {mib} MiB:", flush=True)
                for env in ENVS:
                    cells, warmup = counts.of(env, mib)
                    got = measure(env, contexts.get(mib), cells, warmup, setup)
                    by_env[env.key][mib] = got
                    print(f"  {env.key:15} p50 {fmt(median(got.rt_ms), 3)} ms over {len(got.rt_ms)} cells"
                          f", first cell {fmt(got.first_cell_s, 3)} s", flush=True)
    finally:
        note_foreign()
        leftovers = remove_leftovers()
    results = [summarize(env, by_env[env.key]) for env in ENVS]
    return {
        "machine": machine_info(),
        "parameters": {"rlms": RLMS.split("==")[1], "sizes_mib": sizes, "trivial_cell": TRIVIAL,
                       "cells_fast": counts.fast, "cells_slow": counts.slow,
                       "warmup_fast": counts.warmup_fast, "warmup_slow": counts.warmup_slow,
                       "contexts": {str(m): {"path": str(p), "sha256": sha256(p)} for m, p in contexts.items()},
                       "image": image},
        "results": results,
        "targets": targets(results, sizes or [0]),
        "leftover_containers_removed": leftovers,
        "foreign_containers_seen": sorted(FOREIGN_SEEN),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "wall_time_s": round(time.monotonic() - began, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M tokens only, few cells (under 2 minutes)")
    ap.add_argument("--sizes", default="4,40,400", help="context sizes in MiB (ignored with --quick)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    sizes = [4] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    counts = QUICK if args.quick else FULL
    if not set(sizes) <= set(counts.fast) - {0}:
        ap.error(f"sizes must be among {sorted(set(counts.fast) - {0})}")
    report = run(sizes, counts)
    headers, rows = table(report["results"], sizes)
    print()
    print(text_table(headers, rows))
    print()
    print(text_table(["target", "aim", "measured", "verdict"], target_rows(report["targets"])))
    print(f"\nwall time {report['wall_time_s']} s; leftovers removed: {len(report['leftover_containers_removed'])}")
    written = write_results(args.out, "reference", report, markdown(report), plot)
    print("wrote " + ", ".join(map(str, written)))
    return 1 if any(s["error"] for r in report["results"] for s in r["sizes"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
