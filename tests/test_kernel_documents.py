"""The in-kernel runtime's document loading, imported on the host (rlm_kernel is stdlib; no Docker)."""

from __future__ import annotations

import json
from pathlib import Path

import rlm_kernel
from rlm_kernel.documents import load_documents


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
