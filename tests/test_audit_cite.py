"""Citations an auditor can check, end to end: a real run records them, `audit cite` re-checks them on disk.

Each run goes through the real sandbox (and, for the PDF, the ingestion sandbox), driven by the
scripted OpenAI-compatible server; `audit cite` and `report` run as the CLI a reviewer would use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pdf_fixtures import text_pdf

from rlm_host import audit
from rlm_host.results import RLMResult
from rlm_host.rlm.config import Generation, Models
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.rlm.loop import RLM
from rlm_host.sanitize import visible
from rlm_host.testing import ScriptedLM

from helpers import cell

pytestmark = pytest.mark.docker

NAME = "lease\x1b[2J.txt"  # a hostile file name: it must never reach the terminal raw
SENTENCE = "The tenant pays a termination fee of EUR 48,500\x1b]0;pwned\x07 within 30 days."
LEASE = "Clause 1 (termination fee)\n\nPreamble text.\n" + SENTENCE + "\nClause 2 (deposit)\n"
PAGES = [["Page one intro"], ["Budget line: 18,750"]]
WRONG = ("hits = search(r'[^.\\n]*termination fee of[^.\\n]*\\.')\nprint(len(hits))\n"
         "answer('EUR 48,500', citations=[{'start': hits[0].start, 'end': hits[0].end, "
         "'quote': 'The tenant pays nothing.'}])")
RIGHT = ("budget = search('Budget line: 18,750')[0]\n"
         "answer('EUR 48,500', citations=[{'start': hits[0].start, 'end': hits[0].end, 'quote': hits[0].text}, "
         "budget])")


@dataclass(frozen=True)
class Run:
    result: RLMResult
    log: Path
    lease: Path
    pdf: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> Iterator[Run]:
    """One run over a PDF and a text file whose first answer quotes wrongly and whose second is right."""
    folder = tmp_path_factory.mktemp("cite")
    pdf, lease = folder / "report.pdf", folder / NAME
    pdf.write_bytes(text_pdf(PAGES))
    lease.write_text(LEASE, encoding="utf-8")
    with ScriptedLM() as lm:
        lm.script("root", [cell(WRONG), cell(RIGHT)])
        lm.rule("sub", lambda messages: "EUR 48,500")
        prices = PriceTable({"root": (0.0, 0.0), "sub": (0.0, 0.0)})
        client = LMClient(base_url=lm.base_url, backoff_s=0.01, max_retries=2, prices=prices)
        rlm = RLM(Models("root", sub_model="sub", lm=client, prices=prices), generation=Generation(few_shot=False),
                  audit_dir=folder / "audit")
        result = rlm.complete("What is the termination fee?", [pdf, lease])
    yield Run(result, Path(result.audit_log or ""), lease, pdf)


def cite_cli(log: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", "audit", "cite", str(log), *args],
                          capture_output=True, text=True, timeout=120, env=os.environ)


def test_a_wrong_quote_is_refused_and_the_run_answers_after(run: Run) -> None:
    """The first answer() quotes text that is not at its offsets: refused in the cell; the next one is recorded."""
    first, second = run.result.trajectory
    assert "SubcallError" in first.output and "the quote is not the text at context[" in first.output
    assert run.result.stopped == "answer" and run.result.iterations == 2 and second.status == "ok"
    answers = [e for e in audit.events(run.log) if e["kind"] == "answer"]
    assert len(answers) == 1 and "nothing" not in json.dumps(answers)


def test_the_recorded_citation_of_a_text_file(run: Run) -> None:
    """Document name, local and context offsets, line, quote and the file's SHA-256, in the result and the log."""
    fee, _ = run.result.citations
    context_start = run.result.citations[0].start
    local = LEASE.index(SENTENCE)
    assert fee.document == NAME and (fee.local_start, fee.local_end) == (local, local + len(SENTENCE))
    assert context_start is not None and context_start > local  # the PDF's text comes first in context
    assert fee.line == 4 and fee.text == SENTENCE and fee.page is None and fee.kind == "text"
    assert fee.sha256 == hashlib.sha256(LEASE.encode()).hexdigest() == fee.text_sha256
    events = audit.events(run.log)
    (answer,) = [e for e in events if e["kind"] == "answer"]
    end = next(e for e in events if e["kind"] == "run.end")
    for recorded in (answer["citations"][0], end["citations"][0]):
        assert recorded == fee.model_dump(exclude_none=True, exclude={"text"})
    assert answer["evidence"][0] == end["evidence"][0] == SENTENCE and answer["depth"] == 1
    assert end["passages"][0]["before"].endswith("Preamble text.\n")
    assert end["passages"][0]["after"].startswith("\nClause 2 (deposit)")
    source = next(e["source"] for e in events if e["kind"] == "document" and e["name"] == NAME)
    assert source == str(run.lease)


def test_the_recorded_citation_of_a_pdf(run: Run) -> None:
    """A PDF's citation: its page, offsets into its extracted text, the file's hash and the text's hash."""
    _, budget = run.result.citations
    assert budget.document == "report.pdf" and budget.page == 2 and budget.kind == "pdf"
    assert budget.text == "Budget line: 18,750" and budget.line is not None and budget.line >= 2
    assert budget.local_start == budget.start  # the first document: local offsets are context offsets
    assert budget.sha256 == hashlib.sha256(run.pdf.read_bytes()).hexdigest() != budget.text_sha256


def test_the_terminal_shows_document_positions_sanitised(run: Run) -> None:
    """`rlm-host run`'s citation lines and `audit cite`'s lines: local positions, no raw escape from name or quote."""
    from rich.console import Console

    from rlm_host.review.text import render_result

    console = Console(record=True, width=200, color_system=None)
    render_result(run.result, console)
    shown = console.export_text()
    assert visible(NAME) + f":4 [{LEASE.index(SENTENCE)}:" in shown
    assert "\x1b" not in shown and "\x07" not in shown and "report.pdf:" in shown and " p.2 [" in shown
    proc = cite_cli(run.log)
    assert "\x1b" not in proc.stdout + proc.stderr and "\x07" not in proc.stdout


def test_audit_cite_matches_an_unchanged_run(run: Run) -> None:
    """Every citation matches (the PDF by hash); exit 0; --json gives one object per citation."""
    proc = cite_cli(run.log)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 citation(s): 2 matched, 0 moved, 0 missing" in proc.stdout and "by hash" in proc.stdout
    rows = [json.loads(line) for line in cite_cli(run.log, "--json").stdout.splitlines()]
    assert [r["status"] for r in rows] == ["matched", "matched"] and rows[0]["document"] == NAME


def test_audit_cite_after_the_documents_were_edited(run: Run, tmp_path: Path) -> None:
    """Copies edited: a line added before the quote is moved (new offsets and line), a changed figure is missing."""
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(run.pdf, copies / "report.pdf")
    (copies / NAME).write_text("A new first line.\n" + LEASE, encoding="utf-8")
    proc = cite_cli(run.log, "--documents", str(copies))
    assert proc.returncode == 1 and "1 matched, 1 moved, 0 missing" in proc.stdout, proc.stdout
    moved = json.loads(cite_cli(run.log, "--documents", str(copies), "--json").stdout.splitlines()[0])
    assert (moved["status"], moved["new_line"]) == ("moved", 5)
    assert moved["new_start"] == LEASE.index(SENTENCE) + len("A new first line.\n")
    (copies / NAME).write_text(LEASE.replace("48,500", "4,850"), encoding="utf-8")
    (copies / "report.pdf").write_bytes(text_pdf([["Page one intro"], ["Budget line: 1"]]))
    proc = cite_cli(run.log, "--documents", str(copies))
    assert proc.returncode == 1 and "0 matched, 0 moved, 2 missing" in proc.stdout, proc.stdout
    (copies / NAME).unlink()
    gone = json.loads(cite_cli(run.log, "--documents", str(copies), "--json").stdout.splitlines()[0])
    assert gone["status"] == "missing" and "cannot read" in gone["reason"]


def test_audit_cite_refuses_a_log_that_does_not_verify(run: Run, tmp_path: Path) -> None:
    """A log with one byte changed: one line saying it does not verify, exit 1, nothing checked."""
    forged = tmp_path / run.log.name
    shutil.copy(run.log, forged)
    seal = run.log.with_name(run.log.name.removesuffix(".jsonl") + ".seal")
    if seal.exists():
        shutil.copy(seal, tmp_path / seal.name)
    forged.write_text(forged.read_text().replace("EUR 48,500", "EUR 98,500", 1))
    proc = cite_cli(forged)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "cannot check citations" in proc.stderr and "Traceback" not in proc.stderr


def test_the_report_shows_each_passage_in_its_text(run: Run, tmp_path: Path) -> None:
    """The HTML report shows the quote highlighted inside the text around it, escaped."""
    out = tmp_path / "r.html"
    proc = subprocess.run([sys.executable, "-m", "rlm_host", "report", str(run.log), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert "Preamble text.\n<mark>The tenant pays a termination fee of EUR 48,500" in page
    assert "</mark>\nClause 2 (deposit)" in page and "\x1b" not in page and "\x07" not in page
    assert "line 4, characters" in page
