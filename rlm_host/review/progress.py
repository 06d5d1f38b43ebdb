"""Live progress of a run on stderr: iteration, current action, tokens and cost so far.

It only displays: it receives events (the same hook the audit trail uses) and
redraws one status line.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.status import Status
from rich.text import Text

from ..sanitize import safe_text
from ..events import Cell, DocumentSkipped, IterationStart, Meter, ProgressNote, RootReply, SandboxRestart, Subcall


class Progress:
    """A one-line status that follows run events; does nothing when disabled."""

    def __init__(self, *, enabled: bool, console: Console) -> None:
        self.enabled = enabled
        self.console = console
        self._status: Status | None = None
        self._lock = threading.Lock()
        self.iteration = 0
        self.depth = 1
        self.meter = Meter()
        self.subcalls = 0
        self.action = "starting the sandbox"

    def __enter__(self) -> Progress:
        if self.enabled:
            self._status = self.console.status(self._line())
            self._status.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()

    def note(self, message: str) -> None:
        """A step before the run starts (fetching, starting servers): shown as the action."""
        with self._lock:
            self.action = message
            if self._status is not None:
                self._status.update(self._line())
            elif self.console.is_terminal:
                self.console.print(safe_text(message, "dim"))

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self._apply(kind, fields)
            if self._status is not None:
                self._status.update(self._line())

    def _apply(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == IterationStart.kind:
            self.iteration, self.depth = fields["iteration"], fields.get("depth", 1)
            self.action = "waiting for the root model"
        elif kind in {RootReply.kind, Subcall.kind}:
            self.meter.add(fields)
            if kind == Subcall.kind:
                self.subcalls += 1
            else:
                self.action = "running the cell"
        elif kind == Cell.kind:
            self.action = f"cell {fields.get('status')} in {fields.get('duration_ms', 0):.0f} ms"
        elif kind == ProgressNote.kind:
            self.action = str(fields.get("message", ""))
        elif kind == DocumentSkipped.kind:
            self.console.print(Text.assemble(("skipped", "yellow"), " ",
                                             safe_text(f"{fields.get('path')}: {fields.get('reason')}")))
        elif kind == SandboxRestart.kind:
            self.action = "restarting the sandbox"
        elif kind.startswith("limit."):
            self.action = f"limit: {kind.removeprefix('limit.')}"

    def _line(self) -> Text:
        """The status line as Text: the action may hold a file name or a model's words."""
        depth = f" (depth {self.depth})" if self.depth > 1 else ""
        return safe_text(f"iteration {self.iteration}{depth} · {self.action} · {self.subcalls} sub-calls · "
                         f"{self.meter.tokens:,} tokens · {self.meter.cost_text()}")
