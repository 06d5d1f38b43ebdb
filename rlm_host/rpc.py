"""The host end of the RPC channel: a Unix socket broker and the sub-call budget.

Every byte from the kernel is hostile. A frame is size-checked from its header
before its body is read, must arrive whole within ``FRAME_TIMEOUT_S`` of its
first byte (a slow or stalled writer cannot hold one of the few connections),
is decoded strictly, validated (``wire.py``), checked against the run's budget
and the documents (an answer's citations must point into them) and only then
served. Whatever arrives, the broker answers with an error reply (or closes that
one connection) and records an event; it never crashes and never blocks the run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from .errors import AuditError, LMError
from . import events
from .egress import PromptRefused, Screened, endpoint_label, refusal, screen
from .events import EventHook, null_hook
from .lm import Completion, LMClient
from .policy import Egress, SubcallBudget
from .quotes import Layout
from .results import Citation
from .sandbox.document import Document
from .wire import (HEADER, Answer, CitedSpan, FrameError, LLMQuery, LLMQueryBatched, RLMQuery, decode, encode,
                   error_reply, frame_size, ok_reply, parse_request)

log = structlog.get_logger(__name__)

MAX_CONNECTIONS = 4
FRAME_TIMEOUT_S = 3.0  # from a frame's first byte to its last; the kernel sends a frame in one write
SUBCALL_SYSTEM = ("You answer one question about a piece of a larger document. Use only the text given; "
                  "say so plainly when it does not contain the answer. Be brief and exact.")


class BudgetExceeded(Exception):
    """A sub-call the run's budget does not allow; the message is shown to the model."""


class Budget:
    """The per-run sub-call budget, shared by a run and its child RLMs."""

    def __init__(self, limits: SubcallBudget) -> None:
        self.limits = limits
        self.calls = 0
        self.tokens = 0
        self.cost_usd = 0.0
        self._lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(limits.max_concurrency)

    def admit(self, prompt_sizes: list[int]) -> None:
        """Reserve calls for prompts of these sizes, or refuse them all with the reason."""
        limits = self.limits
        for size in prompt_sizes:
            if size > limits.max_prompt_chars:
                raise BudgetExceeded(f"sub-call prompt of {size:,} characters exceeds the limit of "
                                     f"{limits.max_prompt_chars:,}; send a smaller piece")
        with self._lock:
            if self.calls + len(prompt_sizes) > limits.max_calls:
                raise BudgetExceeded(f"sub-call budget exhausted: {self.calls} of {limits.max_calls} used"
                                     + (f"; this batch needs {len(prompt_sizes)}" if len(prompt_sizes) > 1 else ""))
            if self.tokens >= limits.max_total_tokens:
                raise BudgetExceeded(f"sub-call token budget exhausted: {self.tokens:,} of "
                                     f"{limits.max_total_tokens:,} tokens used")
            if limits.max_cost_usd is not None and self.cost_usd >= limits.max_cost_usd:
                raise BudgetExceeded(f"sub-call cost budget exhausted: ${self.cost_usd:.4f} of "
                                     f"${limits.max_cost_usd:.4f} used")
            self.calls += len(prompt_sizes)

    def record(self, completion: Completion) -> None:
        with self._lock:
            self.tokens += completion.usage.total_tokens
            self.cost_usd += completion.cost_usd or 0.0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": self.calls, "tokens": self.tokens, "cost_usd": round(self.cost_usd, 6)}


class Evidence:
    """What an answer may cite, and what each citation points at, by the host's own layout (``quotes``).

    Offsets must lie inside ``context``; the document and page of an offset citation are the host's
    (a claim that disagrees is refused); a document or page cited alone must exist.
    """

    def __init__(self, documents: Sequence[Document] = ()) -> None:
        self.layout = Layout(documents)
        self.documents = {doc.name: doc for doc in documents}

    def problem(self, citation: CitedSpan) -> str | None:
        """Why ``citation`` points at nothing or contradicts the layout, or None when it holds."""
        start, end = citation.start, citation.end
        if start is None:
            return "a citation with an end needs a start too" if end is not None else self._named_problem(citation)
        if end is not None and end < start:
            return f"end {end} is before start {start}"
        if max(start, end or 0) > self.layout.chars:
            return f"offset {max(start, end or 0)} is past the end of context ({self.layout.chars:,} characters)"
        return self._claim_problem(citation, start)

    def resolve(self, citations: Sequence[CitedSpan]) -> list[Citation]:
        """The citations as the host states them: its own document, page and quote for each."""
        return [self._resolve(c) for c in citations]

    def _resolve(self, citation: CitedSpan) -> Citation:
        if citation.start is None:
            return Citation(document=citation.document, page=citation.page)
        doc = self.layout.locate(citation.start)
        end = citation.start + 1 if citation.end is None or citation.end == citation.start else citation.end
        return Citation(start=citation.start, end=citation.end, document=doc.name if doc else None,
                     page=doc.page_at(citation.start) if doc else None, text=self.layout.quote(citation.start, end))

    def _claim_problem(self, citation: CitedSpan, start: int) -> str | None:
        """A document or page the citation claims for its offsets (from ``start``) that is not where they are."""
        doc = self.layout.locate(start)
        where = (f"offset {citation.start} is in {doc.name!r}" if doc
                 else f"offset {citation.start} is between documents")
        if citation.document is not None and (doc is None or citation.document != doc.name):
            return f"{where}, not in {citation.document[:80]!r}; cite what search() found"
        page = doc.page_at(citation.start) if doc else None
        if citation.page is not None and citation.page != page:
            return f"{where} " + (f"on page {page}" if page else "(no pages)") + f", not on page {citation.page}"
        return None

    def _named_problem(self, citation: CitedSpan) -> str | None:
        """A citation by document (and page) alone: both must exist."""
        if citation.document is None:
            return "a citation needs offsets or a document name" + (" with its page" if citation.page else "")
        doc = self.documents.get(citation.document)
        if doc is None:
            return f"no document named {citation.document[:80]!r}; see `documents` for the names"
        if citation.page is not None and citation.page > len(doc.pages):
            return f"{doc.name!r} has {len(doc.pages) or 'no'} pages, not page {citation.page}"
        return None


ChildRunner = Callable[[str, str, int], str]


class Subcalls:
    """What each op means: sub-model calls under the budget, child RLMs, the answer."""

    def __init__(self, lm: LMClient, model: str, budget: Budget, *, depth: int = 1,
                 child: ChildRunner | None = None, max_tokens: int | None = None,
                 evidence: Evidence | None = None, on_event: EventHook = null_hook,
                 egress: Egress | None = None) -> None:
        self.lm, self.model, self.budget = lm, model, budget
        self.egress, self.endpoint = egress or Egress(), endpoint_label(lm.base_url)
        self.evidence = evidence  # None: citations are not checked (no documents known)
        self.depth = depth
        self.child = child
        self.max_tokens = max_tokens
        self.emit = on_event
        self.answer: Answer | None = None
        self.completions: list[Completion] = []
        self._lock = threading.Lock()

    def dispatch(self, request: LLMQuery | LLMQueryBatched | RLMQuery | Answer) -> Any:
        if isinstance(request, LLMQuery):
            self.budget.admit([len(request.prompt())])
            return self._call(self._screen([request.prompt()])[0])
        if isinstance(request, LLMQueryBatched):
            self.budget.admit([len(item.prompt()) for item in request.items])
            return self._batch(self._screen([item.prompt() for item in request.items]))
        if isinstance(request, RLMQuery):
            return self._rlm(request)
        return self._answer(request)

    def _screen(self, prompts: list[str]) -> list[Screened]:
        """The prompts as they may leave (policy egress rules); a refused one refuses them all, recorded."""
        screened = [screen(prompt, self.egress) for prompt in prompts]
        for one in screened:
            if one.refused_by is not None:
                events.EgressRefused(one.refused_by, one.counts, self.endpoint, self.model, self.depth).to(self.emit)
                raise refusal(one)
        return screened

    def _call(self, prompt: Screened) -> str:
        messages = [{"role": "system", "content": SUBCALL_SYSTEM}, {"role": "user", "content": prompt.text}]
        with self.budget.slots:
            completion = self.lm.complete(messages, model=self.model, max_tokens=self.max_tokens, temperature=0)
        self.budget.record(completion)
        with self._lock:
            self.completions.append(completion)
        events.Subcall(model=completion.model, prompt=prompt.text, response=completion.text,
                       prompt_chars=len(prompt.text), reply_chars=len(completion.text),
                       prompt_tokens=completion.usage.prompt_tokens,
                       completion_tokens=completion.usage.completion_tokens,
                       cost_usd=completion.cost_usd, latency_s=round(completion.latency_s, 4),
                       retries=completion.retries, depth=self.depth, endpoint=self.endpoint,
                       redacted=prompt.counts).to(self.emit)
        return completion.text

    def _batch(self, items: list[Screened]) -> list[str]:
        if not items:
            return []
        workers = min(len(items), self.budget.limits.max_concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rlm-subcall") as pool:
            return list(pool.map(self._call, items))

    def _rlm(self, request: RLMQuery) -> str:
        if self.child is None or self.depth >= self.budget.limits.max_depth:
            events.DepthFallback(self.depth, self.budget.limits.max_depth).to(self.emit)
            self.budget.admit([len(request.prompt())])
            return self._call(self._screen([request.prompt()])[0])
        events.ChildRLM(self.depth + 1, len(request.text)).to(self.emit)
        question = self._screen([request.question])[0].text  # the child's root model sees the question
        return self.child(question, request.text, self.depth + 1)

    def _answer(self, request: Answer) -> str:
        evidence = self.evidence
        for number, citation in enumerate(request.citations):
            if evidence is not None and (problem := evidence.problem(citation)) is not None:
                raise FrameError("bad_citation", f"answer: citation {number}: {problem}; cite what search() found")
        with self._lock:
            self.answer = request
        events.AnswerGiven(request.text, len(request.text),
                           [c.model_dump(exclude_none=True) for c in request.citations]).to(self.emit)
        return "recorded"


class Broker:
    """Serves one session's RPC socket; one thread per connection (a few at most)."""

    def __init__(self, path: Path, subcalls: Subcalls, *, max_frame_bytes: int, uid: int | None = None,
                 on_event: EventHook = null_hook) -> None:
        self.path = path
        self.subcalls = subcalls
        self.max_frame_bytes = max_frame_bytes
        self.uid = uid
        self.emit = on_event
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.rejected = 0

    def start(self) -> Broker:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        if self.uid is not None and os.geteuid() == 0:
            os.chown(self.path, self.uid, self.uid)
        listener.listen(MAX_CONNECTIONS)
        self._listener = listener
        threading.Thread(target=self._accept_loop, name="rlm-rpc-accept", daemon=True).start()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections = list(self._connections)
        if self._listener is not None:
            _shutdown(self._listener)
        for conn in connections:
            _shutdown(conn)
        self.path.unlink(missing_ok=True)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None, "start() binds the listener before the loop runs"
        while not self._closed:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                crowded = len(self._connections) >= MAX_CONNECTIONS or self._closed
                if not crowded:
                    self._connections.add(conn)
            if crowded:
                events.ConnectionRefused(f"more than {MAX_CONNECTIONS} connections").to(self.emit)
                _shutdown(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="rlm-rpc-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while self._serve_one(conn):
                pass
        finally:
            with self._lock:
                self._connections.discard(conn)
            _shutdown(conn)

    def _serve_one(self, conn: socket.socket) -> bool:
        """Read one frame and answer it; False when the connection should end.

        When the audit log fails, nothing more is served: the request is refused unanswered and
        the connection closed (the run stops at its next event, see ``audit.FsyncWriter``).
        """
        try:
            return self._answer_one(conn)
        except AuditError:  # raised while recording a refusal: the request's id is not at hand
            return _refuse_unaudited(conn, None)

    def _answer_one(self, conn: socket.socket) -> bool:
        first = _recv_exact(conn, 1)  # between frames the kernel may idle as long as it likes
        if first is None:
            return False
        request_id: Any = None
        try:
            body = self._rest_of_frame(conn, first, time.monotonic() + FRAME_TIMEOUT_S)
            if body is None:
                self._reject("truncated", "the connection closed in the middle of a frame")
                return False
            obj = decode(body)
            request_id = obj.get("id")
            request = parse_request(obj)
            reply = ok_reply(request.id, self.subcalls.dispatch(request))
        except FrameError as exc:
            self._reject(exc.code, str(exc))
            reply = error_reply(request_id, exc.code, str(exc))
            if exc.fatal:
                _send(conn, reply)
                return False
        except BudgetExceeded as exc:
            events.SubcallDenied(str(exc)).to(self.emit)
            reply = error_reply(request_id, "budget_exhausted", str(exc))
        except PromptRefused as exc:  # recorded by Subcalls, which knows the endpoint and the model
            reply = error_reply(request_id, "egress_refused", str(exc))
        except LMError as exc:
            events.SubcallFailed(str(exc)).to(self.emit)
            reply = error_reply(request_id, "lm_error", str(exc))
        except AuditError:
            return _refuse_unaudited(conn, request_id)
        except Exception as exc:  # the broker must survive anything
            log.exception("rpc handler failed")
            events.InternalError(f"{type(exc).__name__}: {exc}").to(self.emit)
            reply = error_reply(request_id, "internal", f"the host failed to serve the request ({type(exc).__name__})")
        return _send(conn, reply)

    def _rest_of_frame(self, conn: socket.socket, first: bytes, deadline: float) -> bytes | None:
        """The frame's body, read by ``deadline``; None when the connection closed first."""
        try:
            rest = _recv_exact(conn, HEADER.size - 1, deadline)
            if rest is None:
                return None
            return _recv_exact(conn, frame_size(first + rest, self.max_frame_bytes), deadline)
        finally:
            conn.settimeout(None)  # the reply is written without a deadline

    def _reject(self, code: str, message: str) -> None:
        self.rejected += 1
        events.FrameRejected(code, message[:200]).to(self.emit)


def _refuse_unaudited(conn: socket.socket, request_id: Any) -> bool:
    """Answer that the request cannot be recorded (so it is not served); the connection ends."""
    _send(conn, error_reply(request_id, "audit_failed", "the host cannot record this request; the run stops"))
    return False


def _recv_exact(conn: socket.socket, size: int, deadline: float | None = None) -> bytes | None:
    """``size`` bytes, or None when the connection ends; a FrameError when ``deadline`` passes."""
    chunks, left = [], size
    while left:
        try:
            conn.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
            chunk = conn.recv(min(left, 1 << 20))
        except TimeoutError:
            raise FrameError("slow_frame", f"the frame did not arrive whole within {FRAME_TIMEOUT_S:g}s "
                                           "of its first byte; send each frame in one write", fatal=True) from None
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _send(conn: socket.socket, reply: dict[str, Any]) -> bool:
    try:
        conn.sendall(encode(reply))
    except OSError:
        return False
    return True


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
