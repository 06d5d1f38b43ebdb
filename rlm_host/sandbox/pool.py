"""A warm pool of started sandboxes, so a session starts in milliseconds.

Sandboxes are started ahead of need in a background thread, with no documents.
``acquire`` hands one out exactly once (it leaves the pool for good), stages
that session's documents, and asks for a replacement. A pooled sandbox whose
container died while waiting is discarded, never handed out.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import structlog

from ..errors import ConfigError, RLMHostError
from ..policy import Policy
from .docker_sandbox import DockerSandbox
from .document import Document

log = structlog.get_logger(__name__)


class WarmPool:
    """Keeps ``size`` ready sandboxes of one policy."""

    def __init__(self, policy: Policy, size: int = 2, *, image: str | None = None) -> None:
        if size < 1:
            raise ConfigError(f"a warm pool needs size >= 1 (got {size})")
        self.policy = policy
        self.size = size
        self._image = image
        self._ready: deque[DockerSandbox] = deque()
        self._starting = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._fill, name="rlm-host-pool", daemon=True)
        self._thread.start()

    def acquire(self, documents: Iterable[str | Path | Document] = (), *, wait: float = 0.0) -> DockerSandbox:
        """A started sandbox with these documents; starts one cold if none is ready in ``wait`` s."""
        sandbox = self._take(wait)
        if sandbox is None:
            return DockerSandbox.start(self.policy, documents, image=self._image)
        try:
            sandbox.attach_documents(documents)
        except BaseException:
            sandbox.close()
            raise
        return sandbox

    def ready(self) -> int:
        with self._cond:
            return len(self._ready)

    def wait_ready(self, timeout: float) -> bool:
        """Block until the pool is full (for benchmarks and tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ready) >= self.size or self._closed, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        for sandbox in idle:
            sandbox.close()
        self._thread.join(timeout=60)

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, wait: float) -> DockerSandbox | None:
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self._closed, timeout=wait)
            while self._ready:
                sandbox = self._ready.popleft()
                self._cond.notify_all()
                if sandbox.alive():
                    return sandbox
                sandbox.close()
        return None

    def _fill(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or len(self._ready) + self._starting < self.size)
                if self._closed:
                    return
                self._starting += 1
            sandbox = self._start_one()
            with self._cond:
                self._starting -= 1
                if sandbox is not None and not self._closed:
                    self._ready.append(sandbox)
                    sandbox = None
                self._cond.notify_all()
            if sandbox is not None:
                sandbox.close()

    def _start_one(self) -> DockerSandbox | None:
        try:
            return DockerSandbox.start(self.policy, image=self._image)
        except RLMHostError as exc:
            log.warning("warm pool could not start a sandbox", error=str(exc))
            with self._cond:
                self._cond.wait(timeout=5)  # do not spin on a broken engine
            return None
