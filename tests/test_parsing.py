"""Reading the root model's replies (rlm_host.rlm.parsing): code blocks, cut-off blocks and FINAL answers."""

from __future__ import annotations

from rlm_host.rlm.parsing import code_blocks, final_answer, same_code, unclosed_block


def test_code_blocks_are_python_py_or_repl_in_order() -> None:
    """python, py and repl fences (any case) are cells, in order; other languages and empty blocks are not."""
    reply = ("First:\n```python\nx = 1\n```\nthen\n```PY\nprint(x)\n```\n```bash\nls\n```\n"
             "```repl\n\n```\n```repl \ny = 2\n```")
    assert code_blocks(reply) == ["x = 1", "print(x)", "y = 2"]


def test_a_reply_without_fences_has_no_code() -> None:
    """Prose, and a bare ``` fence with no language, are not cells."""
    assert code_blocks("The fee is EUR 48,500.\n```\nx = 1\n```") == []


def test_an_opened_block_never_closed_is_unclosed() -> None:
    """A reply cut off inside a code block is detected; a closed block or plain prose is not."""
    assert unclosed_block("Let me look.\n```python\nhits = search('fee')\n")
    assert not unclosed_block("```python\nx = 1\n```")
    assert not unclosed_block("no code at all")


def test_final_text_and_final_var() -> None:
    """FINAL(text) gives the text without quotes; FINAL_VAR(name) gives the variable's name, and wins."""
    assert final_answer('FINAL("EUR 48,500")') == ("text", "EUR 48,500")
    assert final_answer("Done.\nFINAL_VAR('fee')\nFINAL(ignored)") == ("var", "fee")
    assert final_answer("Checking.\n  FINAL(the tenant)  ") == ("text", "the tenant")


def test_final_inside_code_or_mid_line_is_not_an_answer() -> None:
    """FINAL in a code block is the cell's business, and FINAL must start its line."""
    assert final_answer("```python\nFINAL(x)\n```") is None
    assert final_answer("I will call FINAL(x) later") is None


def test_same_code_ignores_only_whitespace() -> None:
    """Two cells differing only in spacing and line breaks are the same; any other change is not."""
    assert same_code("x = search('fee')\nprint(x)", "x  =  search('fee')   print(x)\n")
    assert not same_code("print(x)", "print(y)")
