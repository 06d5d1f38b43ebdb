"""What the bench scripts share: statistics, timed starts, the bare kernel, and this run's containers.

The bench scripts are run as ``python3 bench/<name>.py``, so ``bench/`` is on ``sys.path`` and they
import this as ``common``.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import NotFound

from rlm_host.policy import Policy
from rlm_host.sandbox import DockerSandbox
from rlm_host.sandbox.kernel import KernelChannel, Outcome
from rlm_host.sandbox.output_cap import OutputCollector
from rlm_host.settings import OWNER_LABEL, POLICY_LABEL, SESSION_LABEL

MiB = 1 << 20
POLICY_OF = {"runc": "standard", "runsc": "strict"}
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
TRIVIAL = "1"  # the cell whose round trip is the overhead
RunCell = Callable[[str], str]  # runs a cell, returns its stdout; raises unless ok


# -- statistics ----------------------------------------------------------------

def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def p99(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return xs[0] if xs else None
    return statistics.quantiles(xs, n=100, method="inclusive")[98]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- measurement primitives ----------------------------------------------------

def round_trips(plain: RunCell, with_doc: RunCell, cells: int, warmup: int,
                block: int = 10) -> tuple[list[float], list[float]]:
    """Wall-clock ms of ``cells`` trivial cells on each kernel, after ``warmup`` discarded.

    The two kernels take turns in blocks of ``block`` cells, so a drift in the
    machine's load hits both series alike and their ratio stays meaningful.
    """
    for run_cell in (plain, with_doc):
        for _ in range(warmup):
            run_cell(TRIVIAL)
    samples: tuple[list[float], list[float]] = ([], [])
    while len(samples[1]) < cells:
        for run_cell, out in zip((plain, with_doc), samples, strict=False):
            for _ in range(min(block, cells - len(out))):
                t0 = time.perf_counter()
                run_cell(TRIVIAL)
                out.append((time.perf_counter() - t0) * 1000)
    return samples


def sandbox_runner(sb: DockerSandbox) -> RunCell:
    def run(code: str) -> str:
        r = sb.execute(code)
        if r.status != "ok":
            raise RuntimeError(f"cell {code!r} ended {r.status}: {r.reason or r.error}")
        return r.stdout
    return run


def timed_start(policy: Policy, documents: Sequence[Path] = ()) -> tuple[DockerSandbox, float]:
    t0 = time.perf_counter()
    sb = DockerSandbox.start(policy, documents)
    took = time.perf_counter() - t0
    return remember(sb), took


def make_document(directory: Path, mb: int) -> Path:
    """A ``mb`` MiB text file of numbered lines, world-readable (so it is hard-linked)."""
    path = directory / f"doc-{mb}mb.txt"
    block = "".join(f"line {i:06d}: the quick brown fox jumps over the lazy dog, "
                    f"and the sandbox reads it from a read-only mount.\n" for i in range(4096))
    data = block.encode("ascii")
    remaining = mb * MiB
    with path.open("wb") as fh:
        while remaining > 0:
            chunk = data[:remaining]
            fh.write(chunk)
            remaining -= len(chunk)
    path.chmod(0o644)
    return path


# -- the bare kernel (no container) --------------------------------------------

@dataclass
class BareKernel:
    proc: subprocess.Popen
    channel: KernelChannel

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, code: str) -> str:
        run = self.channel.send(code, OutputCollector(65536))
        outcome = self.channel.collect(run, time.monotonic() + 60, self.alive)
        if outcome is not Outcome.IDLE or run.error:
            raise RuntimeError(f"bare kernel cell {code!r}: {outcome.value} {run.error}")
        return run.output.text("stdout")


@contextmanager
def bare_kernel(workdir: Path) -> Iterator[tuple[BareKernel, float]]:
    """Start ipykernel on the host over ipc; yield it and its start time in s."""
    workdir.mkdir()
    info = {"transport": "ipc", "ip": str(workdir / "kernel"), **PORTS,
            "key": secrets.token_hex(32), "signature_scheme": "hmac-sha256", "kernel_name": "python3"}
    conn = workdir / "kernel.json"
    conn.write_text(json.dumps(info))
    env = {**os.environ, "IPYTHONDIR": str(workdir / "ipython"),
           "JUPYTER_RUNTIME_DIR": str(workdir / "runtime")}
    log = (workdir / "kernel.log").open("wb")
    channel: KernelChannel | None = None
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", str(conn),
                             "--HistoryManager.enabled=False"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        _wait_for_sockets(workdir, proc, deadline)
        channel = KernelChannel(info, max_message_bytes=1 << 22)
        channel.wait_ready(deadline=deadline, alive=lambda: proc.poll() is None)
        started = time.perf_counter() - t0
        yield BareKernel(proc, channel), started
    finally:
        if channel is not None:
            channel.close()
        _stop(proc)
        log.close()


def _wait_for_sockets(workdir: Path, proc: subprocess.Popen, deadline: float) -> None:
    sockets = [workdir / f"kernel-{port}" for port in PORTS.values()]
    while not all(s.exists() for s in sockets):
        if proc.poll() is not None:
            raise RuntimeError(f"bare kernel exited: {(workdir / 'kernel.log').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("bare kernel did not create its sockets in 30 s")
        time.sleep(0.005)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# -- containers: ours, left behind, and other people's ----------------------------

MY_SESSIONS: set[str] = set()  # session ids of the sandboxes this run started or acquired
FOREIGN_SEEN: set[str] = set()  # labelled containers of other processes seen during the run


def remember(sb: DockerSandbox) -> DockerSandbox:
    MY_SESSIONS.add(sb.session_id)
    return sb


def labelled_containers() -> list[dict[str, Any]]:
    client = docker.from_env()
    try:  # the plain listing: inspecting each one races with containers removed meanwhile
        found = client.api.containers(all=True, filters={"label": SESSION_LABEL})
        return [{"id": c["Id"], "name": (c.get("Names") or ["/" + c["Id"][:12]])[0].lstrip("/"),
                 "status": c.get("State", ""), "labels": c.get("Labels") or {}} for c in found]
    finally:
        client.close()


def is_mine(container: dict[str, Any]) -> bool:
    labels = container["labels"]
    return labels.get(OWNER_LABEL) == str(os.getpid()) or labels.get(SESSION_LABEL) in MY_SESSIONS


def note_foreign() -> None:
    """Remember other processes' sandboxes: they compete for the CPUs and skew the numbers."""
    FOREIGN_SEEN.update(c["name"] for c in labelled_containers() if not is_mine(c))


def remove_leftovers() -> list[dict[str, str]]:
    """Remove this run's containers that are still there; never touch anyone else's."""
    removed = []
    mine = [c for c in labelled_containers() if is_mine(c)]
    if mine:
        client = docker.from_env()
        try:
            for c in mine:
                with suppress(NotFound):  # it went away on its own meanwhile
                    client.api.remove_container(c["id"], force=True)
                removed.append({"id": c["id"][:12], "name": c["name"], "status": c["status"],
                                "policy": c["labels"].get(POLICY_LABEL, "")})
        finally:
            client.close()
    for item in removed:
        print(f"removed leftover container {item}", file=sys.stderr)
    return removed


# -- machine info ----------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    client = docker.from_env()
    try:
        version = client.version()
        runtimes = sorted(client.info().get("Runtimes", {}))
    finally:
        client.close()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(_mem_total_kib() / MiB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker": {k: version.get(k) for k in ("Version", "ApiVersion", "Os", "Arch")},
        "docker_runtimes": runtimes,
    }


def _mem_total_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0
