"""Staging documents into a session directory: exactly the named file, never a link's target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlm_host.errors import ConfigError, SandboxError
from rlm_host.sandbox.document import Document
from rlm_host.sandbox.session_dir import SessionDir, check_documents


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SessionDir:
    monkeypatch.setenv("RLM_HOST_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run" / "s1" / "docs").mkdir(parents=True)
    return SessionDir("s1", os.getuid())


def test_a_symlinked_document_is_refused_before_staging(tmp_path: Path) -> None:
    """A document path that is a symbolic link is refused by name, even when its target is readable."""
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    link = tmp_path / "notes.txt"
    link.symlink_to(secret)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_documents([Document.of(link)])


def test_staging_never_follows_a_link_swapped_in_after_the_check(session: SessionDir, tmp_path: Path) -> None:
    """A file replaced by a link between the check and the staging is refused, not followed."""
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    doc = tmp_path / "doc.txt"
    doc.write_text("the document")
    check_documents([Document.of(doc)])
    doc.unlink()
    doc.symlink_to(secret)
    with pytest.raises(SandboxError, match="links are never followed"):
        session.stage_documents([Document.of(doc)])
    assert not (session.docs / "00000.doc").exists()


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_staged_copy_or_link_holds_the_named_file(session: SessionDir, tmp_path: Path, mode: int) -> None:
    """A world-readable file is linked, a private one copied; either way the staged bytes are the file's."""
    doc = tmp_path / "doc.txt"
    doc.write_text("the document\n")
    doc.chmod(mode)
    session.stage_documents([Document.of(doc)])
    staged = session.docs / "00000.doc"
    assert staged.read_text() == "the document\n"
    assert (staged.stat().st_ino == doc.stat().st_ino) == bool(mode & 0o004)
    assert staged.stat().st_mode & 0o777 == 0o644  # readable by the sandbox uid, writable by no one else


GOLDEN_MANIFEST = (b'{"documents": [{"name": "notes \\u00e9.txt", "file": "00000.doc", "size": 9, "chars": 8, '
                   b'"pages": []}, '
                   b'{"name": "report.pdf", "file": "00001.doc", "size": 6, "chars": 6, "pages": [0, 3]}]}')


def test_the_manifest_is_a_fixed_format_the_kernel_reads(session: SessionDir, tmp_path: Path) -> None:
    """Staging writes the manifest's documented bytes (name, file, size, chars, pages), and the kernel's loader
    reads them back as the same documents."""
    from rlm_kernel.documents import load_documents

    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("héllo ok", encoding="utf-8")
    second.write_text("p1 p2\n")
    session.stage_documents([Document("notes é.txt", first, 8), Document("report.pdf", second, 6, (0, 3))])
    assert (session.docs / "manifest.json").read_bytes() == GOLDEN_MANIFEST
    context, documents = load_documents(session.docs)
    assert context == "héllo ok\n\np1 p2\n"
    assert [(d.name, d.size, d.start, d.end, d.pages) for d in documents] == [
        ("notes é.txt", 9, 0, 8, ()), ("report.pdf", 6, 10, 16, (10, 13))]
