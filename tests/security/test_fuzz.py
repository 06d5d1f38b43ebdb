"""Fuzzing: the RPC frame decoder, the broker and the policy loader refuse what they cannot accept, cleanly.

Each target gets hypothesis inputs, arbitrary and near-valid: whatever comes in, the only exception
that may come out is the clean refusal (``FrameError`` for frames, ``PolicyError`` for policies);
anything else is an escape and fails the test. Example counts come from the profile in
tests/conftest.py (the suite's thousands, or 50,000 with ``--fuzz``), never from the decorators.
Each target adds one row to SECURITY.md's fuzz table: the cases run and the escapes.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import Record
from hypothesis import given
from hypothesis import strategies as st

from rlm_host import audit, wire
from rlm_host.errors import PolicyError
from rlm_host.events import Recorder
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import NETWORK_KEYS, PRIVILEGE_KEYS, Policy, load_policy, parse_policy, policies_dir
from rlm_host.rlm.broker import Broker
from rlm_host.rlm.subcalls import Budget, Subcalls
from rlm_host.testing import ScriptedLM
from rlm_kernel.rpc import RPCError, read_frame

STANDARD_YAML = policies_dir() / "standard.yaml"
FRAME_LIMIT = 4096


@dataclass
class Tally:
    """What one fuzz target saw: inputs tried, inputs refused cleanly, and escapes."""

    cases: int = 0
    refused: int = 0
    escapes: int = 0


def fuzz(evidence: Record, target: str, strategy: st.SearchStrategy, check: Callable[[Any], object],
         refusal: type[Exception], refusals: Callable[[], int] | None = None) -> Tally:
    """Run ``check`` on the strategy's examples; only ``refusal`` may leave it. Records the row.

    ``refusals`` counts refusals that do not leave ``check`` (a broker answers them instead).
    """
    tally = Tally()

    @given(strategy)
    def one(value: Any) -> None:
        tally.cases += 1
        try:
            check(value)
        except refusal:
            tally.refused += 1
        except Exception:
            tally.escapes += 1
            raise

    try:
        one()
    finally:
        refused = refusals() if refusals is not None else tally.refused
        evidence("fuzz", target=target, cases=tally.cases, refused=refused, escapes=tally.escapes)
    assert tally.escapes == 0 and tally.cases > 0
    return tally


# -- strategies -------------------------------------------------------------------------------

# Text with what breaks naive code: lone surrogates, NUL, newlines, long runs, right-to-left marks.
nasty_text = st.one_of(st.text(max_size=40), st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "\n\r", "\u202e", "x" * 5000, "../../etc/passwd", "%s%n", "{{7*7}}"]))
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**53, max_value=2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | nasty_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(nasty_text, inner, max_size=4), max_leaves=10)
# Nesting far past any recursion limit, in the three shapes parsers recurse on.
deep_json = st.builds(lambda n, opener, closer: (opener * n + closer * n).encode(),
                      st.integers(1, 50_000), st.sampled_from(["[", '{"a":']), st.sampled_from(["]", "}", ""]))

VALID_REQUESTS = [
    {"id": 1, "op": "llm_query", "question": "q", "text": "t"},
    {"id": 2, "op": "llm_query_batched", "items": [{"question": "q", "text": None}]},
    {"id": 3, "op": "rlm_query", "question": "q", "text": "t"},
    {"id": 4, "op": "answer", "text": "a", "citations": [{"start": 1, "end": 2, "document": "d", "page": 1}]},
]
REQUEST_KEYS = ["id", "op", "question", "text", "items", "citations", "start", "x", "__proto__"]


@st.composite
def near_valid_request(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request with a few of its fields replaced, dropped or added."""
    obj = json.loads(json.dumps(draw(st.sampled_from(VALID_REQUESTS))))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(REQUEST_KEYS))
        action = draw(st.sampled_from(["set", "drop", "nest"]))
        if action == "drop":
            obj.pop(key, None)
        elif action == "nest" and isinstance(obj.get("items") or obj.get("citations"), list):
            target = obj.get("items") or obj.get("citations")
            target.append(draw(st.dictionaries(st.sampled_from(REQUEST_KEYS), json_values, max_size=4)))
        else:
            obj[key] = draw(st.sampled_from(["llm_query", "answer", "rlm_query", "llm_query_batched"])
                            if key == "op" else json_values)
    return obj


def as_frame_body(obj: dict[str, Any]) -> bytes:
    """JSON with every non-ASCII character escaped, so lone surrogates reach the host as escapes."""
    return json.dumps(obj, ensure_ascii=True).encode()


def decode_and_parse(body: bytes) -> None:
    """The broker's path for one body; an accepted request must be re-encodable (it is logged and echoed)."""
    request = wire.parse_request(wire.decode(body))
    wire.encode(request.model_dump())
    audit.canonical(request.model_dump())


# -- the decoder ------------------------------------------------------------------------------

def test_frame_size_on_arbitrary_headers(evidence: Record) -> None:
    """Any 4-byte header under any limit gives a size within the limit or frame_too_large."""
    def check(args: tuple[bytes, int]) -> None:
        header, limit = args
        assert wire.frame_size(header, limit) <= limit

    fuzz(evidence, "wire.frame_size: arbitrary 4-byte headers and limits",
         st.tuples(st.binary(min_size=4, max_size=4), st.integers(1024, 2**28)), check, wire.FrameError)


def test_arbitrary_bytes_never_escape(evidence: Record) -> None:
    """Whatever the body (random bytes or nesting past the recursion limit), the end is a request or a FrameError."""
    fuzz(evidence, "wire.decode + parse_request: arbitrary bytes, deep nesting",
         st.one_of(st.binary(max_size=512), deep_json), decode_and_parse, wire.FrameError)


def test_arbitrary_json_objects_never_escape(evidence: Record) -> None:
    """Any JSON object over the request's keys validates or is refused with a FrameError."""
    fuzz(evidence, "wire.decode + parse_request: arbitrary JSON objects",
         st.dictionaries(st.sampled_from(REQUEST_KEYS), json_values).map(as_frame_body),
         decode_and_parse, wire.FrameError)


def test_near_valid_requests_never_escape(evidence: Record) -> None:
    """Valid requests with fields mistyped, dropped, added or full of lone surrogates: a request or a FrameError."""
    fuzz(evidence, "wire.decode + parse_request: near-valid requests",
         near_valid_request().map(as_frame_body), decode_and_parse, wire.FrameError)


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 5000, b'{"id":1,"op":"llm_query","question":"\\ud800"}'],
                         ids=["deep-list", "deep-object", "lone-surrogate"])
def test_found_frames_are_refused(body: bytes) -> None:
    """Frames fuzzing found escaping (RecursionError; a string the audit log could not encode) are bad_json now."""
    with pytest.raises(wire.FrameError) as info:
        wire.decode(body)
    assert info.value.code == "bad_json"


# -- the broker, end to end -------------------------------------------------------------------

@pytest.fixture
def fuzzed_broker(tmp_path: Path) -> Iterator[tuple[Broker, Recorder, audit.AuditLog]]:
    """A real broker on a real Unix socket, its events in a real audit log, the scripted LM behind it."""
    with ScriptedLM() as lm:
        lm.rule("sub", lambda messages: "echo: " + str(messages[-1]["content"])[:40])
        policy = load_policy("standard").with_subcalls(max_frame_bytes=FRAME_LIMIT, max_calls=100_000)
        log = audit.AuditLog("fuzzbroker01", "full", directory=tmp_path / "audit", key=b"k" * 32)
        events = Recorder(forward=[log.record])
        client = LMClient(base_url=lm.base_url, backoff_s=0.01, max_retries=0, prices=PriceTable({"sub": (0, 0)}))
        subcalls = Subcalls(client, "sub", Budget(policy.subcalls), on_event=events)
        broker = Broker(tmp_path / "rpc.sock", subcalls, max_frame_bytes=FRAME_LIMIT, on_event=events).start()
        try:
            yield broker, events, log
        finally:
            broker.close()
            client.close()


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


stream_pieces = st.one_of(
    near_valid_request().map(as_frame_body).map(frame),
    st.sampled_from(VALID_REQUESTS).map(as_frame_body).map(frame),
    st.binary(max_size=64).map(frame),
    st.binary(max_size=64),                                             # out of step: random bytes
    st.integers(FRAME_LIMIT + 1, 2**32 - 1).map(lambda n: struct.pack(">I", n)),  # oversized header
)


def exchange(path: Path, data: bytes) -> list[dict[str, Any]]:
    """Send ``data`` on a fresh connection, close our side, read every reply until the broker hangs up."""
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the broker already closed on a fatal frame; its reply is still readable
        while True:
            try:
                replies.append(read_frame(sock))
            except RPCError as exc:
                assert exc.code == "closed", exc  # the broker hung up; never a malformed reply
                return replies
            except ConnectionResetError:
                return replies


def is_reply(reply: dict[str, Any]) -> bool:
    ok = reply.get("ok")
    if ok is True:
        return isinstance(reply.get("id"), int) and "result" in reply
    error = reply.get("error")
    return ok is False and isinstance(error, dict) and isinstance(error.get("code"), str)


def test_broker_survives_random_streams(fuzzed_broker, evidence: Record) -> None:
    """Random frames on a real socket: replies well-formed, no internal error, the broker goes on, the log verifies."""
    broker, events, log = fuzzed_broker

    def check(pieces: list[bytes]) -> None:
        replies = exchange(broker.path, b"".join(pieces))
        assert all(is_reply(r) for r in replies), replies
        assert not events.of("rpc.internal_error"), events.of("rpc.internal_error")

    tally = fuzz(evidence, "rpc.Broker: random frame streams over its Unix socket",
                 st.lists(stream_pieces, min_size=1, max_size=4), check, wire.FrameError,
                 refusals=lambda: broker.rejected)
    assert exchange(broker.path, frame(as_frame_body(VALID_REQUESTS[0])))[0]["result"] == "echo: q\n\nt"
    assert tally.cases and broker.rejected > 0 and events.of("subcall")
    log.seal()
    assert audit.verify(log.path, key=b"k" * 32).status == "intact"


# -- the policy loader ------------------------------------------------------------------------

def standard() -> dict[str, Any]:
    return yaml.safe_load(STANDARD_YAML.read_text())


policy_values = st.one_of(json_values, st.floats(), st.sampled_from(
    ["/dev/zero", "/dev/urandom", "/proc/self/mem", "/", "..", "seccomp-standard.json", "\x00", "runc", "runsc",
     "none", "host", -1, 0, 2**63, float("nan"), float("inf")]))


@st.composite
def near_valid_policy(draw: st.DrawFn) -> dict[str, Any]:
    """policies/standard.yaml as data, with a few keys set to odd values, dropped or added (network keys too)."""
    raw = standard()
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from([None, "limits", "subcalls"]))
        where = raw if section is None or not isinstance(raw.get(section), dict) else raw[section]
        keys = sorted(where, key=str) + sorted(NETWORK_KEYS | PRIVILEGE_KEYS) + ["extra"]
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()) and key in where:
            del where[key]
        else:
            where[key] = draw(policy_values)
    return raw


def test_near_valid_policy_dicts(evidence: Record) -> None:
    """Policies with odd values, missing, extra or network keys, hostile seccomp paths: a Policy or a PolicyError."""
    def check(raw: dict[str, Any]) -> None:
        assert isinstance(parse_policy(raw, base_dir=policies_dir(), source="fuzz"), Policy)

    fuzz(evidence, "policy.parse_policy: near-valid policy mappings", near_valid_policy(), check, PolicyError)


def alias_bomb(levels: int) -> str:
    """YAML whose aliases expand exponentially (cheap to parse, huge to print)."""
    lines = ['l0: &l0 ["xxxxxxxxxx","xxxxxxxxxx","xxxxxxxxxx","xxxxxxxxxx","xxxxxxxxxx","xxxxxxxxxx"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 6) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: *l{levels - 1}\nruntime: *l{levels - 1}\n"


yaml_texts = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    json_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    st.integers(2, 12).map(alias_bomb),
    st.builds(lambda n, c: c * n, st.sampled_from([40, 1000, 20_000]), st.sampled_from(["[", "{", "- ", "a:\n  "])),
)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A directory with the shipped seccomp profile, for policies that name it."""
    shutil.copy(policies_dir() / "seccomp-standard.json", tmp_path / "seccomp-standard.json")
    return tmp_path


def load_text(directory: Path, text: str, *, raw: bytes | None = None) -> Policy:
    path = directory / "fuzz.yaml"
    path.write_bytes(raw if raw is not None else text.encode("utf-8", "surrogatepass"))
    return load_policy(path)


def test_arbitrary_yaml_text(policy_dir: Path, evidence: Record) -> None:
    """Any text as a policy file (random, binary, deep nesting, alias bombs): a Policy or a PolicyError."""
    fuzz(evidence, "policy.load_policy: arbitrary YAML text, alias bombs, deep nesting", yaml_texts,
         lambda text: load_text(policy_dir, text), PolicyError)


@pytest.mark.parametrize(("text", "needle"), [
    ("[" * 3000, "deep"), ("- " * 5000, "nests too deeply"),
    (alias_bomb(12), "unknown keys 'l0', 'l1', 'l2', 'l3', 'l4' and 7 more"),
    (STANDARD_YAML.read_text().replace("seccomp-standard.json", "/dev/zero"), "not a file"),
    ("#" * 70_000, "over 64 KiB")], ids=["flow-nesting", "block-nesting", "alias-bomb", "seccomp-dev-zero", "huge"])
def test_found_policies_are_refused(policy_dir: Path, text: str, needle: str) -> None:
    """Policies that hung or escaped under fuzzing (slow YAML, RecursionError, 1 GB, /dev/zero): refused in one line."""
    with pytest.raises(PolicyError) as info:
        load_text(policy_dir, text)
    assert needle in str(info.value) and len(str(info.value)) < 600, str(info.value)[:600]


@st.composite
def mutated_standard(draw: st.DrawFn) -> bytes:
    """policies/standard.yaml with a few bytes deleted, replaced or inserted."""
    data = bytearray(STANDARD_YAML.read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        data[at:at + cut] = draw(st.one_of(st.binary(max_size=6), st.sampled_from(
            [b":", b"-", b" ", b"\n", b"#", b"&a", b"*a", b"!!python/object:os.system", b"[", b"{", b"'", b"\t"])))
    return bytes(data)


def test_mutations_of_the_standard_policy(policy_dir: Path, evidence: Record) -> None:
    """policies/standard.yaml with random byte edits: a Policy or a PolicyError."""
    fuzz(evidence, "policy.load_policy: byte mutations of policies/standard.yaml", mutated_standard(),
         lambda data: load_text(policy_dir, "", raw=data), PolicyError)
