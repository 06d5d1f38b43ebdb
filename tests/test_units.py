"""Host-side pieces that need no Docker: output capping, the kernel runtime, the front door."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import rlm_host
import rlm_kernel
from rlm_host.sandbox.output import OutputCollector
from rlm_kernel.documents import load_documents
from rlm_kernel.output_limit import MARK, OutputLimiter


PUBLIC = ["AuditError", "CellError", "ConfigError", "DockerSandbox", "DockerUnavailable", "ExecutionResult",
          "Generation", "ImageError", "KernelStartError", "LMClient", "LMError", "LocalModelError", "Models", "Policy",
          "PolicyError", "PriceTable", "RLM", "RLMHostError", "RLMResult", "Sandbox", "SandboxError", "SessionClosed",
          "WarmPool", "load_policy", "open_rlm", "run_cell"]


def test_public_names_are_the_agreed_list() -> None:
    """The package exports exactly the agreed, sorted names, each importable; an unknown name is an AttributeError."""
    assert rlm_host.__all__ == PUBLIC == sorted(PUBLIC)
    assert all(getattr(rlm_host, name).__name__ == name for name in rlm_host.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        rlm_host.Nope  # noqa: B018


def test_the_front_door_is_light() -> None:
    """Importing the package and the CLI loads none of openai, docker, jupyter_client or textual."""
    heavy = ("openai", "docker", "jupyter_client", "textual", "zmq")
    probe = f"import sys, rlm_host, rlm_host.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


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


def test_documents_join_with_offsets(tmp_path: Path) -> None:
    """load_documents joins files and records each one's span in context."""
    (tmp_path / "0.doc").write_text("alpha")
    (tmp_path / "1.doc").write_text("beta gamma")
    manifest = {"documents": [{"name": "a.txt", "file": "0.doc", "size": 5},
                              {"name": "b.txt", "file": "1.doc", "size": 10}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    text, docs = load_documents(tmp_path)
    assert [d.name for d in docs] == ["a.txt", "b.txt"]
    assert [text[d.start:d.end] for d in docs] == ["alpha", "beta gamma"]


def test_no_manifest_means_empty_context(tmp_path: Path) -> None:
    """A sandbox with no documents has an empty context."""
    assert load_documents(tmp_path) == ("", [])
    assert Path("/docs") == rlm_kernel.DOCS_DIR
