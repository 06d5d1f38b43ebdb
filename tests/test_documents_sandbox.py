"""Ingested documents in the real sandboxes: the ingestion container, 1 GB in with bounded host memory, PDF pages."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlm_host.documents import ingest
from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.errors import ConfigError
from rlm_host.policy import Policy, load_policy, policies_dir
from rlm_host.settings import OWNER_LABEL, runtime_dir

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("private_runtime")]

GB = 1024**3
# Runs the command as its own child and prints that child's peak RSS (KiB) after its output.
MEASURED = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")


def big_policy(tmp_path: Path) -> Path:
    """The standard policy with room for a 1 GB context (about 2 GB at load)."""
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    raw["limits"].update(memory_mb=3584, cell_timeout_s=120, start_timeout_s=120)
    raw["ingest"].update(max_text_mb=2048)
    (tmp_path / "seccomp-standard.json").write_text((policies_dir() / "seccomp-standard.json").read_text())
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_one_gigabyte_input_with_bounded_host_memory(tmp_path: Path, docker_ready: str) -> None:
    """A 1 GB text file is readable whole in the sandbox; the host process stays far below 1 GB."""
    doc = tmp_path / "big.txt"
    line = "0123456789 the quick brown fox jumps over the lazy dog, line after line after line\n"
    block = line * (4 * 1024 * 1024 // len(line))
    with doc.open("w") as out:
        while out.tell() < GB:
            out.write(block)
    size = doc.stat().st_size
    cell = tmp_path / "cell.py"
    cell.write_text("print(len(context), context.count('lazy dog'), documents[0].name)\n")
    args = [sys.executable, "-m", "rlm_host", "exec", "--policy", str(big_policy(tmp_path)),
            "--context", str(doc), str(cell)]
    try:
        proc = subprocess.run([sys.executable, "-c", MEASURED, *args], capture_output=True, text=True, timeout=600)
    finally:
        doc.unlink()
    assert proc.returncode == 0, proc.stderr
    *lines, peak = proc.stdout.strip().splitlines()
    peak_mb = int(peak) / 1024
    out = json.loads(lines[-1])
    assert out["status"] == "ok", out
    length, count, name = out["stdout"].split()
    assert int(length) == size and int(count) == size // len(line) and name == "big.txt"
    assert peak_mb < 300, f"the host process peaked at {peak_mb:.0f} MB for a 1 GB input"


def test_folder_with_a_pdf_and_a_bad_file(tmp_path: Path, docker_ready: str) -> None:
    """A folder's PDF arrives with its pages, HTML as text; a binary file is skipped and named."""
    from pdf_fixtures import text_pdf

    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "report.pdf").write_bytes(text_pdf([["Page one intro"], ["Budget line: 18,750"], ["Closing page"]]))
    (folder / "notice.html").write_text("<html><head><style>x{}</style></head>"
                                        "<body><p>Office &amp; parking</p></body></html>")
    (folder / "image.bin.txt").write_bytes(b"\x00\x01\x02" * 100)
    cell = "h = search('18,750')[0]\nprint(h.document, h.page, len(documents[1].pages), [d.name for d in documents])\n"
    proc = subprocess.run([sys.executable, "-m", "rlm_host", "exec", "--context", str(folder), "-"], input=cell,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stdout"] == "report.pdf 2 3 ['notice.html', 'report.pdf']\n"
    assert "skipped" in proc.stderr and "image.bin.txt" in proc.stderr


@pytest.fixture(params=["standard", "strict"], ids=["runc", "runsc"])
def ingest_policy(request: pytest.FixtureRequest, docker_ready: str) -> Policy:
    """Each shipped policy with short ingestion limits."""
    return load_policy(request.param).with_ingest(timeout_s=10, memory_mb=256)


def test_a_folder_of_every_kind_through_the_ingestion_sandbox(tmp_path: Path, ingest_policy: Policy) -> None:
    """One container parses a folder: good files staged (text, pages, hashes of the host's copies), bad ones skipped."""
    from pdf_fixtures import scanned_pdf, text_pdf

    folder = tmp_path / "mixed"
    files = {"b.txt": b"plain\n", "a/z.md": "caf\u00e9\n".encode("cp1252"), "a/b/c.json": b"[1]\n",
             "page.html": b"<p>Hello &amp; bye</p>", "r.pdf": text_pdf([["Page one"], ["Page two"]]),
             "bad.json": b'{"a": 1,\n  oops}', "scan.pdf": scanned_pdf(1), "image.png": b"\x89PNG",
             "sub/empty.md": b"", ".hidden.txt": b"x\n", ".git/config.txt": b"x\n"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    lines: list[str] = []
    result = ingest([folder, folder / "b.txt"], tmp_path / "work", policy=ingest_policy, progress=lines.append)
    names = [d.name for d in result.documents]
    assert names == ["a/b/c.json", "a/z.md", "b.txt", "page.html", "r.pdf", "b.txt"]
    for doc in result.documents:
        text = doc.text_path.read_bytes()
        assert doc.sha256 == hashlib.sha256(files[doc.name]).hexdigest() and doc.size == len(files[doc.name])
        assert doc.text_sha256 == hashlib.sha256(text).hexdigest() and doc.text_bytes == len(text)
        assert doc.chars == len(text.decode("utf-8")) and doc.text_path.parent == tmp_path / "work"
    texts = {d.name: d.text_path.read_text() for d in result.documents}
    assert texts["a/z.md"] == "caf\u00e9\n" and texts["page.html"] == "Hello & bye\n"
    pdf = result.documents[4]
    assert [texts["r.pdf"][p:].split("\n")[0] for p in pdf.pages] == ["Page one", "Page two"]
    assert dict((p.name, why) for p, why in result.skipped) == {
        "bad.json": "is not valid JSON (line 2: Expecting property name enclosed in double quotes)",
        "image.png": "has unsupported type '.png'", "empty.md": "is empty",
        "scan.pdf": "has no text layer (a scanned PDF?)"}
    assert "a/z.md is not UTF-8: read it as Windows-1252, staging a UTF-8 copy" in lines
    assert not leftovers()


def test_over_a_limit_a_folder_goes_on_and_a_single_file_fails(tmp_path: Path, ingest_policy: Policy) -> None:
    """A document past the time limit is skipped in a folder, naming the limit; given alone it is a ConfigError."""
    from pdf_fixtures import heavy_pdf

    policy = ingest_policy.with_ingest(timeout_s=2)
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "slow.pdf").write_bytes(heavy_pdf(3000))
    (folder / "ok.txt").write_text("fine\n")
    result = ingest([folder], tmp_path / "work", policy=policy)
    assert [d.name for d in result.documents] == ["ok.txt"]
    assert result.skipped == [(folder / "slow.pdf", "took longer than the 2 s time limit of ingest.timeout_s to "
                                                     "parse; split it or raise the limit in the policy")]
    with pytest.raises(ConfigError, match=r"slow.pdf took longer than the 2 s time limit of ingest.timeout_s"):
        ingest([folder / "slow.pdf"], tmp_path / "work2", policy=policy)
    assert not leftovers()


def leftovers() -> list[str]:
    """Ingestion containers this process left behind, and ingestion directories."""
    label = f"{OWNER_LABEL}={os.getpid()}"
    containers = [c.name for c in docker_client().containers.list(all=True, filters={"label": label})
                  if c.name.startswith("rlm-host-ingest-")]
    return containers + [p.name for p in runtime_dir().glob("ingest-*")]
