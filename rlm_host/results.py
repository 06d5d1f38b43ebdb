"""Results of running model-written code.

The model's failures are data: a cell that raises, times out, runs out of
memory or is killed returns an ``ExecutionResult`` with a status. Only a broken
host, engine or channel raises (see ``errors.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from .rlm.lm import Completion
    from .sandbox.document import Document

Status = Literal["ok", "error", "timeout", "oom", "killed"]
Stopped = Literal["answer", "final", "max_iterations", "wall_time"]
Role = Literal["root", "sub"]
CHARS_PER_TOKEN = 4  # the documented estimate when no tokenizer is at hand


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


class ModelUsage(BaseModel):
    """Calls, tokens and cost of one model in a run; cost is None when its price is unknown."""

    model: str
    role: Role
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Comparison(BaseModel):
    """What the run cost in tokens against stuffing the whole input into one prompt."""

    input_tokens: int = Field(description="The query and all documents in one prompt (estimated).")
    rlm_tokens: int = Field(description="Prompt and completion tokens of every root and sub call.")
    saved_pct: float = Field(description="100 * (1 - rlm / input); negative when the RLM used more.")
    method: str = Field(description="How input_tokens was counted.")


class Step(BaseModel):
    """One iteration of the loop: the root model's reply and what its cell did."""

    iteration: int
    reply: str
    code: str | None = None
    status: Status | Literal["no_code", "repeated", "unclosed"] = "no_code"
    output: str = ""
    duration_ms: float = 0.0


class Citation(BaseModel):
    """Where the evidence is, as the host states it: enough for an auditor to find it again.

    ``start``/``end`` are offsets in ``context`` (all documents joined); ``local_start``/``local_end``
    are the same span in the document's own text (``local_end`` stops at the document's end), with
    ``line`` (1-based) and ``page`` (1-based, PDFs) of its start. ``text`` is the quote: the host's
    own copy at those offsets, at most 300 characters. ``sha256`` is the file as ingested;
    ``text_sha256`` is the text the offsets index into (the file itself for text, the extracted text
    for a PDF); ``kind`` is the document's type (text, pdf, ...).
    """

    start: int | None = None
    end: int | None = None
    document: str | None = None
    page: int | None = None
    text: str | None = None
    local_start: int | None = None
    local_end: int | None = None
    line: int | None = None
    sha256: str | None = None
    text_sha256: str | None = None
    kind: str | None = None


class RLMResult(BaseModel):
    """The outcome of one query: the answer, how it was reached, and what it cost."""

    run_id: str
    query: str
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    stopped: Stopped
    fallback: bool = Field(description="The answer comes from the last-resort call, not from answer().")
    iterations: int
    usage: list[ModelUsage]
    cost_usd: float | None
    comparison: Comparison
    subcalls: dict[str, Any] = Field(default_factory=dict)
    trajectory: list[Step] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    audit_log: str | None = None
    duration_s: float = 0.0


def usage_of(calls: list[Completion], role: Role) -> list[ModelUsage]:
    """Calls, tokens and cost per model, in the order the models were first called."""
    by_model: dict[str, ModelUsage] = {}
    for call in calls:
        usage = by_model.setdefault(call.model, ModelUsage(model=call.model, role=role))
        usage.calls += 1
        usage.prompt_tokens += call.usage.prompt_tokens
        usage.completion_tokens += call.usage.completion_tokens
        usage.cost_usd = None if usage.cost_usd is None or call.cost_usd is None else usage.cost_usd + call.cost_usd
    return list(by_model.values())


def compare(query: str, documents: list[Document], usage: list[ModelUsage]) -> Comparison:
    """The run's tokens against the estimate for the query and every document in one prompt."""
    chars = len(query) + sum(doc.chars if doc.chars is not None else doc.text_path.stat().st_size for doc in documents)
    stuffed = max(1, chars // CHARS_PER_TOKEN)
    used = sum(u.total_tokens for u in usage)
    return Comparison(input_tokens=stuffed, rlm_tokens=used, saved_pct=round(100 * (1 - used / stuffed), 1),
                      method=f"estimate: {CHARS_PER_TOKEN} characters per token")
