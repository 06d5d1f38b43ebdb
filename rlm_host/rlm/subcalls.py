"""What each sub-call means: the run's budget, the documents' evidence, and the model call itself.

The broker (``broker.py``) hands every validated request here. ``Budget`` is shared by a run and
its child RLMs; ``Evidence`` is the host's own layout of the documents, against which an answer's
citations are checked and quoted; ``Subcalls`` serves ``llm_query``, ``llm_query_batched``,
``rlm_query`` and ``answer`` and writes each one's audit event (``events.Subcall`` and the rest).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from .. import events
from ..egress import Screened, endpoint_label, refusal, screen
from ..events import EventHook, null_hook
from .lm import Completion, LMClient
from ..policy import Egress, SubcallBudget
from .quotes import Layout
from ..results import Citation
from ..sandbox.document import Document
from ..wire import MAX_QUOTE, Answer, CitedSpan, FrameError, LLMQuery, LLMQueryBatched, RLMQuery

log = structlog.get_logger(__name__)

PASSAGE_CHARS = 240  # the text recorded on each side of a cited span, for the report

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
    (a claim that disagrees is refused); a document or page cited alone must exist; a ``quote`` must be
    the text at its offsets, whitespace aside (``same_text``). A quote with a start and no end spans
    ``len(quote)`` characters.
    """

    def __init__(self, documents: Sequence[Document] = ()) -> None:
        self.layout = Layout(documents)
        self.documents = {doc.name: doc for doc in documents}

    def problem(self, citation: CitedSpan) -> str | None:
        """Why ``citation`` points at nothing or contradicts the layout, or None when it holds."""
        start, end = citation.start, citation.end
        if start is None:
            if citation.quote is not None:
                return "a quote needs the offsets it is at: give start and end (a search() hit has them)"
            return "a citation with an end needs a start too" if end is not None else self._named_problem(citation)
        if end is not None and end < start:
            return f"end {end} is before start {start}"
        if max(start, end or 0) > self.layout.chars:
            return f"offset {max(start, end or 0)} is past the end of context ({self.layout.chars:,} characters)"
        return self._claim_problem(citation, start) or self._quote_problem(citation, start)

    def resolve(self, citations: Sequence[CitedSpan]) -> list[Citation]:
        """The citations as the host states them: its own document, offsets, line, page, hash and quote."""
        return [self._resolve(c) for c in citations]

    def passage(self, cite: Citation, window: int = PASSAGE_CHARS) -> dict[str, str]:
        """The text around a cited span (``window`` characters each side, within its document), for the report."""
        if cite.start is None:
            return {"before": "", "after": ""}
        index = self.layout.index_of(cite.start)
        doc = self.layout.documents[index] if index is not None else None
        low, high = (doc.start, doc.end) if doc else (cite.start, cite.start)
        after = cite.start + len(cite.text or "")
        return {"before": self.layout.quote(max(low, cite.start - window), cite.start, window),
                "after": self.layout.quote(after, min(high, after + window), window) if after < high else ""}

    def _span_end(self, citation: CitedSpan, start: int) -> int:
        """Where a citation's span ends: its end, else its quote's length, else one character."""
        if citation.end is not None and citation.end != start:
            return citation.end
        return start + len(citation.quote) if citation.quote else start + 1

    def _resolve(self, citation: CitedSpan) -> Citation:
        if citation.start is None:
            named = self.documents.get(citation.document or "")
            return Citation(document=citation.document, page=citation.page, **_identity(named))
        start = citation.start
        end = self._span_end(citation, start)
        index = self.layout.index_of(start)
        recorded_end = end if citation.quote and citation.end is None else citation.end
        cite = Citation(start=start, end=recorded_end, text=self.layout.quote(start, end))
        if index is None:
            return cite
        doc, staged = self.layout.documents[index], self.layout.staged[index]
        local = start - doc.start
        return cite.model_copy(update={
            "document": doc.name, "page": doc.page_at(start), "local_start": local,
            "local_end": None if recorded_end is None else min(recorded_end, doc.end) - doc.start,
            "line": self.layout.line(index, local), **_identity(staged)})

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

    def _quote_problem(self, citation: CitedSpan, start: int) -> str | None:
        """A quote that is not the host's text at the citation's offsets (the text is never echoed: it is logged)."""
        if citation.quote is None:
            return None
        end = self._span_end(citation, start)
        if end - start > MAX_QUOTE:
            return f"a quoted span is at most {MAX_QUOTE:,} characters, not {end - start:,}; quote the sentence"
        if same_text(self.layout.quote(start, end, MAX_QUOTE), citation.quote):
            return None
        return (f"the quote is not the text at context[{start}:{end}]; print(peek({start}, {end})) shows what "
                "is there: quote it exactly (whitespace may differ), or cite the offsets of your quote")

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


def same_text(text: str, quote: str) -> bool:
    """Whether a quote is the text, with every run of whitespace taken as one space and the ends stripped."""
    return " ".join(text.split()) == " ".join(quote.split())


def _identity(doc: Document | None) -> dict[str, Any]:
    """A staged document's hashes and type, as a citation records them."""
    if doc is None:
        return {}
    return {"sha256": doc.sha256 or None, "text_sha256": doc.text_sha256 or None, "kind": doc.kind}


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
        self.cited: list[Citation] = []  # the answer's citations as the host resolved them when it was given
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
            completion = self.lm.chat(messages, model=self.model, max_tokens=self.max_tokens, temperature=0)
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
        cited = evidence.resolve(request.citations) if evidence is not None else []
        with self._lock:
            self.answer, self.cited = request, cited
        recorded = [c.model_dump(exclude_none=True, exclude={"text"}) for c in cited] if evidence is not None \
            else [c.model_dump(exclude_none=True, exclude={"quote"}) for c in request.citations]
        events.AnswerGiven(request.text, len(request.text), recorded, [c.text or "" for c in cited],
                           self.depth).to(self.emit)
        return "recorded"
