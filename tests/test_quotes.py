"""The host's layout of ``context`` and its quotes, on real files, against the kernel's own loader."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rlm_host.sandbox import document
from rlm_host.rlm.quotes import QUOTE_CHARS, Layout
from rlm_host.rlm.subcalls import Evidence
from rlm_host.sandbox import Document
from rlm_host.sandbox.document import MARK_EVERY, TextCount
from rlm_host.wire import CitedSpan
from rlm_kernel.contract import manifest_entry, write_manifest
from rlm_kernel.documents import load_documents


def stage(tmp_path: Path, files: dict[str, bytes], pages: dict[str, tuple[int, ...]] | None = None
          ) -> tuple[list[Document], str, list]:
    """Write the files, and the kernel's view of them (its loader over a manifest), side by side."""
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    staged, entries = [], []
    for index, (name, data) in enumerate(files.items()):
        path = docs_dir / f"{index:05d}.doc"
        path.write_bytes(data)
        page_starts = (pages or {}).get(name, ())
        staged.append(Document(name, path, pages=page_starts))
        entries.append(manifest_entry(name, path.name, len(data), None, page_starts))
    write_manifest(docs_dir, entries)
    context, documents = load_documents(docs_dir)
    return staged, context, documents


FILES = {"a.txt": "Zürich — 東京 🙂 fee\n".encode() * 40, "b.bin": b"ok \xff\xfe bad \xe2\x82 cut \xf0\x9f end",
         "empty.txt": b"", "c.txt": "last 🙂 words".encode()}


def test_layout_matches_the_kernels(tmp_path: Path) -> None:
    """Spans, sizes and page starts are the kernel's, for multi-byte text, invalid bytes and empty files."""
    staged, context, documents = stage(tmp_path, FILES, {"a.txt": (0, 100, 500)})
    layout = Layout(staged)
    assert layout.documents == documents and layout.chars == len(context)
    assert next(d.pages for d in layout.documents) == documents[0].pages


def test_every_span_quotes_the_kernels_text(tmp_path: Path) -> None:
    """Any span, crossing separators and empty documents, quotes exactly context[a:b] (capped)."""
    staged, context, _ = stage(tmp_path, FILES)
    layout = Layout(staged)
    rng = random.Random(7)
    spans = [(a, a + rng.randint(0, 400)) for a in (rng.randint(0, len(context)) for _ in range(300))]
    spans += [(d.end - 3, d.end + 5) for d in layout.documents]  # across each separator
    for a, b in spans:
        assert layout.quote(a, b) == context[a:min(b, a + QUOTE_CHARS)], (a, b)


def test_invalid_bytes_are_replaced_as_the_kernel_does(tmp_path: Path) -> None:
    """Invalid UTF-8 is quoted as U+FFFD, the way the kernel decodes it, never as the raw bytes."""
    staged, context, _documents = stage(tmp_path, {"b.bin": FILES["b.bin"]})
    quote = Layout(staged).quote(0, 100)
    assert quote == context and "\ufffd" in quote and quote.startswith("ok \ufffd\ufffd bad")


def test_checkpoints_decode_like_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With checkpoints every few bytes, split multi-byte and invalid sequences still quote right."""
    monkeypatch.setattr(document, "MARK_EVERY", 7)
    rng = random.Random(3)
    data = b"".join(rng.choice([b"a", "é".encode(), "東".encode(), "🙂".encode(), b"\xff", b"\xe2\x82", b"\n"])
                    for _ in range(3000))
    staged, context, _ = stage(tmp_path, {"mixed": data, "next": "tail 東".encode()})
    layout = Layout(staged)
    assert layout.chars == len(context)
    for a in range(0, len(context), 37):
        assert layout.quote(a, a + 50) == context[a:a + 50], a


def test_quotes_are_capped_and_end_at_context(tmp_path: Path) -> None:
    """A quote holds at most 300 characters, and nothing past the end of context."""
    staged, context, _ = stage(tmp_path, FILES)
    layout = Layout(staged)
    assert layout.quote(0, 10**9) == context[:QUOTE_CHARS]
    assert layout.quote(len(context) - 4, len(context) + 50) == context[-4:]
    assert layout.quote(len(context) + 10, len(context) + 20) == ""


def test_documents_counted_at_ingestion_are_laid_out_without_a_read(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents whose characters and checkpoints ingestion counted are laid out without opening a file,
    as the kernel lays them out, and quote exactly."""
    files = {**FILES, "big.txt": ("x" * 998 + "é\n").encode() * 1500}  # 1.5 MB: several checkpoints
    plain, context, documents = stage(tmp_path, files, {"a.txt": (0, 100)})
    counted = []
    for doc in plain:
        counter = TextCount()
        counter.feed(doc.text_path.read_bytes())
        chars, marks = counter.close()
        counted.append(Document(doc.name, doc.text_path, chars, doc.pages, text_bytes=counter.bytes, marks=marks))
    opened: list[object] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    layout = Layout(counted)
    assert layout.documents == documents and layout.chars == len(context) and opened == []
    big = documents[-1]
    for start in (big.start, big.start + MARK_EVERY - 3, big.end - 40):
        assert layout.quote(start, start + 40) == context[start:start + 40]


def test_a_big_file_is_never_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quote near the end of a large file reads one checkpoint's worth, not the file."""
    staged, context, _ = stage(tmp_path, {"big": ("x" * 1000 + "\n").encode() * 3000})  # 3 MB
    layout = Layout(staged)
    assert layout.chars == len(context)
    reads: list[int] = []
    real_open = open

    def counting_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        read = handle.read
        handle_read = lambda size=-1: reads.append(size) or read(size)  # noqa: E731
        return _Proxy(handle, handle_read)
    monkeypatch.setattr("builtins.open", counting_open)
    assert layout.quote(len(context) - 10, len(context)) == context[-10:]
    assert reads and all(0 < size <= 1 << 16 for size in reads) and len(reads) <= MARK_EVERY // (1 << 16) + 2


class _Proxy:
    """A file whose reads are counted."""

    def __init__(self, handle, read) -> None:
        self._handle, self.read = handle, read

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()

    def seek(self, position: int) -> int:
        return self._handle.seek(position)


def evidence(tmp_path: Path) -> tuple[Evidence, str]:
    staged, context, _ = stage(tmp_path, {"a.txt": b"one two three\n" * 20, "paged.pdf": b"p1 text p2 text"},
                               {"paged.pdf": (0, 8)})
    return Evidence(staged), context


def test_offsets_get_the_hosts_document_page_and_quote(tmp_path: Path) -> None:
    """An offset citation is stated with the document, page and text the host finds there."""
    ev, context = evidence(tmp_path)
    second = context.index("p2")
    spans = [CitedSpan(start=second, end=second + 7), CitedSpan(start=4, end=4), CitedSpan(document="a.txt")]
    cited = ev.resolve(spans)
    assert (cited[0].document, cited[0].page, cited[0].text) == ("paged.pdf", 2, "p2 text")
    assert (cited[1].document, cited[1].page, cited[1].text) == ("a.txt", None, "t")
    assert (cited[2].document, cited[2].text) == ("a.txt", None)


@pytest.mark.parametrize("citation, problem", [
    (CitedSpan(start=0, end=5, document="paged.pdf"), "offset 0 is in 'a.txt', not in 'paged.pdf'"),
    (CitedSpan(start=290, end=292, document="paged.pdf", page=1), "on page 2, not on page 1"),
    (CitedSpan(start=2, document="a.txt", page=1), "(no pages), not on page 1"),
    (CitedSpan(start=283, end=10**6), "past the end of context (297 characters)"),
    (CitedSpan(start=298), "past the end"),
    (CitedSpan(start=281, end=282, document="a.txt"), "between documents"),
    (CitedSpan(document="paged.pdf", page=3), "has 2 pages, not page 3"),
    (CitedSpan(document="a.txt", page=1), "has no pages, not page 1"),
    (CitedSpan(document="nope.txt"), "no document named 'nope.txt'"),
    (CitedSpan(page=1), "needs offsets or a document name"),
    (CitedSpan(end=4), "needs a start too"),
    (CitedSpan(), "needs offsets or a document name"),
])
def test_citations_that_contradict_the_layout_are_refused(tmp_path: Path, citation: CitedSpan, problem: str) -> None:
    """A claim the host's layout does not bear out is refused with the reason."""
    ev, context = evidence(tmp_path)
    assert len(context) == 297 and context.index("p2") == 290
    assert problem in (ev.problem(citation) or ""), ev.problem(citation)


def test_citations_that_hold_pass(tmp_path: Path) -> None:
    """Offsets with their true document and page, and existing documents and pages, are accepted."""
    ev, _context = evidence(tmp_path)
    good = [CitedSpan(start=282, end=284, document="paged.pdf", page=1), CitedSpan(start=0, end=297),
            CitedSpan(document="paged.pdf", page=2), CitedSpan(start=297), CitedSpan(start=0, end=3, document="a.txt")]
    assert [ev.problem(c) for c in good] == [None] * len(good)
