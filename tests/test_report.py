"""The HTML report of a recorded run, opened in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_host.lm import LMClient
from rlm_host.rlm import RLM
from scripted_lm import ScriptedLM

pytestmark = pytest.mark.docker

DOC = Path(__file__).resolve().parent.parent / "examples" / "clauses.txt"
RUN = ["```python\nhits = search(r'termination fee')\nprint(hits[0])\n```",
       "```python\nreply = llm_query('What is the fee?', peek(hits[0].start, hits[0].end + 150))\nprint(reply)\n```",
       "```python\ncontext = 1\n```",
       "```python\nanswer(reply, citations=[hits[0]])\n```"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed for this test: apt-get install chromium (make test does)"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=120)


def test_report_in_chromium(tmp_path: Path, docker_ready: str) -> None:
    """The page loads with no console errors, shows every iteration, links citations; a screenshot is taken."""
    with ScriptedLM() as lm:
        lm.script("root", RUN)
        lm.rule("sub", lambda messages: "EUR 48,500")
        result = RLM(model="root", sub_model="sub", lm=LMClient(base_url=lm.base_url),
                     audit_dir=tmp_path).complete("What is the termination fee?", [DOC])
    page = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "rlm_host", "report", result.audit_log, "-o", str(page)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    assert not re.search(r"(src|href)=['\"]https?:", html) and "<link" not in html  # nothing fetched
    dom = chromium(tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-iterations="4"' in dom.stdout  # set by the page's script: it ran to its end
    assert dom.stdout.count("class=\"iteration\"") == 4
    assert "intact and sealed" in dom.stdout and "evidence-1" in dom.stdout
    assert "kernel.rebind_refused" in dom.stdout  # the denial is listed
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert errors == []
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_missing_log_is_one_line(tmp_path: Path) -> None:
    """A missing audit log is one clear line and exit 4 (not found)."""
    proc = subprocess.run([sys.executable, "-m", "rlm_host", "report", str(tmp_path / "nope.jsonl"), "-o",
                           str(tmp_path / "out.html")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4 and "not found" in proc.stderr and "Traceback" not in proc.stderr
