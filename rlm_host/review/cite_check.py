"""``rlm-host audit cite``: each citation of a verified run, checked again against the documents on disk.

A citation records its document's name, SHA-256 (of the file as ingested) and ``text_sha256`` (of
the text its offsets index into), its document-local offsets and line, and its quote (the host's
text there). Each is reported as:

- ``matched``: the file's SHA-256 is the recorded one and, for a text file (one whose offsets index
  the file itself: ``text_sha256`` equals ``sha256``), the text at the local offsets is the recorded
  quote. A PDF (or any document whose text was extracted in the ingestion sandbox) is matched *by
  hash* only: the host never parses it, and the same bytes give the same
  extracted text (whose digest the log records as ``text_sha256``).
- ``moved``: a text file whose bytes changed, but which still holds the quote: the new local
  offsets and line are reported (they equal the old ones when the edit was elsewhere).
- ``missing``: the file is gone or not a regular file, the quote is no longer in it, or the file
  changed and the citation cannot be found again (a PDF, a whole-document citation, or a quote
  the audit level did not keep).

Where a document is looked for: with ``--documents``, in the given files (by file name) and folders
(the document's name under each, in order); without, at the path recorded at ingestion (the
``document`` event's ``source``). A name from the log that is absolute or climbs out (``..``) is
never joined to a folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .. import doctext
from ..events import AnswerGiven, DocumentLoaded, RunEnd

Status = Literal["matched", "moved", "missing"]


@dataclass(frozen=True)
class Checked:
    """One citation's outcome: where it was, what was found, and why."""

    number: int
    status: Status
    document: str
    line: int | None
    local_start: int | None
    local_end: int | None
    quote: str | None
    reason: str
    file: str | None = None
    new_start: int | None = None
    new_line: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cited(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    """The top run's citations and their quotes: from its end event, else from its answer event."""
    for kind in (RunEnd.kind, AnswerGiven.kind):
        found = [r for r in records if r.get("kind") == kind and r.get("depth", 1) == 1]
        if found:
            last = found[-1]
            cites = [c for c in last.get("citations") or [] if isinstance(c, dict)]
            quotes = last.get("evidence")
            quotes = quotes if isinstance(quotes, list) else []
            return [(c, quotes[n] if n < len(quotes) and isinstance(quotes[n], str) and quotes[n] else None)
                    for n, c in enumerate(cites)]
    return []


def sources(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each document's path as recorded at ingestion (its ``document`` event), by name."""
    return {str(r.get("name")): str(r["source"]) for r in records
            if r.get("kind") == DocumentLoaded.kind and isinstance(r.get("source"), str)}


def locate(name: str, recorded: str | None, given: Sequence[Path]) -> Path | None:
    """Where to look for document ``name`` (see the module's rule), or None when nowhere applies."""
    if not given:
        return Path(recorded) if recorded else None
    relative = PurePosixPath(name)
    climbs = relative.is_absolute() or ".." in relative.parts or not relative.parts
    candidates = [item for item in given if not item.is_dir() and item.name == relative.name]
    candidates += [] if climbs else [item / relative for item in given if item.is_dir()]
    return next((c for c in candidates if c.exists()), candidates[0] if candidates else None)


def check_all(records: list[dict[str, Any]], given: Sequence[Path] = ()) -> list[Checked]:
    """Every citation of the run, checked against the documents on disk."""
    recorded = sources(records)
    out = []
    for number, (cite, quote) in enumerate(cited(records), 1):
        name = str(cite.get("document") or "")
        path = locate(name, recorded.get(name), given) if name else None
        out.append(check(number, cite, quote, path, given=bool(given)))
    return out


def check(number: int, cite: dict[str, Any], quote: str | None, path: Path | None, *, given: bool = False) -> Checked:
    """One citation against the file at ``path`` (``given``: the user named where to look)."""
    base: dict[str, Any] = {"number": number, "document": str(cite.get("document") or "(between documents)"),
            "line": _int(cite.get("line")), "local_start": _int(cite.get("local_start")),
            "local_end": _int(cite.get("local_end")), "quote": quote}
    if path is None:
        return Checked(**base, status="missing", reason="no file to check it against: none of the given "
                       "--documents is it" if given else "no path recorded at ingestion: give --documents")
    try:
        digest = doctext.sha256_of(path)
    except OSError as exc:
        return Checked(**base, status="missing", reason=f"cannot read the document: {exc.strerror or exc}",
                       file=str(path))
    status, reason, found = _verdict(cite, quote, path, digest == cite.get("sha256"))
    return Checked(**base, status=status, reason=reason, file=str(path),
                   new_start=found[0] if found else None, new_line=found[1] if found else None)


def _verdict(cite: dict[str, Any], quote: str | None, path: Path,
             same: bool) -> tuple[Status, str, tuple[int, int] | None]:
    start = _int(cite.get("local_start"))
    if not cite.get("sha256") or cite.get("text_sha256") != cite.get("sha256"):
        return (("matched", "by hash: the file is the one ingested; its text was extracted in the sandbox "
                            "and is not parsed on the host", None) if same
                else ("missing", "the file changed; its text is not re-extracted on the host", None))
    if start is None or quote is None:
        what = "a whole-document citation" if start is None else "the quote was not kept at this audit level"
        return (("matched", f"by hash ({what})", None) if same
                else ("missing", f"the file changed and {what} cannot be found again", None))
    return _text_verdict(cite, quote, path, start, same)


def _text_verdict(cite: dict[str, Any], quote: str, path: Path, start: int,
                  same: bool) -> tuple[Status, str, tuple[int, int] | None]:
    end = _int(cite.get("local_end"))
    inside = quote[:max(end - start, 0)] if end is not None and end - start < len(quote) else quote
    here = doctext.text_at(path, start, len(inside)) == inside
    if same and here:
        return "matched", "same file, and the quote is at its offsets", None
    if same:
        return "missing", "same file, but the text at the recorded offsets is not the quote", None
    found = doctext.find(path, inside)
    if found is None:
        return "missing", "the file changed and the quote is no longer in it", None
    where = "at the same offsets (the file changed elsewhere)" if found[0] == start else "at new offsets"
    return "moved", f"the file changed; the quote is {where}", found


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def render(result: Checked) -> str:
    """One line per citation (plain text: sanitise before printing)."""
    where = result.document + (f":{result.line}" if result.line is not None else "")
    if result.local_start is not None:
        where += f" [{result.local_start}:{result.local_end if result.local_end is not None else result.local_start}]"
    quote = f' "{" ".join(result.quote.split())[:120]}"' if result.quote else ""
    moved = ""
    if result.status == "moved" and result.new_start is not None and result.local_start is not None:
        length = (result.local_end or result.local_start) - result.local_start
        moved = f" -> {result.document}:{result.new_line} [{result.new_start}:{result.new_start + length}]"
    return f"[{result.number}] {result.status}: {where}{quote}{moved} ({result.reason})"


def tally(results: list[Checked]) -> str:
    """The closing line: how many of each."""
    counts = {s: sum(r.status == s for r in results) for s in ("matched", "moved", "missing")}
    return f"{len(results)} citation(s): " + ", ".join(f"{n} {s}" for s, n in counts.items())
