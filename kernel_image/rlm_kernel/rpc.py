"""The kernel's end of the RPC channel to the host (stdlib only).

Wire format, shared with ``rlm_host/wire.py`` (golden tests keep them in step):

    frame   = 4-byte big-endian unsigned length N, then N bytes of UTF-8 JSON (an object)
    request = {"id": int, "op": str, ...fields of the op}
    reply   = {"id": int, "ok": true, "result": ...}
            | {"id": int|null, "ok": false, "error": {"code": str, "message": str}}

Ops: ``llm_query`` {question, text}, ``llm_query_batched`` {items: [{question, text}]},
``rlm_query`` {question, text}, ``answer`` {text, citations}.

The socket is ``/session/rpc.sock``, created by the host in this session's private
directory. One request is in flight per connection; the host runs batches concurrently.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from typing import Any

from .contract import SOCKET_PATH

HEADER = struct.Struct(">I")
MAX_REPLY_BYTES = 64 * 1024 * 1024
REFUSAL_WAIT_S = 2.0


class RPCError(Exception):
    """The host refused or failed a request; ``code`` says which kind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_frame(obj: dict) -> bytes:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(body)) + body


def read_frame(sock: socket.socket, limit: int = MAX_REPLY_BYTES) -> dict:
    (size,) = HEADER.unpack(_read_exact(sock, HEADER.size))
    if size > limit:
        raise RPCError("frame_too_large", f"reply of {size} bytes exceeds {limit}")
    obj = json.loads(_read_exact(sock, size).decode("utf-8"))
    if not isinstance(obj, dict):
        raise RPCError("bad_json", "reply is not a JSON object")
    return obj


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise RPCError("closed", "the host closed the RPC channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class RPCClient:
    """A lazily connected, thread-safe client; one request at a time."""

    def __init__(self, path: str = SOCKET_PATH) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._next_id = 0

    def call(self, op: str, **fields: Any) -> Any:
        with self._lock:
            self._next_id += 1
            request = {"id": self._next_id, "op": op, **fields}
            reply = self._exchange(request)
        if not reply.get("ok"):  # a refusal may carry no id: the host could not read the request's
            error = reply.get("error") or {}
            raise RPCError(str(error.get("code", "error")), str(error.get("message", "request failed")))
        if reply.get("id") != request["id"]:
            raise RPCError("protocol", f"reply id {reply.get('id')!r} does not match {request['id']}")
        return reply.get("result")

    def _exchange(self, request: dict) -> dict:
        try:
            sock = self._connect()
            try:
                sock.sendall(encode_frame(request))
            except OSError:
                return self._refusal(sock)
            return read_frame(sock)
        except (OSError, RPCError):
            self.close()
            raise

    def _refusal(self, sock: socket.socket) -> dict:
        """The host stopped reading a frame (too large) and closed; its reply, sent first, says why."""
        try:
            sock.settimeout(REFUSAL_WAIT_S)
            return read_frame(sock)
        finally:
            self.close()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise RPCError("unavailable", f"no RPC channel at {self.path}: {exc.strerror}") from exc
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
