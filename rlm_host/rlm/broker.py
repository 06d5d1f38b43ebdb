"""The host end of the RPC channel: a Unix socket broker (what each request means is in subcalls.py).

Every byte from the kernel is hostile. A frame is size-checked from its header
before its body is read, must arrive whole within ``FRAME_TIMEOUT_S`` of its
first byte (a slow or stalled writer cannot hold one of the few connections),
is decoded strictly, validated (``wire.py``), checked against the run's budget
and the documents (an answer's citations must point into them) and only then
served. Whatever arrives, the broker answers with an error reply (or closes that
one connection) and records an event; it never crashes and never blocks the run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from ..errors import AuditError, LMError
from .. import events
from ..events import EventHook, null_hook
from ..egress import PromptRefused
from .subcalls import BudgetExceeded, Subcalls
from ..wire import (HEADER, FrameError, decode, encode,
                    error_reply, frame_size, ok_reply, parse_request)

log = structlog.get_logger(__name__)

MAX_CONNECTIONS = 4
FRAME_TIMEOUT_S = 3.0  # from a frame's first byte to its last; the kernel sends a frame in one write


class Broker:
    """Serves one session's RPC socket; one thread per connection (a few at most)."""

    def __init__(self, path: Path, subcalls: Subcalls, *, max_frame_bytes: int, uid: int | None = None,
                 on_event: EventHook = null_hook) -> None:
        self.path = path
        self.subcalls = subcalls
        self.max_frame_bytes = max_frame_bytes
        self.uid = uid
        self.emit = on_event
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.rejected = 0

    def start(self) -> Broker:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        if self.uid is not None and os.geteuid() == 0:
            os.chown(self.path, self.uid, self.uid)
        listener.listen(MAX_CONNECTIONS)
        self._listener = listener
        threading.Thread(target=self._accept_loop, name="rlm-rpc-accept", daemon=True).start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        if self._listener is not None:
            _shutdown(self._listener)
        for conn in connections:
            _shutdown(conn)
        self.path.unlink(missing_ok=True)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None, "start() binds the listener before the loop runs"
        while not self._closed:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                crowded = len(self._connections) >= MAX_CONNECTIONS or self._closed
                if not crowded:
                    self._connections.add(conn)
            if crowded:
                events.ConnectionRefused(f"more than {MAX_CONNECTIONS} connections").to(self.emit)
                _shutdown(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="rlm-rpc-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while self._serve_one(conn):
                pass
        finally:
            with self._lock:
                self._connections.discard(conn)
            _shutdown(conn)

    def _serve_one(self, conn: socket.socket) -> bool:
        """Read one frame and answer it; False when the connection should end.

        When the audit log fails, nothing more is served: the request is refused unanswered and
        the connection closed (the run stops at its next event, see ``audit.FsyncWriter``).
        """
        try:
            return self._answer_one(conn)
        except AuditError:  # raised while recording a refusal: the request's id is not at hand
            return _refuse_unaudited(conn, None)

    def _answer_one(self, conn: socket.socket) -> bool:
        first = _recv_exact(conn, 1)  # between frames the kernel may idle as long as it likes
        if first is None:
            return False
        request_id: Any = None
        try:
            body = self._rest_of_frame(conn, first, time.monotonic() + FRAME_TIMEOUT_S)
            if body is None:
                self._reject("truncated", "the connection closed in the middle of a frame")
                return False
            obj = decode(body)
            request_id = obj.get("id")
            request = parse_request(obj)
            reply = ok_reply(request.id, self.subcalls.dispatch(request))
        except FrameError as exc:
            self._reject(exc.code, str(exc))
            reply = error_reply(request_id, exc.code, str(exc))
            if exc.fatal:
                _send(conn, reply)
                return False
        except BudgetExceeded as exc:
            events.SubcallDenied(str(exc)).to(self.emit)
            reply = error_reply(request_id, "budget_exhausted", str(exc))
        except PromptRefused as exc:  # recorded by Subcalls, which knows the endpoint and the model
            reply = error_reply(request_id, "egress_refused", str(exc))
        except LMError as exc:
            events.SubcallFailed(str(exc)).to(self.emit)
            reply = error_reply(request_id, "lm_error", str(exc))
        except AuditError:
            return _refuse_unaudited(conn, request_id)
        except Exception as exc:  # the broker must survive anything
            log.exception("rpc handler failed")
            events.InternalError(f"{type(exc).__name__}: {exc}").to(self.emit)
            reply = error_reply(request_id, "internal", f"the host failed to serve the request ({type(exc).__name__})")
        return _send(conn, reply)

    def _rest_of_frame(self, conn: socket.socket, first: bytes, deadline: float) -> bytes | None:
        """The frame's body, read by ``deadline``; None when the connection closed first."""
        try:
            rest = _recv_exact(conn, HEADER.size - 1, deadline)
            if rest is None:
                return None
            return _recv_exact(conn, frame_size(first + rest, self.max_frame_bytes), deadline)
        finally:
            conn.settimeout(None)  # the reply is written without a deadline

    def _reject(self, code: str, message: str) -> None:
        self.rejected += 1
        events.FrameRejected(code, message[:200]).to(self.emit)


def _refuse_unaudited(conn: socket.socket, request_id: Any) -> bool:
    """Answer that the request cannot be recorded (so it is not served); the connection ends."""
    _send(conn, error_reply(request_id, "audit_failed", "the host cannot record this request; the run stops"))
    return False


def _recv_exact(conn: socket.socket, size: int, deadline: float | None = None) -> bytes | None:
    """``size`` bytes, or None when the connection ends; a FrameError when ``deadline`` passes."""
    chunks, left = [], size
    while left:
        try:
            conn.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
            chunk = conn.recv(min(left, 1 << 20))
        except TimeoutError:
            raise FrameError("slow_frame", f"the frame did not arrive whole within {FRAME_TIMEOUT_S:g}s "
                                           "of its first byte; send each frame in one write", fatal=True) from None
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(conn: socket.socket, reply: dict[str, Any]) -> bool:
    try:
        conn.sendall(encode(reply))
    except OSError:
        return False
    return True


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
