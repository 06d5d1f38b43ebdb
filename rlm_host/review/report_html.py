"""Small, total helpers for the report: every value read from a log is hostile and may be any type.

Nothing here raises on a forged field (a string where a number belongs, a list where a record
belongs): it is shown escaped, or as "-". All text reaches the page through ``e``.
"""

from __future__ import annotations

import html
import time
from typing import Any

from . import formats
from ..sanitize import finite, visible

SHOWN_CHARS = 65_536  # per field: the policy's output cap; a forged log's larger field is cut, and says so


def e(value: Any, *, newlines: bool = True) -> str:
    """HTML-escaped (quotes too), with controls, bidi overrides and lone surrogates shown as visible escapes.

    ``newlines=False`` shows line breaks as ``\\n`` too, for a value that must stay one line (a table cell).
    """
    return html.escape(visible(value, newlines=newlines))




def dicts(value: Any) -> list[dict]:
    """The dicts of a list field; anything else is no entries."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text(record: dict, name: str) -> str:
    """A text field, or what the audit level kept of it (its size and digest)."""
    if name in record:
        value = record[name]
        value = value if isinstance(value, str) else "" if value is None else str(value)
        cut = len(value) - SHOWN_CHARS
        return value if cut <= 0 else f"{value[:SHOWN_CHARS]}\n[{cut:,} more characters not shown]"
    digest = record.get(f"{name}_digest")
    if isinstance(digest, dict):
        return (f"[not recorded at this audit level: {digest.get('bytes')} bytes, "
                f"sha256 {digest.get('sha256')}]")
    return ""


def money(value: Any) -> str:
    """A cost in dollars, or why there is none."""
    return formats.money(value, 5, "unknown (no price for this model)")


def when(value: Any) -> str:
    """A timestamp as UTC date and time, or "-"."""
    ts = finite(value)
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts is not None else "-"
    except (OverflowError, OSError, ValueError):
        return e(value)


def seconds(value: float | None) -> str:
    """A duration: ``4.2 s`` or ``3 min 12 s``."""
    if value is None or value < 0:
        return "-"
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} min {value % 60:.0f} s"


def rows(pairs: list[tuple[str, str]]) -> str:
    """A two-column table; labels are ours, values already escaped."""
    return "<table>" + "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in pairs) + "</table>"


def grid(head: list[str], body: list[list[str]]) -> str:
    """A table with a header row; cells already escaped."""
    top = "".join(f"<th>{h}</th>" for h in head)
    return (f"<table><tr>{top}</tr>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                                               for row in body) + "</table>")


def section(ident: str, title: str, body: str) -> str:
    """One section of the page; ``title`` is ours, ``body`` already escaped."""
    return f"<section id='{ident}'><h2>{title}</h2>{body}</section>"


def compact(mapping: Any) -> str:
    """A flat dict (limits, budget) as ``key value · key value``, escaped."""
    if not isinstance(mapping, dict):
        return "-"
    return e(" · ".join(f"{key} {value}" for key, value in mapping.items()))
