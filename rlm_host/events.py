"""Events: what every part reports, for the trajectory now and the audit log later.

A hook is any callable taking an event kind (dotted, e.g. ``subcall.denied``) and
a dict of JSON-friendly fields. Parts take a hook and never know where events go.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EventHook = Callable[[str, dict[str, Any]], None]


def null_hook(_kind: str, _fields: dict[str, Any]) -> None:
    """A hook that drops events."""


@dataclass
class Recorder:
    """Keeps events in order (thread-safe) and forwards them to further hooks."""

    forward: list[EventHook] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.events.append({"t": round(time.time(), 6), **fields, "kind": kind})  # kind cannot be overwritten
        for hook in self.forward:
            hook(kind, fields)

    def of(self, prefix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["kind"].startswith(prefix)]


@dataclass
class Meter:
    """Tokens and cost so far, from root and sub-call events (the status line and the TUI)."""

    tokens: int = 0
    cost: float = 0.0
    cost_known: bool = True

    def add(self, fields: dict[str, Any]) -> None:
        self.tokens += int(fields.get("prompt_tokens") or 0) + int(fields.get("completion_tokens") or 0)
        cost = fields.get("cost_usd")
        self.cost_known = self.cost_known and cost is not None
        self.cost += cost or 0.0

    def cost_text(self, unknown: str = "cost unknown") -> str:
        return f"${self.cost:.4f}" if self.cost_known else unknown
