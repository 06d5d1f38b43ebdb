"""The model's helpers (rlm_kernel.helpers) on the host, with a recording stand-in for the RPC client (no Docker).

The stand-in replaces only the socket to the host's broker; what crosses it is checked against the
real broker in tests/test_rpc.py and tests/test_wire.py.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from rlm_kernel.documents import Document
from rlm_kernel.helpers import MAX_HITS, PEEK_DEFAULT, PROVIDED, Helpers, SubcallError
from rlm_kernel.rpc import RPCError

LEASE = "The tenant pays a termination fee of EUR 48,500. The backup generator is tested monthly."
ANNEX = "Annex A.\fThe landlord keeps the deposit."
CONTEXT = LEASE + "\n\n" + ANNEX
DOCUMENTS = [Document("lease.txt", len(LEASE), 0, len(LEASE)),
             Document("annex.pdf", len(ANNEX), len(LEASE) + 2, len(CONTEXT),
                      pages=(len(LEASE) + 2, len(LEASE) + 2 + ANNEX.index("The")))]


class RecordingRPC:
    """Records each call; answers from ``replies`` by op, or raises ``error``."""

    def __init__(self, replies: dict[str, Any] | None = None, error: RPCError | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.replies = replies or {}
        self.error = error

    def call(self, op: str, **fields: Any) -> Any:
        self.calls.append((op, fields))
        if self.error is not None:
            raise self.error
        return self.replies.get(op)


def helpers(rpc: RecordingRPC | None = None, namespace: dict[str, Any] | None = None) -> Helpers:
    return Helpers(CONTEXT, DOCUMENTS, rpc or RecordingRPC(), {} if namespace is None else namespace)  # type: ignore[arg-type]


def test_peek_defaults_to_a_window_from_start() -> None:
    """peek(start) returns PEEK_DEFAULT characters from start; peek(start, end) is the slice."""
    long = Helpers("x" * 5000, [], RecordingRPC(), {})  # type: ignore[arg-type]
    assert len(long.peek(100)) == PEEK_DEFAULT
    assert helpers().peek(4, 10) == CONTEXT[4:10]


def test_search_finds_offsets_documents_and_pages() -> None:
    """A hit carries its span in context, its document, its page (paged documents only) and its snippet."""
    fee, deposit = helpers().search(r"termination fee")[0], helpers().search("deposit", window=5)[0]
    assert CONTEXT[fee.start:fee.end] == "termination fee" and fee.document == "lease.txt" and fee.page is None
    assert deposit.document == "annex.pdf" and deposit.page == 2
    assert deposit.snippet == CONTEXT[deposit.start - 5:deposit.end + 5]


def test_search_is_case_insensitive_unless_asked() -> None:
    """ignore_case defaults to True; ignore_case=False finds only the exact case."""
    assert [h.text for h in helpers().search("THE TENANT")] == ["The tenant"]
    assert helpers().search("THE TENANT", ignore_case=False) == []


def test_search_within_one_document() -> None:
    """document= limits matches to that document's span; an unknown name says where the names are."""
    assert {h.document for h in helpers().search("the", document="annex.pdf")} == {"annex.pdf"}
    with pytest.raises(ValueError, match=r"no document named 'nope\.txt'; see `documents` for the names"):
        helpers().search("the", document="nope.txt")


def test_search_caps_the_number_of_hits() -> None:
    """max_results caps the hits, and never beyond MAX_HITS."""
    many = Helpers("ab " * (MAX_HITS + 50), [], RecordingRPC(), {})  # type: ignore[arg-type]
    assert len(many.search("ab", max_results=3)) == 3
    assert len(many.search("ab", max_results=10_000)) == MAX_HITS


def test_search_of_plain_words_tolerates_words_between() -> None:
    """Plain words that find nothing are tried again with a few characters allowed between them."""
    hits = helpers().search("backup generator tested")
    assert [h.text for h in hits] == ["backup generator is tested"]
    assert helpers().search(r"backup\sgenerator\stested") == []  # a real regex is taken as written


def test_search_reports_a_bad_pattern() -> None:
    """An invalid regular expression is a ValueError naming the pattern."""
    with pytest.raises(ValueError, match=r"invalid regular expression '\('"):
        helpers().search("(")


def test_llm_query_sends_question_and_text() -> None:
    """llm_query makes one llm_query call with the question and text, and returns the host's reply."""
    rpc = RecordingRPC({"llm_query": "EUR 48,500"})
    assert helpers(rpc).llm_query("What is the fee?", "the fee is EUR 48,500") == "EUR 48,500"
    assert rpc.calls == [("llm_query", {"question": "What is the fee?", "text": "the fee is EUR 48,500"})]
    with pytest.raises(TypeError, match="question must be a str, not int"):
        helpers(rpc).llm_query(7)  # type: ignore[arg-type]


def test_llm_query_batched_takes_pairs_or_questions() -> None:
    """Pairs and bare questions become question/text items in one call; anything else is a TypeError."""
    rpc = RecordingRPC({"llm_query_batched": ["a", "b"]})
    assert helpers(rpc).llm_query_batched([("Who pays?", "the tenant pays"), "When?"]) == ["a", "b"]
    assert rpc.calls == [("llm_query_batched", {"items": [{"question": "Who pays?", "text": "the tenant pays"},
                                                          {"question": "When?", "text": None}]})]
    with pytest.raises(TypeError, match="list of"):
        helpers(rpc).llm_query_batched([("a", "b", "c")])


def test_a_refused_subcall_is_a_subcall_error() -> None:
    """The host's refusal reaches model code as SubcallError naming the operation and the reason."""
    rpc = RecordingRPC(error=RPCError("budget", "the sub-call budget (4) is spent"))
    with pytest.raises(SubcallError, match=r"rlm_query refused: the sub-call budget \(4\) is spent"):
        helpers(rpc).rlm_query("Who pays?", "text")


def test_answer_sends_citations_in_every_form() -> None:
    """answer() turns a Hit, a (start, end) pair, an offset, a document name and a dict into citation fields."""
    rpc = RecordingRPC()
    h = helpers(rpc)
    hit = h.search("deposit")[0]
    assert h.answer(48500, citations=[hit, (0, 9), 5, "lease.txt", {"document": "annex.pdf", "page": 2}]) == "48500"
    assert h.answered == "48500"
    assert rpc.calls == [("answer", {"text": "48500", "citations": [
        {"start": hit.start, "end": hit.end, "document": "annex.pdf", "page": 2},
        {"start": 0, "end": 9}, {"start": 5, "end": 5}, {"document": "lease.txt"},
        {"document": "annex.pdf", "page": 2}]})]
    with pytest.raises(TypeError, match="a citation is"):
        h.answer("x", citations=[1.5])


def test_final_var_answers_with_the_variable() -> None:
    """FINAL_VAR(name) answers with that variable's value; a missing name is a NameError saying what to pass."""
    rpc = RecordingRPC()
    h = helpers(rpc, {"fee": "EUR 48,500"})
    assert h.final_var("fee") == "EUR 48,500" and rpc.calls[0][1]["text"] == "EUR 48,500"
    with pytest.raises(NameError, match="no variable named 'nope'"):
        h.final_var("nope")


def test_show_vars_lists_only_the_models_variables() -> None:
    """SHOW_VARS hides provided names, private names and modules, and shows type and length."""
    namespace = {"hits": [1, 2, 3], "n": 4, "context": CONTEXT, "_private": 1, "re": types, "peek": print}
    assert helpers(namespace=namespace).show_vars() == {"hits": "list, len 3", "n": "int"}


def test_every_provided_helper_is_bound() -> None:
    """The functions bound into the namespace are exactly PROVIDED less context and documents; grep is search."""
    functions = helpers().functions()
    assert set(functions) == PROVIDED - {"context", "documents"}
    assert functions["grep"] == functions["search"]
