"""The terminal rendering of a run's result: answer, citations, usage, cost, comparison."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from .results import RLMResult


def render_result(result: RLMResult, console: Console) -> None:
    marker = " [yellow](last-resort answer: the model never called answer())[/]" if result.fallback else ""
    console.print(f"[bold]Answer[/]{marker}\n{escape(result.answer)}\n")
    if result.citations:
        console.print("[bold]Citations[/]")
        for n, cite in enumerate(result.citations, 1):
            where = " ".join(p for p in (cite.document or "", f"p.{cite.page}" if cite.page else "",
                                         f"[{cite.start}:{cite.end}]" if cite.start is not None else "") if p)
            quote = f': "{escape(" ".join((cite.text or "").split())[:160])}"' if cite.text else ""
            console.print(f"  [{n}] {escape(where)}{quote}")
        console.print()
    console.print("[bold]Usage[/]")
    for usage in result.usage:
        cost = f"${usage.cost_usd:.4f}" if usage.cost_usd is not None else "cost unknown"
        calls = f"{usage.calls} call" + ("" if usage.calls == 1 else "s")
        console.print(f"  {usage.role:4} {escape(usage.model)}: {calls}, {usage.prompt_tokens:,} in + "
                      f"{usage.completion_tokens:,} out tokens, {cost}")
    total = f"${result.cost_usd:.4f}" if result.cost_usd is not None else "unknown (a model's price is not in the table)"
    console.print(f"  total cost: {total}")
    cmp = result.comparison
    verdict = f"{cmp.saved_pct:.0f}% less" if cmp.saved_pct >= 0 else f"{-cmp.saved_pct:.0f}% more"
    console.print(f"[bold]Tokens[/]  whole input in one prompt: ~{cmp.input_tokens:,}  ·  this RLM run: "
                  f"{cmp.rlm_tokens:,}  ({verdict}; {cmp.method})")
    console.print(f"[dim]stopped: {result.stopped} after {result.iterations} iterations in "
                  f"{result.duration_s:.1f}s · run {result.run_id}[/]")
    if result.audit_log:
        console.print(f"[dim]audit log: {result.audit_log} (rlm-host audit verify / report / tui --replay)[/]")


ICONS = {"run": "▶", "sandbox": "▣", "iteration": "↻", "root": "◆", "cell": "▷", "subcall": "↳",
         "answer": "✔", "limit": "⚠", "rpc": "✖", "kernel": "✖", "document": "▤", "seal": "■", "exec": "▶"}


def render_timeline(events: list[dict], console: Console) -> None:
    """One line per audit event: time, kind, and its key fields."""
    start = events[0]["ts"] if events else 0.0
    for event in events:
        kind = event.get("kind", "?")
        icon = ICONS.get(kind.split(".")[0], "·")
        detail = ", ".join(f"{k}={_short(v)}" for k, v in event.items()
                           if k not in {"seq", "ts", "run_id", "kind", "prev", "hash"})
        console.print(f"[dim]{event.get('seq', '?'):>4} +{event.get('ts', start) - start:7.2f}s[/] "
                      f"{icon} [bold]{escape(kind)}[/] {escape(detail)}")


def _short(value: object, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
