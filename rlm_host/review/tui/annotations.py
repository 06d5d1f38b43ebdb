"""What each step of a run illustrates in the paper (Zhang, Kraska, Khattab 2025)."""

from __future__ import annotations

from typing import Any
from ..formats import saving
from ...events import AnswerGiven, Cell, ChildRLM, IterationStart, RunEnd, Subcall

LOOP = "RLM Loop: the LLM writes code to explore the external environment (§3)"
VARIABLE = "Context as Variable: documents stored externally, not in the context window (§3.1)"
SEARCH = "Programmatic Search: the LLM wrote code to grep the environment (§3.2)"
SUBCALL = "Recursive Sub-Call: the LLM invokes itself on a small chunk (§3.3)"
SYNTHESIS = "Evidence Synthesis: cited answer without seeing the full corpus (§4)"


def annotate(event: dict[str, Any]) -> list[str]:
    """The paper annotations an audit event illustrates, in order (often none)."""
    kind = event.get("kind", "")
    if kind == IterationStart.kind:
        return [LOOP]
    if kind == Cell.kind:
        code = str(event.get("code") or "")
        notes = [VARIABLE] if "peek(" in code else []
        return notes + ([SEARCH] if "search(" in code or "grep(" in code else [])
    if kind in {Subcall.kind, ChildRLM.kind}:
        return [SUBCALL]
    if kind == AnswerGiven.kind:
        return [SYNTHESIS]
    if kind == RunEnd.kind and event.get("depth", 1) == 1 and "comparison" in event:
        return [comparison(event["comparison"])]
    return []


def comparison(cmp: dict[str, Any]) -> str:
    verdict = saving(cmp.get("saved_pct"))
    return f"Traditional: {cmp['input_tokens']:,} tokens / RLM: {cmp['rlm_tokens']:,} tokens ({verdict}) (§5)"
