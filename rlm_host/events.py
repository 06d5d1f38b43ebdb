"""Events: what every part reports, for the trajectory now and the audit log later.

A hook is any callable taking an event kind (dotted, e.g. ``subcall.denied``) and
a dict of JSON-friendly fields. Parts take a hook and never know where events go.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from .results import ExecutionResult
    from .sandbox.document import Document

EventHook = Callable[[str, dict[str, Any]], None]
Say = Callable[[str], None]  # hears one line of progress for the user (fetching, building, skipping a file)


def null_hook(_kind: str, _fields: dict[str, Any]) -> None:
    """A hook that drops events."""


def fan_out(*hooks: EventHook | None) -> EventHook:
    """One hook that hands each event to every hook given (``None`` is skipped), in order."""
    chosen = [hook for hook in hooks if hook is not None]
    if len(chosen) == 1:
        return chosen[0]

    def each(kind: str, fields: dict[str, Any]) -> None:
        for hook in chosen:
            hook(kind, fields)
    return each


@dataclass
class Recorder:
    """Keeps events in order (thread-safe) and forwards them to further hooks."""

    forward: list[EventHook] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.events.append({"t": round(time.time(), 6), **fields, "kind": kind})  # kind cannot be overwritten
        for hook in self.forward:
            hook(kind, fields)

    def of(self, prefix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["kind"].startswith(prefix)]


@dataclass
class Meter:
    """Tokens and cost so far, from root and sub-call events (the status line and the TUI)."""

    tokens: int = 0
    cost: float = 0.0
    cost_known: bool = True

    def add(self, fields: dict[str, Any]) -> None:
        self.tokens += int(fields.get("prompt_tokens") or 0) + int(fields.get("completion_tokens") or 0)
        cost = fields.get("cost_usd")
        self.cost_known = self.cost_known and cost is not None
        self.cost += cost or 0.0

    def cost_text(self, unknown: str = "cost unknown") -> str:
        return f"${self.cost:.4f}" if self.cost_known else unknown


# -- the catalogue: every kind an audit log can hold, declared once -------------------------------
#
# Each kind is a frozen dataclass: its fields, in the order they are written, and a docstring whose
# first line says when it happens. Producers build one and send it (``Kind(...).to(hook)``); readers
# match on ``Kind.kind``. The audit log is a file format: tests/test_events.py pins every kind's field
# names, and docs/audit.md's table of kinds is generated from this list (scripts/event_catalogue.py).

CATALOGUE: dict[str, type[Event]] = {}


class Event:
    """Base of the catalogue's kinds."""

    kind: ClassVar[str]
    producer: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        """The event's fields, in declaration order (shallow: nested records stay as they are)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to(self, hook: EventHook) -> None:
        """Send this event to ``hook``."""
        hook(self.kind, self.fields())


E = TypeVar("E", bound=Event)


def declared(kind: str, producer: str) -> Callable[[type[E]], type[E]]:
    """Register a kind (a frozen dataclass) under its name, once."""
    def register(cls: type[E]) -> type[E]:
        if kind in CATALOGUE:
            raise ValueError(f"event kind {kind!r} is declared twice")
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"event kind {kind!r} must be a frozen dataclass")
        cls.kind, cls.producer = kind, producer
        CATALOGUE[kind] = cls
        return cls
    return register


@declared("progress", "rlm/loop.py, cli.py")
@dataclass(frozen=True)
class ProgressNote(Event):
    """A line of progress worth keeping (ingestion, long steps)."""

    message: str


@declared("document", "rlm/loop.py")
@dataclass(frozen=True)
class DocumentLoaded(Event):
    """A document was ingested and staged: the original's size and hash, the staged text's size, hash, characters."""

    name: str
    type: str
    size: int | None
    sha256: str
    text_bytes: int | None
    text_sha256: str
    chars: int | None
    pages: int
    source: str | None = None  # the path it was read from (absolute), where `audit cite` looks for it again

    @classmethod
    def of(cls, doc: Document) -> DocumentLoaded:
        """The event of a staged document."""
        return cls(name=doc.name, type=doc.kind, size=doc.size, sha256=doc.sha256, text_bytes=doc.text_bytes,
                   text_sha256=doc.text_sha256, chars=doc.chars, pages=len(doc.pages),
                   source=os.path.abspath(doc.source) if doc.source is not None else None)


@declared("document.skipped", "rlm/loop.py")
@dataclass(frozen=True)
class DocumentSkipped(Event):
    """A file inside a folder was not used, and why."""

    path: str
    reason: str


@declared("run.start", "rlm/loop.py")
@dataclass(frozen=True)
class RunStart(Event):
    """A root (depth 1) or child run begins: its query, models, policy and limits.

    A run on the embedded model adds ``local_model`` (name and sha256 of each model) and ``quality``.
    """

    run: str
    depth: int
    query: str
    model: str
    sub_model: str
    policy: str
    policy_sha256: str
    runtime: str
    audit_level: str
    host_version: str
    limits: dict[str, Any]
    subcall_budget: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        fields = super().fields()
        info = fields.pop("info")
        return {**fields, **{name: value for name, value in info.items() if name not in fields}}


@declared("iteration.start", "rlm/loop.py")
@dataclass(frozen=True)
class IterationStart(Event):
    """The root model is asked for its next turn."""

    iteration: int
    depth: int


@declared("root", "rlm/loop.py")
@dataclass(frozen=True)
class RootReply(Event):
    """The root model replied: the last prompt message, the reply, tokens, cost, latency, retries."""

    model: str
    prompt: str
    response: str
    messages: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    retries: int
    depth: int


@declared("cell", "rlm/loop.py, oneshot.py")
@dataclass(frozen=True)
class Cell(Event):
    """A cell ran in the sandbox: its code (and hash), what it printed and returned, its status and why."""

    iteration: int
    depth: int
    status: str
    code: str
    code_sha256: str
    stdout: str
    stderr: str
    result: str
    error: str | None
    reason: str | None
    chars: int
    duration_ms: float
    truncated: bool
    restarted: bool

    @classmethod
    def of(cls, code: str, result: ExecutionResult, *, iteration: int, depth: int, chars: int) -> Cell:
        """The event of ``code`` and its result; ``chars`` is how much of its output the model was shown."""
        return cls(iteration=iteration, depth=depth, status=result.status, code=code,
                   code_sha256=hashlib.sha256(code.encode()).hexdigest(), stdout=result.stdout, stderr=result.stderr,
                   result=result.result or "", error=result.error.name if result.error else None,
                   reason=result.reason, chars=chars, duration_ms=result.duration_ms, truncated=result.truncated,
                   restarted=result.restarted)


@declared("kernel.rebind_refused", "rlm/loop.py")
@dataclass(frozen=True)
class RebindRefused(Event):
    """The cell tried to rebind a protected name (``context``, ``llm_query``, ...); the kernel refused."""

    iteration: int
    message: str


@declared("subcall", "rlm/subcalls.py")
@dataclass(frozen=True)
class Subcall(Event):
    """An ``llm_query`` was answered: prompt, reply, their sizes, tokens, cost, latency, retries.

    ``prompt`` is what left the host (after the policy's egress redaction); ``endpoint`` is where it
    went (no credentials, no query string) and ``redacted`` counts the placeholders put in by kind
    (``email``, ``iban``, ``card``, ``regex:<name>``), never the values.
    """

    model: str
    prompt: str
    response: str
    prompt_chars: int
    reply_chars: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    retries: int
    depth: int
    endpoint: str = ""
    redacted: dict[str, int] = field(default_factory=dict)


@declared("subcall.egress_refused", "rlm/subcalls.py")
@dataclass(frozen=True)
class EgressRefused(Event):
    """A sub-call prompt matched a policy egress rule whose action is ``refuse``; nothing was sent and
    the cell got an error.

    ``refused_by`` names the rule (``email``, ``iban``, ``card``, ``regex:<name>``; ``size`` or
    ``regex:<name> timed out`` when the prompt could not be screened); ``found`` counts what was
    found by kind, never the values; ``endpoint`` and ``model`` are where it would have gone.
    """

    refused_by: str
    found: dict[str, int]
    endpoint: str
    model: str
    depth: int


@declared("subcall.denied", "rlm/broker.py")
@dataclass(frozen=True)
class SubcallDenied(Event):
    """A sub-call was refused by the budget (calls, tokens, cost, prompt size); the cell got an error."""

    reason: str


@declared("subcall.failed", "rlm/broker.py")
@dataclass(frozen=True)
class SubcallFailed(Event):
    """The model endpoint failed a sub-call; the cell got an error."""

    error: str


@declared("subcall.depth_fallback", "rlm/subcalls.py")
@dataclass(frozen=True)
class DepthFallback(Event):
    """``rlm_query`` at the depth limit was served as an ``llm_query``."""

    depth: int
    max_depth: int


@declared("subcall.child_rlm", "rlm/subcalls.py")
@dataclass(frozen=True)
class ChildRLM(Event):
    """``rlm_query`` started a child RLM in a sandbox of its own."""

    depth: int
    text_chars: int


@declared("answer", "rlm/subcalls.py")
@dataclass(frozen=True)
class AnswerGiven(Event):
    """The cell called ``answer(...)`` and the host accepted it: the text, the citations as the host resolved them.

    Each citation holds its document, context and document-local offsets, line, page, the document's
    hashes and type (``results.Citation``); ``evidence`` holds their quotes, in order (a text field, so
    the audit level decides whether it is kept); ``depth`` is the run's (1: the top run).
    """

    answer: str
    chars: int
    citations: list[dict[str, Any]]
    evidence: list[str] = field(default_factory=list)
    depth: int = 1


@declared("rpc.connection_refused", "rlm/broker.py")
@dataclass(frozen=True)
class ConnectionRefused(Event):
    """The broker refused a connection from the kernel (too many at once)."""

    reason: str


@declared("rpc.frame_rejected", "rlm/broker.py")
@dataclass(frozen=True)
class FrameRejected(Event):
    """A frame from the kernel was refused (too big, not JSON, not a known request); the connection ends."""

    code: str
    message: str


@declared("rpc.internal_error", "rlm/broker.py")
@dataclass(frozen=True)
class InternalError(Event):
    """Serving a request failed on the host; the cell got an error and the broker goes on."""

    error: str


@declared("sandbox.start", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class SandboxStart(Event):
    """A sandbox is ready: container, runtime, image (name, id, content hash), session, queue and boot time."""

    container: str
    runtime: str
    image: str
    image_id: str
    image_content_hash: str | None
    session: str
    queued_ms: float
    boot_ms: float


@declared("sandbox.start_refused", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class SandboxStartRefused(Event):
    """A started container failed the fail-closed check and was removed before any code ran."""

    error: str


@declared("sandbox.restart", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class SandboxRestart(Event):
    """The kernel was replaced (timeout, OOM, death, pids limit or descriptors exhausted); variables are lost."""

    reason: str


@declared("sandbox.stop", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class SandboxStop(Event):
    """The sandbox was closed and its container removed."""

    restarts: int


@declared("sandbox.remove_failed", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class SandboxRemoveFailed(Event):
    """Removing a container failed after every retry (it is labelled: ``rlm-host doctor --reap``)."""

    container: str
    error: str


@declared("limit.cell_timeout", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class CellTimeout(Event):
    """A cell ran past its time limit and was interrupted."""

    limit_s: float


@declared("limit.session_lifetime", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class SessionLifetime(Event):
    """The session's lifetime ran out during a cell; the session was closed."""

    limit_s: float


@declared("limit.pids", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class PidsLimit(Event):
    """The cell hit the process limit; the kernel was restarted."""

    limit: int


@declared("limit.nofile", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class DescriptorsExhausted(Event):
    """After a cell, the kernel could not open ``needed`` descriptors (its probe failed); it was restarted."""

    limit: int
    needed: int


@declared("limit.oom", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class OutOfMemory(Event):
    """The kernel ran out of memory and was killed; it was restarted."""

    exit_code: int | None


@declared("limit.killed", "sandbox/docker_sandbox.py")
@dataclass(frozen=True)
class KernelDied(Event):
    """The kernel died for another reason; it was restarted."""

    exit_code: int | None


@declared("limit.max_iterations", "rlm/loop.py")
@dataclass(frozen=True)
class MaxIterations(Event):
    """The root model used every turn without answering: it is asked for a last-resort answer."""

    iterations: int


@declared("limit.wall_time", "rlm/loop.py")
@dataclass(frozen=True)
class WallTime(Event):
    """The run's wall-clock limit passed: the root model is asked for a last-resort answer."""

    iterations: int


@declared("run.end", "rlm/loop.py")
@dataclass(frozen=True)
class RunEnd(Event):
    """A run finished: how it stopped, the answer, citations and quoted evidence, usage, cost, comparison."""

    run: str
    depth: int
    stopped: str
    iterations: int
    answer: str
    fallback: bool
    citations: list[dict[str, Any]]
    evidence: list[str]
    usage: list[dict[str, Any]]
    cost_usd: float | None
    comparison: dict[str, Any]
    subcalls: dict[str, Any]
    passages: list[dict[str, str]] = field(default_factory=list)  # text before and after each citation's quote


@declared("run.error", "rlm/loop.py")
@dataclass(frozen=True)
class RunError(Event):
    """The run failed (the model endpoint, the sandbox, the host): the exception's type and message."""

    error: str


@declared("exec.start", "oneshot.py")
@dataclass(frozen=True)
class ExecStart(Event):
    """``rlm-host exec`` begins: the policy, limits and each document's name, hashes, size and characters."""

    policy: str
    policy_sha256: str
    runtime: str
    host_version: str
    limits: dict[str, Any]
    documents: list[dict[str, Any]]


@declared("exec.error", "oneshot.py")
@dataclass(frozen=True)
class ExecError(Event):
    """``rlm-host exec`` failed: the exception's type and message."""

    error: str


@declared("seal", "audit.py")
@dataclass(frozen=True)
class Seal(Event):
    """The last line of a log: how many lines it has and why the run ended (its hash is also written beside the log).

    ``reason`` is one of ``audit.SEAL_REASONS`` (docs/audit.md, "How a run ends"); logs written before
    it existed have none.
    """

    lines: int
    reason: str


@declared("checkpoint", "audit.py")
@dataclass(frozen=True)
class Checkpoint(Event):
    """Every N events or T seconds (policy ``checkpoints``), when the host has a signing key: the lines so far, signed.

    ``note`` is a C2SP signed-note checkpoint (origin, ``size``, the keyless chain head, then
    ``— <key name> <signature>``) by ``key`` (``<name>+<key hash>``); docs/audit.md, "Signed checkpoints".
    """

    size: int
    key: str
    note: str
