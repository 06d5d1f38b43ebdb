"""`audit diff A B`: what two runs of the same query did differently (code, sub-calls, answer, cost).

Both logs are read with the one reader; their text is hostile, so every line this module returns
is either our own words or the log's text quoted (``audit.quoted``) or after a diff marker, and the
CLI makes each line visible. Which run did what is never decided by the logs' words.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..audit import events, is_event, quoted
from .formats import money
from ..sanitize import finite
from ..events import Cell, ExecStart, IterationStart, RootReply, RunEnd, RunStart, Subcall

SHORT = 200


def compare(a: Path, b: Path) -> Iterator[str]:
    """The lines of the comparison; one line only when the runs answered different queries."""
    left, right = _records(a), _records(b)
    yield f"A: {quoted(a.name)} run {quoted(_start(left).get('run_id'))}"
    yield f"B: {quoted(b.name)} run {quoted(_start(right).get('run_id'))}"
    qa, qb = _text(_start(left), "query"), _text(_start(right), "query")
    if qa != qb:
        yield f"different queries: A asks {quoted(_short(qa))}, B asks {quoted(_short(qb))}; nothing else compared"
        return
    found = [*_code(left, right), *_subcalls(left, right), *_answers(left, right)]
    yield from found or ["same code, sub-calls and answer"]
    yield from _costs(left, right)


def _records(path: Path) -> list[dict[str, Any]]:
    return [r for r in events(path) if is_event(r)]


def _start(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in records if r["kind"] in {RunStart.kind, ExecStart.kind}), records[0])


def _end(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in reversed(records) if r["kind"] == RunEnd.kind and r.get("depth", 1) == 1), {})


def _text(record: dict[str, Any], name: str) -> str:
    """A text field, or its digest when the audit level kept only that (two digests compare as well)."""
    value = record.get(name)
    if isinstance(value, str):
        return value
    d = record.get(f"{name}_digest")
    if isinstance(d, dict):
        return f"[sha256 {d.get('sha256')}, {d.get('bytes')} bytes: hidden at this audit level]"
    return "" if value is None else str(value)


def _count(value: object) -> str:
    """A small counter from the log (an iteration, a depth) in our own digits, or "?"."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6 else "?"


def _short(text: str) -> str:
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def _cells(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each cell's code, labelled with the iteration (and depth, for a child run) it ran in."""
    cells, label = [], "before iteration 1"
    for record in records:
        if record["kind"] == IterationStart.kind:
            label = f"iteration {_count(record.get('iteration'))}"
            label += f" (depth {_count(record.get('depth'))})" if record.get("depth", 1) != 1 else ""
        elif record["kind"] == Cell.kind:
            cells.append((label, _text(record, "code")))
    return cells


def _code(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> Iterator[str]:
    ca, cb = _cells(left), _cells(right)
    if len(ca) != len(cb):
        yield f"cells: A ran {len(ca)}, B ran {len(cb)}"
    for n in range(max(len(ca), len(cb))):
        (la, xa), (lb, xb) = ca[n] if n < len(ca) else ("-", ""), cb[n] if n < len(cb) else ("-", "")
        if xa != xb:
            yield f"cell {n + 1} (A {la}, B {lb}): code differs"
            for change in difflib.unified_diff(xa.splitlines(), xb.splitlines(), "A", "B", lineterm="", n=1):
                yield f"    {change}"


def _subcalls(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> Iterator[str]:
    sa, sb = ([r for r in rs if r["kind"] == Subcall.kind] for rs in (left, right))
    if len(sa) != len(sb):
        yield f"sub-calls: A made {len(sa)}, B made {len(sb)}"
    for n, (x, y) in enumerate(zip(sa, sb, strict=False), 1):
        for field, name in (("prompt", "prompt"), ("response", "reply")):
            if _text(x, field) != _text(y, field):
                yield (f"sub-call {n} {name} differs: A {quoted(_short(_text(x, field)))}, "
                       f"B {quoted(_short(_text(y, field)))}")


def _answers(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> Iterator[str]:
    ea, eb = _end(left), _end(right)
    if _text(ea, "answer") != _text(eb, "answer"):
        yield f"answer differs: A {quoted(_short(_text(ea, 'answer')) or '(none)')}, " \
              f"B {quoted(_short(_text(eb, 'answer')) or '(none)')}"
    if (ea.get("fallback") is True) != (eb.get("fallback") is True):
        yield f"last-resort answer: A {'yes' if ea.get('fallback') is True else 'no'}, " \
              f"B {'yes' if eb.get('fallback') is True else 'no'}"


def _costs(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> Iterator[str]:
    """Cost and tokens side by side, always (equal costs are worth knowing too)."""
    ca, cb = finite(_end(left).get("cost_usd")), finite(_end(right).get("cost_usd"))
    delta = f" (B - A = ${cb - ca:+.6f})" if ca is not None and cb is not None else ""
    yield f"cost: A {money(ca, 6, 'unknown')}, B {money(cb, 6, 'unknown')}{delta}"
    ta, tb = _tokens(left), _tokens(right)
    yield f"tokens: A {ta:,}, B {tb:,} (B - A = {tb - ta:+,})"


def _tokens(records: list[dict[str, Any]]) -> int:
    """Every model call's prompt and completion tokens, root and sub-calls alike."""
    total = 0
    for record in records:
        if record["kind"] in {RootReply.kind, Subcall.kind}:
            for name in ("prompt_tokens", "completion_tokens"):
                value = record.get(name)
                total += value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
    return total
