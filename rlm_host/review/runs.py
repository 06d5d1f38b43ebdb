"""Many runs at a glance: one summary per audit log in a folder, for `audit list`, `verify DIR` and the index.

A summary is computed by us from the one reader and ``verify``: its status, verification, counts and
seal reason come from a fixed vocabulary, so a log cannot make its own line say anything else. The
two fields that are the log's own text (the query, the file name) are kept raw here and shown only
quoted and made visible, at the end of a line (``line``), or escaped in HTML (``report_index``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .. import audit
from ..audit import Verdict, is_event, load_key, quoted, read_log, verify_lines
from ..errors import AuditReadError, ConfigError, ExitCode, LogNotFound, NoAuditKey
from ..events import (ConnectionRefused, ExecStart, FrameRejected, RebindRefused, RunEnd, RunStart, SandboxStartRefused,
                      Seal, SubcallDenied)
from .formats import money
from ..sanitize import finite
from ..settings import audit_dir

VERIFICATION: dict[int, str] = {
    ExitCode.INTACT: "intact", ExitCode.TAMPERED: "tampered", ExitCode.UNFINISHED: "unfinished",
    ExitCode.NOT_A_LOG: "not-a-log", ExitCode.NOT_FOUND: "unreadable", ExitCode.NO_KEY: "no-key"}
STATUSES = ("answered", "last_resort", "failed", "exec", "unfinished", "not-a-log")
# The seal reasons rlm-host writes (docs/audit.md); any other value is shown as "?", never as itself.
DENIALS = frozenset({SubcallDenied.kind, RebindRefused.kind, FrameRejected.kind, ConnectionRefused.kind,
                     SandboxStartRefused.kind})
QUERY_CHARS = 120


@dataclass
class RunSummary:
    """What `audit list` shows of one log (``verdict`` is the one-line verify result)."""

    file: str
    exit_code: int
    verification: str
    verdict: str
    status: str = "not-a-log"
    run_id: str | None = None
    started: float | None = None
    query: str | None = None
    answer: str | None = None
    cost_usd: float | None = None
    iterations: int | None = None
    denials: int = 0
    limits: int = 0
    seal_reason: str | None = None
    kinds: list[str] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The summary as `audit list --json` prints it (the start as ISO 8601 with its offset)."""
        data = {k: v for k, v in asdict(self).items() if k != "kinds"}
        data["started"] = _iso(self.started)
        return data


def find_logs(folder: Path) -> list[Path]:
    """The ``*.jsonl`` files in a folder (not below it), sorted by name; a file stands for itself."""
    if not folder.exists():
        raise LogNotFound(f"{quoted(folder)} not found; audit logs are in {audit_dir()} (RLM_HOST_AUDIT_DIR)")
    if not folder.is_dir():
        return [folder]
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(".jsonl"))
    except OSError as exc:
        raise LogNotFound(f"cannot list {folder}: {exc.strerror}") from exc


def summarize_all(paths: Iterable[Path]) -> list[RunSummary]:
    """One summary per log, oldest run first; the key is looked up once (none: every log says no-key)."""
    try:
        key: bytes | None = load_key(create=False)
    except NoAuditKey as exc:
        key, missing = None, exc
    found = [summarize(path, key) if key is not None else summarize(path, None, missing) for path in paths]
    return sorted(found, key=lambda s: (s.started is None, s.started or 0.0, s.file))


def summarize(path: Path, key: bytes | None, no_key: NoAuditKey | None = None) -> RunSummary:
    """One log's summary; a path that is no log gets a summary that says why."""
    try:
        lines = read_log(path)
    except AuditReadError as exc:
        return RunSummary(str(path), exc.exit_code, VERIFICATION[exc.exit_code], str(exc))
    if key is None:
        verdict: Verdict | None = None
        code, told = ExitCode.NO_KEY, f"{quoted(path)}: {no_key}"
    else:
        verdict = verify_lines(path, lines, key)
        code, told = verdict.exit_code, verdict.summary(path)
    records = [line.record for line in lines if is_event(line.record)]
    return _from_records(RunSummary(str(path), code, VERIFICATION[code], told), records)


def _from_records(summary: RunSummary, records: list[dict[str, Any]]) -> RunSummary:
    """Fill in what the events say, reading only fields of the expected types."""
    start = next((r for r in records if r["kind"] in {RunStart.kind, ExecStart.kind}), records[0])
    end = next((r for r in reversed(records) if r["kind"] == RunEnd.kind and r.get("depth", 1) == 1), None)
    summary.kinds = [r["kind"] for r in records]
    summary.run_id = start["run_id"]
    summary.started = finite(start.get("ts"))
    summary.query = _string(start.get("query")) or ("[hidden at this audit level]" if "query_digest" in start else None)
    summary.status = _status(summary.kinds, end)
    if end is not None:
        summary.answer = _string(end.get("answer"))
        summary.cost_usd = finite(end.get("cost_usd"))
        iterations = end.get("iterations")
        summary.iterations = iterations if isinstance(iterations, int) and not isinstance(iterations, bool) else None
    summary.denials = sum(kind in DENIALS for kind in summary.kinds)
    summary.limits = sum(kind.startswith("limit.") for kind in summary.kinds)
    summary.seal_reason = _seal_reason(records)
    return summary


def _status(kinds: list[str], end: dict[str, Any] | None) -> str:
    if "run.error" in kinds or "exec.error" in kinds:
        return "failed"
    if end is not None:
        return "last_resort" if end.get("fallback") is True else "answered"
    if "exec.start" in kinds and "cell" in kinds:
        return "exec"
    return "unfinished"


def _seal_reason(records: list[dict[str, Any]]) -> str | None:
    """The seal's reason from our vocabulary, "" for a seal that names none (older logs), None unsealed."""
    if records[-1]["kind"] != Seal.kind:
        return None
    reason = records[-1].get("reason")
    if reason is None:
        return ""
    return reason if isinstance(reason, str) and reason in audit.SEAL_REASONS else "?"


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _iso(ts: float | None) -> str | None:
    try:
        return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds") if ts is not None else None
    except (OverflowError, OSError, ValueError):
        return None


# -- filters ------------------------------------------------------------------------------------

def parse_when(value: str, *, end_of_day: bool = False) -> float:
    """A ``--since``/``--until`` value (``2026-12-01`` or ``2026-12-01T14:30``, local time) as a timestamp.

    A bare date given to ``--until`` takes in the whole of that day.
    """
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"date {value!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    if end_of_day and len(value) == 10:
        when += timedelta(days=1)
    return when.timestamp()


def check_status(status: str) -> str:
    """A ``--status`` value: a run status or a verification, else a ConfigError listing them."""
    known = STATUSES + tuple(v for v in VERIFICATION.values() if v not in STATUSES)
    if status not in known:
        raise ConfigError(f"unknown status {status!r}: use one of {', '.join(known)}")
    return status


def keep(summary: RunSummary, *, statuses: list[str], since: float | None, until: float | None,
         grep: str | None) -> bool:
    """Whether a summary passes the filters of `audit list` (a run with no start time fails a date filter)."""
    if statuses and summary.status not in statuses and summary.verification not in statuses:
        return False
    started = summary.started
    if since is not None or until is not None:
        if started is None:
            return False
        if (since is not None and started < since) or (until is not None and started >= until):
            return False
    if grep:
        haystack = " ".join(t for t in (summary.query, summary.answer, summary.run_id, summary.file) if t)
        return grep.casefold() in haystack.casefold()
    return True


# -- the text line ------------------------------------------------------------------------------

HEADER = (f"{'when':19}  {'status':11}  {'verified':10}  {'cost':>9}  {'denied':>6}  {'limits':>6}  "
          f"{'sealed':13}  file  query")


def line(summary: RunSummary) -> str:
    """One line: our own fixed-width columns first, then the file name and query, each quoted and visible."""
    started = summary.started
    when = (datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")
            if started is not None and _iso(started) else "-")
    cost = money(summary.cost_usd)
    sealed = "-" if summary.seal_reason is None else (summary.seal_reason or "sealed")
    query = summary.query if summary.query is None or len(summary.query) <= QUERY_CHARS \
        else summary.query[: QUERY_CHARS - 1] + "…"
    return (f"{when:19}  {summary.status:11}  {summary.verification:10}  {cost:>9}  {summary.denials:>6}  "
            f"{summary.limits:>6}  {sealed:13}  {quoted(Path(summary.file).name)}  "
            f"{quoted(query) if query is not None else '-'}")


def tally(summaries: list[RunSummary]) -> str:
    """The last line of `verify DIR`: how many logs, and how many of each verification."""
    counts = {name: sum(s.verification == name for s in summaries) for name in VERIFICATION.values()}
    parts = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    return f"{len(summaries)} log(s): {parts or 'none'}"
