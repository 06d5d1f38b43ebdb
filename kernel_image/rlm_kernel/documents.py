"""Reading the documents from the read-only mount into one ``context`` string.

The documents never travel through the kernel protocol: the host places them
in a directory mounted read-only at ``/docs`` and this module reads them once.
Documents are joined with a blank line; each ``Document`` records where its
text starts and ends in ``context`` and, for paged inputs (PDF), where each
page starts.

Memory: a context of N bytes of UTF-8 text costs about N bytes once loaded
(Python keeps ASCII text at one byte per character; 2 or 4 for text with
wider characters) and about 2N for a moment while it is decoded.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from . import contract
from .contract import SEPARATOR

DOCS_DIR = Path(os.environ.get("RLM_DOCS_DIR", contract.DOCS_DIR))


@dataclass(frozen=True)
class Document:
    """One input file: its name, byte size, span in ``context``, and page starts."""

    name: str
    size: int
    start: int
    end: int
    pages: tuple[int, ...] = field(default=(), repr=False)  # offsets in context where pages start

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding ``offset``, for paged documents."""
        if not self.pages:
            return None
        return max(bisect_right(self.pages, offset), 1)


def document_at(documents: list[Document], offset: int) -> Document | None:
    """The document whose span holds ``offset`` (documents are in order)."""
    index = bisect_right([d.start for d in documents], offset) - 1
    return documents[index] if index >= 0 and offset <= documents[index].end else None


def load_documents(docs_dir: Path = DOCS_DIR) -> tuple[str, list[Document]]:
    """Read every document the manifest lists; return the text and the spans."""
    entries = contract.read_manifest(docs_dir)
    if not entries:
        return "", []
    parts: list[str] = []
    documents: list[Document] = []
    offset = 0
    for entry in entries:
        text = (docs_dir / entry["file"]).read_bytes().decode("utf-8", errors="replace")
        if parts:
            parts.append(SEPARATOR)
            offset += len(SEPARATOR)
        parts.append(text)
        pages = tuple(offset + p for p in entry.get("pages", ()))
        documents.append(Document(entry["name"], entry["size"], offset, offset + len(text), pages))
        offset += len(text)
    return parts[0] if len(parts) == 1 else "".join(parts), documents


def describe(text: str, documents: list[Document]) -> str:
    """A few lines about the context, for the root model's prompt."""
    lines = [f"`context` is a str of {len(text):,} characters in {len(documents)} document(s)."]
    for doc in documents[:20]:
        paged = f", {len(doc.pages)} pages" if doc.pages else ""
        lines.append(f"- {doc.name}: context[{doc.start}:{doc.end}] ({doc.size:,} bytes{paged})")
    if len(documents) > 20:
        lines.append(f"- ... and {len(documents) - 20} more (see `documents`)")
    return "\n".join(lines)
