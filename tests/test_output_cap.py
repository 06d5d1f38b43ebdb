"""The output cap on both sides: the host's collector and the kernel's limiter (no Docker)."""

from __future__ import annotations

from rlm_host.sandbox.output_cap import OutputCollector
from rlm_kernel.output_limit import MARK, OutputLimiter


def test_output_cap_keeps_head_and_marks_the_rest() -> None:
    """Output beyond the cap is counted, not kept, and marked with the count."""
    out = OutputCollector(cap=10)
    out.add("stdout", "abcdef")
    out.add("stderr", "ghijkl")
    out.add("stdout", "mnop")
    assert out.truncated
    assert out.text("stdout").startswith("abcdef\n[... output truncated by the host: 4 more bytes")
    assert out.text("stderr").startswith("ghij\n[... output truncated by the host: 2 more bytes")
    assert out.kept == 10


def test_output_cap_counts_utf8_bytes() -> None:
    """The cap is in bytes and never splits a character."""
    out = OutputCollector(cap=5)
    out.add("stdout", "ééé")  # 6 bytes
    assert out.text("stdout").startswith("éé\n") and out.dropped["stdout"] == 2


def test_in_kernel_limiter_drops_after_cap() -> None:
    """The kernel-side limiter lets the cap through, marks once, resets per cell."""
    written: list[str] = []

    class Stream:
        def write(self, text: str) -> int:
            written.append(text)
            return len(text)

    stream, limiter = Stream(), OutputLimiter(cap=5)
    limiter.wrap(stream)
    stream.write("abc")
    stream.write("defgh")
    stream.write("ijk")
    assert written == ["abc", "de", MARK]
    limiter.reset()
    stream.write("xy")
    assert written[-1] == "xy"
