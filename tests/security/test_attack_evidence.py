"""The evidence against the kernel: nothing a cell does decides what a citation's quote says.

The host quotes every citation from its own copy of the staged documents (``rlm_host/rlm/quotes.py``)
and states each offset citation's document and page itself; a citation its layout does not bear out
is refused. Each attack is a cell that patches what a quote used to be computed with (json, print,
stdout, ``context``, the kernel's helpers), forges a Hit or a raw ``answer`` frame, or cites what is
not there; the next cell answers. Each test asserts that the recorded evidence (``run.end``'s
``evidence``, the result's citations) is the documents' real text or that the citation was refused
with its reason, that the run finished and that the audit log verifies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import PRELUDE, Outcome, _own_containers, cell, record  # noqa: F401 - record is a fixture
from helpers import short_limits

from rlm_host import Generation, Models, audit
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import load_policy
from rlm_host.rlm.loop import RLM
from rlm_host.testing import ScriptedLM

pytestmark = pytest.mark.docker
CATEGORY = "record integrity"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])
FORGED = "FORGED: the tenant owes nothing"
LEASE = "The tenant pays a termination fee of EUR 48,500 within 30 days.\n"
ANNEX = "Annex: the landlord keeps the deposit of EUR 2,000 — Zürich, 東京.\n"
RAW = r'''
import struct
def raw_answer(obj):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect("/session/rpc.sock")
    body = json.dumps(obj).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    head = s.recv(4)
    reply = json.loads(s.recv(struct.unpack(">I", head)[0]))
    return "ok" if reply["ok"] else reply["error"]["code"]
'''


def documents(tmp_path: Path) -> list[Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    lease, annex = tmp_path / "lease.txt", tmp_path / "annex.txt"
    lease.write_text(LEASE, encoding="utf-8")
    annex.write_text(ANNEX, encoding="utf-8")
    return [lease, annex]


CONTEXT = LEASE + "\n\n" + ANNEX


def run_answer(policy: str, attack: str, answer: str, tmp_path: Path, docs: list[Path] | None = None) -> Outcome:
    """The attack as the first cell, ``answer`` as the second, then FINAL; the host checked after."""
    loaded = short_limits(load_policy(policy))
    before = _own_containers()
    with ScriptedLM() as lm:
        lm.script("root", [cell(PRELUDE + RAW + attack), cell(answer), "FINAL(no answer)"])
        lm.rule("sub", lambda messages: "pong")
        prices = PriceTable({"root": (0.0, 0.0), "sub": (0.0, 0.0)})
        client = LMClient(base_url=lm.base_url, backoff_s=0.01, max_retries=2, prices=prices)
        rlm = RLM(Models("root", sub_model="sub", lm=client, prices=prices), generation=Generation(few_shot=False),
                  policy=loaded, audit_dir=tmp_path / "audit")
        result = rlm.complete("evidence probe", docs or documents(tmp_path))
    log = Path(result.audit_log)
    assert audit.verify(log).status == "intact"
    assert _own_containers() == before, "a container of the run was left behind"
    return Outcome(loaded.runtime, result.trajectory[0], result, audit.events(log))


def run_end(out: Outcome) -> dict[str, Any]:
    return next(e for e in out.events if e["kind"] == "run.end")


def logged_evidence(out: Outcome, expected: list[str]) -> bool:
    """Whether ``run.end`` recorded ``expected`` as the evidence (as text, or as its digest under strict)."""
    end = run_end(out)
    if "evidence" in end:
        return end["evidence"] == expected
    return end["evidence_digest"] == audit.digest(json.dumps(expected, default=str))


def assert_real_evidence(out: Outcome, spans: list[tuple[int, int]]) -> None:
    """The run answered and every quote, in the result and in the log, is the documents' text."""
    assert out.result.stopped == "answer", (out.result.stopped, [s.output for s in out.result.trajectory])
    real = [CONTEXT[a:b] for a, b in spans]
    assert [c.text for c in out.result.citations] == real
    assert logged_evidence(out, real) and FORGED not in str(run_end(out))


def assert_refused(out: Outcome, reason: str) -> None:
    """The answer was refused with the reason; the run still finished; no evidence was recorded."""
    answer_cell = out.result.trajectory[1]
    assert "SubcallError" in answer_cell.output and reason in answer_cell.output, answer_cell.output
    assert "answer" not in [e["kind"] for e in out.events] and out.result.stopped == "final"
    assert logged_evidence(out, []) and out.result.citations == []


FEE = CONTEXT.index("termination fee")
CITE_FEE = "hits = search('termination fee')\nanswer('EUR 48,500', citations=[hits[0]])"


@POLICIES
def test_patched_json_dumps(policy: str, tmp_path: Path, record) -> None:
    """json.dumps patched to return a forged quote, then answer() citing a search hit"""
    attack = f"import json\njson.dumps = lambda *a, **k: '[\"{FORGED}\"]'"
    out = run_answer(policy, attack, CITE_FEE, tmp_path)
    assert_real_evidence(out, [(FEE, FEE + len("termination fee"))])
    record(out, "the quote is the host's text of the span; json inside the kernel is not consulted")


@POLICIES
def test_patched_print_and_stdout(policy: str, tmp_path: Path, record) -> None:
    """builtins.print and sys.stdout replaced by writers that emit a forged quote"""
    attack = ("import builtins, sys\n"
              f"builtins.print = lambda *a, **k: sys.__stdout__.write('[\"{FORGED}\"]')\n"
              "class Liar:\n    def write(self, s):\n"
              f"        return sys.__stdout__.write('[\"{FORGED}\"]')\n    def flush(self): pass\n"
              "sys.stdout = Liar()")
    out = run_answer(policy, attack, CITE_FEE, tmp_path)
    assert_real_evidence(out, [(FEE, FEE + len("termination fee"))])
    record(out, "the quote is the host's; no cell output is read for it")


@POLICIES
def test_context_rebound(policy: str, tmp_path: Path, record) -> None:
    """context rebound through globals() and the user namespace to forged text, then offsets cited"""
    attack = (f"globals()['context'] = {FORGED!r} * 10\n"
              f"get_ipython().user_ns['context'] = {FORGED!r} * 10")
    out = run_answer(policy, attack, "print(context[:8])\nanswer('x', citations=[(0, 20)])", tmp_path)
    assert_real_evidence(out, [(0, 20)])
    record(out, "the rebinding is undone after the cell; the quote is the host's text of 0-20 either way")


@POLICIES
def test_kernel_internals_patched(policy: str, tmp_path: Path, record) -> None:
    """The helpers' own context, peek and the Hit class patched inside rlm_kernel"""
    attack = ("import rlm_kernel.helpers as h\n"
              f"answer.__self__.context = {FORGED!r} * 10\n"
              f"h.Helpers.peek = lambda self, a=0, b=None: {FORGED!r}\n"
              f"h.Hit.__init__ = lambda self, *a: object.__setattr__(self, 'text', {FORGED!r})")
    out = run_answer(policy, attack, "answer('x', citations=[(10, 30), {'start': 40, 'end': 47}])", tmp_path)
    assert_real_evidence(out, [(10, 30), (40, 47)])
    record(out, "the kernel's copy of the text is not the evidence: the host quotes its own files")


@POLICIES
def test_forged_hit(policy: str, tmp_path: Path, record) -> None:
    """A Hit built by hand with forged text and snippet, cited as evidence"""
    answer = (f"from rlm_kernel import Hit\nfake = Hit({FEE}, {FEE + 15}, {FORGED!r}, 'lease.txt', None, {FORGED!r})\n"
              "answer('EUR 48,500', citations=[fake])")
    out = run_answer(policy, "", answer, tmp_path)
    assert_real_evidence(out, [(FEE, FEE + 15)])
    record(out, "the Hit's text never leaves the kernel; the quote is the host's text of its span")


@POLICIES
def test_raw_answer_frame_with_quote_fields(policy: str, tmp_path: Path, record) -> None:
    """Raw answer frames carrying text/evidence fields, or a quote that is not the text at its offsets"""
    attack = f"""
forged = [raw_answer({{"id": 1, "op": "answer", "text": "x",
                       "citations": [{{"start": 0, "end": 9, "text": {FORGED!r}}}]}}),
          raw_answer({{"id": 2, "op": "answer", "text": "x", "citations": [], "evidence": [{FORGED!r}]}}),
          raw_answer({{"id": 3, "op": "answer", "text": "x", "citations": [{{"start": 0, "quote": {FORGED!r}}}]}})]
print("RAW", forged)
"""
    out = run_answer(policy, attack, "print(raw_answer({'id': 4, 'op': 'answer', 'text': 'raw', "
                                     "'citations': [{'start': 0, 'end': 9}]}))", tmp_path)
    assert "RAW ['bad_request', 'bad_request', 'bad_citation']" in out.step.output, out.step.output
    assert out.result.answer == "raw" and [c.text for c in out.result.citations] == [CONTEXT[0:9]]
    assert logged_evidence(out, [CONTEXT[0:9]]) and FORGED not in str(run_end(out))
    record(out, "extra fields refused (bad_request), a false quote refused (bad_citation); a plain raw answer is "
                "quoted by the host")


@POLICIES
def test_offsets_in_one_document_claiming_another(policy: str, tmp_path: Path, record) -> None:
    """Offsets inside lease.txt cited as annex.txt (a Hit with a forged document name)"""
    answer = ("from rlm_kernel import Hit\nfake = Hit(0, 9, 'x', 'annex.txt', None, 'x')\n"
              "answer('x', citations=[fake])")
    out = run_answer(policy, "", answer, tmp_path)
    assert_refused(out, "offset 0 is in 'lease.txt', not in 'annex.txt'")
    record(out, "refused (bad_citation): the host derives the document from the offsets")


@POLICIES
def test_cite_past_the_end(policy: str, tmp_path: Path, record) -> None:
    """A span that starts inside context and ends past it, and one wholly past it"""
    for n, span in enumerate([(10, len(CONTEXT) + 1), (len(CONTEXT) + 5, len(CONTEXT) + 9)]):
        out = run_answer(policy, "", f"answer('x', citations=[{span}])", tmp_path / str(n))
        assert_refused(out, f"past the end of context ({len(CONTEXT):,} characters)")
    record(out, "refused (bad_citation), with the length of context")


@POLICIES
def test_cite_a_page_that_does_not_exist(policy: str, tmp_path: Path, record) -> None:
    """Page 2 of a text file with no pages, by name and with offsets"""
    for n, citation in enumerate(["{'document': 'lease.txt', 'page': 2}", "{'start': 0, 'end': 4, 'page': 2}"]):
        out = run_answer(policy, "", f"answer('x', citations=[{citation}])", tmp_path / str(n))
        assert_refused(out, "no pages")
    record(out, "refused (bad_citation): the document has no pages")


@POLICIES
def test_cite_a_document_that_is_not_there(policy: str, tmp_path: Path, record) -> None:
    """A document name that was never staged, and a citation with neither offsets nor a name"""
    out = run_answer(policy, "", "answer('x', citations=[{'document': '/etc/shadow'}])", tmp_path / "a")
    assert_refused(out, "no document named '/etc/shadow'")
    out = run_answer(policy, "", "answer('x', citations=[{'page': 1}])", tmp_path / "b")
    assert_refused(out, "a citation needs offsets or a document name")
    record(out, "refused (bad_citation)")


@POLICIES
def test_span_across_documents_and_wide_text(policy: str, tmp_path: Path, record) -> None:
    """A span across the separator into a document of multi-byte text (2, 3 and 4 bytes a character)"""
    docs = documents(tmp_path)
    docs[1].write_text(ANNEX + "🙂 end\n", encoding="utf-8")
    context = LEASE + "\n\n" + ANNEX + "🙂 end\n"
    start = len(LEASE) - 6
    out = run_answer(policy, "", f"answer('x', citations=[({start}, {len(context)})])", tmp_path, docs)
    assert out.result.citations[0].text == context[start:] and out.result.citations[0].document == "lease.txt"
    assert logged_evidence(out, [context[start:]])
    record(out, "the quote is the kernel's view of the text, character for character, computed on the host")


@POLICIES
def test_quote_capped(policy: str, tmp_path: Path, record) -> None:
    """A citation of all of a large document: the recorded quote is capped at 300 characters"""
    big = tmp_path / "big.txt"
    big.write_text("clause " * 200_000, encoding="utf-8")
    out = run_answer(policy, "", "answer('x', citations=[(0, len(context))])", tmp_path, [big])
    assert out.result.citations[0].text == ("clause " * 50)[:300] and logged_evidence(out, [("clause " * 50)[:300]])
    record(out, "the quote is the host's first 300 characters of the span")
