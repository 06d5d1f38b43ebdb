"""Reading the root model's replies: code blocks and reference-style FINAL answers."""

from __future__ import annotations

import re

FENCE = re.compile(r"```(?:python|py|repl)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
OPEN_FENCE = re.compile(r"```(?:python|py|repl)[ \t]*\n", re.IGNORECASE)
FINAL_VAR = re.compile(r"^\s*FINAL_VAR\(\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?\s*\)", re.MULTILINE)
FINAL = re.compile(r"^\s*FINAL\((.*)\)\s*$", re.MULTILINE | re.DOTALL)


def code_blocks(reply: str) -> list[str]:
    """The ```python / ```py / ```repl blocks of a reply, in order, without empty ones."""
    return [block.strip("\n") for block in FENCE.findall(reply) if block.strip()]


def unclosed_block(reply: str) -> bool:
    """Whether the reply opens a code block it never closes (it was cut off)."""
    return bool(OPEN_FENCE.search(reply)) and not FENCE.search(reply)


def final_answer(reply: str) -> tuple[str, str] | None:
    """('var', name) for FINAL_VAR(name), ('text', text) for FINAL(text), outside code."""
    prose = FENCE.sub("", reply)
    if match := FINAL_VAR.search(prose):
        return "var", match.group(1)
    if match := FINAL.search(prose):
        return "text", match.group(1).strip().strip("\"'")
    return None


def same_code(a: str, b: str) -> bool:
    """Two cells are the same when they differ only in whitespace."""
    return " ".join(a.split()) == " ".join(b.split())
