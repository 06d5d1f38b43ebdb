"""The Docker backend: a hardened container running one IPython kernel.

Lifecycle steps (``container.py``) and conversation (``kernel.py``) are kept
apart; this class decides what a limit means: a cell past its time is
interrupted, and if it ignores that for the grace period the container is
replaced; a dead kernel is diagnosed (out of memory, or killed) and replaced;
the documents are reloaded after every replacement.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

from .. import events
from ..errors import ConfigError, KernelStartError, SandboxError, SessionClosed
from .image import require_image
from ..policy import Policy
from ..results import ExecutionResult, Status
from .base import Sandbox
from .container import Container, image_content_hash
from .kernel import CellRun, KernelChannel, Outcome
from .output_cap import OutputCollector
from .document import Document
from .session_dir import SessionDir, check_documents, new_session_id

INSTALL_CELL = "import rlm_kernel as _k; _k.install(get_ipython()); del _k"
LOAD_CELL = "import rlm_kernel as _k; _k.load(get_ipython()); del _k"
# After every cell: can the kernel still open what the next cell needs (llm_query's socket, a thread's
# output pipe)? Threads a cell leaves blocked in syscalls keep their sockets and pipes for ever, and
# once they hold every descriptor limits.nofile allows, each later cell fails. One expression, no names
# left; it rides in the cell's own execute_request (user_expressions), so an ok cell costs no round trip.
PROBE_FDS = 16
PROBE = (f"len([__import__('os').close(fd) for pair in [__import__('os').pipe() for _ in range({PROBE_FDS // 2})] "
         "for fd in pair])")
EventHook = Callable[[str, dict], None]
_OPEN: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()
# Kernels booting at once in this process. A burst of sessions would otherwise share the CPU so thinly
# that every boot outlasts limits.start_timeout_s (seen: 20 at once on 2 cores, ~34 s each, one failed);
# queued, each boots in seconds and its start timeout counts from its own turn.
_BOOT_SLOTS = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))


def sandbox_uid(policy: Policy) -> int:
    """The uid the kernel runs as: the policy's, or the host user's when not root."""
    if os.geteuid() == 0:
        return policy.user
    if os.getuid() < 1000:
        raise ConfigError("run rlm-host as root or as a user with uid >= 1000 (the sandbox uid)")
    return os.getuid()


class DockerSandbox(Sandbox):
    """One session: a container, its kernel, and its documents."""

    def __init__(self, policy: Policy, *, image: str | None = None,
                 on_event: EventHook | None = None) -> None:
        self.policy = policy
        self.session_id = new_session_id()
        self.restarts = 0
        self._image = image or require_image()
        self._dir = SessionDir(self.session_id, sandbox_uid(policy))
        self._documents: list[Document] = []
        self._container: Container | None = None
        self._channel: KernelChannel | None = None
        self._started_at = time.monotonic()
        self._closed = False
        self._emit = on_event or (lambda _kind, _fields: None)

    @classmethod
    def start(cls, policy: Policy, documents: Iterable[str | Path | Document] = (), *,
              image: str | None = None, on_event: EventHook | None = None) -> DockerSandbox:
        """Create the session directory, start the container and load the documents."""
        staged = [Document.of(d) for d in documents]
        check_documents(staged)
        sandbox = cls(policy, image=image, on_event=on_event)
        try:
            sandbox._dir.create()
            _OPEN.add(sandbox)
            sandbox._documents = staged
            sandbox._dir.stage_documents(staged)
            sandbox._boot()
        except BaseException:
            sandbox.close()
            raise
        sandbox._started_at = time.monotonic()  # the lifetime counts from ready
        return sandbox

    # -- the Sandbox interface -------------------------------------------------

    @property
    def rpc_socket_path(self) -> Path:
        return self._dir.rpc_socket

    @property
    def rpc_socket_owner(self) -> int:
        return self._dir.uid

    @property
    def container_id(self) -> str | None:
        return self._container.id if self._container else None

    def attach_documents(self, documents: Iterable[str | Path | Document]) -> None:
        """Give a started (pooled) sandbox its documents; its lifetime starts now."""
        self._documents = [Document.of(d) for d in documents]
        check_documents(self._documents)
        self._started_at = time.monotonic()
        if self._documents:
            self._dir.stage_documents(self._documents)
            self._run_setup(LOAD_CELL)

    def execute(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        self._check_open()
        wanted = timeout if timeout is not None else self.policy.limits.cell_timeout_s
        limit = min(wanted, self._lifetime_left())
        if limit <= 0:
            self._expire()
        started = time.monotonic()
        run = self._kernel.send(code, OutputCollector(self.policy.limits.output_cap_bytes), probe=PROBE)
        outcome = self._kernel.collect(run, started + limit, self._alive)
        if outcome is Outcome.DEADLINE and limit < wanted:
            return self._end_of_lifetime(run, started)
        if outcome is Outcome.DEADLINE:
            return self._on_timeout(run, started, limit)
        if outcome is Outcome.DEAD:
            return self._on_death(run, started)
        if self._box.pids_limit_hit():
            return self._on_pids_limit(run, started)
        if run.reply_status == "aborted":
            return self._checked(self._result("error", run, started,
                                              reason="the kernel aborted the cell without running it"), run)
        return self._checked(self._result("error" if run.error else "ok", run, started, reason=_lost(run)), run)

    def restart(self, reason: str) -> None:
        self._check_open()
        events.SandboxRestart(reason).to(self._emit)
        self._stop_kernel()
        self.restarts += 1
        self._boot()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stop_kernel()
        finally:
            self._dir.remove()
            _OPEN.discard(self)
            events.SandboxStop(self.restarts).to(self._emit)

    def alive(self) -> bool:
        return not self._closed and self._container is not None and self._alive()

    # -- lifecycle steps ---------------------------------------------------------

    def _boot(self) -> None:
        queued = time.monotonic()
        with _BOOT_SLOTS:
            began = time.monotonic()
            self._boot_kernel()
        events.SandboxStart(container=str(self._box.id), runtime=self.policy.runtime, image=self._image,
                            image_id=self._box.image_id,
                            image_content_hash=image_content_hash(self._box.image_id), session=self.session_id,
                            queued_ms=round((began - queued) * 1000, 1),
                            boot_ms=round((time.monotonic() - began) * 1000, 1)).to(self._emit)

    def _boot_kernel(self) -> None:
        """Start the container, wait for the kernel's sockets and first answer, install the runtime."""
        info = self._dir.write_connection()
        self._container = Container(self.policy, self._image, self._dir)
        try:
            self._box.start()
        except SandboxError as exc:  # refused by the engine, or by the start check: on record either way
            events.SandboxStartRefused(str(exc)).to(self._emit)
            raise
        deadline = time.monotonic() + self.policy.limits.start_timeout_s
        self._wait_for_sockets(deadline)
        max_bytes = self.policy.limits.output_cap_bytes * 4 + (1 << 20)
        self._channel = KernelChannel(info, max_bytes)
        try:
            self._kernel.wait_ready(deadline, self._alive)
        except KernelStartError as exc:
            raise KernelStartError(f"{exc}; container log: {self._box.logs()!r}") from exc
        self._run_setup(INSTALL_CELL)

    def _wait_for_sockets(self, deadline: float) -> None:
        checks = 0
        while not self._dir.sockets_ready():
            checks += 1
            if checks % 20 == 0 and not self._alive():
                raise KernelStartError(f"the kernel exited while starting: {self._box.logs()!r}")
            if time.monotonic() > deadline:
                raise KernelStartError(
                    f"the kernel did not start within {self.policy.limits.start_timeout_s:g}s "
                    f"(raise limits.start_timeout_s); container log: {self._box.logs()!r}")
            time.sleep(0.01)

    def _run_setup(self, code: str) -> None:
        """Run one of our own cells (runtime install, document load); failure is ours to raise."""
        limit = max(self.policy.limits.cell_timeout_s, self.policy.limits.start_timeout_s)
        run = self._kernel.send(code, OutputCollector(4096))
        if self._kernel.collect(run, time.monotonic() + limit, self._alive) is not Outcome.IDLE or run.error:
            detail = f"{run.error.name}: {run.error.value}" if run.error else "no answer in time"
            raise KernelStartError(f"loading the documents into the sandbox failed ({detail}); "
                                   "check their size against limits.memory_mb")

    def _stop_kernel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._container is not None:
            container, self._container = self._container, None
            self._remove(container)

    def _remove(self, container: Container) -> None:
        """Remove a container; if even that fails, the record says so before the error rises."""
        try:
            container.remove()
        except SandboxError as exc:
            events.SandboxRemoveFailed(container.id or "(not created)", str(exc)).to(self._emit)
            raise

    @property
    def _box(self) -> Container:
        """The running container; a closed session has none."""
        if self._container is None:
            raise SessionClosed(f"sandbox {self.session_id} has no container (it is closed); start a new one")
        return self._container

    @property
    def _kernel(self) -> KernelChannel:
        """The channel to the running kernel; a closed session has none."""
        if self._channel is None:
            raise SessionClosed(f"sandbox {self.session_id} has no kernel (it is closed); start a new one")
        return self._channel

    def _alive(self) -> bool:
        return self._box.state().running

    # -- limits -----------------------------------------------------------------

    def _lifetime_left(self) -> float:
        return self.policy.limits.session_lifetime_s - (time.monotonic() - self._started_at)

    def _expire(self) -> None:
        self.close()
        raise SessionClosed(f"session lifetime of {self.policy.limits.session_lifetime_s:g}s reached; "
                            "start a new session")

    def _end_of_lifetime(self, run: CellRun, started: float) -> ExecutionResult:
        events.SessionLifetime(self.policy.limits.session_lifetime_s).to(self._emit)
        result = self._result("killed", run, started, restarted=False,
                              reason=f"session lifetime of {self.policy.limits.session_lifetime_s:g}s "
                                     "reached during the cell; the session is closed")
        self.close()
        return result

    def _on_timeout(self, run: CellRun, started: float, limit: float) -> ExecutionResult:
        grace = self.policy.limits.interrupt_grace_s
        events.CellTimeout(limit).to(self._emit)
        self._box.interrupt()
        outcome = self._kernel.collect(run, time.monotonic() + grace, self._alive)
        if outcome is Outcome.IDLE and not self._box.pids_limit_hit():
            return self._checked(self._result("timeout", run, started,
                                              reason=f"cell exceeded its {limit:g}s limit and was interrupted; "
                                                     "variables are kept"), run)
        if outcome is Outcome.DEAD or not self._alive():  # e.g. killed for memory while it overran
            return self._on_death(run, started)
        reason = (f"cell exceeded its {limit:g}s limit and did not stop within {grace:g}s of the "
                  "interrupt; the sandbox was restarted and variables are lost")
        ended = time.monotonic()
        self.restart(reason)
        return self._result("timeout", run, started, restarted=True, reason=reason, ended=ended)

    def _on_death(self, run: CellRun, started: float) -> ExecutionResult:
        ended = time.monotonic()
        state = self._box.state()
        if state.oom_killed:
            status: Status = "oom"
            reason = (f"the kernel ran out of memory (limit {self.policy.limits.memory_mb} MB); "
                      "the sandbox was restarted and variables are lost")
        else:
            status = "killed"
            reason = (f"the kernel died (exit code {state.exit_code}); "
                      "the sandbox was restarted and variables are lost")
        (events.OutOfMemory if status == "oom" else events.KernelDied)(state.exit_code).to(self._emit)
        self.restart(reason)
        return self._result(status, run, started, restarted=True, reason=reason, ended=ended)

    def _on_pids_limit(self, run: CellRun, started: float) -> ExecutionResult:
        reason = (f"the process limit ({self.policy.limits.pids}) was reached; the sandbox was "
                  "restarted to clear leftover processes and variables are lost")
        events.PidsLimit(self.policy.limits.pids).to(self._emit)
        ended = time.monotonic()
        self.restart(reason)
        return self._result("killed", run, started, restarted=True, reason=reason, ended=ended)

    def _checked(self, result: ExecutionResult, run: CellRun) -> ExecutionResult:
        """``result`` as it is, unless the cell left the kernel unable to open descriptors: then it is replaced.

        The kernel evaluates the probe only after a cell that ended ok; after any other (it raised, was
        interrupted, its reply is not in) the probe runs as a silent cell of its own. Only a probe that
        failed to open descriptors (``OSError``) counts; one with no answer within the interrupt grace
        (a loaded host) is left behind: the next cell queues after it and has its own time limit.
        """
        failed = run.probe_error if run.reply_status == "ok" else self._probe()
        if failed != "OSError":
            return result
        nofile = self.policy.limits.nofile
        reason = (f"after the cell the kernel could not open {PROBE_FDS} file descriptors (limits.nofile is "
                  f"{nofile}: threads or objects the cell left hold the rest); the sandbox was restarted "
                  "and variables are lost")
        events.DescriptorsExhausted(nofile, PROBE_FDS).to(self._emit)
        self.restart(reason)
        kept = result.reason.removesuffix("; variables are kept") + "; " if result.reason else ""
        return result.model_copy(update={"restarted": True, "reason": kept + reason})

    def _probe(self) -> str | None:
        """The name of the error the probe raised as a cell of its own, or None (it passed, or no answer)."""
        probe = self._kernel.send(PROBE, OutputCollector(4096), silent=True)
        outcome = self._kernel.collect(probe, time.monotonic() + self.policy.limits.interrupt_grace_s, self._alive)
        return probe.error.name if outcome is Outcome.IDLE and probe.error else None

    def _result(self, status: Status, run: CellRun, started: float, *, restarted: bool = False,
                reason: str | None = None, ended: float | None = None) -> ExecutionResult:
        """The cell's result; ``duration_ms`` ends when the cell did, before any restart."""
        out = run.output
        ended = ended if ended is not None else time.monotonic()
        return ExecutionResult(
            status=status, stdout=out.text("stdout"), stderr=out.text("stderr"),
            result=out.text("result") or None, error=run.error,
            duration_ms=round((ended - started) * 1000, 3),
            truncated=out.truncated or run.lost_messages, restarted=restarted, reason=reason)

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"sandbox session {self.session_id} is closed; start a new one")


def _lost(run: CellRun) -> str | None:
    if run.lost_messages:
        return "an output message over the size limit was dropped"
    return None


@atexit.register
def close_all() -> None:
    """Close every sandbox this process still has open (at exit, or before a forced exit)."""
    for sandbox in list(_OPEN):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            sandbox.close()
