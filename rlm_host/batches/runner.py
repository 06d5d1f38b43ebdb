"""Run a batch's tasks on this machine: each one an ``rlm-host run --json`` of its own, admitted by memory and CPU.

Every task is a separate process: its own RLM, sandboxes, audit log (under ``DIR/audit/<task>/``)
and seal, so a task that crashes or is killed takes nothing else with it, and a signal reaches each
run the way it reaches ``rlm-host run``. The driver reads back only what those processes print as
JSON and what ``audit.verify`` says of their logs. Each result is appended to ``DIR/results.jsonl``
and fsync'd when its task ends; running the batch again skips every task whose last result line
counts (an answer, or a failure unless ``retry_failed``) and whose audit log verifies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .. import audit
from ..errors import RLMHostError
from ..events import Say
from ..sanitize import json_line
from ..settings import environment_with
from .admission import Admission, Need
from .tasks import Task

ANSWERED = ("answered", "last_resort")
STOP_GRACE_S = 60.0  # a run told to stop seals its log and removes its sandboxes within this, or is killed
MAX_ERROR_CHARS = 2000
# util-linux's setpriv gives each run SIGTERM when the driver dies (SIGKILL, a crash): the run then seals
# its log as terminated and removes its sandboxes instead of going on unwatched. Without it, it goes on.
WITH_PARENT = [found, "--pdeathsig", "TERM", "--"] if (found := shutil.which("setpriv")) else []


@dataclass
class Tally:
    """Where the batch stands (the progress line and the exit code)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def queued(self) -> int:
        return self.total - self.done - self.failed - self.running - self.skipped

    def line(self) -> str:
        finished = self.done + self.failed
        elapsed = time.monotonic() - self.started
        eta = ""
        if finished and self.queued + self.running:
            eta = f", ETA {elapsed / finished * (self.queued + self.running):.0f} s"
        return (f"{self.done} done, {self.failed} failed, {self.running} running, {self.queued} queued"
                f"{f', {self.skipped} already done' if self.skipped else ''}; {self.tokens:,} tokens, "
                f"${self.cost_usd:.4f}{eta}")


@dataclass(frozen=True)
class Endpoint:
    """The model choice every task gets unless its line names its own model."""

    base_url: str | None = None
    model: str | None = None
    sub_model: str | None = None


def results_of(path: Path) -> dict[str, dict[str, Any]]:
    """Each task id's last result line in ``results.jsonl`` (lines that are no result are passed over)."""
    if not path.is_file():
        return {}
    last: dict[str, dict[str, Any]] = {}
    for raw in path.read_bytes().split(b"\n"):
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            last[record["id"]] = record
    return last


def counts(record: dict[str, Any] | None, *, retry_failed: bool) -> bool:
    """Whether a task's last result stands: an answer (or, unless retrying, a failure) whose log verifies."""
    if record is None or record.get("status") not in (*ANSWERED, "failed"):
        return False
    if record["status"] == "failed" and retry_failed:
        return False
    log = record.get("audit_log")
    if not isinstance(log, str):
        return False
    try:
        return audit.verify(Path(log)).status == "intact"
    except RLMHostError:
        return False


def spec_of(task: Task, endpoint: Endpoint) -> dict[str, Any]:
    """What ``rlm-host run`` needs to run a task, as plain JSON values (a Ray task's one argument)."""
    return {"id": task.id, "query": task.query, "context": [str(p) for p in task.context],
            "policy": task.policy_ref, "base_url": endpoint.base_url,
            "model": task.model or endpoint.model, "sub_model": task.sub_model or endpoint.sub_model,
            "max_iterations": task.max_iterations}


def run_command(spec: dict[str, Any]) -> list[str]:
    """The ``rlm-host run --json`` command line of a task's spec (no key: each host reads its own)."""
    cmd = [*WITH_PARENT, sys.executable, "-m", "rlm_host", "run", "--json", "--query", spec["query"],
           "--policy", spec["policy"]]
    for path in spec["context"]:
        cmd += ["--context", path]
    for option, name in (("--base-url", "base_url"), ("--model", "model"), ("--sub-model", "sub_model"),
                         ("--max-iterations", "max_iterations")):
        if spec.get(name):
            cmd += [option, str(spec[name])]
    return cmd


def run_task(spec: dict[str, Any], logs: Path, *,
             stopping: Callable[[], int | None]) -> tuple[dict[str, Any] | None, Path | None]:
    """Run one task's ``rlm-host run`` with its logs in ``logs``: the result's fields (None when it was
    stopped: ``stopping()`` named a signal, which the run was given) and the log it wrote."""
    logs.mkdir(parents=True, exist_ok=True)
    earlier = set(logs.glob("*.jsonl"))
    started = time.monotonic()
    child = subprocess.Popen(run_command(spec), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=environment_with(RLM_HOST_AUDIT_DIR=str(logs)),
                             start_new_session=True)  # our signal handling decides what reaches it
    stdout, stderr, stopped = _wait(child, stopping)
    wall = round(time.monotonic() - started, 3)
    new = sorted(set(logs.glob("*.jsonl")) - earlier, key=lambda p: p.stat().st_mtime)
    log = new[-1] if new else None
    if stopped and child.returncode != 0:
        return None, log
    fields: dict[str, Any]
    if child.returncode == 0:
        fields = _answered(stdout)
    else:
        lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        error = next((line for line in reversed(lines) if line.startswith("rlm-host: error:")),
                     lines[-1] if lines else f"exit {child.returncode}")
        fields = {"status": "failed", "error": error.removeprefix("rlm-host: error: ")[:MAX_ERROR_CHARS],
                  "exit_code": child.returncode}
    return {**fields, "wall_s": wall}, log


def _wait(child: subprocess.Popen[bytes], stopping: Callable[[], int | None]) -> tuple[bytes, bytes, bool]:
    """The child's output, and whether it was told to stop: then it gets the signal and time to seal."""
    deadline = None
    while True:
        try:
            stdout, stderr = child.communicate(timeout=0.5)
            return stdout, stderr, deadline is not None
        except subprocess.TimeoutExpired:
            sig = stopping() if deadline is None else None
            if sig is not None:
                deadline = time.monotonic() + STOP_GRACE_S
                _send(child, sig)
            elif deadline is not None and time.monotonic() > deadline:
                _send(child, signal.SIGKILL)


class Batch:
    """One batch over ``out``: ``run(tasks)`` runs what is not done yet and returns the tally."""

    def __init__(self, out: Path, admission: Admission, endpoint: Endpoint = Endpoint(), *,
                 retry_failed: bool = False, say: Say | None = None, tally: Tally | None = None) -> None:
        self.out = out.resolve()  # result lines name absolute log paths, wherever the batch is read from
        self.admission = admission
        self.endpoint = endpoint
        self.retry_failed = retry_failed
        self.say = say or (lambda _line: None)
        self.results = self.out / "results.jsonl"
        self.tally = tally or Tally()
        self.stop = threading.Event()
        self.stop_signal = signal.SIGINT
        self._lock = threading.Lock()

    def run(self, tasks: list[Task]) -> Tally:
        """Run every task that has no standing result; Ctrl-C or SIGTERM stop each run cleanly and re-raise."""
        (self.out / "audit").mkdir(parents=True, exist_ok=True)
        before = results_of(self.results)
        self.tally.total = len(tasks)
        todo = []
        for task in tasks:
            if counts(before.get(task.id), retry_failed=self.retry_failed):
                self.tally.skipped += 1
            else:
                todo.append(task)
        if self.results.exists():  # a batch run before: say what stands
            self.say(f"{self.tally.skipped} of {len(tasks)} tasks already done in {self.results}; running the rest")
        pool = ThreadPoolExecutor(max_workers=self._workers(todo), thread_name_prefix="rlm-batch")
        futures = [pool.submit(self._one, task) for task in todo]
        try:
            for future in futures:
                while not future.done():
                    time.sleep(0.2)  # the main thread stays free to take Ctrl-C and SIGTERM
                future.result()
        except BaseException as exc:
            self.stop_signal = signal.SIGTERM if isinstance(exc, SystemExit) else signal.SIGINT
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return self.tally

    def _workers(self, todo: list[Task]) -> int:
        """Threads enough for every run admission can let in at once."""
        return max([self.admission.slots(Need.of(t.policy)) for t in todo] or [1])

    # -- one task -------------------------------------------------------------------------------

    def _one(self, task: Task) -> None:
        need = Need.of(task.policy)
        refusal = self.admission.refusal(need)
        if refusal is not None:
            self._record(task, {"status": "failed", "error": f"not admitted: {refusal}"}, None)
            return
        if not self.admission.admit(need, self.stop):
            return
        try:
            with self._lock:
                self.tally.running += 1
            ended = self._run(task)
        finally:
            with self._lock:
                self.tally.running -= 1
            self.admission.release(need)
        if ended is not None:
            self._record(task, *ended)

    def _run(self, task: Task) -> tuple[dict[str, Any], Path | None] | None:
        """Run the task; its result's fields and log, or None when the batch stopped it."""
        logs = self.out / "audit" / task.slug
        fields, log = run_task(spec_of(task, self.endpoint), logs,
                               stopping=lambda: self.stop_signal if self.stop.is_set() else None)
        if fields is None:
            self._stopped(task, log)
            return None
        return fields, log

    def _stopped(self, task: Task, log: Path | None) -> None:
        kept = f"its log is kept ({log})" if log else "it had not begun"
        self.say(f"{task.id}: stopped; {kept}, and it runs again next time")

    def _record(self, task: Task, fields: dict[str, Any], log: Path | None) -> None:
        verdict = _verdict(log)
        record = {"id": task.id, **fields, "node": fields.get("node") or socket.gethostname(),
                  "audit_log": str(log) if log else None, "verified": verdict, "seal_sha256": _seal_digest(log)}
        if fields["status"] in ANSWERED and verdict != "intact":
            record.update(status="failed", error=f"the run answered but its audit log is {verdict}")
        line = (json_line(record) + "\n").encode()
        with self._lock:
            fd = os.open(self.results, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            ok = record["status"] in ANSWERED
            self.tally.done += ok
            self.tally.failed += not ok
            self.tally.tokens += sum(int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0))
                                     for u in record.get("usage") or [] if isinstance(u, dict))
            self.tally.cost_usd += record.get("cost_usd") or 0.0
            what = record["status"] if ok else f"failed: {record.get('error', '')}"
            self.say(f"{task.id}: {what} ({fields.get('wall_s', 0):.1f} s) | {self.tally.line()}")


def _answered(stdout: bytes) -> dict[str, Any]:
    """The fields of a result line from ``run --json``'s one object (the process is ours; its text is not)."""
    try:
        result = json.loads(stdout)
    except (ValueError, RecursionError):
        result = None
    if not isinstance(result, dict):
        return {"status": "failed", "error": "the run printed no result"}
    keep = ("answer", "citations", "usage", "cost_usd", "stopped", "iterations", "run_id")
    return {"status": "last_resort" if result.get("fallback") else "answered",
            **{name: result.get(name) for name in keep}}


def _verdict(log: Path | None) -> str:
    if log is None:
        return "missing"
    try:
        return audit.verify(log).status
    except RLMHostError as exc:
        return f"unverifiable ({type(exc).__name__})"


def _seal_digest(log: Path | None) -> str | None:
    seal = audit.seal_path(log) if log else None
    try:
        return hashlib.sha256(seal.read_bytes()).hexdigest() if seal and seal.is_file() else None
    except OSError:
        return None


def _send(child: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)  # the run and anything it started (the embedded model's servers)

