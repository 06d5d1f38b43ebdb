"""Bounded collection of a cell's output.

Output beyond the policy's cap is counted and dropped as it arrives, never
buffered, and the kept text ends with a marker saying how much was cut. What the kernel
sends is hostile: a value that is not a string counts as none, and a lone surrogate (which a
raw message can carry as a JSON escape) is kept as its visible escape, so the text always
encodes as UTF-8 for the record.

This is the boundary (``policy.limits.output_cap_bytes``). The cap shows in three more places,
each for a reason:

- the kernel's own limiter (``rlm_kernel/output_limit.py``, twice the cap), so a flood never fills
  the channel;
- ZeroMQ's ``MAXMSGSIZE`` on the host's sockets (four times the cap plus 1 MiB, set in
  ``sandbox/docker_sandbox.py``), so one message cannot exhaust the host's memory;
- what the root model is shown of a cell (``rlm/loop.py``'s ``_clip``, ``output_chars`` characters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_kernel.streams import valid


def text_of(value: Any) -> str:
    """A kernel-sent value as text that encodes as UTF-8 ("" when it is not a string)."""
    return valid(value) if isinstance(value, str) else ""


def marker(dropped: int) -> str:
    return f"\n[... output truncated by the host: {dropped} more bytes not shown ...]\n"


@dataclass
class OutputCollector:
    """Keeps at most ``cap`` bytes of stdout, stderr and result text together."""

    cap: int
    _parts: dict[str, list[str]] = field(default_factory=lambda: {"stdout": [], "stderr": [], "result": []})
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0, "result": 0})

    def add(self, stream: str, text: Any) -> None:
        text = text_of(text)
        data = text.encode("utf-8")
        room = self.cap - self.kept
        if len(data) <= room:
            self._parts[stream].append(text)
            self.kept += len(data)
            return
        head = data[: max(room, 0)].decode("utf-8", "ignore")
        if head:
            self._parts[stream].append(head)
        self.kept = self.cap
        self.dropped[stream] += len(data) - len(head.encode("utf-8"))

    @property
    def truncated(self) -> bool:
        return any(self.dropped.values())

    def text(self, stream: str) -> str:
        body = "".join(self._parts[stream])
        return body + marker(self.dropped[stream]) if self.dropped[stream] else body
