"""The sandbox interface the controller talks to, whatever runs the kernel.

Docker is the first backend; a Kubernetes backend (kernel pods under the gVisor
runtime class, a NetworkPolicy denying everything but the controller) fits the
same few methods and the same policy files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

from ..policy import Policy
from ..results import ExecutionResult


class Sandbox(ABC):
    """A kernel behind an isolation boundary, with documents loaded as ``context``."""

    session_id: str
    policy: Policy

    @abstractmethod
    def execute(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run one cell; the model's failures come back as a status, never raised."""

    @abstractmethod
    def interrupt(self) -> None:
        """Ask the running cell to stop (KeyboardInterrupt in the kernel)."""

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

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
