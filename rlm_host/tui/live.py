"""The live mode's worker: runs the query in a thread and posts each event to the app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .app import RLMApp, RunEvent


def run_live(app: RLMApp, start: Callable[[Callable[[str, dict[str, Any]], None]], Any]) -> None:
    """Start ``start(on_event)`` in a worker thread once the app runs; events become messages."""

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        app.call_from_thread(app.post_message, RunEvent({**fields, "kind": kind}))

    def work() -> None:
        try:
            start(on_event)
        except Exception as exc:  # noqa: BLE001 - shown in the UI, the CLI reports it after
            on_event("run.error", {"error": f"{type(exc).__name__}: {exc}"})

    app.call_later(lambda: app.run_worker(work, thread=True, exclusive=True))
