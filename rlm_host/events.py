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
