"""The RPC channel, attacked from inside the sandbox: /session/rpc.sock is the only way out.

Each attack is a cell a model could write: it talks to the broker over a raw socket (or
through the helpers) and reports the replies it got. Malformed frames get an error reply
and a ``rpc.frame_rejected`` event, a frame over the limit or out of step closes that one
connection, sub-calls past the budget are denied (``subcall.denied``), and afterwards the
session's own ``llm_query`` still works (the harness's follow-up cell proves it).
"""

from __future__ import annotations

import pytest
from harness import Outcome, record, run_attack  # noqa: F401 - record is a fixture
from helpers import short_limits

from rlm_host.policy import load_policy
from rlm_host.rlm.broker import FRAME_TIMEOUT_S, MAX_CONNECTIONS

pytestmark = pytest.mark.docker
CATEGORY = "rpc"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])

# A raw client of the broker, for cells (the prelude gives json, socket and verdict).
RAW = r'''
import struct, time
SOCK = "/session/rpc.sock"
def connect(timeout=5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(SOCK)
    return s
def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body
def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
def reply(s):
    """The next reply: its error code, 'ok:<result>', 'closed' or 'timeout'."""
    try:
        head = recv_exact(s, 4)
        body = head and recv_exact(s, struct.unpack(">I", head)[0])
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return "closed"
    if body is None:
        return "closed"
    obj = json.loads(body)
    return f"ok:{obj['result']}" if obj["ok"] else obj["error"]["code"]
def send(payload, s=None):
    """Send raw bytes on a fresh connection (or ``s``) and return the reply."""
    s = s or connect()
    try:
        s.sendall(payload)
    except OSError:
        pass  # the broker may close on a bad header before all is written; its reply is still there
    return reply(s)
def raw(body):
    return struct.pack(">I", len(body)) + body
def query(question="q", **extra):
    return {"id": 1, "op": "llm_query", "question": question, "text": None, **extra}
'''


def rejected(out: Outcome) -> list[str]:
    """The codes of the audit log's rpc.frame_rejected events, sorted (connections run concurrently)."""
    return sorted(e["code"] for e in out.events if e["kind"] == "rpc.frame_rejected")


@POLICIES
def test_lying_length_prefix(policy: str, tmp_path, record) -> None:
    """Frames whose length prefix lies: shorter than the body, zero, and a 2-byte header then close"""
    code = RAW + """
body = json.dumps(query()).encode()
s = connect()
s.sendall(struct.pack(">I", 5) + body)   # the rest of the body is read as the next header
short = [reply(s), reply(s)]
s2 = connect()
s2.sendall(b"\\x00\\x00")
s2.shutdown(socket.SHUT_WR)
verdict(short=short, zero=send(raw(b"")), partial_header=reply(s2))
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"short": ["bad_json", "frame_too_large"], "zero": "bad_json",
                         "partial_header": "closed"}, out.step.output
    assert rejected(out) == ["bad_json", "bad_json", "frame_too_large", "truncated"], out.kinds()
    record(out, "bad_json, then the rest read as a header: frame_too_large and closed; partial header: "
                "closed, recorded as truncated")


@POLICIES
def test_truncated_body(policy: str, tmp_path, record) -> None:
    """A truncated frame: a header for 100 bytes, 8 sent, then the writer shuts down"""
    code = RAW + """
s = connect()
s.sendall(struct.pack(">I", 100) + b'{"id": 1')
s.shutdown(socket.SHUT_WR)
verdict(truncated=reply(s))
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"truncated": "closed"}, out.step.output
    assert rejected(out) == ["truncated"], out.kinds()
    record(out, "connection closed; recorded (truncated)")


@POLICIES
def test_malformed_bodies(policy: str, tmp_path, record) -> None:
    """Malformed bodies: invalid UTF-8, invalid JSON, non-object JSON, a 5000-digit number, NaN"""
    code = RAW + """
s = connect()
bodies = [b"\\xff\\xfe\\x00", b"{'id': 1}", b"[1, 2, 3]", b'"llm_query"', b"null", b"42",
          b'{"id": ' + b"9" * 5000 + b', "op": "llm_query", "question": "q"}',
          b'{"id": 1, "op": "llm_query", "question": NaN}']
codes = [send(raw(b), s) for b in bodies]
verdict(codes=codes, after=send(frame(query("still here")), s))
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"codes": ["bad_json"] * 7 + ["bad_request"], "after": "ok:pong"}, out.step.output
    assert rejected(out) == ["bad_json"] * 7 + ["bad_request"], out.kinds()
    assert "rpc.internal_error" not in out.kinds()
    record(out, "each refused (bad_json; NaN: bad_request), the connection goes on")


@POLICIES
def test_mistyped_and_unknown_requests(policy: str, tmp_path, record) -> None:
    """Wrong types (id as str, bool, negative, 2**64; question a list; items a dict) and unknown ops"""
    code = RAW + """
s = connect()
wrong = [dict(query(), id="1"), dict(query(), id=True), dict(query(), id=-1), dict(query(), id=2**64),
         query(["list"]), dict(query(), text=7),
         {"id": 1, "op": "llm_query_batched", "items": {"question": "q"}}]
unknown = [{"id": 1, "op": op} for op in ("shell", "__class__", "exec", "LLM_QUERY", None)] + [{"id": 1}]
verdict(wrong=[send(frame(o), s) for o in wrong], unknown=[send(frame(o), s) for o in unknown],
        after=send(frame(query()), s))
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"wrong": ["bad_request"] * 7, "unknown": ["unknown_op"] * 6, "after": "ok:pong"}, \
        out.step.output
    assert rejected(out) == ["bad_request"] * 7 + ["unknown_op"] * 6, out.kinds()
    record(out, "bad_request / unknown_op each, nothing served")


@POLICIES
def test_oversized_frame(policy: str, tmp_path, record) -> None:
    """A frame one byte past max_frame_bytes, a header claiming 4 GiB, and llm_query of a text past the limit"""
    limit = load_policy(policy).subcalls.max_frame_bytes
    code = RAW + f"""
body = b'{{"id": 1, "op": "llm_query", "question": "' + b"x" * {limit - 43} + b'"}}'
try:
    via_helper = llm_query("x" * {limit + 1})
except Exception as exc:
    via_helper = f"{{type(exc).__name__}}: {{exc}}"
verdict(size=len(body), big=send(raw(body)), huge_header=send(struct.pack(">I", 2**32 - 1)),
        via_helper=via_helper[:38])
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"size": limit + 1, "big": "frame_too_large", "huge_header": "frame_too_large",
                         "via_helper": "SubcallError: llm_query refused: frame"}, out.step.output
    assert rejected(out) == ["frame_too_large"] * 3, out.kinds()
    record(out, f"frame_too_large (limit {limit // 2**20} MiB) before the body is read; that connection "
                "closed; the helper raises SubcallError with the reason")


@POLICIES
def test_connections_past_the_cap(policy: str, tmp_path, record) -> None:
    """A second through fifth connection beside the session's own (the broker serves four)"""
    code = RAW + f"""
llm_query("connect the session's own client first")
extra = [connect() for _ in range({MAX_CONNECTIONS})]
found = [send(frame(query("mine")), s) for s in extra]
for s in extra:
    s.close()
verdict(found=found)
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"found": ["ok:pong"] * (MAX_CONNECTIONS - 1) + ["closed"]}, out.step.output
    refused = [e for e in out.events if e["kind"] == "rpc.connection_refused"]
    assert len(refused) == 1, out.kinds()
    record(out, f"served up to {MAX_CONNECTIONS}; the fifth closed at once (rpc.connection_refused)")


@POLICIES
def test_replayed_ids_and_foreign_session(policy: str, tmp_path, record) -> None:
    """Replay request ids (the session's own, twice on two connections) and claim another session"""
    code = RAW + """
llm_query("the session's client used id 1")
a, b = connect(), connect()
a.sendall(frame(query("alpha")) + frame(query("alpha again")))
b.sendall(frame(dict(query("beta"), id=1)))
replayed = [reply(a), reply(a), reply(b)]
claims = [send(frame(query(session="0" * 32)), a), send(frame(query(run_id="abc", depth=0)), a),
          send(frame(query(budget={"max_calls": 10**9})), a)]
verdict(replayed=replayed, claims=claims, own=llm_query("own client, id 2"))
"""
    out = run_attack(policy, code, tmp_path, sub=lambda messages: "pong:" + messages[-1]["content"])
    assert out.found == {"replayed": ["ok:pong:alpha", "ok:pong:alpha again", "ok:pong:beta"],
                         "claims": ["bad_request"] * 3, "own": "pong:own client, id 2"}, out.step.output
    assert rejected(out) == ["bad_request"] * 3, out.kinds()
    assert out.result.subcalls["calls"] == 6  # each replay is a new, budgeted, recorded call
    record(out, "ids only pair a reply on its own connection: a replay is a new budgeted call; "
                "session/budget fields: bad_request")


@POLICIES
def test_huge_batches(policy: str, tmp_path, record) -> None:
    """llm_query_batched past the budget: max_calls + 1 items, 1001 items, huge texts, a batch over the frame limit"""
    budget = load_policy(policy).subcalls
    piece = budget.max_prompt_chars - 10
    code = RAW + f"""
def batch(items):
    return send(frame({{"id": 1, "op": "llm_query_batched", "items": items}}))
verdict(over_calls=batch([{{"question": "q"}}] * {budget.max_calls + 1}),
        over_batch=batch([{{"question": "q"}}] * 1001),
        over_size=batch([{{"question": "q", "text": "x" * {budget.max_prompt_chars + 1}}}] * 3),
        over_frame=batch([{{"question": "q", "text": "x" * {piece}}}] * {budget.max_frame_bytes // piece + 2}),
        helper=attempt(llm_query_batched, ["q"] * {budget.max_calls + 1}))
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"over_calls": "budget_exhausted", "over_batch": "bad_request",
                         "over_size": "budget_exhausted", "over_frame": "frame_too_large",
                         "helper": "SubcallError"}, out.step.output
    denied = [e["reason"] for e in out.events if e["kind"] == "subcall.denied"]
    assert len(denied) == 3, denied
    assert f"this batch needs {budget.max_calls + 1}" in denied[0], denied
    assert f"exceeds the limit of {budget.max_prompt_chars:,}" in denied[1], denied
    assert rejected(out) == ["bad_request", "frame_too_large"], out.kinds()
    assert out.result.subcalls["calls"] == 1  # only the follow-up's call was served
    record(out, f"denied whole before any call (subcall.denied, {budget.max_calls} calls, "
                f"{budget.max_prompt_chars:,} chars); over 1000 items: bad_request; "
                f"over {budget.max_frame_bytes // 2**20} MiB: frame_too_large")


@POLICIES
def test_recursion_past_max_depth(policy: str, tmp_path, record) -> None:
    """rlm_query nested past the policy's max_depth (1), and a frame claiming depth 0"""
    code = RAW + """
nested = [rlm_query(f"level {i}", "some text") for i in range(3)]
forged = send(frame({"id": 1, "op": "rlm_query", "question": "q", "text": "t", "depth": 0}))
verdict(nested=nested, forged=forged)
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"nested": ["pong"] * 3, "forged": "bad_request"}, out.step.output
    kinds = out.kinds()
    assert kinds.count("subcall.depth_fallback") == 3 and "subcall.child_rlm" not in kinds, kinds
    assert kinds.count("sandbox.start") == 1, kinds  # no child sandbox was started
    record(out, "answered by a plain sub-call (subcall.depth_fallback); no child sandbox; depth field: "
                "bad_request")


@POLICIES
def test_answer_with_forged_citations(policy: str, tmp_path, record) -> None:
    """answer() citing offsets past the end of context, a reversed span, a document that is not there"""
    doc = tmp_path / "lease.txt"
    doc.write_text("The tenant pays a termination fee of EUR 48,500.\n")
    code = """
forged = [[{"start": 10**12, "end": 10**12 + 5}], [(40, 20)], [{"document": "secrets.txt"}],
          [{"start": 0, "end": len(context) + 1}]]
verdict(found=[attempt(answer, "EUR 48,500", citations=c) for c in forged], documents=len(documents))
"""
    out = run_attack(policy, code, tmp_path, documents=[doc])
    assert out.found == {"found": ["SubcallError"] * 4, "documents": 1}, out.step.output
    assert rejected(out) == ["bad_citation"] * 4, out.kinds()
    assert "answer" not in out.kinds() and out.result.stopped == "final"
    record(out, "refused (bad_citation): an answer may only cite inside context and its documents")


@POLICIES
def test_slowloris(policy: str, tmp_path, record) -> None:
    """Slowloris: four connections each send a header, then nothing, to hold every slot"""
    code = RAW + f"""
held = [connect(timeout={FRAME_TIMEOUT_S + 3}) for _ in range({MAX_CONNECTIONS})]
for s in held:
    s.sendall(struct.pack(">I", 100) + b"{{")
time.sleep(0.3)
fifth = send(frame(query()), connect())
held = [reply(s) for s in held]
for _ in range(20):  # the broker frees a slot just after its last reply
    then = attempt(llm_query, "after")
    if then == "ok":
        break
    time.sleep(0.25)
verdict(fifth=fifth, held=held, then=then)
"""
    loaded = short_limits(load_policy(policy)).with_limits(cell_timeout_s=FRAME_TIMEOUT_S + 8)
    out = run_attack(loaded, code, tmp_path)
    assert out.found == {"fifth": "closed", "held": ["slow_frame"] * MAX_CONNECTIONS, "then": "ok"}, \
        out.step.output
    assert rejected(out) == ["slow_frame"] * MAX_CONNECTIONS, out.kinds()
    assert out.kinds().count("rpc.connection_refused") == 1, out.kinds()
    record(out, f"each stalled frame dropped {FRAME_TIMEOUT_S:g} s after its first byte (slow_frame); "
                "the slots free again")


@POLICIES
def test_foreign_protocols(policy: str, tmp_path, record) -> None:
    """Other protocols on the socket: HTTP, a TLS ClientHello, a ZMTP greeting, SSH, a 4-byte JSON frame"""
    code = RAW + """
payloads = {"http": b"GET / HTTP/1.1\\r\\nHost: rpc\\r\\n\\r\\n",
            "tls": bytes.fromhex("16030100a5010000a10303") + os.urandom(32),
            "zmtp": b"\\xff" + b"\\x00" * 8 + b"\\x7f\\x03\\x00NULL",
            "ssh": b"SSH-2.0-OpenSSH_9.2\\r\\n",
            "tiny": struct.pack(">I", 4) + b"null"}
verdict(**{name: send(p) for name, p in payloads.items()})
"""
    out = run_attack(policy, code, tmp_path)
    assert out.found == {"http": "frame_too_large", "tls": "frame_too_large", "zmtp": "frame_too_large",
                         "ssh": "frame_too_large", "tiny": "bad_json"}, out.step.output
    assert rejected(out) == ["bad_json"] + ["frame_too_large"] * 4, out.kinds()
    record(out, "the first 4 bytes read as a length over the limit: frame_too_large, closed")
