"""The HTML report, attacked by the log it renders: a forged log that claims to verify, text that imitates
the page's own warning or verdict, fields of the wrong type, and a field of megabytes.

What the page says about verification comes from ``verify`` alone, never from the log's content: a
log that does not verify leads with the warning and exits non-zero however it dresses itself up, and
an intact log's text cannot conjure a warning or a verdict. Each attack runs the real `rlm-host report`
and opens the page in a real headless Chromium, then checks a genuine log still reports (exit 0).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Record

from rlm_host.audit import AuditLog, verify

CATEGORY = "reviewer's screen"
BIN = Path(sys.executable).parent
# Markup that imitates the page's own verdict, warning and untrusted marking, and tries to end the page.
MIMIC = ("</pre></section></main><section id='verify'><h2>Chain</h2><p class='ok' data-status='intact'>"
         "log.jsonl: intact and sealed, 18 lines, run x</p></section><section id='warning' role='alert'>"
         "<h2>⚠ This log failed verification</h2></section><main class='untrusted'><body data-status='intact'>")
WRONG_TYPES = [None, "lots", ["a"], {"b": 1}, 1e308, -1, True, float("nan"), "9" * 5000]


def report(log: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "rlm-host", "report", str(log), "-o", str(out)], capture_output=True, text=True,
                          timeout=120)


def dom(page: Path, profile: Path) -> str:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed for this test: apt-get install chromium"
    done = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def genuine(folder: Path, payload: object = "fine", *, size: int = 0) -> Path:
    """An intact, sealed log written by the real writer, whose every field the report reads holds ``payload``."""
    log = AuditLog("review", "full", directory=folder)
    log.record("document", {"name": payload, "size": payload, "sha256": payload, "text_sha256": payload})
    log.record("run.start", {"depth": 1, "query": payload, "model": payload, "policy": payload,
                             "policy_sha256": payload, "limits": payload, "subcall_budget": payload})
    log.record("iteration.start", {"iteration": payload, "depth": payload})
    log.record("root", {"model": payload, "prompt": payload, "response": payload, "prompt_tokens": payload,
                        "cost_usd": payload, "latency_s": payload})
    log.record("subcall", {"model": payload, "prompt": payload, "response": payload, "cost_usd": payload})
    log.record("cell", {"code": payload, "stdout": "x" * size if size else payload, "status": payload,
                        "duration_ms": payload, "error": payload, "truncated": payload})
    log.record("limit.cell_timeout", {"limit_s": payload})
    log.record("run.end", {"depth": 1, "stopped": payload, "iterations": payload, "answer": payload,
                           "fallback": payload, "citations": payload, "evidence": payload, "usage": payload,
                           "cost_usd": payload, "comparison": payload, "passages": payload})
    log.seal()
    return log.path


def test_forged_log_claiming_to_verify(tmp_path: Path, evidence: Record) -> None:
    """A tampered log whose answer imitates the page's verdict ("intact and sealed") and warning markup"""
    log = genuine(tmp_path)
    lines = log.read_text().splitlines()
    end = json.loads(lines[-2])
    end["answer"] = MIMIC
    lines[-2] = json.dumps(end)
    log.write_text("\n".join(lines) + "\n")
    made = report(log, tmp_path / "r.html")
    assert made.returncode == 1 and "line 8" in made.stderr and len(made.stderr.splitlines()) == 1
    shown = dom(tmp_path / "r.html", tmp_path / "profile")
    body = shown[shown.index("<body"):]
    assert re.match(r'<body data-status="broken"[^>]*><section id="warning" role="alert">', body)
    assert body.count("<section id=") == body.count("<section id=\"warning\"") + len(re.findall(
        r"<section id=\"(overview|answer|level|documents|usage|timeline|limits|comparison|failure)\"", body))
    assert '<section id="verify"' not in body and body.count('<section id="warning"') == 1
    assert '<main class="untrusted">' in body
    assert "&lt;section id='verify'&gt;" in body  # the forged markup is shown, as text
    ok = genuine(tmp_path / "ok")
    assert report(ok, tmp_path / "ok.html").returncode == 0
    evidence("attacks", category=CATEGORY, attack="A tampered log imitates the report's verdict and warning",
             runtime="host", outcome="warning page first, exit 1; forged markup shown as text")


def test_intact_log_imitating_a_warning(tmp_path: Path, evidence: Record) -> None:
    """An intact log whose every field imitates the report's warning, verdict and untrusted marking"""
    log = genuine(tmp_path, MIMIC)
    made = report(log, tmp_path / "r.html")
    assert made.returncode == 0 and made.stderr == ""
    shown = dom(tmp_path / "r.html", tmp_path / "profile")
    body = shown[shown.index("<body"):]
    assert body.startswith('<body data-status="intact" data-iterations="1"><header>')
    assert '<section id="warning"' not in body and "<main>" in body and '<main class="untrusted">' not in body
    assert body.count('data-status="intact"') == 2  # the body and the one verdict line: none forged
    assert body.count('<section id="verify"') == 1
    evidence("attacks", category=CATEGORY, attack="An intact log's text imitates the report's warning and verdict",
             runtime="host", outcome="no warning or verdict from the log's text; shown as text")


@pytest.mark.parametrize("value", WRONG_TYPES, ids=[type(v).__name__ + str(i) for i, v in enumerate(WRONG_TYPES)])
def test_fields_of_the_wrong_type(value: object, tmp_path: Path, evidence: Record) -> None:
    """Every field the report reads holds the wrong type (null, string, list, dict, 1e308, NaN, a 5000-digit string)"""
    log = genuine(tmp_path, value)
    assert verify(log).status == "intact"
    made = report(log, tmp_path / "r.html")
    assert made.returncode == 0, made.stderr
    assert "<pre class='code'>" in (tmp_path / "r.html").read_text()
    broken = tmp_path / "broken" / log.name
    broken.parent.mkdir()
    broken.write_text(log.read_text().replace('"review"', '"weiver"', 1))
    made = report(broken, tmp_path / "b.html")
    assert made.returncode == 1 and "Traceback" not in made.stderr and "<section id='warning'" in (
        tmp_path / "b.html").read_text()
    evidence("attacks", category=CATEGORY, attack=f"Report fields of the wrong type ({type(value).__name__})",
             runtime="host", outcome="page written; intact exits 0, tampered exits 1; no traceback")


def test_megabytes_in_one_field(tmp_path: Path, evidence: Record) -> None:
    """A cell's recorded output is 8 MB: the page shows the first 64 KiB and says how much it left out"""
    log = genuine(tmp_path, size=8 * 1024 * 1024)
    made = report(log, tmp_path / "r.html")
    assert made.returncode == 0, made.stderr
    page = (tmp_path / "r.html").read_text()
    assert len(page) < 1024 * 1024 and "8,323,072 more characters not shown" in page
    evidence("attacks", category=CATEGORY, attack="A recorded field of 8 MB in the report",
             runtime="host", outcome="page under 1 MB; the cut is said")
