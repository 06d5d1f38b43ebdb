"""The detail pane's text for one event: every field, the long ones (code, output, prompts) as blocks.

Generic on purpose: an event kind the TUI does not know yet still shows all it recorded. Short mode
caps each block so stepping stays quick; full mode (the `f` key) shows up to ``FULL_CHARS`` of each,
and says how much more the log holds. All of it is made visible by ``sanitize`` first.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ...sanitize import visible

BLOCKS = ("query", "code", "stdout", "stderr", "result", "error", "prompt", "response", "answer", "message")
HIDDEN = frozenset({"kind", "prev", "hash", "run_id", "t"})
SHORT_LINES, SHORT_CHARS, FULL_CHARS, VALUE_CHARS = 12, 1200, 100_000, 160


def detail(event: dict[str, Any], *, full: bool = False) -> str:
    """The text of one event for the detail pane (one field a line, then each non-empty block)."""
    fields = [_field(k, v, full) for k, v in event.items() if k not in HIDDEN and k not in BLOCKS]
    blocks = [_block(k, event[k], full) for k in BLOCKS if event.get(k) not in (None, "")]
    title = f"{visible(event.get('kind', '?'))[:80]}"
    return "\n".join([title, *fields, *blocks])


def _field(key: str, value: Any, full: bool) -> str:
    if key == "ts" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"time: {_when(value)}"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    limit = FULL_CHARS if full else VALUE_CHARS
    return f"{visible(key)[:60]}: {_cut(visible(text[: limit + 1]), limit)}"


def _block(key: str, value: Any, full: bool) -> str:
    """A long field as an indented block; short mode keeps its first lines."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    shown = visible(text[: FULL_CHARS + 1] if full else text[: SHORT_CHARS + 1], newlines=True)
    shown = _cut(shown, FULL_CHARS if full else SHORT_CHARS)
    lines = shown.split("\n")
    if not full and len(lines) > SHORT_LINES:
        lines = [*lines[:SHORT_LINES], f"… {len(lines) - SHORT_LINES} more lines (f: full)"]
    more = f" ({len(text):,} characters)" if len(text) > (FULL_CHARS if full else SHORT_CHARS) else ""
    return f"── {visible(key)}{more} ──\n" + "\n".join("  " + line for line in lines)


def _when(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return visible(ts)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
