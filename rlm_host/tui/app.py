"""The Textual app. It only displays: events come in as messages, from a replay or a live worker."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Header, Static

from ..sanitize import safe_text, visible
from .view import View, build


class RunEvent(Message):
    """One event of a run, posted by the live worker."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class RLMApp(App):
    """Step through a run: timeline on the left, the paper and the meters on the right."""

    CSS = """
    #timeline { width: 2fr; border: round $primary; padding: 0 1; overflow-y: auto; }
    #side { width: 1fr; }
    #notes { border: round $success; padding: 0 1; height: auto; min-height: 6; }
    #meter { border: round $warning; padding: 0 1; height: auto; }
    """
    BINDINGS = [Binding("n,right", "step(1)", "next"), Binding("p,left", "step(-1)", "back"),
                Binding("space", "toggle", "play/pause"), Binding("q", "quit", "quit")]

    def __init__(self, events: list[dict[str, Any]] | None = None, *, live: bool = False, title: str = "") -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = list(events or [])
        self.live = live
        self.shown = len(self.events) if live else min(1, len(self.events))
        self.playing = live
        self.run_title = visible(title)  # a query or a file name
        self.failure = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield Static(id="timeline", markup=False)
            with Vertical(id="side"):
                yield Static(id="notes", markup=False)
                yield Static(id="meter", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "rlm-host" + (f" · {self.run_title}" if self.run_title else "")
        self.sub_title = "live" if self.live else "replay: n/→ next, p/← back, space play, q quit"
        self.set_interval(0.6, self._tick)
        self.refresh_view()

    def on_run_event(self, message: RunEvent) -> None:
        self.events.append(message.event)
        self.shown = len(self.events)
        self.refresh_view()

    def action_step(self, delta: int) -> None:
        self.shown = max(1, min(len(self.events), self.shown + delta))
        self.refresh_view()

    def action_toggle(self) -> None:
        self.playing = not self.playing

    def _tick(self) -> None:
        if self.playing and not self.live and self.shown < len(self.events):
            self.action_step(1)

    def _fatal_error(self) -> None:
        """Textual's end for an unhandled error: keep one line for the CLI, not a traceback of hostile locals."""
        error = self._exception
        self.failure = visible(f"{type(error).__name__}: {error}" if error else "unknown error")
        self._close_messages_no_wait()

    def refresh_view(self) -> None:
        """Redraw from the events shown so far; every widget gets Text, never markup."""
        view = build(self.events[: self.shown])
        timeline = "\n".join(view.lines[-60:]) or "(no events yet)"
        self.query_one("#timeline", Static).update(safe_text(timeline, newlines=True))
        notes = "\n".join(view.notes or ["—"])
        self.query_one("#notes", Static).update(Text.assemble(("The paper", "bold"), "\n", safe_text(notes, newlines=True)))
        self.query_one("#meter", Static).update(_meter(view, self.shown, len(self.events)))


def _meter(view: View, shown: int, total: int) -> Text:
    run = visible(f" {view.status} · step {shown}/{total} · iteration {view.iteration}\n"
                  f"tokens {view.meter.tokens:,} · cost {view.meter.cost_text('unknown')}\n", newlines=True)
    sandbox = visible(f" {view.runtime} · {view.limits} · restarts {view.restarts}")
    return Text.assemble(("Run", "bold"), run, ("Sandbox", "bold"), sandbox)
