"""What the root model is told: its instructions, a worked example, the nudges and next-step hints.

The long texts are data files beside this module (``rlm_system.txt``, ``rlm_example.json``); the
short ones, and the rules that pick a hint from a cell and its output, are here.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import TYPE_CHECKING

from ...results import ExecutionResult

if TYPE_CHECKING:
    from ..config import Generation

DESCRIBE_CELL = "import rlm_kernel.documents as _d; print(_d.describe(context, documents)); del _d"
NUDGE_NO_CODE = ("Your reply had no ```python code block. Reply with exactly one ```python block "
                 "that makes progress, or call answer(...) in one.")
NUDGE_UNCLOSED = ("Your code block was cut off before its closing ```. Write a shorter cell in one "
                  "complete ```python block.")
NUDGE_REPEAT = ("You already ran exactly this code; its output is above. Do something different, "
                "or call answer(...) with what you found.")
LAST_CALL = ("You have run out of turns. From what you found so far, write your best final answer now, "
             "as plain text, with the offsets or document names of your evidence. Do not write code.")


def example_turns() -> list[dict[str, str]]:
    """A worked example as earlier turns: small models copy a conversation better than a description."""
    text = resources.files(__name__).joinpath("rlm_example.json").read_text(encoding="utf-8")
    return json.loads(text)


def opening(generation: Generation) -> list[dict[str, str]]:
    """The messages every root conversation begins with: the embedded model keeps their state on disk."""
    return [{"role": "system", "content": generation.system_prompt or default_system_prompt()},
            *(example_turns() if generation.few_shot else [])]


def default_system_prompt() -> str:
    """The root model's instructions, from ``rlm_system.txt`` beside this module."""
    return resources.files(__name__).joinpath("rlm_system.txt").read_text(encoding="utf-8")


def next_step(code: str, result: ExecutionResult, question: str) -> str:
    """A one-line reminder of the method's next step, which small models otherwise skip."""
    if not result.ok:
        return "\n\nFix the error: write a corrected cell (define any missing variable first)."
    searched, shown = "search(" in code or "grep(" in code, result.stdout.count("Hit(")
    # several hits for a how-many question: something to count, not one sentence that states the number
    if searched and shown >= 3 and _AGGREGATE.search(question):
        pattern = _SEARCHED.search(code)
        literal = f"r{pattern[1]}{pattern[2]}{pattern[1]}" if pattern else 'r"..."'
        return ("\n\nsearch() stops at max_results hits, so it cannot count. Next: count every match in Python:\n"
                f"import re\nn = len(re.findall({literal}, context, re.IGNORECASE))\nprint(n)\n"
                "Then answer(str(n)).")
    if "llm_query" in code:
        return "\n\nNext: Step 3, answer with the hit as citation."
    if searched and not shown:
        word = _key_word(question, code)
        return ("\n\nNothing found. Search again with one or two key words from the question "
                "(a name or a noun)" + (f", e.g. search(r\"{word}\")." if word else "."))
    if searched:
        return "\n\nNext: Step 2, read the text around the best hit with llm_query."
    return ""


# a question that counts ("total" and "average" are left out: "the total fee" is one value to find)
_AGGREGATE = re.compile(r"\b(how many|how often|number of|count)\b", re.IGNORECASE)
_SEARCHED = re.compile(r"""(?:search|grep)\(\s*r?(["'])(.+?)\1""")  # the quote and the pattern of a search
_STOP_WORDS = frozenset("what which when where who whom whose why how does did have has the this that these those "
                        "there their with from into about text document documents give exact number".split())


def _key_word(question: str, code: str) -> str | None:
    """The question's likeliest search term the code has not tried: a name first, else the longest word."""
    tokens = re.findall(r"[A-Za-z][A-Za-z0-9_-]{3,}", question)
    fresh = [(i, w) for i, w in enumerate(tokens) if w.lower() not in _STOP_WORDS and w.lower() not in code.lower()]
    names = [w for i, w in fresh if i > 0 and w[0].isupper()]  # capitalised mid-sentence
    return max(names or [w for _, w in fresh], key=len, default=None)
