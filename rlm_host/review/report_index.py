"""`rlm-host report DIR -o index.html`: one page listing every run in a folder, each linked to its report.

Each run's report is written beside the index under a name we make (its number and run id, reduced
to ``[A-Za-z0-9_-]``), never under a name the log chose. Every cell of the table is a summary from
``runs`` (our vocabulary) or the log's own text HTML-escaped after ``visible``; the page loads nothing.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..errors import ConfigError, ExitCode, RLMHostError, worst
from .report import STYLE, build
from .runs import RunSummary, find_logs, summarize_all
from .formats import money
from .report_html import e

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS_CLASS = {"intact": "ok", "tampered": "bad", "unfinished": "warn"}

_cell = functools.partial(e, newlines=False)  # a table cell stays one line: its breaks shown as \\n


@dataclass(frozen=True)
class Index:
    """What `report DIR` wrote: the index, one report per log that is one, and the exit code."""

    path: Path
    reports: list[Path]
    summaries: list[RunSummary]

    @property
    def exit_code(self) -> int:
        return worst(s.exit_code for s in self.summaries) if self.summaries else ExitCode.INTACT


def write_index(folder: Path, output: Path) -> Index:
    """Write each run's report beside ``output``, then ``output`` itself, linking them."""
    summaries = summarize_all(find_logs(folder))
    reports, rows = [], []
    for number, summary in enumerate(summaries, 1):
        report = _write_report(number, summary, output.parent)
        rows.append(_row(summary, report))
        reports += [report] if report else []
    _write(output, _page(folder, rows, len(summaries)))
    return Index(output, reports, summaries)


def report_name(number: int, summary: RunSummary) -> str:
    """A report's file name, from its number and run id: nothing a log chose beyond ``[A-Za-z0-9_-]``."""
    run = re.sub(r"[^A-Za-z0-9_-]", "_", summary.run_id or "")[:40]
    return f"run-{number:04d}-{run or 'unknown'}.html"


def _write_report(number: int, summary: RunSummary, folder: Path) -> Path | None:
    """The run's own report page, or None for a file that is no audit log."""
    if summary.exit_code in (ExitCode.NOT_A_LOG, ExitCode.NOT_FOUND):
        return None
    try:
        page = build(Path(summary.file))
    except RLMHostError:
        return None  # it changed since it was summarized, or cannot be rendered: listed, not linked
    path = folder / report_name(number, summary)
    _write(path, page)
    return path


def _write(path: Path, text: str) -> None:
    """Write a page; a link already at that name is refused, never followed to a file elsewhere."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}; "
                          "give -o a file in an existing, writable folder") from exc


def _row(summary: RunSummary, report: Path | None) -> str:
    when = _cell(_when(summary))
    cost = money(summary.cost_usd)
    sealed = "-" if summary.seal_reason is None else (summary.seal_reason or "sealed")
    query = _cell(summary.query if summary.query is not None else "-")
    target = f"<a href='{quote(report.name)}'>{query}</a>" if report else query
    css = CSS_CLASS.get(summary.verification, "bad")
    return (f"<tr data-verification='{_cell(summary.verification)}'><td>{when}</td><td>{_cell(summary.status)}</td>"
            f"<td class='{css}'>{_cell(summary.verification)}</td><td>{_cell(cost)}</td><td>{summary.denials}</td>"
            f"<td>{summary.limits}</td><td>{_cell(sealed)}</td><td>{target}</td>"
            f"<td class='meta'>{_cell(Path(summary.file).name)}</td></tr>")


def _when(summary: RunSummary) -> str:
    iso = summary.to_json()["started"]
    return iso.replace("T", " ")[:19] if iso else "-"


def _page(folder: Path, rows: list[str], count: int) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("when", "status", "verified", "cost", "denied", "limits",
                                             "sealed", "query (report)", "log"))
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>" if rows \
        else "<p>no audit logs (*.jsonl) in this folder</p>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><title>rlm-host runs</title>"
            f"<style>{STYLE}</style></head><body><header><h1>rlm-host runs</h1><div class='meta'>{count} log(s) in "
            f"{_cell(folder)}</div></header><main><section id='runs'>{table}</section></main></body></html>")
