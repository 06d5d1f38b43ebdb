"""SIGTERM and SIGHUP end the TUI cleanly, whatever the app is doing when they arrive.

Unwinding the app with ``sys.exit`` from a signal handler depends on where the handler lands: seen
here, a TUI with no terminal still running 30 s after SIGTERM. So a signal asks the app to exit from
another thread, and if it has not within ``GRACE_S``, the process leaves anyway, after closing every
sandbox it started (a live run's containers are never left behind).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

GRACE_S = 5.0
SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopOnSignal:
    """While active, SIGTERM/SIGHUP stop ``app``; ``code`` is then 128 + the signal's number."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.code = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.code:
            return  # already stopping
        self.code = 128 + signum
        threading.Thread(target=self._ask, name="rlm-tui-stop", daemon=True).start()
        timer = threading.Timer(GRACE_S, _leave, args=(self.code,))
        timer.daemon = True
        timer.start()

    def _ask(self) -> None:
        with contextlib.suppress(Exception):  # the app is not running (yet or any more): the timer ends it
            self.app.call_from_thread(self.app.exit, None, self.code)


def _leave(code: int) -> None:
    """The app did not stop in time: close the sandboxes this process started, then exit."""
    sandboxes = sys.modules.get("rlm_host.sandbox.docker_sandbox")
    if sandboxes is not None:
        sandboxes.close_all()
    os._exit(code)
