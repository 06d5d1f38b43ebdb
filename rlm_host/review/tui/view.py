"""What the TUI shows for each step of a run: pure data, no Textual, no Docker.

A step is one audit event: a one-line row for the timeline, a detail text for the pane beside it,
and the run's status as of that step (iteration, tokens, cost, sandbox, the paper's notes), so the
meter and the notes follow whichever step is selected. Events come from an audit log, whose text a
model, a cell or a document wrote: every string here is made visible by ``sanitize`` (Textual gets
it as ``Text``, never markup), and an event whose fields are missing or of the wrong type is shown
as unreadable rather than stopping the replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ...events import Meter
from ..formats import short
from ...sanitize import visible
from .annotations import annotate
from .detail import detail
from ...events import ExecStart, IterationStart, RootReply, RunEnd, RunError, RunStart, SandboxRestart, Seal, Subcall

BAD_FIELDS = (TypeError, ValueError, KeyError, AttributeError, OverflowError)


@dataclass(frozen=True)
class Status:
    """The run as of one step: what the meter and the paper pane show while that step is selected."""

    iteration: int = 0
    tokens: int = 0
    cost: str = "unknown"
    runtime: str = "-"
    limits: str = "-"
    restarts: int = 0
    status: str = "waiting"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One event of the run as the TUI shows it; the detail is rendered when asked (it can be long)."""

    index: int
    kind: str
    row: str
    status: Status
    event: dict[str, Any] = field(repr=False)
    starts_iteration: bool = False

    def detail(self, *, full: bool = False) -> str:
        return detail(self.event, full=full)


class Timeline:
    """The steps so far; ``add`` takes the next event (from a log, or live as the run goes)."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._meter = Meter()
        self._status = Status()

    def add(self, event: object) -> Step:
        event = event if isinstance(event, dict) else {"kind": "?", "value": event}
        try:
            step = self._step(event)
        except BAD_FIELDS:
            step = Step(len(self.steps), "?", f"· {short(_kind(event), 60)} (unreadable event: fields of the "
                        "wrong type)", self._status, event)
        self.steps.append(step)
        return step

    def _step(self, event: dict[str, Any]) -> Step:
        kind = _kind(event)
        row = _row(event)  # first: a bad event changes nothing
        status = _advance(self._status, event)
        if kind in {RootReply.kind, Subcall.kind}:
            meter = replace(self._meter)
            meter.add(event)
            self._meter = meter
        self._status = replace(status, tokens=self._meter.tokens, cost=self._meter.cost_text("unknown"))
        top = kind == IterationStart.kind and _depth(event) == 1
        return Step(len(self.steps), kind, row, self._status, event, starts_iteration=top)


@dataclass
class View:
    """Every step of a list of events (``lines``: each step's row and full detail, what `f` shows)."""

    steps: list[Step]

    @property
    def lines(self) -> list[str]:
        return [f"{s.row}\n{s.detail(full=True)}" for s in self.steps]


def build(events: list[Any]) -> View:
    timeline = Timeline()
    for event in events:
        timeline.add(event)
    return View(timeline.steps)


def _kind(event: object) -> str:
    return str(event.get("kind", "?")) if isinstance(event, dict) else "?"


def _depth(event: dict[str, Any]) -> int:
    depth = event.get("depth", 1)
    return depth if isinstance(depth, int) else 1


def _advance(status: Status, event: dict[str, Any]) -> Status:
    """The status after ``event``: a new iteration, the sandbox's limits, the run's end, the paper's notes."""
    kind, notes = _kind(event), annotate(event)
    if notes:
        status = replace(status, notes=tuple(visible(n) for n in notes))
    if kind == IterationStart.kind and _depth(event) == 1:
        return replace(status, iteration=int(event.get("iteration", status.iteration)))
    if kind in {RunStart.kind, ExecStart.kind}:
        return replace(status, runtime=visible(event.get("runtime", "-")), limits=_limits(event), status="running")
    if kind == SandboxRestart.kind:
        return replace(status, restarts=status.restarts + 1)
    if kind == RunError.kind:
        return replace(status, status="failed")
    if (kind == RunEnd.kind and _depth(event) == 1) or kind == Seal.kind:
        ended = "failed" if status.status.startswith("failed") else "finished"
        return replace(status, status=ended + _reason(event))
    return status


def _reason(event: dict[str, Any]) -> str:
    """The seal's reason (answered, interrupted, lm_error ...), when the log records one."""
    reason = event.get("reason") if event.get("kind") == Seal.kind else None
    return f" ({short(reason, 30)})" if reason else ""


def _limits(event: dict[str, Any]) -> str:
    limits = event.get("limits") or {}
    return visible(f"{limits.get('memory_mb', '?')} MB, {limits.get('cpus', '?')} CPU, "
                   f"{limits.get('cell_timeout_s', '?')} s/cell")


def _iteration_row(event: dict[str, Any]) -> str:
    depth = "" if _depth(event) == 1 else f" (depth {short(event.get('depth'))})"
    return f"── iteration {short(event.get('iteration'))} ──{depth}"


def _cell_row(event: dict[str, Any]) -> str:
    code = event.get("code")
    first = str(code).strip().split("\n", 1)[0] if code else "(code hidden at this audit level)"
    return f"▷ cell {short(event.get('status'), 20)}: {short(first, 100)}"


ROWS: dict[str, Callable[[dict[str, Any]], str]] = {
    "iteration.start": _iteration_row,
    "cell": _cell_row,
    "subcall": lambda e: (f"↳ llm_query → {short(e.get('model'), 40)}: {short(e.get('prompt_chars'))} chars in, "
                          f"{short(e.get('reply_chars'))} out"),
    "answer": lambda e: f"✔ answer: {short(e.get('answer', '(hidden)'), 100)}",
    "root": lambda e: f"◆ root model replied ({short(e.get('completion_tokens'))} tokens)",
    "document": lambda e: f"· document {short(e.get('name'), 60)} ({short(e.get('size'))} bytes)",
    "run.error": lambda e: f"✘ run failed: {short(e.get('error'), 100)}",
    "run.end": lambda e: f"■ run ended ({short(e.get('stopped'), 30)}): {short(e.get('answer', ''), 80)}",
    "seal": lambda e: "· seal" + (f" ({short(e['reason'], 40)})" if "reason" in e else ""),
}


def _row(event: dict[str, Any]) -> str:
    """The step's one line in the timeline, every hostile part made visible."""
    kind = _kind(event)
    if kind in ROWS:
        return ROWS[kind](event)
    if kind.startswith("limit.") or kind.endswith((".denied", ".refused", ".rejected")):
        return f"⚠ {short(kind, 60)}"
    return f"· {short(kind, 60)}"
