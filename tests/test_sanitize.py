"""The one sanitizer: no character that can steer a terminal survives; printable text is untouched."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from rlm_host.review.formats import money, saving, short
from rlm_host.sanitize import DANGEROUS_CATEGORIES, finite, json_line, safe_text, visible

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
EVERYTHING = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)


def bad(char: str, newlines: bool = False) -> bool:
    """Whether ``char`` may not appear in sanitized output."""
    if newlines and char in "\n\t":
        return False
    return unicodedata.category(char) in DANGEROUS_CATEGORIES and char != "\u200d"


@settings(max_examples=400)
@given(EVERYTHING, st.booleans())
def test_no_dangerous_character_survives(text: str, newlines: bool) -> None:
    """For any string, the output holds no control, format, separator, surrogate or unassigned character."""
    out = visible(text, newlines=newlines)
    assert not any(bad(c, newlines) for c in out)
    assert "\x1b" not in out and not any(0x80 <= ord(c) <= 0x9f for c in out)


@given(st.text(st.characters(categories=("L", "M", "N", "P", "S")), max_size=200))
def test_printable_text_is_unchanged(text: str) -> None:
    """Letters, marks, digits, punctuation and symbols (accents, CJK, emoji) pass as they are."""
    text = "".join(c for c in text if c not in "\u115f\u1160\u3164\uffa0")
    assert visible(text) == text


def test_examples_are_shown_as_escapes() -> None:
    """ESC, C1 CSI/OSC, bidi, separators, tags and lone surrogates become visible escapes."""
    assert visible("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"
    assert visible("\x9b2J\x9d52;c;eA==\x9c") == "\\x9b2J\\x9d52;c;eA==\\x9c"
    assert visible(BIDI) == "".join(f"\\u{ord(c):04x}" for c in BIDI)
    assert visible("a\u2028b\u2029c\x85d\ud800") == "a\\u2028b\\u2029c\\x85d\\ud800"
    assert visible("\U000e0041\ufeff\u200b") == "\\U000e0041\\ufeff\\u200b"
    assert visible("a\nb\tc") == "a\\nb\\tc" and visible("a\nb\tc", newlines=True) == "a\nb\tc"
    assert visible("héllo 世界 👩‍💻 🙂") == "héllo 世界 👩‍💻 🙂"
    assert visible(None) == "None" and visible(12) == "12"


@given(EVERYTHING)
def test_json_line_is_the_same_json_with_nothing_raw(text: str) -> None:
    """json_line parses back to the same object and holds no dangerous character raw."""
    line = json_line({"k": text, text: [text]})
    assert json.loads(line) == {"k": text, text: [text]}
    assert not any(bad(c) or c == "\u200d" for c in line)


def test_markup_in_safe_text_is_literal() -> None:
    """Rich prints a hostile closing tag or link literally, with no hyperlink and no MarkupError."""
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    for hostile in ("[/]", "[link=file:///etc/passwd]x[/link]", "[bold]b[/bold]", "[@click=app.quit]q[/]"):
        text = safe_text(hostile)
        assert text.plain == hostile and not text.spans
        console.print(text)
    out = console.export_text(styles=True)
    assert "[/]" in out and "[link=file:///etc/passwd]x[/link]" in out and "[@click=app.quit]q[/]" in out
    assert "\x1b]8;" not in out


@pytest.mark.parametrize("as_json", [False, True])
def test_application_logs_never_carry_a_control_sequence(as_json: bool) -> None:
    """A log line quoting a hostile value (an exception message, say) reaches stderr escaped, both formats."""
    code = ("import structlog, sys; from rlm_host.logs import configure; configure(as_json=sys.argv[1] == '1'); "
            "structlog.get_logger().warning('hostile \\x1b]0;owned\\x07', value='\\x9b2J \\u202e \\u2028 x')")
    done = subprocess.run([sys.executable, "-c", code, "1" if as_json else "0"], capture_output=True, timeout=60)
    text = done.stderr.decode("utf-8")
    assert "hostile" in text and not any(bad(c) for c in text.rstrip("\n"))
    if as_json:
        assert json.loads(text)["value"] == "\x9b2J \u202e \u2028 x"  # escaped, not lost


@pytest.mark.parametrize("forged", [True, "1.5", None, [1], float("nan"), float("inf"), -float("inf"), 10**400])
def test_a_forged_number_is_no_number(forged: object) -> None:
    """A bool, a string, NaN, infinity and an int too large for a float read as no number, and never raise."""
    assert finite(forged) is None
    assert money(forged) == "-" and saving(forged) == "?"


def test_figures_read_as_people_expect() -> None:
    """Costs keep their places, savings say less or more, an excerpt is one visible line within its limit."""
    assert (finite(3), finite(2.5)) == (3, 2.5)
    assert (money(0.00123), money(0.00123, 6, "unknown"), money(None, unknown="unknown")) == (
        "$0.0012", "$0.001230", "unknown")
    assert (saving(54.6), saving(-12.2), saving(0)) == ("55% less", "12% more", "0% less")
    excerpt = short("a\n\x1b]0;t\x07 " + "b" * 100, 20)
    assert len(excerpt) == 20 and excerpt.endswith("…") and "\x1b" not in excerpt and "\n" not in excerpt
