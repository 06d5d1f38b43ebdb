"""Per-cell output limit inside the kernel.

The host caps what it keeps of a cell's output (that cap is the boundary); this
limiter keeps a flood from ever becoming a huge message, so the channel stays
in step and the next cell's output arrives whole. It wraps ``write`` of the
kernel's stdout and stderr, and ``reset`` runs before every cell. Each string is made valid
UTF-8 on the way (``streams.valid``): one lone surrogate would otherwise lose the whole flush.
"""

from __future__ import annotations

import os
from typing import Any

from .contract import OUTPUT_CAP_ENV

from .streams import valid

MARK = "\n[... output limit reached in the sandbox: the rest of this cell's output is dropped ...]\n"


class OutputLimiter:
    """Lets through at most ``cap`` characters per cell over the wrapped streams."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self.marked = False

    def reset(self, *_args: Any) -> None:
        self.used = 0
        self.marked = False

    def wrap(self, stream: Any) -> None:
        original = stream.write

        def write(text: Any) -> Any:
            if not isinstance(text, str):
                return original(text)
            text = valid(text)
            room = self.cap - self.used
            if len(text) <= room:
                self.used += len(text)
                return original(text)
            if room > 0:
                original(text[:room])
                self.used = self.cap
            if not self.marked:
                self.marked = True
                original(MARK)
            return len(text)

        stream.write = write


def cap_from_env(default: int = 1 << 20) -> int:
    """The limit the host chose (``RLM_OUTPUT_CAP``), with headroom over its own cap."""
    try:
        return 2 * int(os.environ[OUTPUT_CAP_ENV])
    except (KeyError, ValueError):
        return default
