"""What the TUI shows after the first N events: pure data, no Textual, no Docker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..events import Meter
from ..report_text import _short
from .annotations import annotate


@dataclass
class View:
    """The timeline lines, the latest annotations, and the meters, after ``shown`` events."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meter: Meter = field(default_factory=Meter)
    iteration: int = 0
    runtime: str = "-"
    limits: str = "-"
    restarts: int = 0
    status: str = "waiting"


def build(events: list[dict[str, Any]]) -> View:
    view = View()
    for event in events:
        _apply(view, event)
    return view


def _apply(view: View, event: dict[str, Any]) -> None:
    kind = event.get("kind", "?")
    notes = annotate(event)
    if notes:
        view.notes = notes
    view.lines.append(_line(event))
    if kind in {"root", "subcall"}:
        view.meter.add(event)
    elif kind == "iteration.start":
        view.iteration = event.get("iteration", view.iteration)
    elif kind in {"run.start", "exec.start"}:
        view.runtime = event.get("runtime", "-")
        limits = event.get("limits") or {}
        view.limits = (f"{limits.get('memory_mb', '?')} MB, {limits.get('cpus', '?')} CPU, "
                       f"{limits.get('cell_timeout_s', '?')} s/cell")
        view.status = "running"
    elif kind == "sandbox.restart":
        view.restarts += 1
    elif kind in {"run.end", "seal"}:
        view.status = "finished"
    elif kind == "run.error":
        view.status = "failed"


def _line(event: dict[str, Any]) -> str:
    kind = event.get("kind", "?")
    if kind == "iteration.start":
        return f"── iteration {event.get('iteration')} ──"
    if kind == "cell":
        code = event.get("code") or "(code hidden at this audit level)"
        out = (event.get("stdout") or "") + (event.get("stderr") or "")
        return f"▷ cell {event.get('status')}:\n{code}\n→ {_short(out, 300) or '(no output)'}"
    if kind == "subcall":
        return (f"↳ llm_query → {event.get('model')}: {event.get('prompt_chars')} chars in, "
                f"{event.get('reply_chars')} out")
    if kind == "answer":
        return f"✔ answer: {_short(event.get('answer', '(hidden)'), 200)}"
    if kind == "root":
        return f"◆ root model replied ({event.get('completion_tokens')} tokens)"
    return f"· {kind}"
