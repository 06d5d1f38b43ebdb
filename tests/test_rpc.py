"""The broker: sub-calls under the budget, and hostile frames refused without harm.

The client here is the kernel's own ``rlm_kernel.rpc.RPCClient``; the model is the
scripted OpenAI-compatible server behind the real ``openai`` client.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_host.events import Recorder
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import load_policy
from rlm_host.rlm.broker import Broker
from rlm_host.rlm.subcalls import Budget, Subcalls
from rlm_host.testing import ScriptedLM
from rlm_host.wire import encode
from rlm_kernel.rpc import RPCClient, RPCError, read_frame


@pytest.fixture
def lm() -> Iterator[ScriptedLM]:
    with ScriptedLM() as server:
        server.rule("sub", lambda messages: "echo: " + messages[-1]["content"][:40])
        yield server


def start_broker(tmp_path: Path, lm: ScriptedLM, **budget) -> tuple[Broker, Subcalls, Recorder]:
    policy = load_policy("standard").with_subcalls(**budget)
    events = Recorder()
    client = LMClient(base_url=lm.base_url, backoff_s=0.01,
                      prices=PriceTable({"sub": (1.0, 2.0)}))
    subcalls = Subcalls(client, "sub", Budget(policy.subcalls), on_event=events)
    broker = Broker(tmp_path / "rpc.sock", subcalls, max_frame_bytes=policy.subcalls.max_frame_bytes,
                    on_event=events).start()
    return broker, subcalls, events


@pytest.fixture
def broker(tmp_path: Path, lm: ScriptedLM) -> Iterator[tuple[Broker, Subcalls, Recorder]]:
    started = start_broker(tmp_path, lm, max_calls=20, max_frame_bytes=4096)
    yield started
    started[0].close()


def raw(broker: Broker) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(broker.path))
    sock.settimeout(10)
    return sock


def still_serves(broker: Broker) -> None:
    client = RPCClient(str(broker.path))
    assert client.call("llm_query", question="ping", text=None) == "echo: ping"
    client.close()


def test_llm_query_and_batch(broker) -> None:
    """llm_query and llm_query_batched come back in order, each recorded with its usage."""
    b, subcalls, events = broker
    client = RPCClient(str(b.path))
    assert client.call("llm_query", question="Who pays?", text="the tenant") == "echo: Who pays?\n\nthe tenant"
    replies = client.call("llm_query_batched", items=[{"question": f"q{i}", "text": None} for i in range(5)])
    assert replies == [f"echo: q{i}" for i in range(5)]
    assert len(events.of("subcall")) == 6 and subcalls.budget.calls == 6
    client.close()


def test_answer_is_recorded(broker) -> None:
    """answer stores the text and citations for the controller."""
    b, subcalls, _ = broker
    client = RPCClient(str(b.path))
    assert client.call("answer", text="EUR 48,500", citations=[{"start": 10, "end": 20}]) == "recorded"
    assert subcalls.answer.text == "EUR 48,500" and subcalls.answer.citations[0].end == 20
    client.close()


@pytest.mark.parametrize(
    ("budget", "call", "needle"),
    [
        ({"max_calls": 2}, lambda c: [c.call("llm_query", question=f"q{i}", text=None) for i in range(3)],
         "sub-call budget exhausted: 2 of 2 used"),
        ({"max_prompt_chars": 10}, lambda c: c.call("llm_query", question="a question longer than ten", text=None),
         "exceeds the limit of 10"),
        ({"max_total_tokens": 5}, lambda c: [c.call("llm_query", question="x" * 200, text=None) for _ in range(2)],
         "token budget exhausted"),
        ({"max_cost_usd": 0.00001}, lambda c: [c.call("llm_query", question="x" * 400, text=None) for _ in range(2)],
         "cost budget exhausted"),
        ({"max_calls": 3}, lambda c: c.call("llm_query_batched", items=[{"question": "q", "text": None}] * 4),
         "this batch needs 4"),
    ],
    ids=["count", "size", "tokens", "cost", "batch"],
)
def test_budget_refusals_are_readable(tmp_path: Path, lm: ScriptedLM, budget, call, needle: str) -> None:
    """Each budget, once exceeded, refuses with a message the model can read and an event."""
    b, _, events = start_broker(tmp_path, lm, **budget)
    client = RPCClient(str(b.path))
    try:
        with pytest.raises(RPCError) as info:
            call(client)
        assert info.value.code == "budget_exhausted" and needle in str(info.value)
        assert events.of("subcall.denied")
    finally:
        client.close()
        b.close()


def test_usage_and_cost_arithmetic(tmp_path: Path, lm: ScriptedLM) -> None:
    """Tokens and cost add up from the server's reported usage and the price table."""
    lm.usage_for("sub", prompt_tokens=1000, completion_tokens=500)
    b, subcalls, _ = start_broker(tmp_path, lm)
    client = RPCClient(str(b.path))
    for _ in range(3):
        client.call("llm_query", question="q", text=None)
    client.close()
    b.close()
    assert subcalls.budget.tokens == 4500
    assert subcalls.budget.cost_usd == pytest.approx(3 * (1000 * 1.0 + 500 * 2.0) / 1e6)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json at all", "bad_json"),
        (b"[1, 2, 3]", "bad_json"),
        (b"\xff\xfe\x00", "bad_json"),
        (b'{"id": 1, "op": "shell", "cmd": "id"}', "unknown_op"),
        (b'{"id": 1, "op": "llm_query", "question": ["list"]}', "bad_request"),
        (b'{"id": 1, "op": "llm_query", "question": "q", "session": "someone-else"}', "bad_request"),
    ],
)
def test_bad_frames_get_error_replies(broker, payload: bytes, code: str) -> None:
    """Malformed, mistyped and unknown frames get an error reply; the connection goes on."""
    b, _, events = broker
    with raw(b) as sock:
        sock.sendall(struct.pack(">I", len(payload)) + payload)
        reply = read_frame(sock)
        assert reply["ok"] is False and reply["error"]["code"] == code
        sock.sendall(encode({"id": 2, "op": "llm_query", "question": "again", "text": None}))
        assert read_frame(sock)["result"] == "echo: again"
    assert events.of("rpc.frame_rejected")
    still_serves(b)


def test_oversized_frame_closes_only_that_connection(broker) -> None:
    """A length over the limit gets an error reply and a closed socket; others are served."""
    b, _, _ = broker
    with raw(b) as sock:
        sock.sendall(struct.pack(">I", 2**31))
        assert read_frame(sock)["error"]["code"] == "frame_too_large"
        assert sock.recv(1) == b""
    still_serves(b)


def test_truncated_frame(broker) -> None:
    """A frame cut short by a closed connection is recorded; the broker lives."""
    b, _, events = broker
    with raw(b) as sock:
        sock.sendall(struct.pack(">I", 100) + b'{"id": 1')
    deadline = time.monotonic() + 5
    while not events.of("rpc.frame_rejected") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events.of("rpc.frame_rejected")[0]["code"] == "truncated"
    still_serves(b)


def test_burst_of_a_thousand_requests(broker) -> None:
    """1000 requests sent at once are each answered (served or refused by the budget)."""
    b, subcalls, _ = broker
    with raw(b) as sock:
        sock.sendall(b"".join(encode({"id": i, "op": "llm_query", "question": "q", "text": None})
                              for i in range(1000)))
        replies = [read_frame(sock) for _ in range(1000)]
    assert [r["id"] for r in replies] == list(range(1000))
    assert sum(r["ok"] for r in replies) == 20 == subcalls.budget.calls
    assert all(r["error"]["code"] == "budget_exhausted" for r in replies if not r["ok"])


def test_too_many_connections_are_refused(broker) -> None:
    """Connections beyond the cap are closed at once and recorded."""
    b, _, events = broker
    socks = [raw(b) for _ in range(6)]
    try:
        time.sleep(0.3)
        assert events.of("rpc.connection_refused")
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.2)
    still_serves(b)


SECRETS = {"email": "jane.doe@example.com", "iban": "DE89 3704 0044 0532 0130 00", "card": "4111 1111 1111 1111"}


def test_egress_rules_screen_what_leaves_and_refuse_in_the_cell(tmp_path: Path) -> None:
    """The model gets the redacted prompt, events count kinds without values, a refused call is an error
    to the caller with nothing sent, and the broker goes on serving."""
    seen: list[str] = []
    with ScriptedLM() as server:
        server.rule("sub", lambda messages: seen.append(messages[-1]["content"]) or "ok")
        base_url = server.base_url
        policy = load_policy("standard").with_egress(patterns=[{"name": "staff", "pattern": r"EMP-\d{6}",
                                                                "action": "refuse"}])
        events = Recorder()
        client = LMClient(base_url=server.base_url.replace("://", "://user:pw@"), backoff_s=0.01,
                          prices=PriceTable({"sub": (1.0, 2.0)}))
        subcalls = Subcalls(client, "sub", Budget(policy.subcalls), on_event=events, egress=policy.egress)
        broker = Broker(tmp_path / "rpc.sock", subcalls, max_frame_bytes=4096, on_event=events).start()
        try:
            rpc = RPCClient(str(broker.path))
            text = "Mail {email}, pay {iban} by card {card}.".format(**SECRETS)
            assert rpc.call("llm_query", question="Who?", text=text) == "ok"
            with pytest.raises(RPCError) as refused:
                rpc.call("llm_query_batched", items=[{"question": "a", "text": None},
                                                     {"question": "b", "text": "EMP-123456"}])
            assert rpc.call("llm_query", question="still there?", text=None) == "ok"
            rpc.close()
        finally:
            broker.close()
    assert seen == ["Who?\n\nMail [EMAIL], pay [IBAN] by card [CARD].", "still there?"]
    assert refused.value.code == "egress_refused" and "'regex:staff'" in str(refused.value)
    first = events.of("subcall")[0]
    assert first["redacted"] == {"email": 1, "iban": 1, "card": 1} and first["endpoint"] == base_url
    assert first["prompt"] == seen[0]
    [refusal] = events.of("subcall.egress_refused")
    assert refusal["refused_by"] == "regex:staff" and refusal["found"] == {"regex:staff": 1}
    assert refusal["endpoint"] == base_url and refusal["model"] == "sub"
    recorded = repr(events.events)
    assert not any(value in recorded for value in [*SECRETS.values(), "EMP-123456", "user:pw"])


def test_rlm_query_question_is_screened_for_the_child(tmp_path: Path, lm: ScriptedLM) -> None:
    """A child RLM's question reaches its root model, so it is screened too; its text goes to the child's sandbox."""
    asked: list[tuple[str, str]] = []
    policy = load_policy("standard").with_subcalls(max_depth=2)
    client = LMClient(base_url=lm.base_url, backoff_s=0.01, prices=PriceTable({"sub": (1.0, 2.0)}))
    subcalls = Subcalls(client, "sub", Budget(policy.subcalls), egress=policy.egress,
                        child=lambda question, text, depth: asked.append((question, text)) or "child says hi")
    broker = Broker(tmp_path / "rpc.sock", subcalls, max_frame_bytes=4096).start()
    try:
        rpc = RPCClient(str(broker.path))
        assert rpc.call("rlm_query", question="Who is jane@example.com?", text="the text") == "child says hi"
        rpc.close()
    finally:
        broker.close()
    assert asked == [("Who is [EMAIL]?", "the text")]
