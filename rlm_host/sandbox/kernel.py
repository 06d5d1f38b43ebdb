"""Conversation with a sandbox's kernel: send a cell, read what comes back.

This side never starts, stops or signals anything (``container.py`` does);
it speaks Jupyter messaging over the ipc sockets in the session directory with
jupyter_client. The heartbeat channel is not used: it does not answer under
gVisor, so liveness comes from the container's state instead.

Every inbound ZMQ message is size-capped, so a giant output cannot make the
host buffer it: the connection drops the message and the cell is reported
with its output truncated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from queue import Empty
from typing import Any

import zmq
from jupyter_client import BlockingKernelClient

from ..errors import KernelStartError
from ..results import CellError
from .output_cap import OutputCollector, text_of

SILENCE_CHECK_S = 1.0  # how long without messages before asking whether the kernel is alive
REPLY_GRACE_S = 0.5  # how long to wait for the idle status once the reply is in


class Outcome(Enum):
    IDLE = "idle"  # the cell finished
    DEADLINE = "deadline"  # the time ran out first
    DEAD = "dead"  # the kernel's container stopped


class CellRun:
    """The state of one cell while its messages arrive."""

    def __init__(self, msg_id: str, output: OutputCollector) -> None:
        self.msg_id = msg_id
        self.output = output
        self.error: CellError | None = None
        self.replied_at: float | None = None
        self.reply_status: str | None = None  # "ok", "error" or "aborted", from execute_reply
        self.probe_error: str | None = None  # the error the reply's probe expression raised, if any
        self.lost_messages = False


class KernelChannel:
    """A jupyter_client connection to one kernel, with capped inbound messages."""

    def __init__(self, connection_info: dict, max_message_bytes: int) -> None:
        self._context = zmq.Context()
        self._context.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self._client = BlockingKernelClient(context=self._context)
        self._client.load_connection_info(connection_info)  # type: ignore[arg-type]  # a JSON dict of that shape
        self._client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
        self._poller = zmq.Poller()  # built once: collect() polls it for every message of every cell
        self._poller.register(self._client.iopub_channel.socket, zmq.POLLIN)
        self._poller.register(self._client.shell_channel.socket, zmq.POLLIN)

    def wait_ready(self, deadline: float, alive: Callable[[], bool]) -> None:
        """Return once the kernel answers on shell and iopub; raise if it does not in time."""
        while time.monotonic() < deadline:
            self._client.kernel_info()
            if self._kernel_info_reply(min(0.25, deadline - time.monotonic())):
                if self._drain_iopub(0.2):
                    return
            elif not alive():
                raise KernelStartError("the kernel exited while starting")
        raise KernelStartError("the kernel did not answer kernel_info in time")

    def send(self, code: str, output: OutputCollector, *, silent: bool = False, probe: str | None = None) -> CellRun:
        """Send a cell; ``silent`` (our own checks) leaves no history, execution count or displayed result.

        ``probe`` is an expression the kernel evaluates after the cell if it ended ok (Jupyter's
        user_expressions); its outcome comes back in the same reply as ``CellRun.probe_error``.
        """
        # stop_on_error=False: otherwise ipykernel aborts requests that arrive just after a
        # cell that raised (an interrupted one included), and the next cell silently never runs.
        msg_id = self._client.execute(code, silent=silent, store_history=not silent, allow_stdin=False,
                                      stop_on_error=False, user_expressions={"probe": probe} if probe else None)
        return CellRun(msg_id, output)

    def collect(self, run: CellRun, deadline: float, alive: Callable[[], bool]) -> Outcome:
        """Read the cell's messages until it is idle, the deadline passes, or the kernel dies."""
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return Outcome.DEADLINE
            if run.replied_at is not None and now - run.replied_at > REPLY_GRACE_S:
                run.lost_messages = True  # the reply came but an over-size message never did
                return Outcome.IDLE
            wait = min(deadline - now, 0.1 if run.replied_at else SILENCE_CHECK_S)
            if self._poll(run, wait):
                if self._read_iopub(run):
                    self._await_reply(run, min(deadline, time.monotonic() + REPLY_GRACE_S))
                    return Outcome.IDLE
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= SILENCE_CHECK_S:
                if not alive():
                    return Outcome.DEAD
                quiet_since = time.monotonic()

    def close(self) -> None:
        try:
            self._client.stop_channels()
        finally:
            self._context.destroy(linger=0)

    def _poll(self, run: CellRun, wait: float) -> bool:
        """Wait for iopub; take any shell reply on the way. True when iopub has a message."""
        events = dict(self._poller.poll(int(max(wait, 0) * 1000)))
        if self._client.shell_channel.socket in events:
            self._read_shell(run)
        return self._client.iopub_channel.socket in events

    def _read_shell(self, run: CellRun) -> None:
        try:
            msg = _get(self._client.shell_channel, 0)
        except Empty:
            return
        if msg["parent_header"].get("msg_id") == run.msg_id:
            run.replied_at = time.monotonic()
            run.reply_status = msg["content"].get("status")
            expressions = msg["content"].get("user_expressions")
            probe = expressions.get("probe") if isinstance(expressions, dict) else None
            if isinstance(probe, dict) and probe.get("status") == "error":
                run.probe_error = text_of(probe.get("ename"))

    def _await_reply(self, run: CellRun, deadline: float) -> None:
        """The kernel sends the reply before the idle status, but on another socket: read it if it lags."""
        socket = self._client.shell_channel.socket
        while run.replied_at is None and (wait := deadline - time.monotonic()) > 0:
            if socket.poll(int(wait * 1000) + 1, zmq.POLLIN):
                self._read_shell(run)

    def _read_iopub(self, run: CellRun) -> bool:
        """Handle queued iopub messages; True once the cell's idle status is seen."""
        while True:
            try:
                msg = _get(self._client.iopub_channel, 0)
            except Empty:
                return False
            if msg["parent_header"].get("msg_id") != run.msg_id:
                continue
            if _handle(msg, run):
                return True

    def _kernel_info_reply(self, wait: float) -> bool:
        try:
            msg = _get(self._client.shell_channel, max(wait, 0.01))
        except Empty:
            return False
        return msg["msg_type"] == "kernel_info_reply"

    def _drain_iopub(self, wait: float) -> bool:
        try:
            _get(self._client.iopub_channel, wait)
        except Empty:
            return False
        while True:
            try:
                _get(self._client.iopub_channel, 0)
            except Empty:
                return True


def _get(channel: Any, timeout: float) -> dict:
    """The channel's next well-formed message (Empty when none is waiting).

    A message jupyter_client cannot parse, or whose parts are not objects, was forged or
    garbled by the kernel: it is dropped (it was already read off the socket), never raised.
    """
    while True:
        try:
            msg = channel.get_msg(timeout=timeout)
        except Empty:
            raise
        except Exception:  # whatever the kernel sent, the host reads on
            continue
        if all(isinstance(msg.get(part), dict) for part in ("header", "parent_header", "content")) \
                and isinstance(msg.get("msg_type"), str):
            return msg


def _handle(msg: dict, run: CellRun) -> bool:
    kind, content = msg["msg_type"], msg["content"]
    content = content if isinstance(content, dict) else {}
    if kind == "stream":
        run.output.add("stderr" if content.get("name") == "stderr" else "stdout", content.get("text"))
    elif kind in ("execute_result", "display_data"):
        data = content.get("data")
        text = text_of(data.get("text/plain") if isinstance(data, dict) else None)
        run.output.add("result" if kind == "execute_result" else "stdout",
                       text + "\n" if text and kind == "display_data" else text)
    elif kind == "error":
        trace = content.get("traceback")
        run.error = CellError(name=text_of(content.get("ename")), value=text_of(content.get("evalue")),
                              traceback=[text_of(line) for line in (trace if isinstance(trace, list) else [])[:50]])
    elif kind == "status":
        return content.get("execution_state") == "idle"
    return False
