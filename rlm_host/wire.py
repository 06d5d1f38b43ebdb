"""The RPC wire format between the kernel and the host, and its request schemas.

    frame   = 4-byte big-endian unsigned length N, then N bytes of UTF-8 JSON (an object)
    request = {"id": int, "op": "llm_query" | "llm_query_batched" | "rlm_query" | "answer", ...}
    reply   = {"id": int, "ok": true, "result": ...}
            | {"id": int | null, "ok": false, "error": {"code": str, "message": str}}

The kernel's side is ``kernel_image/rlm_kernel/rpc.py``; golden tests keep the
two in agreement. Everything from the kernel is hostile: frames are size-capped
before they are read, decoded strictly (no pickle, no eval) and validated here.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

HEADER = struct.Struct(">I")
MAX_BATCH = 1000
MAX_QUOTE = 4096  # the longest quote a citation may claim (and so the longest quoted span the host checks)
# A JSON escape of a UTF-16 surrogate: legal JSON, but a lone one is not Unicode and cannot be re-encoded.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class FrameError(Exception):
    """A frame that cannot be accepted; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal  # the stream is out of step: close the connection after replying


def encode(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return HEADER.pack(len(body)) + body


def frame_size(header: bytes, limit: int) -> int:
    (size,) = HEADER.unpack(header)
    if size > limit:
        raise FrameError("frame_too_large", f"frame of {size} bytes exceeds the limit of {limit}", fatal=True)
    return size


def decode(body: bytes) -> dict[str, Any]:
    """A frame's body as a JSON object of valid Unicode, or a FrameError (never another exception)."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or a number of more than 4300 digits
        raise FrameError("bad_json", f"frame is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise FrameError("bad_json", "frame nests JSON too deeply") from None
    if not isinstance(obj, dict):
        raise FrameError("bad_json", "frame is not a JSON object")
    if _SURROGATE_ESCAPE.search(body) and not _is_unicode(obj):
        raise FrameError("bad_json", "frame holds an unpaired surrogate escape (\\ud800-\\udfff); send valid Unicode")
    return obj


def _is_unicode(obj: Any) -> bool:
    """Whether every string in ``obj`` encodes to UTF-8 (no lone surrogates), so the host can log and echo it."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def ok_reply(request_id: int, result: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def error_reply(request_id: Any, code: str, message: str) -> dict[str, Any]:
    safe_id = request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None
    return {"id": safe_id, "ok": False, "error": {"code": code, "message": message}}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: int = Field(ge=0, le=2**53)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    question: str
    text: str | None = None

    def prompt(self) -> str:
        return self.question if self.text is None else f"{self.question}\n\n{self.text}"


class LLMQuery(_Request, Query):
    op: Literal["llm_query"]


class LLMQueryBatched(_Request):
    op: Literal["llm_query_batched"]
    items: list[Query] = Field(max_length=MAX_BATCH)


class RLMQuery(_Request, Query):
    op: Literal["rlm_query"]
    text: str


class CitedSpan(BaseModel):
    """A span the model cites in answer(...): a request, checked by the host; the result is results.Citation."""

    model_config = ConfigDict(extra="forbid", strict=True)
    start: int | None = Field(default=None, ge=0)
    end: int | None = Field(default=None, ge=0)
    document: str | None = Field(default=None, max_length=4096)
    page: int | None = Field(default=None, ge=1)
    quote: str | None = Field(default=None, max_length=MAX_QUOTE)  # the text claimed at the offsets, checked


class Answer(_Request):
    op: Literal["answer"]
    text: str
    citations: list[CitedSpan] = Field(default_factory=list, max_length=1000)


Request = Annotated[LLMQuery | LLMQueryBatched | RLMQuery | Answer, Field(discriminator="op")]
_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)
OPS = ("llm_query", "llm_query_batched", "rlm_query", "answer")


def parse_request(obj: dict[str, Any]) -> LLMQuery | LLMQueryBatched | RLMQuery | Answer:
    """Validate a decoded frame; a FrameError says what is wrong in one line."""
    op = obj.get("op")
    if op not in OPS:
        raise FrameError("unknown_op", f"unknown op {str(op)[:40]!r}; ops are {', '.join(OPS)}")
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:]) or "request"
        raise FrameError("bad_request", f"{op}: {where}: {err['msg']}") from None
