"""The terminal rendering of a run's result: answer, citations, usage, cost, comparison.

Every string from a run (answer, quotes, document and model names, event fields) is hostile: it is
printed as a Rich ``Text`` built by ``sanitize``, never as markup, so it cannot style, link or
steer the terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from .formats import money, saving, short
from ..results import Citation, RLMResult
from ..sanitize import finite, safe_text, visible


def render_result(result: RLMResult, console: Console) -> None:
    """The answer, its citations, usage and cost, the token comparison (the log's path goes to stderr)."""
    marker = (" (last-resort answer: the model never called answer())", "yellow") if result.fallback else ""
    console.print(Text.assemble(("Answer", "bold"), marker, "\n", safe_text(result.answer, newlines=True), "\n"))
    if result.citations:
        console.print(Text("Citations", style="bold"))
        for n, cite in enumerate(result.citations, 1):
            console.print(_citation(n, cite))
        console.print()
    _usage(result, console)
    cmp = result.comparison
    verdict = saving(cmp.saved_pct)
    console.print(Text.assemble(("Tokens", "bold"), f"  whole input in one prompt: ~{cmp.input_tokens:,}  ·  this "
                                f"RLM run: {cmp.rlm_tokens:,}  ({verdict}; ", safe_text(cmp.method), ")"))
    console.print(safe_text(f"stopped: {result.stopped} after {result.iterations} iterations in "
                            f"{result.duration_s:.1f}s · run {result.run_id}", "dim"))


def _citation(n: int, cite: Citation) -> Text:
    """``name:line p.N [local_start:local_end] "quote"``: positions in the document itself, not in ``context``."""
    return Text.assemble(f"  [{n}] ", safe_text(citation_line(cite)))


def citation_line(cite: Citation) -> str:
    """One citation as plain text (sanitise before printing): where in its document, then its quote."""
    name = (cite.document or "(between documents)") + (f":{cite.line}" if cite.line is not None else "")
    if cite.local_start is not None:
        span = f"[{cite.local_start}:{cite.local_end if cite.local_end is not None else cite.local_start}]"
    else:
        span = f"context[{cite.start}:{cite.end}]" if cite.start is not None else ""
    where = " ".join(p for p in (name, f"p.{cite.page}" if cite.page else "", span) if p)
    return where + (f' "{" ".join((cite.text or "").split())[:160]}"' if cite.text else "")


def _usage(result: RLMResult, console: Console) -> None:
    console.print(Text("Usage", style="bold"))
    for usage in result.usage:
        cost = money(usage.cost_usd, unknown="cost unknown")
        calls = f"{usage.calls} call" + ("" if usage.calls == 1 else "s")
        console.print(Text.assemble(f"  {usage.role:4} ", safe_text(usage.model), f": {calls}, {usage.prompt_tokens:,} "
                                    f"in + {usage.completion_tokens:,} out tokens, {cost}"))
    total = money(result.cost_usd, unknown="unknown (a model's price is not in the table)")
    console.print(Text(f"  total cost: {total}"))


ICONS = {"run": "▶", "sandbox": "▣", "iteration": "↻", "root": "◆", "cell": "▷", "subcall": "↳",
         "answer": "✔", "limit": "⚠", "rpc": "✖", "kernel": "✖", "document": "▤", "seal": "■", "exec": "▶"}
HIDDEN_FIELDS = {"seq", "ts", "run_id", "kind", "prev", "hash"}


def render_timeline(events: list[dict], console: Console) -> None:
    """One line per audit event: time, kind, and its key fields."""
    start = finite(events[0].get("ts")) or 0.0 if events else 0.0
    for event in events:
        console.print(timeline_line(event, start))


def timeline_line(event: dict[str, Any], start: float) -> Text:
    """One event as one line of text, whatever its fields hold (any type, any characters)."""
    kind = visible(event.get("kind", "?"))
    icon = ICONS.get(kind.split(".")[0], "·")
    detail = ", ".join(f"{k}={short(v)}" for k, v in event.items() if k not in HIDDEN_FIELDS)
    when = f"{visible(event.get('seq', '?')):>4} +{_elapsed(event.get('ts'), start):7.2f}s"
    return Text.assemble((when, "dim"), f" {icon} ", (kind, "bold"), " ", safe_text(detail))


def _elapsed(ts: object, start: float) -> float:
    """Seconds since the first event; 0 for a timestamp that is not a (finite) number."""
    at = finite(ts)
    return 0.0 if at is None else at - start
