"""The live mode's worker: runs the query in a thread and posts each event to the app.

Events are posted, never sent with a blocking call (a closing app would never answer it). Once the
app has closed (``q``, a signal), the next event the run reports raises one error, so the
run stops at its next step and seals its log with that error instead of running on unseen; the
events after it (the run's own error and end) are dropped. ``LiveRun`` remembers which log the run
writes, so the CLI can print its path after the app is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import RLMHostError
from .app import RLMApp, RunEvent
from ...events import RunStart


class LiveRun:
    """What the CLI needs after the app closes: the run's id, its result, and so its log's path."""

    def __init__(self) -> None:
        self.run_id = ""
        self.result: Any = None
        self.stopped = False

    def note(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == RunStart.kind and fields.get("depth", 1) == 1 and not self.run_id:
            self.run_id = str(fields.get("run", ""))

    def log_path(self) -> Path | None:
        """The log this run wrote: from its result, else found by its run id in the audit folder."""
        if self.result is not None and getattr(self.result, "audit_log", None):
            return Path(self.result.audit_log)
        if not self.run_id:
            return None
        from ...settings import audit_dir

        return next(iter(sorted(audit_dir().glob(f"*-{self.run_id}.jsonl"))), None)


def _post(app: RLMApp, message: RunEvent) -> bool:
    """Post from the worker thread without waiting (a closing app never answers a blocking call)."""
    try:
        return app.post_message(message)
    except RuntimeError:  # its event loop is closed
        return False


def run_live(app: RLMApp, start: Callable[[Callable[[str, dict[str, Any]], None]], Any]) -> LiveRun:
    """Start ``start(on_event)`` in a worker thread once the app runs; events become messages."""
    live = LiveRun()

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        live.note(kind, fields)
        if live.stopped:
            return
        if not _post(app, RunEvent({**fields, "kind": kind})):  # the app is gone: stop the run here, once
            live.stopped = True
            raise RLMHostError("the TUI was closed before the run ended")

    def work() -> None:
        try:
            live.result = start(on_event)
        except Exception as exc:  # shown in the UI, the CLI reports it after
            if not live.stopped:
                _post(app, RunEvent({"kind": "run.error", "error": f"{type(exc).__name__}: {exc}"}))

    app.call_later(lambda: app.run_worker(work, thread=True, exclusive=True))
    return live
