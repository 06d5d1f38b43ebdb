"""The report's sections about the run as a whole: overview, failure, documents, models, answer, limits.

Each takes the ``Story`` (the few records that describe the run) or the records, and returns
escaped HTML. Values come from a log and may be forged: they go through ``report_html``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..sanitize import finite
from .report_html import compact, dicts, e, grid, money, rows, seconds, section, text, when
from ..events import (DocumentLoaded, DocumentSkipped, ExecError, ExecStart, IterationStart, RootReply, RunEnd,
                      RunError, RunStart, SandboxStart, Seal, Subcall)

AROUND_CHARS = 1000  # the most of a recorded passage shown on each side (a forged log may hold megabytes)
QUOTE_SHOWN = 4096  # the most of a quote shown (a quote the host records is at most 300 characters)
STOPPED = {"answer": "answered (the model called answer())", "final": "answered with FINAL()",
           "max_iterations": "reached the iteration limit; the answer is the last-resort one",
           "wall_time": "reached the wall-time limit; the answer is the last-resort one"}
NOTED = ("limit.", "subcall.denied", "subcall.failed", "subcall.depth_fallback", "rpc.", "kernel.",
         "sandbox.restart", "sandbox.start_refused", "sandbox.remove_failed", "document.skipped")
LEVELS = {"redacted": "the code and the question are kept; outputs, prompts, replies and the answer were "
                      "recorded only as their size and SHA-256 digest, so they cannot be shown",
          "hashes": "only the size and SHA-256 digest of every text (code, outputs, prompts, replies, the "
                    "question and the answer) were recorded, so none of it can be shown"}


@dataclass(frozen=True)
class Story:
    """The records that say what the run was and how it ended."""

    shape: str  # "run" (rlm-host run) or "exec" (rlm-host exec: one cell)
    level: str  # the audit level: recorded in the start event, else seen from what was kept
    start: dict
    end: dict | None
    error: dict | None
    seal: dict | None
    first_ts: float | None
    last_ts: float | None


def story(records: list[dict]) -> Story:
    """Find the start, end, error and seal among the records."""
    start = next((r for r in records if r["kind"] == ExecStart.kind
                  or (r["kind"] == RunStart.kind and r.get("depth", 1) == 1)), records[0])
    end = next((r for r in reversed(records) if r["kind"] == RunEnd.kind and r.get("depth", 1) == 1), None)
    error = next((r for r in records if r["kind"] in {RunError.kind, ExecError.kind}), None)
    seal = next((r for r in reversed(records) if r["kind"] == Seal.kind), None)
    times = [t for t in (finite(r.get("ts")) for r in records) if t is not None]
    shape = "exec" if start["kind"] == ExecStart.kind else "run"
    return Story(shape, _level(start, records), start, end, error, seal, min(times, default=None),
                 max(times, default=None))


def _level(start: dict, records: list[dict]) -> str:
    """The audit level: an exec log does not record it, but its digests show what was kept."""
    if isinstance(start.get("audit_level"), str):
        return start["audit_level"]
    kept = {name for r in records for name in r if name.endswith("_digest")}
    seen = "hashes" if "code_digest" in kept else "redacted" if kept else "full"
    return f"{seen} (not recorded; seen from what the log kept)"


def stop_reason(s: Story) -> str:
    """How the run ended, in words (escaped)."""
    if s.end is not None:
        stopped = s.end.get("stopped")
        return e(STOPPED.get(stopped, stopped) if isinstance(stopped, str) else stopped)
    if s.error is not None:
        return f"<span class='bad'>failed: {e(s.error.get('error'))}</span>"
    if s.shape == "exec" and s.seal is not None:
        return "ran its one cell"
    return "<span class='warn'>did not finish: no end event (interrupted, killed, or still running)</span>"


def overview(s: Story, records: list[dict]) -> str:
    """Who ran what, when, for how long, under which policy, and how it ended."""
    start, boxes = s.start, [r for r in records if r["kind"] == SandboxStart.kind]
    duration = s.last_ts - s.first_ts if s.first_ts is not None and s.last_ts is not None else None
    pairs = [("Started", when(s.first_ts)), ("Last event", when(s.last_ts)), ("Duration", seconds(duration)),
             ("Stopped", stop_reason(s))]
    if s.seal is not None:
        pairs.append(("Seal reason", e(s.seal.get("reason", "not recorded (a log from before seal reasons)"))))
    if s.shape == "run":
        iterations = s.end.get("iterations") if s.end else len([r for r in records if r["kind"] == IterationStart.kind])
        pairs += [("Iterations", e(iterations)), ("Root model", e(start.get("model", "-"))),
                  ("Sub model", e(start.get("sub_model", "-")))]
    pairs += [("Policy", f"{e(start.get('policy', '-'))} <span class='hash'>sha256 {e(start.get('policy_sha256', '-'))}"
                         "</span>"),
              ("Runtime", e(start.get("runtime", "-"))), ("Audit level", e(s.level))]
    pairs += [("Limits", compact(start.get("limits"))), ("Sub-call budget", compact(start.get("subcall_budget")))]
    for box in boxes[:1]:
        pairs.append(("Kernel image", f"{e(box.get('image'))} <span class='hash'>{e(box.get('image_id'))}</span>"))
    pairs.append(("rlm-host", e(start.get("host_version", "-"))))
    return section("overview", "The run", rows(pairs))


def failure(s: Story, records: list[dict]) -> str:
    """Why a failed run failed, first, with where in the run it happened."""
    if s.error is None:
        return ""
    iterations = [r.get("iteration") for r in records[:records.index(s.error)] if r["kind"] == IterationStart.kind]
    where = f"during iteration {e(iterations[-1])}" if iterations else "before the first iteration"
    message = s.error.get("error")
    cause, _, detail = message.partition(": ") if isinstance(message, str) else (str(message), "", "")
    body = (f"<p class='bad'><b>The run failed {where}: {e(cause)}</b></p><pre>{e(detail or message)}</pre>"
            f"<p class='meta'>Recorded as event {e(s.error.get('seq'))} ({e(s.error['kind'])}).</p>")
    return section("failure", "Failure", body)


def audit_level(s: Story) -> str:
    """What the audit level kept, when it did not keep everything."""
    level = s.level.split(" ")[0]
    if level not in LEVELS:
        return ""
    return section("level", "Audit level", f"<p class='warn'>Audit level <b>{e(level)}</b>: {LEVELS[level]}.</p>")


def documents(s: Story, records: list[dict]) -> str:
    """Every document read, with its size and hashes; the ones skipped and why."""
    docs = [r for r in records if r["kind"] == DocumentLoaded.kind] or dicts(s.start.get("documents"))
    body = [[e(d.get("name")), e(d.get("type", "-")), e(d.get("size")), e(d.get("pages", "-")), e(d.get("chars")),
             f"<span class='hash'>{e(d.get('sha256'))}</span>", f"<span class='hash'>{e(d.get('text_sha256'))}</span>"]
            for d in docs]
    table = grid(["Name", "Type", "Bytes", "Pages", "Characters", "File SHA-256", "Text SHA-256"], body) if body \
        else "<p>none</p>"
    skipped = [f"<li>{e(r.get('path'))}: {e(r.get('reason'))}</li>"
               for r in records if r["kind"] == DocumentSkipped.kind]
    more = f"<h3>Skipped ({len(skipped)})</h3><ul>{''.join(skipped)}</ul>" if skipped else ""
    return section("documents", f"Documents ({len(body)})", table + more)


def usage(s: Story, records: list[dict]) -> str:
    """Each model's calls, tokens and cost: from the end event, else summed from the calls recorded."""
    if s.shape == "exec":
        return ""
    entries, note = (dicts(s.end.get("usage")), "") if s.end else (_summed(records), _PARTIAL)
    body = [[e(u.get("model")), e(u.get("role")), e(u.get("calls")), e(u.get("prompt_tokens")),
             e(u.get("completion_tokens")), e(money(u.get("cost_usd")))] for u in entries]
    total = money(s.end.get("cost_usd")) if s.end else "unknown (the run did not finish)"
    headers = ["Model", "Role", "Calls", "Prompt tokens", "Completion tokens", "Cost"]
    table = grid(headers, body) if body else "<p>no calls</p>"
    return section("usage", "Models, tokens and cost", f"{note}{table}<p>Total cost: {e(total)}</p>")


_PARTIAL = "<p class='warn'>The run has no end event: these are summed from the calls it recorded.</p>"


def _summed(records: list[dict]) -> list[dict]:
    totals: dict[tuple[str, str], dict] = {}
    for r in records:
        if r["kind"] in {RootReply.kind, Subcall.kind}:
            role = "root" if r["kind"] == RootReply.kind else "sub"
            entry = totals.setdefault((str(r.get("model")), role), {"model": r.get("model"), "role": role, "calls": 0,
                                                                     "prompt_tokens": 0, "completion_tokens": 0,
                                                                     "cost_usd": 0.0})
            entry["calls"] += 1
            for name in ("prompt_tokens", "completion_tokens"):
                entry[name] += finite(r.get(name)) or 0
            cost = finite(r.get("cost_usd"))  # one call of unknown price makes the model's total unknown
            entry["cost_usd"] = None if cost is None or entry["cost_usd"] is None else entry["cost_usd"] + cost
    return list(totals.values())


def answer(s: Story) -> str:
    """The question, the answer and its citations (each highlights its quoted evidence when clicked)."""
    query = f"<h2>Question</h2><p>{e(text(s.start, 'query'))}</p>"
    if s.end is None:
        why = "the run failed (see Failure above)" if s.error else "the run did not finish"
        return f"<section id='answer'>{query}<p class='warn'>no answer: {why}</p></section>"
    links, quotes = [], []
    evidence, passages = _listed(s.end, "evidence"), _listed(s.end, "passages")
    for n, cite in enumerate(dicts(s.end.get("citations")), 1):
        where = _cited(cite)
        quoted = evidence[n - 1] if n <= len(evidence) else ""
        around = passages[n - 1] if n <= len(passages) and isinstance(passages[n - 1], dict) else {}
        links.append(f"<span class='cite' data-target='evidence-{n}'>[{n}] {e(where)}</span>")
        quotes.append(f"<pre class='evidence' id='evidence-{n}'>[{n}] {_passage(quoted, around)}</pre>")
    fallback = " <span class='warn'>(last-resort answer)</span>" if s.end.get("fallback") is True else ""
    return (f"<section id='answer'>{query}<h2>Answer{fallback}</h2><pre>{e(text(s.end, 'answer'))}</pre>"
            f"<p>{' '.join(links) or 'no citations'}</p>{''.join(quotes)}</section>")


def _listed(end: dict, name: str) -> list[Any]:
    value = end.get(name)
    return value if isinstance(value, list) else []


def _passage(quoted: Any, around: dict) -> str:
    """The quote highlighted in the text around it (as recorded), every piece escaped."""
    if not quoted:
        return "(evidence text not recorded)"
    before, after = around.get("before"), around.get("after")
    before = f"…{e(before[-AROUND_CHARS:])}" if isinstance(before, str) and before else ""
    after = f"{e(after[:AROUND_CHARS])}…" if isinstance(after, str) and after else ""
    return f"{before}<mark>{e(str(quoted)[:QUOTE_SHOWN])}</mark>{after}"


def _cited(cite: dict) -> str:
    """Where a citation points: ``clauses.txt, line 812, characters 30890-30905 of the document, page 3``."""
    parts = [str(cite.get("document", "?"))]
    if cite.get("line") is not None:
        parts.append(f"line {cite.get('line')}")
    if cite.get("local_start") is not None:
        parts.append(f"characters {cite.get('local_start')}-{cite.get('local_end')} of the document")
    elif cite.get("start") is not None or cite.get("end") is not None:
        parts.append(f"characters {cite.get('start')}-{cite.get('end')}")
    if cite.get("page") is not None:
        parts.append(f"page {cite.get('page')}")
    if cite.get("sha256"):
        parts.append(f"sha256 {str(cite.get('sha256'))[:16]}…")
    return ", ".join(parts)


def limits(records: list[dict]) -> str:
    """Every limit hit and denial, in one table (each is also shown in place in the timeline)."""
    noted = [r for r in records if r["kind"].startswith(NOTED)]
    body = [[e(r.get("seq")), e(r["kind"]), e(detail(r))] for r in noted]
    return section("limits", f"Limits and denials ({len(noted)})",
                   grid(["Event", "Kind", "Detail"], body) if body else "<p>none</p>")


def detail(record: dict) -> str:
    """The one field that says what a limit or denial event was about."""
    for name in ("reason", "message", "error", "limit_s", "limit", "iterations", "exit_code", "code", "path"):
        if record.get(name) not in (None, ""):
            return f"{name}: {record[name]}"
    return ""


def comparison(end: dict | None) -> str:
    """The run's tokens against the whole input in one prompt, as an inline SVG bar chart."""
    cmp = end.get("comparison") if end else None
    if end is None or not isinstance(cmp, dict):
        return ""
    stuffed, used = finite(cmp.get("input_tokens")), finite(cmp.get("rlm_tokens"))
    if stuffed is None or used is None:
        return ""
    width, top = 600, max(stuffed, used, 1)
    bar = lambda value: max(2, int(width * value / top))  # noqa: E731
    svg = (f"<svg width='{width + 320}' height='70' role='img' aria-label='token comparison'>"
           f"<rect x='200' y='5' width='{bar(stuffed)}' height='24' fill='#98a2b3'/>"
           f"<text x='0' y='22'>whole input in one prompt</text>"
           f"<text x='{205 + bar(stuffed)}' y='22'>{stuffed:,.0f}</text>"
           f"<rect x='200' y='38' width='{bar(used)}' height='24' fill='#4b6bfb'/>"
           f"<text x='0' y='55'>this RLM run</text><text x='{205 + bar(used)}' y='55'>{used:,.0f}</text></svg>")
    saved = finite(cmp.get("saved_pct"))
    words = (f"{abs(saved)}% {'fewer' if saved >= 0 else 'more'} tokens ({e(cmp.get('method'))})"
             if saved is not None else "")
    return section("comparison", "Tokens against one prompt",
                   f"{svg}<p>{words}; cost {e(money(end.get('cost_usd')))}</p>")
