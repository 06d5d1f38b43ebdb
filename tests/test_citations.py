"""Citations an auditor can check, on the host: local offsets, lines, hashes, quotes, and `audit cite`'s verdicts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rlm_host import doctext
from rlm_host.results import Citation
from rlm_host.review.cite_check import check, locate, render
from rlm_host.review.text import citation_line
from rlm_host.rlm.subcalls import Evidence
from rlm_host.sandbox import Document
from rlm_host.sandbox.document import MARK_EVERY, count_file
from rlm_host.wire import MAX_QUOTE, CitedSpan

HEAD = "Clause 1 (fees)\nZürich — 東京 🙂\n"
LEASE = HEAD + "The tenant pays a termination fee of EUR 48,500 within 30 days.\nEnd.\n"
ANNEX = "Annex\n\nThe deposit is EUR 2,000.\n"


def staged(tmp_path: Path, files: dict[str, bytes]) -> list[Document]:
    """Documents as ingestion records them: hashes, characters and checkpoints of each file."""
    docs = []
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        chars, size, marks = count_file(path)
        digest = hashlib.sha256(data).hexdigest()
        docs.append(Document(name, path, chars, (), path, size, digest, "text", size, digest, marks))
    return docs


@pytest.fixture
def evidence(tmp_path: Path) -> tuple[Evidence, str]:
    docs = staged(tmp_path, {"lease.txt": LEASE.encode(), "annex.txt": ANNEX.encode()})
    return Evidence(docs), LEASE + "\n\n" + ANNEX


def test_a_citation_records_where_it_is_in_its_own_document(evidence: tuple[Evidence, str]) -> None:
    """Context offsets become the document's own offsets, line and hashes; the quote is the host's text."""
    ev, context = evidence
    start = context.index("The deposit")
    (cite,) = ev.resolve([CitedSpan(start=start, end=start + 26)])
    local = ANNEX.index("The deposit")
    assert (cite.document, cite.local_start, cite.local_end, cite.line) == ("annex.txt", local, local + 26, 3)
    assert cite.text == context[start:start + 26] == "The deposit is EUR 2,000.\n"
    assert cite.sha256 == hashlib.sha256(ANNEX.encode()).hexdigest() == cite.text_sha256 and cite.kind == "text"
    assert cite.start == start and cite.end == start + 26


def test_quotes_at_their_offsets_are_accepted_with_whitespace_aside(evidence: tuple[Evidence, str]) -> None:
    """The exact text, or the text with other whitespace, passes; a start with a quote and no end spans the quote."""
    ev, context = evidence
    sentence = "The tenant pays a termination fee of EUR 48,500 within 30 days."
    start = context.index(sentence)
    assert ev.problem(CitedSpan(start=start, end=start + len(sentence), quote=sentence)) is None
    assert ev.problem(CitedSpan(start=start, end=start + len(sentence),
                                quote="  The tenant pays a\ttermination fee of\nEUR 48,500 within 30 days. ")) is None
    assert ev.problem(CitedSpan(start=start, quote=sentence)) is None
    (cite,) = ev.resolve([CitedSpan(start=start, quote=sentence)])
    assert cite.end == start + len(sentence) and cite.text == sentence and cite.line == 3


def test_a_quote_not_at_its_offsets_is_refused(evidence: tuple[Evidence, str]) -> None:
    """A heading cited with the sentence's words, a changed figure, a quote without offsets: each refused, and why."""
    ev, context = evidence
    start = context.index("Clause 1")
    wrong = ev.problem(CitedSpan(start=start, end=start + 15, quote="termination fee of EUR 48,500"))
    assert wrong is not None and f"not the text at context[{start}:{start + 15}]" in wrong
    assert "48,500" not in wrong  # the refusal never echoes the quote (it is logged)
    fee = context.index("EUR 48,500")
    assert ev.problem(CitedSpan(start=fee, end=fee + 10, quote="EUR 45,800")) is not None
    assert "needs the offsets" in (ev.problem(CitedSpan(document="lease.txt", quote="EUR 48,500")) or "")
    long_ev = Evidence(staged(tmp_path_of(ev), {"long.txt": b"x" * (MAX_QUOTE + 100)}))
    too_long = long_ev.problem(CitedSpan(start=0, end=MAX_QUOTE + 10, quote="x"))
    assert too_long is not None and f"at most {MAX_QUOTE:,} characters" in too_long


def tmp_path_of(ev: Evidence) -> Path:
    """The folder the evidence's documents are in (to stage another beside them)."""
    return ev.layout.staged[0].text_path.parent


def test_lines_past_checkpoints_and_invalid_bytes(tmp_path: Path) -> None:
    """The line of an offset deep in a file (past several checkpoints, with invalid UTF-8) is the kernel's."""
    data = ("line é\n".encode() + b"\xff\xfe bad\n") * (MARK_EVERY // 4) + b"the needle\n"
    (doc,) = staged(tmp_path, {"big.txt": data})
    text = data.decode("utf-8", errors="replace")
    at = text.index("the needle")
    (cite,) = Evidence([doc]).resolve([CitedSpan(start=at, end=at + 10)])
    assert cite.line == text[:at].count("\n") + 1 and cite.text == "the needle" and len(doc.marks) > 2
    assert doctext.find(doc.text_path, "the needle") == (at, cite.line)
    assert doctext.text_at(doc.text_path, at, 10) == "the needle"
    assert doctext.line_at(doc.text_path, at) == cite.line


def test_the_terminal_line_shows_document_positions() -> None:
    """`name:line p.N [local_start:local_end] "quote"`, never the joined context's offsets when local ones exist."""
    cite = Citation(start=617308, end=617325, document="agreement-12.txt", text="Exclusivity  bonus\n",
                    local_start=1204, local_end=1221, line=31, page=None)
    assert citation_line(cite) == 'agreement-12.txt:31 [1204:1221] "Exclusivity bonus"'
    assert citation_line(Citation(document="r.pdf", page=2, local_start=5, local_end=9, line=1, text="fee")) == \
        'r.pdf:1 p.2 [5:9] "fee"'


def recorded(tmp_path: Path, text: str, quote: str) -> tuple[Path, dict]:
    path = tmp_path / "lease.txt"
    path.write_text(text, encoding="utf-8")
    start = text.index(quote)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return path, {"document": "lease.txt", "local_start": start, "local_end": start + len(quote),
                  "line": text[:start].count("\n") + 1, "sha256": digest, "text_sha256": digest, "kind": "text"}


def test_audit_cite_verdicts_on_files(tmp_path: Path) -> None:
    """The same file matches; an edit before the quote moves it (new offsets, line); a changed quote is missing."""
    quote = "a termination fee of EUR 48,500"
    path, cite = recorded(tmp_path, LEASE, quote)
    assert check(1, cite, quote, path).status == "matched"
    path.write_text("Inserted line.\n" + LEASE, encoding="utf-8")
    moved = check(1, cite, quote, path)
    assert (moved.status, moved.new_start, moved.new_line) == ("moved", cite["local_start"] + 15, cite["line"] + 1)
    assert "-> lease.txt:4 [" in render(moved)
    path.write_text(LEASE.replace("48,500", "4,850"), encoding="utf-8")
    assert check(1, cite, quote, path).status == "missing"
    path.unlink()
    assert check(1, cite, quote, path).status == "missing"


def test_audit_cite_pdfs_by_hash_and_never_parses_them(tmp_path: Path) -> None:
    """A document whose text was extracted is matched by its file's hash alone; changed, it is missing."""
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF-1.4 not parsed here")
    cite = {"document": "r.pdf", "local_start": 0, "local_end": 3, "line": 1, "kind": "pdf",
            "sha256": hashlib.sha256(pdf.read_bytes()).hexdigest(), "text_sha256": "0" * 64}
    result = check(1, cite, "fee", pdf)
    assert result.status == "matched" and "by hash" in result.reason
    pdf.write_bytes(b"%PDF-1.4 changed")
    assert check(1, cite, "fee", pdf).status == "missing"


def test_audit_cite_never_joins_a_climbing_name_to_a_folder(tmp_path: Path) -> None:
    """A name from the log that is absolute or has `..` is not looked up under --documents folders."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("x")
    (folder / "a.txt").write_text("x")
    assert locate("../secret.txt", None, [folder]) is None and locate("/etc/passwd", None, [folder]) is None
    assert locate("a.txt", "/elsewhere/a.txt", [folder]) == folder / "a.txt"
    assert locate("a.txt", "/elsewhere/a.txt", []) == Path("/elsewhere/a.txt")


def test_audit_cite_refuses_a_fifo_without_waiting(tmp_path: Path) -> None:
    """A FIFO where the document was is reported missing at once, never read."""
    import os

    fifo = tmp_path / "lease.txt"
    os.mkfifo(fifo)
    result = check(1, {"document": "lease.txt", "sha256": "0"}, None, fifo)
    assert result.status == "missing" and "cannot read" in result.reason
