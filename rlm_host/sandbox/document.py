"""The one record of a document on the host, from ingestion to the kernel's manifest.

Ingestion (``rlm_host.documents``) makes it with everything it learnt while copying: the original's
size and hash, the staged text's size, hash and characters, and checkpoints for quoting. Staging writes
its name, characters and page starts into the manifest; the host's layout of ``context``
(``rlm_host.rlm.quotes``) reads its characters and checkpoints instead of reading the file again. A plain
path passed to ``DockerSandbox.start`` becomes a record with only a name and a text file; what was not
counted is counted on first use.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path

MARK_EVERY = 1 << 18  # bytes between quoting checkpoints: a quote decodes at most this much before its start

Marks = tuple[tuple[int, int], ...]  # (characters so far, byte offset) at points where no character is split


@dataclass(frozen=True)
class Document:
    """A document as staged: ``text_path`` is the UTF-8 text the kernel reads (host-owned, immutable).

    ``chars`` counts that text as the kernel decodes it (``errors="replace"``), ``pages`` holds a
    PDF's page start offsets in characters. ``source``, ``size``, ``sha256`` and ``kind`` describe
    the original input; ``text_bytes`` and ``text_sha256`` the staged text.
    """

    name: str
    text_path: Path
    chars: int | None = None
    pages: tuple[int, ...] = ()
    source: Path | None = None
    size: int | None = None
    sha256: str = ""
    kind: str = "text"
    text_bytes: int | None = None
    text_sha256: str = ""
    marks: Marks = field(default=(), repr=False, compare=False)

    @classmethod
    def of(cls, item: str | Path | Document) -> Document:
        """A record for a path (named for its file), or the record itself."""
        return item if isinstance(item, Document) else cls(Path(item).name, Path(item))


class TextCount:
    """Characters of streamed UTF-8 bytes as the kernel decodes them, with a checkpoint every ``MARK_EVERY``."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.chars = 0
        self.bytes = 0
        self._marks: list[tuple[int, int]] = [(0, 0)]

    def feed(self, data: bytes) -> None:
        for start in range(0, len(data), MARK_EVERY):
            piece = data[start:start + MARK_EVERY]
            self.chars += len(self._decoder.decode(piece))
            self.bytes += len(piece)
            if self.bytes - self._marks[-1][1] >= MARK_EVERY:
                self._marks.append((self.chars, self.bytes - len(self._decoder.getstate()[0])))  # pending: next char

    def close(self) -> tuple[int, Marks]:
        """The total characters and the checkpoints."""
        return self.chars + len(self._decoder.decode(b"", final=True)), tuple(self._marks)


def count_file(path: Path) -> tuple[int, int, Marks]:
    """Characters, bytes and checkpoints of a file, read once in ``MARK_EVERY`` pieces."""
    counter = TextCount()
    with open(path, "rb") as handle:
        while chunk := handle.read(MARK_EVERY):
            counter.feed(chunk)
    chars, marks = counter.close()
    return chars, counter.bytes, marks
