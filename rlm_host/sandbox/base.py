"""The sandbox interface the controller talks to, whatever runs the kernel.

Docker is the first backend; a Kubernetes backend (kernel pods under the gVisor
runtime class, a NetworkPolicy denying everything but the controller) fits the
same few methods and the same policy files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from ..events import EventHook
from ..policy import Policy
from ..results import ExecutionResult
from .document import Document


class Sandbox(ABC):
    """A kernel behind an isolation boundary, with documents loaded as ``context``."""

    session_id: str
    policy: Policy

    @classmethod
    @abstractmethod
    def start(cls, policy: Policy, documents: Iterable[str | Path | Document] = (), *,
              on_event: EventHook | None = None) -> Self:
        """Start a session under ``policy`` with ``documents`` loaded; it reports to ``on_event``."""

    @abstractmethod
    def attach_documents(self, documents: Iterable[str | Path | Document]) -> None:
        """Give a started (pooled) session its documents."""

    @abstractmethod
    def execute(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run one cell; the model's failures come back as a status, never raised."""

    @abstractmethod
    def restart(self, reason: str) -> None:
        """Replace the kernel with a fresh one and reload the documents (variables lost)."""

    @abstractmethod
    def close(self) -> None:
        """Stop and remove everything the session started. Safe to call twice."""

    @property
    @abstractmethod
    def rpc_socket_path(self) -> Path:
        """Host path of the Unix socket the kernel's RPC calls arrive on."""

    @property
    @abstractmethod
    def rpc_socket_owner(self) -> int:
        """The uid the kernel runs as: the broker accepts connections from this uid only."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class SandboxFactory(Protocol):
    """How the controller gets a sandbox: ``DockerSandbox.start`` by default, or any backend's ``start``."""

    def __call__(self, policy: Policy, documents: Iterable[str | Path | Document] = (), *,
                 on_event: EventHook | None = None) -> Sandbox: ...
