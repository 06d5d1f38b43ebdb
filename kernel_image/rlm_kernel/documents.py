"""Reading the documents from the read-only mount into one ``context`` string.

The documents never travel through the kernel protocol: the host places them
in a directory mounted read-only at ``/docs`` and this module reads them once.
Documents are joined with a blank line; each ``Document`` records where its
text starts and ends in ``context``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DOCS_DIR = Path(os.environ.get("RLM_DOCS_DIR", "/docs"))
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Document:
    """One input file: its name, byte size, and span in ``context``."""

    name: str
    size: int
    start: int
    end: int


def load_documents(docs_dir: Path = DOCS_DIR) -> tuple[str, list[Document]]:
    """Read every document the manifest lists; return the text and the spans."""
    manifest = docs_dir / "manifest.json"
    if not manifest.is_file():
        return "", []
    entries = json.loads(manifest.read_text(encoding="utf-8"))["documents"]
    parts: list[str] = []
    documents: list[Document] = []
    offset = 0
    for entry in entries:
        text = (docs_dir / entry["file"]).read_bytes().decode("utf-8", errors="replace")
        if parts:
            parts.append(SEPARATOR)
            offset += len(SEPARATOR)
        parts.append(text)
        documents.append(Document(entry["name"], entry["size"], offset, offset + len(text)))
        offset += len(text)
    return "".join(parts), documents
