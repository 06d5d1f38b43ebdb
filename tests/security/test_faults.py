"""Fault injection: what breaks around a run (container, engine, LM, host process, audit disk) ends cleanly.

Every fault is real: the container is killed with the Docker API, the engine address points at
nothing, the LM is the scripted server misbehaving over real HTTP (or a port nobody listens on),
the host process gets SIGKILL, and the audit directory is a real tmpfs mounted full or read-only.
Each test asserts one clear message, a recorded event (or, when the log itself is what failed, a
log that verifies up to its last whole line), and no container left; each adds a row to
SECURITY.md's fault table.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import _host_processes_of, cell, run_attack
from helpers import Record, short_limits

from rlm_host import Generation, Models, audit
from rlm_host.errors import AuditError
from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.errors import LMError
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import load_policy
from rlm_host.rlm.loop import RLM
from rlm_host.sandbox import DockerSandbox
from rlm_host.settings import OWNER_LABEL
from rlm_host.testing import ScriptedLM

pytestmark = pytest.mark.docker
PRICES = PriceTable({"root": (0.0, 0.0), "sub": (0.0, 0.0)})
NO_EXAMPLES = Generation(few_shot=False)
SLEEPING_CELL = "import time\nprint('cell started', flush=True)\ntime.sleep(120)\nprint('not reached')"


def containers_of(pid: int) -> list:
    return docker_client().containers.list(all=True, filters={"label": f"{OWNER_LABEL}={pid}"})


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The single stderr line of a failed command, checked for what it must say (without the sealed log's
    path it ends with, which differs per run)."""
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0].removeprefix("rlm-host: error: ").split(" (audit log: ")[0]


def only_log(directory: Path) -> Path:
    logs = list(directory.glob("*.jsonl"))
    assert len(logs) == 1, logs
    return logs[0]


def kinds(log: Path) -> list[str]:
    return [e["kind"] for e in audit.events(log)]


def context_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("The tenant pays the rent on the first day of each month.\n")
    return path


# -- the container killed mid-cell ------------------------------------------------------------

class Killer:
    """An event hook that `docker kill`s the run's container from another thread once the first cell runs."""

    def __init__(self, delay_s: float = 1.5) -> None:
        self.delay_s = delay_s
        self.container: str | None = None
        self.thread: threading.Thread | None = None

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "sandbox.start" and self.container is None:
            self.container = fields["container"]
        elif kind == "root" and self.thread is None:  # the cell starts right after its root reply
            self.thread = threading.Thread(target=self._kill, name="docker-kill")
            self.thread.start()

    def _kill(self) -> None:
        time.sleep(self.delay_s)
        docker_client().api.kill(self.container, signal="SIGKILL")


@pytest.mark.parametrize("runtime", ["standard", "strict"], ids=["runc", "runsc"])
def test_docker_kill_mid_cell(runtime: str, tmp_path: Path, evidence: Record) -> None:
    """`docker kill` of the container while a cell sleeps: status killed, a fresh sandbox, the run goes on."""
    killer = Killer()
    policy = short_limits(load_policy(runtime)).with_limits(cell_timeout_s=100)
    started = time.monotonic()
    try:
        out = run_attack(policy, SLEEPING_CELL, tmp_path, prelude=False, on_event=killer)
    finally:
        if killer.thread is not None:
            killer.thread.join()
    assert out.status == "killed"
    assert "not reached" not in out.step.output and "kernel died" in out.step.output, out.step.output
    assert {"limit.killed", "sandbox.restart"} <= set(out.kinds())
    assert time.monotonic() - started < 90, "the killed cell was waited out instead of noticed"
    killed = next(e for e in out.events if e["kind"] == "cell" and e["iteration"] == 1)
    assert killed["status"] == "killed" and killed["restarted"] is True
    reason = killed["reason"]
    evidence("faults", fault=f"`docker kill` of the container mid-cell ({out.runtime})",
             happened="cell status `killed`; sandbox restarted, next cell and sub-call served; log intact",
             message=reason)


# -- the Docker Engine unreachable ------------------------------------------------------------

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/rlm-host-fault/docker.sock"}


def test_engine_unreachable_at_start(tmp_path: Path, evidence: Record) -> None:
    """With DOCKER_HOST at a socket that does not exist, run and exec print one line, exit 1, and record it."""
    audit_dir = tmp_path / "audit"
    env = {**NO_ENGINE, "RLM_HOST_AUDIT_DIR": str(audit_dir)}
    run = cli("run", "-q", "who pays?", "--context", str(context_file(tmp_path)),
              "--base-url", "http://127.0.0.1:9/v1", "--model", "root", env=env)
    message = one_line_error(run, "Docker Engine not reachable at unix:///nonexistent/", "dockerd")
    log = only_log(audit_dir)
    assert "run.error" in kinds(log) and audit.verify(log).status == "intact"
    code = tmp_path / "cell.py"
    code.write_text("print(6 * 7)\n")
    proc = cli("exec", str(code), env={**env, "RLM_HOST_AUDIT_DIR": str(tmp_path / "exec-audit")})
    assert one_line_error(proc, "Docker Engine not reachable") == message
    assert "exec.error" in kinds(only_log(tmp_path / "exec-audit"))
    evidence("faults", fault="Docker Engine unreachable at start (`run`, `exec`)",
             happened="exit 1, one line, no traceback; `run.error` / `exec.error` recorded, log sealed",
             message=message)


# -- the LM endpoint misbehaving --------------------------------------------------------------

EMPTY_CHOICES = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "root", "choices": []})
# mode: (what the scripted server does, how the client is set up, what the error must say)
LM_FAULTS: dict[str, tuple[Callable[[ScriptedLM], None], dict[str, Any], str]] = {
    "slow": (lambda lm: setattr(lm, "latency_s", 3.0), {"timeout_s": 0.5, "max_retries": 1},
             "did not answer"),
    "not-json": (lambda lm: lm.fail(200, 5, model="root", body="<html>502 Bad Gateway</html>", after=1), {},
                 "not a chat completion"),
    "wrong-shape": (lambda lm: lm.fail(200, 5, model="root", body='{"status": "ok"}', after=1), {},
                    "not a chat completion"),
    "empty-choices": (lambda lm: lm.fail(200, 5, model="root", body=EMPTY_CHOICES, after=1), {},
                      "not a chat completion"),
    "429-storm": (lambda lm: lm.fail(429, 50, model="root", retry_after=0, after=1), {"max_retries": 2},
                  "answered 429"),
}


@pytest.mark.parametrize("mode", list(LM_FAULTS))
def test_lm_endpoint_faults(mode: str, tmp_path: Path, evidence: Record) -> None:
    """A slow, garbled or rate-limiting root endpoint ends the run with one LMError, recorded; no container left."""
    setup, client_options, needle = LM_FAULTS[mode]
    before = containers_of(os.getpid())
    with ScriptedLM() as lm:
        lm.script("root", [cell("print('first cell ran')"), cell("print('second cell')"), "FINAL(done)"])
        setup(lm)
        url = lm.base_url
        client = LMClient(base_url=url, backoff_s=0.01, prices=PRICES,
                          **{"max_retries": 2, **client_options})
        rlm = RLM(Models("root", sub_model="sub", lm=client, prices=PRICES), generation=NO_EXAMPLES,
                  policy=short_limits(load_policy("standard")), audit_dir=tmp_path / "audit")
        with pytest.raises(LMError) as info:
            rlm.complete("who pays?", context_file(tmp_path))
    message = str(info.value)
    assert needle in message and "\n" not in message and url in message, message
    log = only_log(tmp_path / "audit")
    errors = [e for e in audit.events(log) if e["kind"] == "run.error"]
    assert errors and errors[0]["error"].startswith("LMError") and audit.verify(log).status == "intact"
    assert containers_of(os.getpid()) == before
    evidence("faults", fault=f"root LM endpoint: {mode}",
             happened=f"LMError after {info.value.attempts} attempt(s); `run.error` recorded, log sealed, "
                      "sandbox removed", message=message)


def test_lm_endpoint_down_cli(tmp_path: Path, evidence: Record) -> None:
    """`rlm-host run` against a port nobody listens on: one line naming the endpoint and the fix, exit 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    proc = cli("run", "-q", "who pays?", "--context", str(context_file(tmp_path)), "--base-url",
               f"http://127.0.0.1:{port}/v1", "--model", "root", env={"RLM_HOST_AUDIT_DIR": str(tmp_path / "audit")})
    message = one_line_error(proc, f"127.0.0.1:{port}", "was unreachable", "check --base-url")
    log = only_log(tmp_path / "audit")
    assert "run.error" in kinds(log) and audit.verify(log).status == "intact"
    evidence("faults", fault="root LM endpoint down (nothing listening), via `rlm-host run`",
             happened="exit 1 after the retries, one line; `run.error` recorded, log sealed", message=message)


def test_sub_lm_429_storm_is_data(tmp_path: Path, evidence: Record) -> None:
    """A 429 storm on sub-calls reaches the cell as a SubcallError, audited; the run goes on and finishes."""
    with ScriptedLM() as lm:
        lm.script("root", [cell("try:\n    llm_query('q')\nexcept Exception as e:\n    print(type(e).__name__, e)"),
                           "FINAL(done)"])
        lm.fail(429, 50, model="sub", retry_after=0)
        client = LMClient(base_url=lm.base_url, backoff_s=0.01, max_retries=2, prices=PRICES)
        rlm = RLM(Models("root", sub_model="sub", lm=client, prices=PRICES), generation=NO_EXAMPLES,
                  policy=short_limits(load_policy("standard")), audit_dir=tmp_path / "audit")
        result = rlm.complete("who pays?", context_file(tmp_path))
    shown = result.trajectory[0].output
    assert result.answer == "done" and "SubcallError llm_query refused" in shown and "429" in shown, shown
    failed = [e for e in audit.events(Path(result.audit_log)) if e["kind"] == "subcall.failed"]
    assert failed and "answered 429" in failed[0]["error"]
    assert audit.verify(Path(result.audit_log)).status == "intact"
    evidence("faults", fault="sub-call LM endpoint: 429 storm",
             happened="the cell got a SubcallError (reply `lm_error`); `subcall.failed` recorded; the run finished",
             message=failed[0]["error"])


# -- the host process killed mid-run ----------------------------------------------------------

def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"rlm-host ended before {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_host_killed_mid_run(tmp_path: Path, docker_ready: str, evidence: Record) -> None:
    """`rlm-host run` SIGKILLed mid-cell: its log verifies as unfinished, lines intact; --reap removes the orphan."""
    runtime_dir = Path(tempfile.mkdtemp(prefix="rlmf-", dir="/tmp"))  # short: ipc socket paths are capped
    audit_dir = tmp_path / "audit"
    env = {**os.environ, "RLM_HOST_AUDIT_DIR": str(audit_dir), "RLM_HOST_RUNTIME_DIR": str(runtime_dir)}
    bystander = DockerSandbox.start(short_limits(load_policy("standard")))  # a live session that must survive
    try:
        with ScriptedLM() as lm:
            lm.script("root", [cell(SLEEPING_CELL)])
            proc = subprocess.Popen(
                [sys.executable, "-m", "rlm_host", "run", "-q", "who pays?", "--context", str(context_file(tmp_path)),
                 "--base-url", lm.base_url, "--model", "root", "--sub-model", "sub"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                wait_until("its first cell", lambda: any(
                    '"kind":"root"' in p.read_text() for p in audit_dir.glob("*.jsonl")), proc)
                time.sleep(1.5)  # the cell is sleeping in the kernel now
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        orphans = containers_of(proc.pid)
        assert len(orphans) == 1, "the killed run's container should be left for the reaper"
        log = only_log(audit_dir)
        lines = log.read_text().splitlines()
        verdict = audit.verify(log)
        assert verdict.status == "unfinished" and verdict.lines == len(lines) and log.read_text().endswith("\n")
        assert kinds(log)[-1] == "root" and not log.with_suffix(".seal").exists()

        reap = cli("doctor", "--reap", env={"RLM_HOST_RUNTIME_DIR": str(runtime_dir)})
        assert reap.returncode == 0 and "reaped" in reap.stdout, reap
        assert containers_of(proc.pid) == [] and not _host_processes_of([orphans[0].id])
        assert not any(str(runtime_dir) in line for line in Path("/proc/mounts").read_text().splitlines())
        assert list(runtime_dir.iterdir()) == []
        assert bystander.execute("print(6 * 7)").stdout == "42\n", "the reaper harmed a live session"
    finally:
        bystander.close()
        runtime_dir.rmdir()
    evidence("faults", fault="host process SIGKILLed mid-cell",
             happened=f"log verifies as unfinished, all {verdict.lines} lines intact; the orphan container "
                      "(owner pid dead) removed by `rlm-host doctor --reap`, a live session untouched",
             message=verdict.summary(Path(log.name)))


# -- the audit directory full or read-only ----------------------------------------------------

@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``path`` (the tests run as root), always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path) -> None:
    """Write a filler file until not one more byte fits."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    chunk = 1 << 16
    try:
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk //= 2
    finally:
        os.close(fd)


def refused_cli_run(tmp_path: Path, audit_dir: Path, lm: ScriptedLM) -> subprocess.CompletedProcess:
    """`rlm-host run` with its audit log in ``audit_dir``; the model would answer if asked."""
    lm.script("root", [cell("print('a cell ran')"), "FINAL(done)"])
    return cli("run", "-q", "who pays?", "--context", str(context_file(tmp_path)), "--base-url", lm.base_url,
               "--model", "root", env={"RLM_HOST_AUDIT_DIR": str(audit_dir)})


@pytest.mark.parametrize("state", ["read-only", "full"])
def test_audit_dir_unwritable_at_start(state: str, tmp_path: Path, docker_ready: str, evidence: Record) -> None:
    """A read-only or full audit directory: the run refuses to start, in one line naming the directory and the fix."""
    audit_dir = tmp_path / "audit"
    options = "ro,size=1m" if state == "read-only" else "size=16k"
    with tmpfs(audit_dir, options), ScriptedLM() as lm:
        if state == "full":
            fill(audit_dir)
        proc = refused_cli_run(tmp_path, audit_dir, lm)
        message = one_line_error(proc, f"{audit_dir}", "RLM_HOST_AUDIT_DIR",
                                 "Read-only file system" if state == "read-only" else "No space left on device")
        assert lm.requests == [], "the model was asked (and a cell could run) without an audit log"
        logs = list(audit_dir.glob("*.jsonl"))
        assert all(p.stat().st_size == 0 for p in logs), "a partial line was left in the log"
    evidence("faults", fault=f"audit directory {state} at start",
             happened="exit 1 before the first model call; nothing can be recorded, so nothing runs",
             message=message.replace(str(tmp_path), "$TMP"))


def test_audit_dir_fills_mid_run(tmp_path: Path, docker_ready: str, evidence: Record) -> None:
    """The audit disk fills during a sub-call: it is refused unrecorded, the run stops, no cell runs after."""
    audit_dir = tmp_path / "audit"
    before = containers_of(os.getpid())

    def fill_at_first_cell(kind: str, _fields: dict[str, Any]) -> None:
        if kind == "root" and not (audit_dir / "filler").exists():
            fill(audit_dir)

    with tmpfs(audit_dir, "size=1m"), ScriptedLM() as lm:
        lm.script("root", [cell("try:\n    print(llm_query('x' * 20000))\n"
                                "except Exception as e:\n    print(type(e).__name__, e)"),
                           cell("print('a cell after the audit failed')"), "FINAL(done)"])
        lm.rule("sub", lambda messages: "a long answer " * 500)
        client = LMClient(base_url=lm.base_url, backoff_s=0.01, max_retries=0, prices=PRICES)
        rlm = RLM(Models("root", sub_model="sub", lm=client, prices=PRICES), generation=NO_EXAMPLES,
                  policy=short_limits(load_policy("standard")), audit_dir=audit_dir, on_event=fill_at_first_cell)
        with pytest.raises(AuditError) as info:
            rlm.complete("who pays?", context_file(tmp_path))
        roots = [r for r in lm.requests if r["model"] == "root"]
        assert len(roots) == 1, "the root model was asked again after the audit log failed"
        assert [r["model"] for r in lm.requests] == ["root", "sub"], "the sub-call never reached the LM"
        log = only_log(audit_dir)
        verdict = audit.verify(log)
        assert verdict.status == "unfinished" and verdict.lines == len(log.read_text().splitlines())
        assert kinds(log)[-1] == "root"
    message = str(info.value)
    assert str(audit_dir) in message and "No space left on device" in message and "RLM_HOST_AUDIT_DIR" in message
    assert containers_of(os.getpid()) == before
    evidence("faults", fault="audit directory fills up mid-run (during a sub-call)",
             happened=f"the sub-call answer was not delivered, the run stopped with AuditError, no further cell; "
                      f"log unfinished with all {verdict.lines} lines intact",
             message=message.replace(str(tmp_path), "$TMP"))
