"""The names model code uses: peek, search/grep, llm_query(_batched), rlm_query, answer.

They close over the context and documents loaded at start and over the RPC
client, so rebinding a helper's globals cannot redirect them. Sub-model calls
go to the host, which validates, budgets and records them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .documents import Document, document_at
from .rpc import RPCClient, RPCError

MAX_HITS = 200
PLAIN_WORDS = re.compile(r"[\w\s'-]+")
PROVIDED = frozenset({"context", "documents", "peek", "search", "grep", "llm_query", "llm_query_batched",
                      "rlm_query", "answer", "FINAL", "FINAL_VAR", "SHOW_VARS"})
PEEK_DEFAULT = 2000


class SubcallError(RuntimeError):
    """A sub-call was refused or failed on the host; the message says why."""


@dataclass(frozen=True)
class Hit:
    """One search match: where it is, in which document and page, and its surroundings."""

    start: int
    end: int
    text: str
    document: str | None
    page: int | None
    snippet: str

    def __repr__(self) -> str:
        where = f"{self.document}" + (f" p.{self.page}" if self.page else "")
        return f"Hit({self.start}-{self.end} in {where}: {self.snippet!r})"


class Helpers:
    """Builds the helper functions for one kernel."""

    def __init__(self, context: str, documents: list[Document], rpc: RPCClient,
                 namespace: dict[str, Any]) -> None:
        self.context = context
        self.documents = documents
        self.rpc = rpc
        self.namespace = namespace
        self.answered: str | None = None

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {"peek": self.peek, "search": self.search, "grep": self.search,
                "llm_query": self.llm_query, "llm_query_batched": self.llm_query_batched,
                "rlm_query": self.rlm_query, "answer": self.answer, "FINAL": self.final,
                "FINAL_VAR": self.final_var, "SHOW_VARS": self.show_vars}

    def peek(self, start: int = 0, end: int | None = None) -> str:
        """context[start:end]; ``end`` defaults to start + 2000."""
        return self.context[start:start + PEEK_DEFAULT if end is None else end]

    def search(self, pattern: str, *, ignore_case: bool = True, max_results: int = 20,
               window: int = 80, document: str | None = None) -> list[Hit]:
        """Regex matches with offsets, document name, page and ``window`` chars of surroundings.

        A pattern of plain words that finds nothing is tried again with up to 40 characters
        allowed between the words ("backup generator tested" finds "backup generator is tested").
        """
        flags = re.IGNORECASE if ignore_case else 0
        try:
            regex = re.compile(pattern, flags)
        except re.error as exc:
            raise ValueError(f"search: invalid regular expression {pattern!r}: {exc}") from None
        limit = max(0, min(max_results, MAX_HITS))
        hits = self._matches(regex, limit, window, document)
        if not hits and PLAIN_WORDS.fullmatch(pattern) and " " in pattern.strip():
            loose = r".{0,40}?".join(re.escape(word) for word in pattern.split())
            hits = self._matches(re.compile(loose, flags | re.DOTALL), limit, window, document)
        return hits

    def _matches(self, regex: re.Pattern, limit: int, window: int, document: str | None) -> list[Hit]:
        hits: list[Hit] = []
        for match in regex.finditer(self.context, *self._bounds(document)):
            if len(hits) >= limit:
                break
            hits.append(self._hit(match, window))
        return hits

    def llm_query(self, question: str, text: str | None = None) -> str:
        """Ask the sub-model ``question`` about ``text``; returns its reply."""
        return self._call("llm_query", question=_as_str(question, "question"), text=_opt_str(text))

    def llm_query_batched(self, pairs: list[Any]) -> list[str]:
        """Many llm_query calls at once (run concurrently on the host); replies in order."""
        items = [_pair(item) for item in pairs]
        return list(self._call("llm_query_batched", items=items))

    def rlm_query(self, question: str, text: str) -> str:
        """A child RLM on ``text`` (its own sandbox) up to the policy's depth, else llm_query."""
        return self._call("rlm_query", question=_as_str(question, "question"), text=_as_str(text, "text"))

    def answer(self, text: Any, citations: list[Any] | None = None) -> str:
        """Give the final answer with citations (offsets or document/page); the run ends after this cell."""
        self._call("answer", text=str(text), citations=[_citation(c) for c in citations or []])
        self.answered = str(text)
        print("[answer recorded; the run ends after this cell]")
        return self.answered

    def final(self, text: Any) -> str:
        """Compatibility with the reference implementation: answer(text)."""
        return self.answer(text)

    def final_var(self, name: str) -> str:
        """Compatibility: answer with the value of the variable named ``name``."""
        if not isinstance(name, str) or name not in self.namespace:
            raise NameError(f"FINAL_VAR: no variable named {name!r}; pass the variable's name as a string")
        return self.answer(self.namespace[name])

    def show_vars(self) -> dict[str, str]:
        """The variables defined so far, with their types and sizes."""
        shown = {}
        for key, value in self.namespace.items():
            if (key.startswith("_") or key in PROVIDED or key in {"In", "Out", "exit", "quit", "get_ipython"}
                    or isinstance(value, ModuleType)):
                continue
            size = f", len {len(value):,}" if hasattr(value, "__len__") and not callable(value) else ""
            shown[key] = f"{type(value).__name__}{size}"
        return shown

    def _call(self, op: str, **fields: Any) -> Any:
        try:
            return self.rpc.call(op, **fields)
        except RPCError as exc:
            raise SubcallError(f"{op} refused: {exc}") from None

    def _bounds(self, name: str | None) -> tuple[int, int]:
        if name is None:
            return 0, len(self.context)
        for doc in self.documents:
            if doc.name == name:
                return doc.start, doc.end
        raise ValueError(f"search: no document named {name!r}; see `documents` for the names")

    def _hit(self, match: re.Match, window: int) -> Hit:
        start, end = match.span()
        doc = document_at(self.documents, start)
        snippet = self.context[max(0, start - window): end + window]
        return Hit(start, end, match.group(0)[:500], doc.name if doc else None,
                   doc.page_at(start) if doc else None, snippet)


def _as_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _as_str(value, "text")


def _pair(item: Any) -> dict[str, str | None]:
    if isinstance(item, str):
        return {"question": item, "text": None}
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return {"question": _as_str(item[0], "question"), "text": _opt_str(item[1])}
    raise TypeError("llm_query_batched takes a list of (question, text) pairs or of questions")


def _citation(item: Any) -> dict[str, Any]:
    if isinstance(item, Hit):
        return {"start": item.start, "end": item.end, "document": item.document, "page": item.page}
    if isinstance(item, dict):
        return item
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(v, int) for v in item):
        return {"start": item[0], "end": item[1]}
    if isinstance(item, int):
        return {"start": item, "end": item}
    if isinstance(item, str):
        return {"document": item}
    raise TypeError("a citation is a Hit, (start, end), an offset, a document name, or a dict")
