"""One self-contained HTML page for reviewing a run, built from its audit log.

No network fetches: the CSS, the small script and the chart (inline SVG) are in the page. Text
the audit level kept is shown; text it replaced by a digest is shown as that digest.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .audit import Verdict, events, verify
from .errors import RLMHostError
from .sanitize import visible

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:16px 28px}header h1{margin:0;font-size:20px}
main{padding:12px 28px;max-width:1100px}section{background:#fff;border:1px solid #dde1e8;border-radius:6px;
margin:14px 0;padding:12px 16px}h2{font-size:16px;margin:4px 0 10px}pre{background:#f1f3f6;padding:8px;
overflow-x:auto;white-space:pre-wrap;margin:6px 0}.ok{color:#17803d}.bad{color:#b42318}.warn{color:#b54708}
.iteration{border-left:4px solid #4b6bfb;padding-left:10px;margin:12px 0}.meta{color:#5b6475;font-size:12px}
.sub{margin-left:18px;color:#33415c}.cite{cursor:pointer;color:#4b6bfb;text-decoration:underline}
.evidence.active{outline:3px solid #f5b700}table{border-collapse:collapse}td,th{padding:3px 10px;
border-bottom:1px solid #e4e7ec;text-align:left}
"""
STYLE = CSS  # the name the index page imports (report_index.py)
SCRIPT = """
document.querySelectorAll('.cite').forEach(function (link) {
  link.addEventListener('click', function () {
    var target = document.getElementById(link.dataset.target);
    if (!target) { return; }
    document.querySelectorAll('.evidence').forEach(function (e) { e.classList.remove('active'); });
    target.classList.add('active');
    target.scrollIntoView({behavior: 'smooth', block: 'center'});
  });
});
document.body.dataset.iterations = String(document.querySelectorAll('.iteration').length);
"""


def build(path: Path) -> str:
    """The report page for the audit log at ``path``."""
    records = [r for r in events(path) if isinstance(r.get("kind"), str)]  # the one reader
    if not records:
        raise RLMHostError(f"audit log {path} has no readable events; nothing to report")
    try:
        verdict: Verdict | None = verify(path)
    except RLMHostError:
        verdict = None
    start = next((r for r in records if r["kind"] in {"run.start", "exec.start"}), records[0])
    end = next((r for r in reversed(records) if r["kind"] == "run.end" and r.get("depth", 1) == 1), None)
    body = [_header(path, start), _verdict(path, verdict), _answer(start, end), _timeline(records),
            _limits(records), _comparison(end)]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>rlm-host run "
            f"{_e(start.get('run_id', ''))}</title><style>{CSS}</style></head><body>"
            f"{''.join(body)}<script>{SCRIPT}</script></body></html>")


def _e(value: Any) -> str:
    """HTML-escaped, with controls, bidi overrides and lone surrogates shown as visible escapes."""
    return html.escape(visible(value, newlines=True))


def _text(record: dict, name: str) -> str:
    """A text field, or its digest when the audit level kept only that."""
    if name in record:
        value = record[name]
        return value if isinstance(value, str) else str(value)
    if f"{name}_digest" in record:
        d = record[f"{name}_digest"]
        return f"[{d.get('bytes')} bytes, sha256 {str(d.get('sha256'))[:16]}…: hidden at this audit level]"
    return ""


def _header(path: Path, start: dict) -> str:
    models = f"root {_e(start.get('model', '-'))}, sub {_e(start.get('sub_model', '-'))}"
    return (f"<header><h1>rlm-host run {_e(start.get('run_id', ''))}</h1><div class='meta'>{_e(path.name)} · "
            f"{models} · policy {_e(start.get('policy', '-'))} ({_e(start.get('runtime', '-'))}, audit "
            f"{_e(start.get('audit_level', '-'))}) · rlm-host {_e(start.get('host_version', '-'))}</div></header><main>")


def _verdict(path: Path, verdict: Verdict | None) -> str:
    if verdict is None:
        return "<section id='verify'><h2>Chain</h2><p class='warn'>not verified: the audit key is not available here</p></section>"
    css = {"intact": "ok", "unfinished": "warn", "broken": "bad"}[verdict.status]
    return (f"<section id='verify'><h2>Chain</h2><p class='{css}' data-status='{verdict.status}'>"
            f"{_e(verdict.summary(path))}</p></section>")


def _answer(start: dict, end: dict | None) -> str:
    query = _text(start, "query")
    if end is None:
        return f"<section id='answer'><h2>Question</h2><p>{_e(query)}</p><p class='warn'>no answer: the run did not finish</p></section>"
    links, quotes = [], []
    for n, (cite, evidence) in enumerate(zip(end.get("citations", []), end.get("evidence", [""] * 99)), 1):
        where = " ".join(str(cite.get(k)) for k in ("document", "start", "end", "page") if cite.get(k) is not None)
        links.append(f"<span class='cite' data-target='evidence-{n}'>[{n}] {_e(where)}</span>")
        quotes.append(f"<pre class='evidence' id='evidence-{n}'>[{n}] {_e(evidence or '(evidence text not recorded)')}</pre>")
    fallback = " <span class='warn'>(last-resort answer)</span>" if end.get("fallback") else ""
    return (f"<section id='answer'><h2>Question</h2><p>{_e(query)}</p><h2>Answer{fallback}</h2>"
            f"<pre>{_e(_text(end, 'answer'))}</pre><p>{' '.join(links) or 'no citations'}</p>{''.join(quotes)}</section>")


def _timeline(records: list[dict]) -> str:
    parts, open_iteration = ["<section id='timeline'><h2>Timeline</h2>"], False
    for record in records:
        kind = record["kind"]
        if kind == "iteration.start":
            if open_iteration:
                parts.append("</div>")
            depth = f" (child RLM, depth {record['depth']})" if record.get("depth", 1) > 1 else ""
            parts.append(f"<div class='iteration' data-iteration='{_e(record['iteration'])}'>"
                         f"<h3>Iteration {_e(record['iteration'])}{depth}</h3>")
            open_iteration = True
        elif kind == "root":
            parts.append(f"<div class='meta'>root model: {_e(record.get('prompt_tokens'))} + "
                         f"{_e(record.get('completion_tokens'))} tokens, {_e(record.get('latency_s'))} s</div>")
        elif kind == "cell":
            parts.append(f"<div class='meta'>cell <b class='{'ok' if record.get('status') == 'ok' else 'bad'}'>"
                         f"{_e(record.get('status'))}</b> in {_e(record.get('duration_ms'))} ms</div>"
                         f"<pre class='code'>{_e(_text(record, 'code'))}</pre>"
                         f"<pre class='output'>{_e((_text(record, 'stdout') + _text(record, 'stderr'))[:4000])}</pre>")
        elif kind == "subcall":
            cost = record.get("cost_usd")
            parts.append(f"<div class='sub'>↳ sub-call {_e(record.get('model'))}: {_e(record.get('prompt_chars'))} "
                         f"chars in, {_e(record.get('reply_chars'))} out, {_e(record.get('prompt_tokens'))}+"
                         f"{_e(record.get('completion_tokens'))} tokens, "
                         f"{'$%.5f' % cost if cost is not None else 'cost unknown'}</div>")
    if open_iteration:
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _limits(records: list[dict]) -> str:
    noted = [r for r in records if r["kind"].startswith(("limit.", "subcall.denied", "rpc.", "kernel.", "sandbox.restart"))]
    rows = "".join(f"<tr><td>{_e(r['seq'])}</td><td>{_e(r['kind'])}</td><td>"
                   f"{_e(r.get('reason') or r.get('message') or r.get('code') or r.get('limit_s') or '')}</td></tr>"
                   for r in noted)
    return (f"<section id='limits'><h2>Limits and denials ({len(noted)})</h2>"
            f"{'<table>' + rows + '</table>' if rows else '<p>none</p>'}</section>")


def _comparison(end: dict | None) -> str:
    if end is None or "comparison" not in end:
        return "</main>"
    cmp = end["comparison"]
    stuffed, used = max(cmp["input_tokens"], 1), cmp["rlm_tokens"]
    width = 600
    bar = lambda value: max(2, int(width * value / max(stuffed, used)))  # noqa: E731
    cost = end.get("cost_usd")
    svg = (f"<svg width='{width + 320}' height='70' role='img' aria-label='token comparison'>"
           f"<rect x='200' y='5' width='{bar(stuffed)}' height='24' fill='#98a2b3'/>"
           f"<text x='0' y='22'>whole input in one prompt</text><text x='{205 + bar(stuffed)}' y='22'>{stuffed:,}</text>"
           f"<rect x='200' y='38' width='{bar(used)}' height='24' fill='#4b6bfb'/>"
           f"<text x='0' y='55'>this RLM run</text><text x='{205 + bar(used)}' y='55'>{used:,}</text></svg>")
    return (f"<section id='comparison'><h2>Tokens and cost</h2>{svg}<p>{_e(cmp['saved_pct'])}% "
            f"{'less' if cmp['saved_pct'] >= 0 else 'more'} ({_e(cmp['method'])}); cost "
            f"{'$%.5f' % cost if cost is not None else 'unknown'}</p></section></main>")
