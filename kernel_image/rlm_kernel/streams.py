"""Whatever a cell prints reaches the host: every string the kernel sends is made valid UTF-8 first.

Jupyter's packer raises on a lone surrogate (``print("\\ud800")``, a repr or an exception message
holding one), and the message is lost: a stream flush drops the rest of the cell's output, an error
reply never leaves, so the cell is recorded as a success. And ipykernel's watcher of file
descriptors 1 and 2 decodes each read strictly, so one invalid byte written with ``os.write`` (or a
multi-byte character split across two reads) ends it for the rest of the session. Here a lone
surrogate becomes its visible escape (``\\ud800``) wherever it is, and the descriptors are read with
an incremental decoder that replaces invalid bytes. Not a boundary: the host checks again.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
from typing import Any
from collections.abc import Callable

READ_BYTES = 1 << 16


def valid(text: str) -> str:
    """``text`` with each lone surrogate as its backslash escape, so it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def scrub(obj: Any) -> Any:
    """``obj`` with every string in it (keys too) made valid."""
    if isinstance(obj, str):
        return valid(obj)
    if isinstance(obj, dict):
        return {scrub(key): scrub(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(item) for item in obj]
    return obj


def safe_packer(pack: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A Jupyter session packer that retries a message it cannot encode with its strings made valid."""

    def packed(obj: Any) -> bytes:
        try:
            return pack(obj)
        except (UnicodeEncodeError, ValueError, TypeError):
            return pack(scrub(obj))
    return packed


def protect_sessions(sessions: list[Any]) -> None:
    """Give each distinct Jupyter session the safe packer (once)."""
    for session in {id(s): s for s in sessions if s is not None}.values():
        if not getattr(session.pack, "rlm_safe", False):
            session.pack = safe_packer(session.pack)
            session.pack.rlm_safe = True


def capture_fd(fd: int, write: Callable[[str], Any]) -> None:
    """Point ``fd`` at a new pipe read by a thread that decodes leniently and calls ``write``."""
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    threading.Thread(target=_pump, args=(read_end, write), name=f"rlm-fd{fd}", daemon=True).start()


def _pump(read_end: int, write: Callable[[str], Any]) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := os.read(read_end, READ_BYTES):
        text = decoder.decode(chunk)
        if text:
            with contextlib.suppress(Exception):  # the pump outlives any one write
                write(text)
