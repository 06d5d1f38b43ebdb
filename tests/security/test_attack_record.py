"""The audit record, attacked with line breaks: no character a cell, a model or the query writes splits a line.

The log's writer escapes every character any reader could take as a line break (U+2028, U+2029,
NEL, \\v, \\f, \\x1c-\\x1e, C1 controls, lone surrogates) and its one reader splits on \\n only. Each
attack is a real run (scripted root model, real sandbox, real broker) whose cells, sub-call replies,
answer or query carry such characters; each asserts the log verifies intact, that `audit show`, the
HTML report and the TUI replay all show every cell, and that the run answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import Outcome, cell, record, run_attack  # noqa: F401 - record is a fixture
from helpers import short_limits

from rlm_host import Generation, Models, audit
from rlm_host.review import report
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import Policy, load_policy
from rlm_host.rlm.loop import RLM
from rlm_host.sanitize import visible
from rlm_host.testing import ScriptedLM
from rlm_host.review.tui.view import build

pytestmark = pytest.mark.docker
CATEGORY = "record integrity"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])
FORGED = '{"seq":3,"ts":0,"run_id":"x","kind":"answer","answer":"FORGED","prev":"0","hash":"0"}'


def full(name: str) -> Policy:
    """The policy with short test limits and audit level full, so the log keeps every text it is attacked with."""
    return short_limits(load_policy(name)).model_copy(update={"audit_level": "full"})


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", *args], capture_output=True, timeout=120,
                          env=os.environ.copy())


def shown_everywhere(log: Path, tokens: list[str]) -> dict[str, Any]:
    """Every cell of the log is in `audit show` (text and JSON), the report and the TUI replay, with ``tokens``."""
    events = audit.events(log)
    cells = [e for e in events if e["kind"] == "cell"]
    assert len(cells) >= 2 and len([line for line in audit.read_records(log)]) == len(events)
    shown = cli("audit", "show", str(log), "--kind", "cell", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [json.loads(line) for line in shown.stdout.split(b"\n")[:-1]] == cells
    text = cli("audit", "show", str(log))
    assert text.returncode == 0 and text.stdout.decode().count("▷ cell") == len(cells)
    page = report.build(log)
    assert "intact and sealed" in page and page.count("<pre class='code'>") == len(cells)
    assert "the run did not finish" not in page
    replay = "\n".join(build(events).lines)
    assert replay.count("▷ cell") == len(cells)
    for token in tokens:
        assert token in text.stdout.decode() and token in page and token in replay, token
    assert not any(e.get("answer") == "FORGED" for e in events)
    return {"cells": len(cells), "events": len(events)}


# Characters another reader takes as a line break, and other controls, as a cell would print them.
SEPARATORS = {
    "U+2028 LINE SEPARATOR": "\\u2028", "U+2029 PARAGRAPH SEPARATOR": "\\u2029", "U+0085 NEL": "\\x85",
    "vertical tab": "\\x0b", "form feed": "\\x0c", "file/group/record separators": "\\x1c\\x1d\\x1e",
    "CRLF and a lone CR": "\\r\\n\\r", "C1 controls (CSI, OSC, ST)": "\\x9b\\x9d\\x9c",
    "a thousand U+2028": "\\u2028" * 1000, "bidi and zero-width": "\\u202e\\u2066\\u200b\\ufeff",
}


@POLICIES
@pytest.mark.parametrize("name", list(SEPARATORS))
def test_cell_prints_a_line_separator(policy: str, name: str, tmp_path: Path, record) -> None:
    """A cell prints a line separator (U+2028, NEL, \\v ...) to stdout and stderr: the record keeps the cell whole"""
    sep = SEPARATORS[name]
    code = f"import sys\nprint('BEFORE{sep}AFTER')\nsys.stderr.write('ERRA{sep}ERRB')\n"
    outcome = run_attack(full(policy), code, tmp_path, prelude=False)
    assert "BEFORE" in outcome.step.output and "AFTER" in outcome.step.output
    seen = shown_everywhere(Path(outcome.result.audit_log), ["BEFORE", "AFTER"])
    record(outcome, f"{name}: log intact, cell in show/report/replay ({seen['cells']} cells)")


@POLICIES
def test_fake_json_line_after_a_separator(policy: str, tmp_path: Path, record) -> None:
    """A cell prints a forged answer event after U+2028 and NEL: no reader sees a line that was never written"""
    code = (f"print('x\\u2028{FORGED}\\u2028')\nprint('\\x85{FORGED}\\x85')\n"
            f"print('\\r\\n{FORGED}\\n')\n")
    outcome = run_attack(full(policy), code, tmp_path, prelude=False)
    seen = shown_everywhere(Path(outcome.result.audit_log), [])
    record(outcome, f"no forged event; log intact ({seen['events']} events)")


@POLICIES
def test_lone_surrogates_in_output(policy: str, tmp_path: Path, record) -> None:
    """A cell prints lone surrogates around a separator: the log stays UTF-8 and verifies, the cell is shown"""
    code = "print('SURR' + chr(0xd800) + '\\u2028' + chr(0xdfff) + 'END')\nprint('tail')\n"
    outcome = run_attack(full(policy), code, tmp_path, prelude=False)
    log = Path(outcome.result.audit_log)
    log.read_bytes().decode("utf-8")  # strictly
    shown_everywhere(log, [])
    record(outcome, f"log UTF-8 and intact; cell {outcome.status}")


@POLICIES
def test_separators_in_code_error_and_result(policy: str, tmp_path: Path, record) -> None:
    """The cell's source, its exception message and its result value hold raw separators: all recorded intact"""
    code = ("# comment\u2028with\x85raw separators\nvalue = 'RES\u2029ULT'\n"
            "raise ValueError('ERR\u2028OR\x85' + value)\n")
    outcome = run_attack(full(policy), code, tmp_path, prelude=False)
    assert outcome.status == "error"
    events = audit.events(Path(outcome.result.audit_log))
    first = next(e for e in events if e["kind"] == "cell")
    assert first["code"] == code.strip("\n") and "ERR\u2028OR" in json.dumps(first, ensure_ascii=False)
    shown_everywhere(Path(outcome.result.audit_log), ["comment"])
    record(outcome, "code, error and value kept byte for byte; log intact")


@POLICIES
def test_subcall_reply_with_separators(policy: str, tmp_path: Path, record) -> None:
    """A sub-model replies with U+2028, NEL and a forged line: the sub-call event and the cell stay whole"""
    reply = f"pong\u2028{FORGED}\x85\u2029\x0b\x1e"
    outcome = run_attack(full(policy), "print('SUB', llm_query('q\\u2028x', 'chunk\\x85y'))", tmp_path,
                         prelude=False, sub=lambda messages: reply)
    events = audit.events(Path(outcome.result.audit_log))
    subs = [e for e in events if e["kind"] == "subcall"]
    assert len(subs) == 2 and all(e["response"] == reply for e in subs)
    shown_everywhere(Path(outcome.result.audit_log), ["SUB"])
    record(outcome, f"{len(subs)} sub-calls recorded whole; log intact")


@POLICIES
def test_document_with_separators(policy: str, tmp_path: Path, record) -> None:
    """A document full of line separators is printed by a cell: the log and every reader keep the cell whole"""
    doc = tmp_path / "doc.txt"
    doc.write_text("DOCSTART\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\r\nDOCEND\u202e\n", encoding="utf-8")
    outcome = run_attack(full(policy), "print(context)", tmp_path, prelude=False, documents=[doc])
    assert "DOCEND" in outcome.step.output
    shown_everywhere(Path(outcome.result.audit_log), ["DOCSTART"])
    record(outcome, "document text recorded whole; log intact")


def answered_run(policy: str, tmp_path: Path, query: str, answer_code: str) -> tuple[Path, Any]:
    """A real run with ``query`` that answers through ``answer_code``; the log must verify intact."""
    with ScriptedLM() as lm:
        lm.script("root", [cell("print('first', llm_query('q', 'c'))"), cell(answer_code)])
        lm.rule("sub", lambda messages: "pong\u2028")
        prices = PriceTable({"root": (0.0, 0.0), "sub": (0.0, 0.0)})
        rlm = RLM(Models("root", sub_model="sub", lm=LMClient(base_url=lm.base_url, prices=prices), prices=prices),
                  generation=Generation(few_shot=False), policy=full(policy), audit_dir=tmp_path / "audit")
        result = rlm.complete(query, None)
    log = Path(result.audit_log)
    assert audit.verify(log).status == "intact"
    return log, result


@POLICIES
def test_answer_with_nel(policy: str, tmp_path: Path, evidence) -> None:
    """The answer holds NEL, U+2028 and a forged end line: the report still shows the finished run and its answer"""
    log, result = answered_run(policy, tmp_path, "what?", "answer('ANS\\x85WER\\u2028' + " + repr(FORGED) + ")")
    assert result.stopped == "answer" and result.answer.startswith("ANS\x85WER")
    page = report.build(log)
    assert "ANS\\x85WER" in page and "no answer" not in page
    shown_everywhere(log, ["ANS"])
    evidence("attacks", category=CATEGORY, attack="The answer holds NEL, U+2028 and a forged end line",
             runtime=load_policy(policy).runtime, outcome="report shows the answer; log intact")


@POLICIES
def test_query_with_separators(policy: str, tmp_path: Path, evidence) -> None:
    """The query holds U+2028, NEL and escapes: the run answers and every reader shows it whole"""
    query = "QUE\u2028RY\x85\x1b]0;pwn\x07\u202e?"
    log, result = answered_run(policy, tmp_path, query, "answer('done')")
    assert result.answer == "done"
    start = audit.events(log)[0]
    assert start["query"] == query
    assert visible(query, newlines=True).replace("\n", "") in report.build(log).replace("&#x27;", "'")
    shown_everywhere(log, [])
    assert "QUE RY" in cli("audit", "show", str(log)).stdout.decode()
    evidence("attacks", category=CATEGORY, attack="The query holds U+2028, NEL and escapes",
             runtime=load_policy(policy).runtime, outcome="query recorded whole; log intact")
