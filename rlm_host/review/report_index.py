"""`rlm-host report DIR -o index.html`: one page listing every run in a folder, each linked to its report.

For a batch's folder (it holds ``results.jsonl``) the page lists every task instead: its id, and its
run's status, verification, cost, denials, limits and answer from the run's own log, found only
under the folder's ``audit/`` (a result line naming a log elsewhere is shown as having none), and
after it a row for each other log in that task's folder: an earlier attempt, stopped or cut off with
its node, shown with its own verification (unfinished, for a log whose writer died).

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
    missing: int = 0  # a batch's results whose log is not in its folder

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code for s in self.summaries] + [ExitCode.NOT_FOUND] * self.missing
        return worst(codes) if codes else ExitCode.INTACT


def write_index(folder: Path, output: Path) -> Index:
    """Write each run's report beside ``output``, then ``output`` itself, linking them."""
    summaries = summarize_all(find_logs(folder))
    reports, rows = [], []
    for number, summary in enumerate(summaries, 1):
        report = _write_report(number, summary, output.parent)
        rows.append(_row(summary, report))
        reports += [report] if report else []
    head = ("when", "status", "verified", "cost", "denied", "limits", "sealed", "query (report)", "log")
    _write(output, _page("rlm-host runs", head, rows, f"{len(summaries)} log(s) in {folder}",
                         "no audit logs (*.jsonl) in this folder"))
    return Index(output, reports, summaries)


def write_batch_index(folder: Path, output: Path) -> Index:
    """`report DIR` for a batch's folder: one row per task of ``results.jsonl``, linked to its run's report."""
    from ..batches.runner import results_of

    root = (folder / "audit").resolve()
    entries: list[tuple[str, Path | None, object]] = []
    for task, record in results_of(folder / "results.jsonl").items():
        log = _inside(record.get("audit_log"), root)
        entries.append((task, log, record.get("node")))
        entries += [(f"{task} (earlier attempt)", other, "-") for other in _earlier(log)]
    summaries = summarize_all(log for _, log, _ in entries if log is not None)
    by_file = {s.file: s for s in summaries}
    reports, rows = [], []
    for number, (task, log, node) in enumerate(entries, 1):
        summary = by_file.get(str(log)) if log is not None else None
        report = _write_report(number, summary, output.parent) if summary is not None else None
        rows.append(_task_row(task, summary, report, node))
        reports += [report] if report else []
    head = ("task", "status", "verified", "cost", "denied", "limits", "sealed", "answer (report)", "node")
    missing = sum(log is None for _, log, _ in entries)  # an earlier attempt always has its log
    _write(output, _page("rlm-host batch", head, rows, f"{len(entries)} task(s) in {folder}", "no results yet"))
    return Index(output, reports, summaries, missing)


def _earlier(log: Path | None) -> list[Path]:
    """The task's other logs in its folder: runs stopped, or cut off with their node, before the one that counts."""
    if log is None:
        return []
    return sorted(p for p in log.parent.glob("*.jsonl") if p != log and p.is_file() and not p.is_symlink())


def _inside(value: object, root: Path) -> Path | None:
    """A result line's log path, if it is a regular file under the batch's ``audit/`` and no link."""
    if not isinstance(value, str) or not value or "\0" in value:
        return None
    path = Path(value)
    if not path.is_absolute() or path.is_symlink():
        return None
    resolved = path.resolve()
    return resolved if root in resolved.parents and resolved.is_file() else None


def _task_row(task: str, summary: RunSummary | None, report: Path | None, node: object) -> str:
    where = f"<td class='meta'>{_cell(node if isinstance(node, str) else '-')}</td>"
    if summary is None:
        cells = ["-", "<td class='bad'>no log in the batch's audit folder</td>", "-", "-", "-", "-", "-"]
        return (f"<tr data-verification='missing'><td>{_cell(task)}</td>{''.join(_td(c) for c in cells)}"
                f"{where}</tr>")
    answer = _cell((summary.answer or "-")[:200])
    target = f"<a href='{quote(report.name)}'>{answer}</a>" if report else answer
    return (f"<tr data-verification='{_cell(summary.verification)}'><td>{_cell(task)}</td>{_shared_cells(summary)}"
            f"<td>{target}</td>{where}</tr>")


def _td(cell: str) -> str:
    return cell if cell.startswith("<td") else f"<td>{cell}</td>"


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
    query = _cell(summary.query if summary.query is not None else "-")
    target = f"<a href='{quote(report.name)}'>{query}</a>" if report else query
    return (f"<tr data-verification='{_cell(summary.verification)}'><td>{_cell(_when(summary))}</td>"
            f"{_shared_cells(summary)}<td>{target}</td><td class='meta'>{_cell(Path(summary.file).name)}</td></tr>")


def _shared_cells(summary: RunSummary) -> str:
    """Status, verification, cost, denials, limits and seal: the cells every row of a run has."""
    sealed = "-" if summary.seal_reason is None else (summary.seal_reason or "sealed")
    css = CSS_CLASS.get(summary.verification, "bad")
    return (f"<td>{_cell(summary.status)}</td><td class='{css}'>{_cell(summary.verification)}</td>"
            f"<td>{_cell(money(summary.cost_usd))}</td><td>{summary.denials}</td><td>{summary.limits}</td>"
            f"<td>{_cell(sealed)}</td>")


def _when(summary: RunSummary) -> str:
    iso = summary.to_json()["started"]
    return iso.replace("T", " ")[:19] if iso else "-"


def _page(title: str, head: tuple[str, ...], rows: list[str], meta: str, empty: str) -> str:
    heads = "".join(f"<th>{h}</th>" for h in head)
    table = f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>" if rows \
        else f"<p>{empty}</p>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body><header><h1>{title}</h1><div class='meta'>{_cell(meta)}</div>"
            f"</header><main><section id='runs'>{table}</section></main></body></html>")
