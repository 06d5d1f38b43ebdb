"""Results of running model-written code.

The model's failures are data: a cell that raises, times out, runs out of
memory or is killed returns an ``ExecutionResult`` with a status. Only a broken
host, engine or channel raises (see ``errors.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["ok", "error", "timeout", "oom", "killed"]


class CellError(BaseModel):
    """The exception a cell raised, as the kernel reported it."""

    name: str
    value: str
    traceback: list[str] = Field(default_factory=list)


class ExecutionResult(BaseModel):
    """What one cell did.

    ``restarted`` says the sandbox was replaced after this cell (variables lost);
    ``reason`` explains a non-ok status in words a model or operator can act on.
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: CellError | None = None
    duration_ms: float = 0.0
    truncated: bool = False
    restarted: bool = False
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"
