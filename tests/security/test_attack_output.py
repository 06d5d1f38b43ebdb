"""A cell's output against the record: any string a cell prints arrives, and so does everything after it.

Each attack prints something Jupyter or the host could choke on (a lone surrogate in a stream, a
repr, a display, an exception; invalid UTF-8 on the raw file descriptors; NUL bytes, carriage-return
floods, one huge line; raw iopub messages a cell forges). Each test asserts that the text printed
after the hostile string arrives in the same cell, that the next cell works (the harness's follow-up)
and that the audit log verifies and holds the cell.
"""

from __future__ import annotations

import pytest
from harness import Outcome, record, run_attack  # noqa: F401 - record is a fixture

pytestmark = pytest.mark.docker
CATEGORY = "record integrity"
POLICIES = pytest.mark.parametrize("policy", ["standard", "strict"], ids=["runc", "runsc"])


def cell_event(out: Outcome) -> dict:
    return next(e for e in out.events if e["kind"] == "cell" and e["iteration"] == 1)


def attack(policy: str, code: str, tmp_path) -> Outcome:
    out = run_attack(policy, code, tmp_path, prelude=False)
    cell_event(out)  # recorded, and the log verified (run_attack)
    return out


@POLICIES
def test_lone_surrogate_in_print(policy: str, tmp_path, record) -> None:
    """A lone surrogate printed to stdout, then more output in the same cell"""
    out = attack(policy, 'print("a\\ud800b")\nprint("after")', tmp_path)
    assert out.status == "ok" and "a\\ud800b\nafter" in out.step.output, out.step.output
    record(out, "arrives as its escape (a\\ud800b); the rest of the cell's output and the next cell arrive")


@POLICIES
def test_lone_surrogates_on_stderr(policy: str, tmp_path, record) -> None:
    """Lone surrogates (high, low, U+DCxx) written to stderr, interleaved with stdout"""
    code = ('import sys\nfor s in ("\\ud800", "\\udfff", "\\udcff"):\n    print("e" + s, file=sys.stderr)\n'
            'print("after")')
    out = attack(policy, code, tmp_path)
    assert out.step.output == "after\ne\\ud800\ne\\udfff\ne\\udcff", out.step.output
    record(out, "each arrives as its escape; stdout after them arrives")


@POLICIES
def test_surrogate_in_result_repr(policy: str, tmp_path, record) -> None:
    """A cell's last expression whose repr holds a lone surrogate"""
    code = 'class X:\n    def __repr__(self):\n        return "r\\ud800"\nprint("before")\nX()'
    out = attack(policy, code, tmp_path)
    assert out.status == "ok" and out.step.output == "before\nr\\ud800", out.step.output
    record(out, "the result arrives as r\\ud800; the cell is ok")


@POLICIES
def test_surrogate_in_display(policy: str, tmp_path, record) -> None:
    """display() of an object whose repr holds a lone surrogate, then print"""
    code = ('from IPython.display import display\nclass Y:\n    def __repr__(self):\n        return "d\\udfff"\n'
            'display(Y())\nprint("after")')
    out = attack(policy, code, tmp_path)
    assert out.status == "ok" and "d\\udfff\nafter" in out.step.output, out.step.output
    record(out, "the display arrives escaped; output after it arrives")


@POLICIES
def test_surrogate_in_exception(policy: str, tmp_path, record) -> None:
    """An exception whose message holds a lone surrogate (the error reply must still leave the kernel)"""
    out = attack(policy, 'print("before")\nraise ValueError("bad \\ud800 value")', tmp_path)
    assert out.status == "error" and cell_event(out)["error"] == "ValueError", out.step.output
    assert out.step.output.startswith("before\n"), out.step.output
    assert "ValueError: bad \\ud800 value" in out.step.output
    record(out, "recorded as an error (ValueError, message escaped), not as a silent success")


@POLICIES
def test_invalid_utf8_on_raw_fds(policy: str, tmp_path, record) -> None:
    """Invalid UTF-8 and a split character written with os.write to fds 1 and 2, then a subprocess"""
    code = ('import os, subprocess, time\nos.write(1, b"raw \\xff\\xfe bytes\\n")\nos.write(2, b"err \\xc3\\n")\n'
            'os.write(1, "east \\u6771".encode()[:-1])\nos.write(1, b"\\n")\n'
            'subprocess.run(["echo", "from child"])\ntime.sleep(0.5)\nprint("after")')
    out = attack(policy, code, tmp_path)
    shown = out.step.output
    assert "raw \ufffd\ufffd bytes" in shown and "from child" in shown and "east \ufffd\n" in shown, shown
    assert "after" in shown and "err \ufffd" in shown, shown
    record(out, "invalid bytes arrive as U+FFFD; later fd output (a subprocess) still arrives")


@POLICIES
def test_raw_fd_capture_survives_into_next_cells(policy: str, tmp_path, record) -> None:
    """One invalid byte on fd 1, then fd output in the next cell (ipykernel's watcher died on it)"""
    followup = 'import os, time\nos.write(1, b"fd alive\\n")\ntime.sleep(0.5)\n' + \
               "print('alive', 6 * 7, llm_query('ping', 'are you there?'))"
    out = run_attack(policy, 'import os, time\nos.write(1, b"\\xff\\n")\ntime.sleep(0.3)', tmp_path,
                     prelude=False, followup=followup, expect_followup="fd alive")
    assert "alive 42 pong" in out.result.trajectory[1].output
    record(out, "the next cell's raw fd output arrives")


@POLICIES
def test_nul_bytes_and_control_floods(policy: str, tmp_path, record) -> None:
    """NUL bytes, a carriage-return flood and a form-feed flood, then more output"""
    code = 'print("a\\x00b\\x00c")\nprint("\\r" * 100000)\nprint("\\x0c\\x1b" * 5000)\nprint("after")'
    out = attack(policy, code, tmp_path)
    assert out.step.output.startswith("a\x00b\x00c\n\r\r") and cell_event(out)["truncated"], out.step.output[:40]
    record(out, "kept as text up to the output cap (truncated, recorded); the next cell arrives")


@POLICIES
def test_one_huge_line(policy: str, tmp_path, record) -> None:
    """A 50 MB single line with a lone surrogate in the middle"""
    out = attack(policy, 'print("x" * 25_000_000 + "\\ud800" + "y" * 25_000_000)\nprint("after")', tmp_path)
    assert out.status == "ok" and cell_event(out)["truncated"] and out.step.output.startswith("xxx"), \
        out.step.output[:40]
    record(out, "cut at the output cap (recorded as truncated); the next cell arrives")


# A cell that swaps the kernel session's packer for one that emits JSON escapes of lone surrogates, and
# sends iopub messages of its own: the host gets lone surrogates and non-string fields from the wire.
FORGED_IOPUB = r'''
import json, sys
k = get_ipython().kernel
k.session.pack = lambda o: json.dumps(o, ensure_ascii=True, default=str).encode()
print("x\ud800y")
parent = k.get_parent("shell")
for content in ({"name": "stdout", "text": {"not": "text"}}, {"name": "stdout", "text": 12345},
                {"name": "stderr", "text": "forged \udfff"}):
    k.session.send(k.iopub_socket, "stream", content, parent=parent)
k.session.send(k.iopub_socket, "display_data", {"data": ["not", "a dict"], "metadata": {}}, parent=parent)
print("after")
'''


@POLICIES
def test_forged_iopub_messages(policy: str, tmp_path, record) -> None:
    """Raw iopub messages a cell forges: JSON-escaped lone surrogates, non-string text, a bad display"""
    out = attack(policy, FORGED_IOPUB, tmp_path)
    shown = out.step.output
    assert "x\\ud800y" in shown and "after" in shown and "forged \\udfff" in shown, shown
    assert "12345" not in shown and "not" not in shown, shown
    record(out, "the host keeps only valid text (escapes; non-strings dropped); the next cell arrives")
