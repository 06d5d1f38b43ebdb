"""Host and kernel agree on the RPC wire format; hostile frames are refused cleanly.

The fuzz tests of the decoder are in tests/security/test_fuzz.py.
"""

from __future__ import annotations

import socket

import pytest

from rlm_host import wire
from rlm_kernel import rpc as kernel_rpc

GOLDEN_REQUEST = {"id": 7, "op": "llm_query", "question": "Who pays?", "text": "Clause 7: the tenant pays. é"}
GOLDEN_BYTES = (b'\x00\x00\x00W{"id":7,"op":"llm_query","question":"Who pays?",'
                b'"text":"Clause 7: the tenant pays. \xc3\xa9"}')


def test_golden_request_bytes() -> None:
    """Both sides encode the same request to the same, documented bytes."""
    assert wire.encode(GOLDEN_REQUEST) == GOLDEN_BYTES
    assert kernel_rpc.encode_frame(GOLDEN_REQUEST) == GOLDEN_BYTES


def test_host_parses_what_the_kernel_sends() -> None:
    """A frame from the kernel's encoder decodes and validates on the host."""
    frame = kernel_rpc.encode_frame(GOLDEN_REQUEST)
    size = wire.frame_size(frame[:4], limit=1024)
    request = wire.parse_request(wire.decode(frame[4:4 + size]))
    assert isinstance(request, wire.LLMQuery) and request.prompt() == "Who pays?\n\nClause 7: the tenant pays. é"


def test_kernel_reads_what_the_host_replies() -> None:
    """The kernel's reader takes the host's ok and error replies."""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(wire.encode(wire.ok_reply(7, ["a", "b"])))
        left.sendall(wire.encode(wire.error_reply(8, "budget_exhausted", "sub-call budget exhausted: 5 of 5 used")))
        assert kernel_rpc.read_frame(right) == {"id": 7, "ok": True, "result": ["a", "b"]}
        error = kernel_rpc.read_frame(right)
    assert error["ok"] is False and error["error"]["code"] == "budget_exhausted"


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"id": 1, "op": "format_disk"}, "unknown_op"),
        ({"id": "1", "op": "llm_query", "question": "q"}, "bad_request"),
        ({"id": 1, "op": "llm_query", "question": 3}, "bad_request"),
        ({"id": 1, "op": "llm_query", "question": "q", "session": "other"}, "bad_request"),
        ({"id": 1, "op": "llm_query_batched", "items": [{"question": "q"}] * 1001}, "bad_request"),
        ({"id": 1, "op": "answer", "text": "a", "citations": [{"start": -5}]}, "bad_request"),
        ({"id": True, "op": "answer", "text": "a"}, "bad_request"),
    ],
)
def test_invalid_requests_name_the_problem(obj: dict, code: str) -> None:
    """Wrong types, extra fields, unknown ops and oversized batches are refused by code."""
    with pytest.raises(wire.FrameError) as info:
        wire.parse_request(obj)
    assert info.value.code == code


def test_oversized_header_is_fatal() -> None:
    """A length over the limit is refused before any body is read."""
    with pytest.raises(wire.FrameError) as info:
        wire.frame_size((2**32 - 1).to_bytes(4, "big"), limit=4096)
    assert info.value.code == "frame_too_large" and info.value.fatal


def test_error_reply_never_echoes_a_hostile_id() -> None:
    """Only integer ids are echoed back."""
    assert wire.error_reply({"$": 1}, "bad_json", "x")["id"] is None
    assert wire.error_reply(True, "bad_json", "x")["id"] is None
    assert wire.error_reply(5, "bad_json", "x")["id"] == 5
