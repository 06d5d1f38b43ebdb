"""One self-contained HTML page for reviewing a run, built from its audit log.

It loads nothing: a Content-Security-Policy meta allows only the page's own stylesheet and script
(by hash), so not even text that escaped its escaping could fetch or run anything. A log that does
not verify (tampered, unfinished, or no key to check it) gets a warning page first: what failed and
on which line, then the content as found, marked untrusted. ``render`` says which, so ``report``
can exit with the audit commands' code for it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..audit import Verdict, events, load_key, verify
from ..errors import ExitCode, NoAuditKey
from .report_html import e
from .report_sections import (Story, answer, audit_level, comparison, documents, failure, limits, overview,
                              story, usage)
from .report_style import STYLE
from .report_timeline import exec_cell, timeline

__all__ = ["STYLE", "Report", "build", "render"]

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
# What verification found, in the audit commands' exit-code table (errors.ExitCode, docs/audit.md).
EXIT_CODES = {"intact": ExitCode.INTACT, "broken": ExitCode.TAMPERED, "unfinished": ExitCode.UNFINISHED,
              "unverified": ExitCode.NO_KEY}


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; style-src {_csp_hash(STYLE)}; script-src {_csp_hash(SCRIPT)}; img-src 'none'; "
       "base-uri 'none'; form-action 'none'")


@dataclass(frozen=True)
class Report:
    """A report page and what verifying its log found: ``status`` is intact, broken, unfinished or unverified."""

    html: str
    status: str
    problem: str  # one line: what failed and where; "" when intact

    @property
    def exit_code(self) -> ExitCode:
        """The audit commands' exit code for what verification found."""
        return EXIT_CODES[self.status]


def build(path: Path) -> str:
    """The report page for the audit log at ``path``."""
    return render(path).html


def render(path: Path) -> Report:
    """The page, with the verification outcome that decides its warning and the command's exit code."""
    records = [record for record in events(path) if isinstance(record.get("kind"), str)]  # the one reader
    status, summary, bad_line = _check(path)
    problem = "" if status == "intact" else summary
    s = story(records)
    body = "".join(_content(s, records))
    warning = _warning(status, problem, bad_line)
    trust = " class='untrusted'" if status in {"broken", "unverified"} else ""
    title = {"broken": "TAMPERED: ", "unverified": "UNVERIFIED: ", "unfinished": "UNFINISHED: "}.get(status, "")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\"><meta name='referrer' content='no-referrer'>"
            f"<title>{title}rlm-host {'exec' if s.shape == 'exec' else 'run'} {e(s.start.get('run_id', ''))}</title>"
            f"<style>{STYLE}</style></head><body data-status='{status}'>{warning}{_header(path, s)}"
            f"<main{trust}>{_chain(status, summary)}{body}</main><script>{SCRIPT}</script></body></html>")
    return Report(page, status, problem)


def _check(path: Path) -> tuple[str, str, int]:
    """Verify the log: its status, one line saying so (what failed and where), and the first bad line."""
    try:
        key = load_key(create=False)
    except NoAuditKey as exc:
        return "unverified", str(exc), 0
    verdict: Verdict = verify(path, key)
    status = {"intact": "intact", "unfinished": "unfinished"}.get(verdict.status, "broken")
    return status, verdict.summary(path), verdict.bad_line or 0


def _content(s: Story, records: list[dict]) -> list[str]:
    if s.shape == "exec":
        return [failure(s, records), overview(s, records), audit_level(s), documents(s, records),
                exec_cell(records), limits(records)]
    return [failure(s, records), answer(s), overview(s, records), audit_level(s), documents(s, records),
            usage(s, records), timeline(records), limits(records), comparison(s.end)]


def _warning(status: str, problem: str, bad_line: int) -> str:
    """The warning that comes first on a page whose log does not verify."""
    if status == "intact":
        return ""
    if status == "unfinished":
        return ("<section id='warning' class='unfinished' role='alert'><h2>Unfinished log: the record may be "
                f"incomplete</h2><p>{e(problem)}</p><p>Every line below verifies, but the run did not seal its log: it "
                "did not finish, is still running, or its end was cut off.</p></section>")
    head = "This log failed verification" if status == "broken" else "This log could not be verified"
    return (f"<section id='warning' role='alert'><h2 class='bad'>⚠ {head}: do not trust what it says</h2>"
            f"<p><b>{e(problem)}</b></p><p>{_prefix(status, bad_line)}Everything below is shown as found in the "
            "file and may be edited, forged, reordered or cut. It is marked untrusted.</p></section>")


def _prefix(status: str, bad_line: int) -> str:
    """How much of a tampered log still verifies: the lines before the first bad one are what the run wrote."""
    if status != "broken" or bad_line < 1:
        return ""
    if bad_line == 1:
        return "No line of it verifies. "
    return f"Lines 1 to {bad_line - 1} verify; from line {bad_line} on nothing can be trusted. "


def _header(path: Path, s: Story) -> str:
    start = s.start
    what = "rlm-host exec (one cell)" if s.shape == "exec" else "rlm-host run"
    return (f"<header><h1>{what} {e(start.get('run_id', ''))}</h1><div class='meta'>{e(path.name)} · "
            f"policy {e(start.get('policy', '-'))} ({e(start.get('runtime', '-'))}, audit "
            f"{e(s.level)}) · rlm-host {e(start.get('host_version', '-'))}</div></header>")


def _chain(status: str, summary: str) -> str:
    """The verification line of a log that verifies (one that does not gets the warning instead)."""
    if status != "intact":
        return ""
    return f"<section id='verify'><h2>Chain</h2><p class='ok' data-status='{status}'>{e(summary)}</p></section>"
