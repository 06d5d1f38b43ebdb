"""OpenTelemetry traces of real runs, received and decoded from OTLP protobuf by tests/otlp_receiver.py.

Runs go through the real sandbox with the scripted model; the receiver is a real HTTP server on
127.0.0.1 that parses each export with opentelemetry-proto's message classes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from otlp_receiver import Receiver, Span
from rlm_host import audit, otlp_traces
from rlm_host.errors import ConfigError
from rlm_host.policy import Policy, load_policy
from rlm_host.rlm.config import Models
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.rlm.loop import RLM
from rlm_host.telemetry import endpoint_url
from rlm_host.testing import ScriptedLM

from helpers import cell

DOC = Path(__file__).resolve().parent.parent / "examples" / "clauses.txt"
SECRET = "ZEBRA-7731-QUOKKA"  # a document's text: it may reach spans only where the audit level keeps text


@pytest.fixture
def lm() -> Iterator[ScriptedLM]:
    with ScriptedLM() as server:
        server.rule("sub", lambda messages: "EUR 48,500")
        yield server


def make_rlm(lm: ScriptedLM, policy: str | Policy = "standard", **kwargs: object) -> RLM:
    prices = PriceTable({"root": (1.0, 1.0), "sub": (0.5, 0.5)})
    client = LMClient(base_url=lm.base_url, backoff_s=0.01, prices=prices)
    return RLM(Models("root", sub_model="sub", lm=client, prices=prices), policy=policy, **kwargs)  # type: ignore[arg-type]


def parents(span: Span, spans: dict[str, Span]) -> list[str]:
    """The names from ``span``'s parent up to the root."""
    names = []
    while span.parent:
        span = spans[span.parent]
        names.append(span.name)
    return names


@pytest.mark.docker
def test_a_run_with_a_child_rlm_is_one_trace_of_nested_spans(lm: ScriptedLM) -> None:
    """Run, iteration, root and sub-call chats, cells, rlm_query's child run and answer(): parents,
    GenAI attributes and token counts as the audit log records them."""
    lm.script("root", [
        cell("hits = search(r'termination fee')\n"
             "reply = llm_query('What is the fee?', peek(hits[0].start - 100, hits[0].end + 100))\nprint(reply)"),
        cell("print(rlm_query('What is the fee?', context[-400:]))"),
        cell("answer('child found EUR 48,500')"),  # the child RLM's only turn
        cell("answer(reply, citations=[hits[0]])"),
    ])
    with Receiver() as receiver:
        with otlp_traces(receiver.url) as hook:
            result = make_rlm(lm, max_depth=2, on_event=hook).complete("What is the termination fee?", [DOC])
        assert result.answer == "EUR 48,500"
        logged = audit.events(Path(result.audit_log))
        spans = receiver.by_id()

    assert len({s.trace_id for s in spans.values()}) == 1
    assert all(s.resource["service.name"] == "rlm-host" and s.end >= s.start for s in spans.values())
    runs = receiver.named("invoke_agent rlm-host")
    top = next(s for s in runs if not s.parent)
    child = next(s for s in runs if s.parent)
    assert len(runs) == 2 and top.attributes["gen_ai.conversation.id"] == result.run_id
    assert parents(child, spans) == ["execute_tool rlm_query", "execute_tool cell", "rlm.iteration",
                                     "invoke_agent rlm-host"]
    assert top.attributes["rlm_host.query"] == "What is the termination fee?"
    assert top.attributes["rlm_host.stopped"] == "answer" and top.attributes["rlm_host.answer"] == "EUR 48,500"
    assert top.events[0][0] == "document" and top.events[0][1]["rlm_host.name"] == "clauses.txt"

    chats = receiver.named("chat ")
    roots = [s for s in chats if s.attributes["rlm_host.role"] == "root"]
    subs = [s for s in chats if s.attributes["rlm_host.role"] == "sub"]
    assert len(roots) == sum(e["kind"] == "root" for e in logged) == 4
    assert len(subs) == sum(e["kind"] == "subcall" for e in logged) >= 1
    assert all(parents(s, spans)[0] == "rlm.iteration" for s in roots)
    assert all(parents(s, spans)[0] == "execute_tool cell" for s in subs)
    assert {s.attributes["gen_ai.request.model"] for s in roots} == {"root"}
    assert {s.attributes["gen_ai.request.model"] for s in subs} == {"sub"}
    assert all(s.attributes["gen_ai.operation.name"] == "chat" for s in chats)
    top_events = [e for e in logged if e.get("depth") == 1 and e["kind"] in {"root", "subcall"}]
    assert top.attributes["gen_ai.usage.input_tokens"] == sum(e["prompt_tokens"] for e in top_events) > 0
    assert top.attributes["gen_ai.usage.output_tokens"] == sum(e["completion_tokens"] for e in top_events) > 0

    cells = receiver.named("execute_tool cell")
    assert sorted(s.attributes["rlm_host.code"] for s in cells) == sorted(e["code"] for e in logged
                                                                         if e["kind"] == "cell")
    assert Counter(parents(s, spans)[0] for s in receiver.named("execute_tool answer")) == {"execute_tool cell": 2}
    iterations = receiver.named("rlm.iteration")
    assert sorted(s.attributes["rlm_host.iteration"] for s in iterations) == [1, 1, 2, 3]


@pytest.mark.docker
@pytest.mark.parametrize("level", ["hashes", "redacted"])
def test_spans_keep_no_more_text_than_the_audit_level(lm: ScriptedLM, tmp_path: Path, level: str) -> None:
    """A document's text printed by a cell and sent in a sub-call reaches no span at ``hashes`` or
    ``redacted``; the spans carry the log's digests instead, and the code only where the level keeps it."""
    doc = tmp_path / "memo.txt"
    doc.write_text(f"Internal memo.\nThe access code is {SECRET}.\n")
    code = "line = context.splitlines()[1]\nprint(line)\nprint(llm_query('Repeat: ' + line))"
    lm.script("root", [cell(code), cell("answer('done')")])
    policy = load_policy("standard").model_copy(update={"audit_level": level})
    with Receiver() as receiver:
        with otlp_traces(receiver.url) as hook:
            result = make_rlm(lm, policy, on_event=hook).complete("What does the memo say?", [doc])
        logged = audit.events(Path(result.audit_log))
        assert result.answer == "done" and receiver.spans
        assert not any(SECRET.encode() in body for body in receiver.bodies)
        assert not any(SECRET in json.dumps(s.attributes) + json.dumps(s.events) for s in receiver.spans)
        (first, _) = sorted(receiver.named("execute_tool cell"), key=lambda s: s.start)
    (first_cell, _) = [e for e in logged if e["kind"] == "cell"]
    assert first.attributes["rlm_host.stdout_digest.sha256"] == first_cell["stdout_digest"]["sha256"]
    assert ("rlm_host.code" in first.attributes) is (level == "redacted")
    assert "rlm_host.stdout" not in first.attributes
    (sub,) = [s for s in receiver.named("chat ") if s.attributes["rlm_host.role"] == "sub"]
    assert "rlm_host.prompt" not in sub.attributes and "rlm_host.prompt_digest.sha256" in sub.attributes


@pytest.mark.docker
def test_a_collector_that_refuses_costs_the_run_one_line(lm: ScriptedLM) -> None:
    """A collector answering 503 (and one that is not there): the run answers, its log verifies, and the
    user hears once how many spans were lost."""
    said: list[str] = []
    lm.script("root", [cell("print(len(context))"), cell("answer('EUR 48,500')")])
    with Receiver(refuse=True) as receiver:
        with otlp_traces(receiver.url, say=said.append, timeout_s=1) as hook:
            result = make_rlm(lm, on_event=hook).complete("What is the fee?", [DOC])
        assert receiver.requests >= 1 and not receiver.spans
    assert result.answer == "EUR 48,500" and audit.verify(Path(result.audit_log)).status == "intact"
    assert len(said) == 1 and "spans were not delivered to http://127.0.0.1:" in said[0], said

    gone = receiver.url  # its server is closed now: nothing listens there
    said.clear()
    lm.script("root", [cell("answer('EUR 48,500')")])
    with otlp_traces(gone, say=said.append, timeout_s=1) as hook:
        result = make_rlm(lm, on_event=hook).complete("What is the fee?", [DOC])
    assert result.answer == "EUR 48,500" and len(said) == 1 and "not delivered" in said[0], said


@pytest.mark.docker
def test_cli_run_sends_traces_to_the_named_endpoint(lm: ScriptedLM) -> None:
    """`run --otlp-endpoint URL` and OTEL_EXPORTER_OTLP_ENDPOINT both send the run's spans; stderr says where."""
    def run(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        lm.script("root", [cell("print(len(context))"), cell("answer('EUR 48,500')")])
        args = [sys.executable, "-m", "rlm_host", "run", "-q", "What is the fee?", "--context", str(DOC),
                "--base-url", lm.base_url, "--model", "root", "--sub-model", "sub", *extra]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
                              stdin=subprocess.DEVNULL)

    with Receiver() as receiver:
        proc = run("--otlp-endpoint", receiver.url)
        assert proc.returncode == 0, proc.stderr
        assert f"traces to {receiver.url}" in proc.stderr
        assert len(receiver.named("invoke_agent rlm-host")) == 1 and len(receiver.named("execute_tool cell")) == 2
        base = receiver.url.removesuffix("/v1/traces")
        proc = run(env={"OTEL_EXPORTER_OTLP_ENDPOINT": base})
        assert proc.returncode == 0, proc.stderr
        assert len(receiver.named("invoke_agent rlm-host")) == 2


def test_a_bad_endpoint_is_one_line_before_anything_starts() -> None:
    """A URL that is not http(s), or that carries credentials, is refused by name; exit 64, nothing run."""
    not_http = r"must be an http\(s\) URL"
    for url, needle in [("ftp://127.0.0.1/x", not_http), ("127.0.0.1:4318", not_http),
                        ("http://[::1:4318/v1/traces", not_http), ("http://127.0.0.1:99999", not_http),
                        ("http://user:pw@127.0.0.1:4318", "must not carry credentials")]:
        with pytest.raises(ConfigError, match=needle):
            endpoint_url(url)
    assert endpoint_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert endpoint_url("http://127.0.0.1:4318/custom/path") == "http://127.0.0.1:4318/custom/path"
    args = [sys.executable, "-m", "rlm_host", "run", "-q", "Q?", "--context", str(DOC), "--base-url",
            "http://127.0.0.1:9/v1", "--model", "root", "--otlp-endpoint", "ftp://x\x1b]0;owned\x07"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 64 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "must be an http(s) URL" in proc.stderr and "\x1b" not in proc.stderr


def test_an_event_the_hook_cannot_trace_never_reaches_the_run() -> None:
    """Fields of the wrong type are counted and said once; the events around them still become spans."""
    said: list[str] = []
    with Receiver() as receiver:
        with otlp_traces(receiver.url, say=said.append, timeout_s=1) as hook:
            hook("run.start", {"run": "r1", "depth": 1, "model": "m", "audit_level": "hashes"})
            hook("iteration.start", {"iteration": 1, "depth": 1})
            hook("root", {"model": "m", "latency_s": "soon", "depth": 1})  # not a number
            hook("run.end", {"run": "r1", "depth": "one"})  # not a depth: the run is ended at close
        assert [s.name for s in receiver.spans if s.name.startswith(("rlm.", "invoke"))] == [
            "rlm.iteration", "invoke_agent rlm-host"]
    assert said == ["traces: 2 events could not be traced; the audit log has the whole run"]
