"""A text file read the way the kernel reads a document: UTF-8 with errors replaced, streamed.

The host never holds a whole document: it finds a line number, a quote or a file's digest by
reading the file in pieces. Used for the line of a citation (``rlm.quotes``) and by ``audit cite``,
which re-reads documents on disk. A non-regular file (FIFO, device, folder) is refused at open,
never waited on; nothing here parses a format (PDFs are never read as text on the host).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 16


def open_regular(path: Path) -> io.BufferedReader:
    """``path`` opened for reading, or OSError when it is not a regular file (no blocking on a FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return io.BufferedReader(io.FileIO(fd, "rb"))


def sha256_of(path: Path) -> str:
    """The SHA-256 of a regular file's bytes."""
    with open_regular(path) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def pieces(path: Path, start_byte: int = 0) -> Iterator[str]:
    """The file's text from ``start_byte`` (a character boundary), decoded as the kernel does."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with open_regular(path) as handle:
        handle.seek(start_byte)
        while chunk := handle.read(CHUNK):
            yield decoder.decode(chunk)
        yield decoder.decode(b"", final=True)


def newlines_before(path: Path, byte: int) -> int:
    """How many newline bytes come before byte ``byte`` (UTF-8 replacement never makes or eats one)."""
    count, left = 0, byte
    with open_regular(path) as handle:
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


def line_at(path: Path, offset: int, mark: tuple[int, int] = (0, 0)) -> int:
    """The 1-based line of character ``offset``, reading from ``mark`` (characters, byte) before it."""
    chars, byte = mark
    lines = 1 + newlines_before(path, byte)
    for piece in pieces(path, byte):
        take = offset - chars
        if take <= len(piece):
            return lines + piece.count("\n", 0, max(take, 0))
        lines += piece.count("\n")
        chars += len(piece)
    return lines


def text_at(path: Path, start: int, count: int) -> str:
    """``count`` characters of the file's text from character ``start`` (fewer at its end)."""
    out, seen = [], 0
    for piece in pieces(path):
        lo, hi = max(start - seen, 0), min(start + count - seen, len(piece))
        if lo < hi:
            out.append(piece[lo:hi])
        seen += len(piece)
        if seen >= start + count:
            break
    return "".join(out)


def find(path: Path, needle: str) -> tuple[int, int] | None:
    """The first character offset of ``needle`` in the file's text and its 1-based line, or None."""
    if not needle:
        return None
    keep = len(needle) - 1
    buffer, base, lines = "", 0, 1  # base: the offset of buffer[0]; lines: the line buffer[0] is on
    for piece in pieces(path):
        buffer += piece
        found = buffer.find(needle)
        if found >= 0:
            return base + found, lines + buffer.count("\n", 0, found)
        cut = max(len(buffer) - keep, 0)
        lines += buffer.count("\n", 0, cut)
        base += cut
        buffer = buffer[cut:]
    return None
