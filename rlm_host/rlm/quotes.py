"""``context`` as the host knows it: where each offset lies, and the text there, from the staged files.

The kernel builds ``context`` from the staged documents (``rlm_kernel.documents.load_documents``):
each file decoded as UTF-8 with errors replaced, joined with ``SEPARATOR``. This module lays the
same files out the same way without ever holding one whole: ingestion counted each file's characters
and kept a checkpoint (characters so far, byte position) every ``MARK_EVERY`` bytes while it copied
(a document given as a bare path is counted here, once); a quote then decodes from the nearest
checkpoint only. It uses the kernel's own ``Document`` and
``document_at``, so an offset maps to the same document and page on both sides; and nothing the
kernel says about the text is ever read: a quote is what the host's copy holds at those offsets.
"""

from __future__ import annotations

import codecs
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

from rlm_kernel.contract import SEPARATOR
from rlm_kernel.documents import Document as Span
from rlm_kernel.documents import document_at

from ..doctext import line_at
from ..sandbox.document import Document, Marks, count_file

QUOTE_CHARS = 300  # the most of a span a quote holds


class Layout:
    """Where each staged document lies in ``context``; counted once, on first use."""

    def __init__(self, documents: Sequence[Document] = ()) -> None:
        self.staged = list(documents)
        self._documents: list[Span] | None = None
        self._marks: list[Marks] = []

    @property
    def documents(self) -> list[Span]:
        """The documents with their spans in ``context`` and absolute page starts (as the kernel has them)."""
        if self._documents is None:
            self._documents = self._lay_out()
        return self._documents

    @property
    def chars(self) -> int:
        """The length of ``context``."""
        return self.documents[-1].end if self.documents else 0

    def locate(self, offset: int) -> Span | None:
        """The document holding ``offset`` (None between documents or past the end)."""
        return document_at(self.documents, offset) if 0 <= offset <= self.chars else None

    def index_of(self, offset: int) -> int | None:
        """The position in ``staged`` of the document holding ``offset`` (None between documents)."""
        doc = self.locate(offset)
        return None if doc is None else self.documents.index(doc)

    def line(self, index: int, local: int) -> int:
        """The 1-based line of character ``local`` of document ``index``, read from the checkpoint before it."""
        marks = self._marks_of(index)
        return line_at(self.staged[index].text_path, local, marks[bisect_right([m[0] for m in marks], local) - 1])

    def quote(self, start: int, end: int, limit: int = QUOTE_CHARS) -> str:
        """``context[start:end]``, at most ``limit`` characters of it, read from the host's files."""
        stop = min(end, start + limit, self.chars)
        pieces, pos = [], max(start, 0)
        while pos < stop:
            piece = self._piece(pos, stop)
            if not piece:
                break  # a file shorter than when it was counted: quote what is there, never loop
            pieces.append(piece)
            pos += len(piece)
        return "".join(pieces)

    def _lay_out(self) -> list[Span]:
        documents: list[Span] = []
        offset = 0
        for doc in self.staged:
            if documents:
                offset += len(SEPARATOR)
            chars, size, marks = _counted(doc)
            self._marks.append(marks)
            documents.append(Span(doc.name, size, offset, offset + chars, tuple(offset + p for p in doc.pages)))
            offset += chars
        return documents

    def _piece(self, pos: int, stop: int) -> str:
        """The text from ``pos`` up to ``stop`` or the end of the document or separator ``pos`` is in."""
        index = bisect_right([d.start for d in self.documents], pos) - 1
        doc = self.documents[index]
        if pos >= doc.end:  # in the separator after this document
            return SEPARATOR[pos - doc.end: stop - doc.end]
        return _read(self.staged[index].text_path, self._marks[index], pos - doc.start, min(stop, doc.end) - pos)

    def _marks_of(self, index: int) -> Marks:
        self.documents  # noqa: B018 - laying out fills the marks
        return self._marks[index]


def _counted(doc: Document) -> tuple[int, int, Marks]:
    """Characters, bytes and checkpoints of a staged text: as ingestion counted them, else counted now."""
    if doc.chars is not None and doc.text_bytes is not None and doc.marks:
        return doc.chars, doc.text_bytes, doc.marks
    return count_file(doc.text_path)


def _read(path: Path, marks: Marks, start: int, count: int) -> str:
    """``count`` characters from character ``start`` of a file, decoded from the checkpoint before it."""
    chars, byte = marks[bisect_right([m[0] for m in marks], start) - 1]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = ""
    with open(path, "rb") as handle:
        handle.seek(byte)
        while len(text) < start - chars + count:
            chunk = handle.read(1 << 16)
            text += decoder.decode(chunk, final=not chunk)
            if not chunk:
                break
    return text[start - chars: start - chars + count]
