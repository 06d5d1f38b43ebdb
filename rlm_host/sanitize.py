"""One sanitizer for everything that reaches a screen: hostile text is shown, never obeyed.

Text from documents, file names, cells, models, the kernel and the query can carry terminal
escapes (ESC, C1 controls such as CSI U+009B and OSC U+009D), bidi overrides that reorder what a
reviewer reads, line separators that split one line in two, and invisible format characters.
``visible`` writes every such character as a visible escape (``\\x1b``, ``\\u202e``, ``\\U000e0041``)
and leaves all printable text (accents, CJK, emoji) as it is. The set is a class, derived from
Unicode categories, not a list of examples: every control (Cc), format character (Cf), surrogate
(Cs), private-use (Co) and unassigned (Cn) code point, and the line and paragraph separators
(Zl, Zp), plus a few letters that render as nothing (Hangul fillers). A backslash is not
escaped, so the literal text ``\\x1b`` and an escaped ESC read the same: both are harmless.

Rich and Textual get ``Text`` objects (``safe_text``), never a hostile string as markup; JSON
for a terminal goes through ``json_line``, which writes the same characters as ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

DANGEROUS_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Letters (category Lo) that render as blank space: a way to hide text in plain sight.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
ZWJ = "\u200d"
SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: object, *, newlines: bool = False) -> str:
    """``text`` (any value, via ``str``) with every dangerous character written as a visible escape.

    With ``newlines=True``, ``\\n`` and ``\\t`` are kept (multi-line output); otherwise they are
    escaped too, so the result is always one line.
    """
    text = text if isinstance(text, str) else str(text)
    if text.isprintable() and INVISIBLE_LETTERS.isdisjoint(text):
        return text  # the common case, checked in C
    if newlines:
        return "\n".join(_visible_line(line, keep_tab=True) for line in text.split("\n"))
    return _visible_line(text, keep_tab=False)


def _visible_line(line: str, *, keep_tab: bool) -> str:
    if line.isprintable() and INVISIBLE_LETTERS.isdisjoint(line):
        return line
    out = []
    for i, char in enumerate(line):
        if (keep_tab and char == "\t") or not dangerous(char) or _joins_emoji(line, i):
            out.append(char)
        else:
            out.append(escape(char))
    return "".join(out)


def dangerous(char: str) -> bool:
    """Whether one character may control, reorder, split or hide what a terminal shows."""
    return unicodedata.category(char) in DANGEROUS_CATEGORIES or char in INVISIBLE_LETTERS


def _joins_emoji(line: str, i: int) -> bool:
    """A zero-width joiner between two symbols is part of an emoji sequence (👩‍💻), not a hiding place."""
    if line[i] != ZWJ or i == 0 or i + 1 >= len(line):
        return False
    before = line[i - 1] if unicodedata.category(line[i - 1]) != "Mn" or i < 2 else line[i - 2]
    return unicodedata.category(before) in {"So", "Sk"} and unicodedata.category(line[i + 1]) == "So"


def escape(char: str) -> str:
    """The visible form of one character: ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    if char in SHORT:
        return SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def safe_text(value: object, style: str | None = None, *, newlines: bool = False) -> Text:
    """A Rich ``Text`` of ``visible(value)``: printed literally, never parsed as markup."""
    from rich.text import Text  # here, so the audit writer does not load Rich

    return Text(visible(value, newlines=newlines), style=style or "")


def json_escape(line: str) -> str:
    """A JSON text with every dangerous character inside its strings written as ``\\uXXXX``.

    Outside strings a JSON text is ASCII, so this keeps it valid and its meaning unchanged.
    """
    if line.isprintable() and INVISIBLE_LETTERS.isdisjoint(line):
        return line
    return "".join(_json_char(c) if dangerous(c) else c for c in line)


def _json_char(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_line(obj: Any) -> str:
    """One line of JSON for a terminal: readable UTF-8, with every dangerous character escaped."""
    return json_escape(json.dumps(obj, ensure_ascii=False, default=str))


def finite(value: object) -> float | None:
    """A number from a hostile record, or None: a bool, a string, NaN, infinity, an int past float's range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:  # an int too large for a float
        return None
