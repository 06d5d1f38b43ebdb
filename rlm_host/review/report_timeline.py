"""The report's timeline: every iteration's root call, code, output and sub-calls, with limits in place.

Each event kind has one small renderer; a kind the report does not know is still shown (by name
and its fields), so nothing recorded is silently left out. Values are hostile: see ``report_html``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..sanitize import finite
from .report_html import e, money, text
from .report_sections import NOTED, detail
from ..events import (AnswerGiven, Cell, DocumentLoaded, DocumentSkipped, ExecError, ExecStart, IterationStart,
                      ProgressNote, RootReply, RunEnd, RunError, RunStart, SandboxStart, SandboxStop, Seal, Subcall)

BORING = {RunStart.kind, RunEnd.kind, Seal.kind, ProgressNote.kind, DocumentLoaded.kind, SandboxStart.kind,
          SandboxStop.kind, ExecStart.kind, IterationStart.kind, DocumentSkipped.kind}


def timeline(records: list[dict]) -> str:
    """Every iteration as a block, with the events that happened in it, in order."""
    parts, open_block = ["<section id='timeline'><h2>Timeline</h2>"], False
    for record in records:
        if record["kind"] == IterationStart.kind:
            parts.append("</div>" if open_block else "")
            parts.append(_iteration(record))
            open_block = True
        elif record["kind"] not in BORING or (record["kind"] in {RunStart.kind, RunEnd.kind}
                                              and record.get("depth", 1) != 1):
            parts.append(event(record))
    parts.append("</div></section>" if open_block else "</section>")
    return "".join(parts)


def exec_cell(records: list[dict]) -> str:
    """An ``rlm-host exec`` log: its one cell, and whatever else happened around it."""
    shown = [event(r) for r in records if r["kind"] not in BORING]
    return (f"<section id='cell'><h2>The cell (rlm-host exec)</h2>"
            f"{''.join(shown) or '<p>no cell recorded</p>'}</section>")


def event(record: dict) -> str:
    """One event, by its kind."""
    kind = record["kind"]
    if kind.startswith(NOTED):
        return f"<div class='event' data-kind='{e(kind)}'><b>{e(kind)}</b> {e(detail(record))}</div>"
    return RENDERERS.get(kind, _other)(record)


def _iteration(record: dict) -> str:
    depth = finite(record.get("depth")) or 1
    child = f" (child RLM, depth {e(record.get('depth'))})" if depth > 1 else ""
    return (f"<div class='iteration' data-iteration='{e(record.get('iteration'))}'>"
            f"<h3>Iteration {e(record.get('iteration'))}{child}</h3>")


ROOT_EXCHANGE = "the root model's prompt (last message) and reply"


def _root(record: dict) -> str:
    return (f"<div class='meta'>root model {e(record.get('model'))}: {e(record.get('prompt_tokens'))} + "
            f"{e(record.get('completion_tokens'))} tokens, {e(record.get('latency_s'))} s, "
            f"{e(record.get('retries', 0))} retries, cost {e(money(record.get('cost_usd')))}</div>"
            f"{_exchange(record, ROOT_EXCHANGE)}")


def _cell(record: dict) -> str:
    status = record.get("status")
    flags = [name for name in ("truncated", "restarted") if record.get(name) is True]
    extra = "".join(f", {e(label)} {e(record.get(name))}" for name, label in (("error", "error"), ("reason", "reason"))
                    if record.get(name))
    output = "".join(f"<pre class='output' data-stream='{name}'>{e(body)}</pre>" for name, body in
                     (("stdout", text(record, "stdout")), ("stderr", text(record, "stderr")),
                      ("result", text(record, "result"))) if body)
    return (f"<div class='meta'>cell <b class='{'ok' if status == 'ok' else 'bad'}'>{e(status)}</b> in "
            f"{e(record.get('duration_ms'))} ms{extra}{''.join(f', output {f}' for f in flags)}</div>"
            f"<pre class='code'>{e(text(record, 'code'))}</pre>{output or '<p class=meta>no output</p>'}")


def _subcall(record: dict) -> str:
    return (f"<div class='sub'><div class='meta'>↳ sub-call {e(record.get('model'))}: {e(record.get('prompt_chars'))} "
            f"chars in, {e(record.get('reply_chars'))} out, {e(record.get('prompt_tokens'))} + "
            f"{e(record.get('completion_tokens'))} tokens, {e(record.get('latency_s'))} s, "
            f"cost {e(money(record.get('cost_usd')))}</div>{_exchange(record, 'its prompt and reply')}</div>")


def _exchange(record: dict, summary: str) -> str:
    """A model call's prompt and reply, folded under ``summary``."""
    return (f"<details><summary>{summary}</summary><pre class='prompt'>{e(text(record, 'prompt'))}</pre>"
            f"<pre class='reply'>{e(text(record, 'response'))}</pre></details>")


def _answer(record: dict) -> str:
    return f"<div class='meta'>answer() called: {e(record.get('chars'))} characters</div>"


def _failure(record: dict) -> str:
    return (f"<div class='event failure' data-kind='{e(record['kind'])}'>"
            f"<b>{e(record['kind'])}</b> {e(record.get('error'))}</div>")


def _child(record: dict) -> str:
    what = "starts" if record["kind"] == RunStart.kind else "ends"
    return f"<div class='meta'>child RLM (depth {e(record.get('depth'))}) {what}</div>"


def _other(record: dict) -> str:
    fields = {k: v for k, v in record.items() if k not in {"kind", "seq", "ts", "run_id", "prev", "hash"}}
    return (f"<div class='meta' data-kind='{e(record['kind'])}'>{e(record['kind'])}: "
            f"{e(json.dumps(fields, default=str)[:2000])}</div>")


RENDERERS: dict[str, Callable[[dict], str]] = {
    RootReply.kind: _root, Cell.kind: _cell, Subcall.kind: _subcall, AnswerGiven.kind: _answer,
    RunError.kind: _failure, ExecError.kind: _failure, RunStart.kind: _child, RunEnd.kind: _child}
