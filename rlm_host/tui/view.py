"""What the TUI shows after the first N events: pure data, no Textual, no Docker.

Events come from an audit log, whose text fields a model, a cell or a document wrote: every line
here is made visible by ``sanitize`` (Textual gets it as ``Text``, never markup), and an event whose
fields are missing or of the wrong type is shown as unreadable rather than stopping the replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..events import Meter
from ..report_text import _short
from ..sanitize import visible
from .annotations import annotate

CODE_CHARS = 4000  # a cell's code shown in the timeline (the report and the log keep all of it)


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
        shown = len(view.lines)
        try:
            _apply(view, event if isinstance(event, dict) else {"kind": "?"})
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
            del view.lines[shown:]
            view.lines.append(f"· {_short(_kind(event), 60)} (unreadable event: fields of the wrong type)")
    return view


def _kind(event: object) -> str:
    return str(event.get("kind", "?")) if isinstance(event, dict) else "?"


def _apply(view: View, event: dict[str, Any]) -> None:
    kind = _kind(event)
    line = _line(event)  # first: a bad event changes nothing
    notes = annotate(event)
    if kind in {"root", "subcall"}:
        view.meter.add(event)
    view.lines.append(line)
    if notes:
        view.notes = [visible(n) for n in notes]
    if kind == "iteration.start":
        view.iteration = int(event.get("iteration", view.iteration))
    elif kind in {"run.start", "exec.start"}:
        view.runtime = visible(event.get("runtime", "-"))
        limits = event.get("limits") or {}
        view.limits = visible(f"{limits.get('memory_mb', '?')} MB, {limits.get('cpus', '?')} CPU, "
                              f"{limits.get('cell_timeout_s', '?')} s/cell")
        view.status = "running"
    elif kind == "sandbox.restart":
        view.restarts += 1
    elif kind in {"run.end", "seal"}:
        view.status = "finished"
    elif kind == "run.error":
        view.status = "failed"


def _line(event: dict[str, Any]) -> str:
    """One step of the timeline, every hostile part made visible (code keeps its line breaks)."""
    kind = _kind(event)
    if kind == "iteration.start":
        return f"── iteration {_short(event.get('iteration'))} ──"
    if kind == "cell":
        code = event.get("code") or "(code hidden at this audit level)"
        out = f"{event.get('stdout') or ''}{event.get('stderr') or ''}"
        code = visible(str(code)[:CODE_CHARS], newlines=True)
        return f"▷ cell {_short(event.get('status'))}:\n{code}\n→ {_short(out, 300) or '(no output)'}"
    if kind == "subcall":
        return (f"↳ llm_query → {_short(event.get('model'))}: {_short(event.get('prompt_chars'))} chars in, "
                f"{_short(event.get('reply_chars'))} out")
    if kind == "answer":
        return f"✔ answer: {_short(event.get('answer', '(hidden)'), 200)}"
    if kind == "root":
        return f"◆ root model replied ({_short(event.get('completion_tokens'))} tokens)"
    return f"· {_short(kind)}"
