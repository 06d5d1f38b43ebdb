"""Ingested documents in the real sandbox: a 1 GB input with bounded host memory, and PDF pages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlm_host.policy import policies_dir

pytestmark = pytest.mark.docker

GB = 1024**3
# Runs the command as its own child and prints that child's peak RSS (KiB) after its output.
MEASURED = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")


def big_policy(tmp_path: Path) -> Path:
    """The standard policy with room for a 1 GB context (about 2 GB at load)."""
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    raw["limits"].update(memory_mb=3584, cell_timeout_s=120, start_timeout_s=120)
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
    (folder / "notice.html").write_text("<html><head><style>x{}</style></head><body><p>Office &amp; parking</p></body></html>")
    (folder / "image.bin.txt").write_bytes(b"\x00\x01\x02" * 100)
    cell = "h = search('18,750')[0]\nprint(h.document, h.page, len(documents[1].pages), [d.name for d in documents])\n"
    proc = subprocess.run([sys.executable, "-m", "rlm_host", "exec", "--context", str(folder), "-"], input=cell,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["stdout"] == "report.pdf 2 3 ['notice.html', 'report.pdf']\n"
    assert "skipped" in proc.stderr and "image.bin.txt" in proc.stderr
