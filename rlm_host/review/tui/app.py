"""The Textual app. It only displays: events come in as messages, from a replay or a live worker.

The timeline is a ``DataTable`` (one row a step, scrolled by Textual and following the cursor);
the selected step's detail, the paper's notes and the meter follow the cursor. Everything from the
log reaches a widget as ``Text`` built by ``sanitize``, never as markup.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static

from ...sanitize import safe_text, visible
from .view import Status, Step, Timeline


class RunEvent(Message):
    """One event of a run, posted by the live worker."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event


class StepTable(DataTable):
    """The timeline: Home and End go to the first and the last step (DataTable's own scroll sideways)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("end", "last", "last"),
                                             Binding("home", "first", "first", show=False)]

    def action_last(self) -> None:
        self.move_cursor(row=self.row_count - 1)

    def action_first(self) -> None:
        self.move_cursor(row=0)


class RLMApp(App):
    """Step through a run: the timeline on top; below, the step's detail, the paper and the meter."""

    CSS = """
    #meter { height: auto; max-height: 3; padding: 0 1; background: $panel; }
    #timeline { height: 1fr; border: round $primary; }
    #lower { height: 1fr; }
    #detail-pane { width: 3fr; border: round $accent; padding: 0 1; }
    #notes { width: 2fr; min-width: 24; height: 100%; border: round $success; padding: 0 1; }
    #search { dock: bottom; display: none; }
    #search.open { display: block; }
    """
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("n", "step(1)", "next"), Binding("p", "step(-1)", "prev"),
                Binding("right_square_bracket", "iteration(1)", "iter+", key_display="]"),
                Binding("left_square_bracket", "iteration(-1)", "iter-", key_display="["),
                Binding("slash", "search", "search", key_display="/"), Binding("f", "full", "full"),
                Binding("space", "play", "play", show=False), Binding("q", "quit", "quit")]

    def __init__(self, events: list[dict[str, Any]] | None = None, *, live: bool = False, title: str = "") -> None:
        super().__init__()
        self.timeline = Timeline()
        self.events: list[dict[str, Any]] = list(events or [])
        self.live = live
        self.playing = False
        self.full = False
        self.run_title = visible(title)  # a query or a file name
        self.failure = ""
        self.query_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="meter", markup=False)
        yield StepTable(id="timeline", cursor_type="row", show_header=False, zebra_stripes=True)
        with Horizontal(id="lower"):
            with VerticalScroll(id="detail-pane"):
                yield Static(id="detail", markup=False)
            yield Static(id="notes", markup=False)
        yield Input(id="search", placeholder="search the steps; Enter: next match, Esc: close")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "rlm-host" + (f" · {self.run_title}" if self.run_title else "")
        self.sub_title = "live" if self.live else "replay"
        self.query_one("#detail-pane").border_title = "step"
        self.query_one("#notes").border_title = "The paper"
        table = self.table
        table.add_columns("step", "iter", "event")
        for event in self.events:
            self._add(event)
        self.set_interval(0.6, self._tick)
        table.focus()
        self.show(0)

    @property
    def table(self) -> StepTable:
        return self.query_one("#timeline", StepTable)

    @property
    def steps(self) -> list[Step]:
        return self.timeline.steps

    @property
    def selected(self) -> int:
        return self.table.cursor_row

    def _add(self, event: dict[str, Any]) -> None:
        step = self.timeline.add(event)
        self.table.add_row(Text(str(step.index + 1), style="dim"), Text(str(step.status.iteration or ""), style="dim"),
                           Text(step.row), key=str(step.index))

    def on_run_event(self, message: RunEvent) -> None:
        following = self.selected >= len(self.steps) - 1
        self.events.append(message.event)
        self._add(message.event)
        if following:
            self.table.move_cursor(row=len(self.steps) - 1)

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        self.show(message.cursor_row)

    def show(self, index: int) -> None:
        """Fill the detail, the notes and the meter for step ``index``."""
        if not self.steps:
            self.query_one("#detail", Static).update(Text("(no events yet)" if self.live else "(no events)"))
            self.query_one("#meter", Static).update(_meter(Status(), 0, 0))
            return
        step = self.steps[max(0, min(index, len(self.steps) - 1))]
        self.query_one("#detail-pane").border_title = f"step {step.index + 1}" + (" · full" if self.full else "")
        self.query_one("#detail", Static).update(safe_text(step.detail(full=self.full), newlines=True))
        self.query_one("#notes", Static).update(safe_text("\n".join(step.status.notes or ("—",)), newlines=True))
        self.query_one("#meter", Static).update(_meter(step.status, step.index + 1, len(self.steps)))

    def action_step(self, delta: int) -> None:
        self.table.move_cursor(row=max(0, min(len(self.steps) - 1, self.selected + delta)))

    def action_iteration(self, delta: int) -> None:
        """The start of the next (or previous) top-level iteration; the first or last step past either end."""
        starts = [s.index for s in self.steps if s.starts_iteration]
        here = self.selected
        later = [i for i in starts if i > here] if delta > 0 else [i for i in starts if i < here]
        target = (later[0] if delta > 0 else later[-1]) if later else (len(self.steps) - 1 if delta > 0 else 0)
        self.table.move_cursor(row=target)

    def action_full(self) -> None:
        self.full = not self.full
        self.show(self.selected)

    def action_play(self) -> None:  # not action_toggle: DOMNode has one, toggling an attribute
        self.playing = not self.playing

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("open")
        box.value = self.query_text
        box.focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        self.query_text = message.value
        found = self.find(message.value, self.selected + 1)
        if found is None:
            self.notify(f"no step matches {visible(message.value)[:60]!r}", severity="warning", markup=False)
        else:
            self.table.move_cursor(row=found)

    def on_key(self, event: Any) -> None:
        if event.key == "escape" and self.query_one("#search", Input).has_class("open"):
            self.query_one("#search", Input).remove_class("open")
            self.table.focus()

    def find(self, text: str, start: int) -> int | None:
        """The first step from ``start`` (wrapping around) whose row or full detail holds ``text``."""
        needle = visible(text).casefold()
        if not needle or not self.steps:
            return None
        order = [*range(start, len(self.steps)), *range(0, min(start, len(self.steps)))]
        return next((i for i in order if needle in f"{self.steps[i].row}\n{self.steps[i].detail(full=True)}"
                     .casefold()), None)

    def _tick(self) -> None:
        if self.playing and self.selected < len(self.steps) - 1:
            self.action_step(1)

    def _fatal_error(self) -> None:
        """Textual's end for an unhandled error: keep one line for the CLI, not a traceback of hostile locals."""
        error = self._exception
        self.failure = visible(f"{type(error).__name__}: {error}" if error else "unknown error")
        self._close_messages_no_wait()


def _meter(status: Status, step: int, total: int) -> Text:
    """The run as of the selected step, in two lines at 80 columns."""
    run = visible(f"{status.status} · step {step}/{total} · iteration {status.iteration} · "
                  f"tokens {status.tokens:,} · cost {status.cost}")
    sandbox = visible(f"{status.runtime} · {status.limits} · restarts {status.restarts}")
    return Text.assemble(("Run ", "bold"), run, ("  Sandbox ", "bold"), sandbox)
