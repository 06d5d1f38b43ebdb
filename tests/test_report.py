"""The HTML report of real recorded runs: the whole story, a warning page for a log that does not verify,
WCAG AA contrast, and one self-contained page, opened in a real headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import run_logs
import yaml

from rlm_host import Models
from rlm_host.audit import events, verify
from rlm_host.rlm.lm import LMClient
from rlm_host.policy import parse_policy, policies_dir
from rlm_host.review.report import STYLE, build, render
from rlm_host.review.report_style import PAIRS
from rlm_host.rlm.loop import RLM
from rlm_host.testing import ScriptedLM

from helpers import chromium, page_requests

pytestmark = pytest.mark.docker

SHAPES = ["three_turns", "twenty_iterations", "forty_documents", "failed_run", "exec_log"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> dict[str, Path]:
    """One real log of each shape an operator reviews, plus a run at audit level ``hashes``."""
    made = {name: getattr(run_logs, name)(tmp_path_factory.mktemp(name)) for name in SHAPES}
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    raw["audit_level"] = "hashes"
    with ScriptedLM() as lm:
        lm.script("root", run_logs.THREE_TURNS)
        lm.rule("sub", lambda messages: "EUR 48,500")
        made["hashes"] = Path(RLM(Models("root", sub_model="sub", lm=LMClient(base_url=lm.base_url)),
                                  policy=parse_policy(raw, base_dir=policies_dir()),
                                  audit_dir=tmp_path_factory.mktemp("hashes")).complete(run_logs.QUERY,
                                                                                       [run_logs.CLAUSES]).audit_log)
    return made


def report_cli(log: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", "report", str(log), "-o", str(out)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def main_text(page: str) -> str:
    """The page with tags removed, for asserting what a reader sees."""
    shown = re.sub(r"<(style|script)>.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", shown))


# -- the whole story --------------------------------------------------------------------------------

def test_report_in_chromium(tmp_path: Path, logs: dict[str, Path]) -> None:
    """The page loads with no console error and no request, its script runs, citations link; a screenshot is taken."""
    page = tmp_path / "report.html"
    made = report_cli(logs["three_turns"], page)
    assert made.returncode == 0, made.stderr
    source = page.read_text()
    assert not re.search(r"(src|href)=['\"]?\w+:", source) and "<link" not in source and "@import" not in source
    dom = chromium(tmp_path / "profile", f"--log-net-log={tmp_path / 'net.json'}", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-iterations="3"' in dom.stdout  # set by the page's script: the CSP let it (and only it) run
    assert dom.stdout.count('class="iteration"') == 3 and "intact and sealed" in dom.stdout
    assert "evidence-1" in dom.stdout
    assert page_requests(tmp_path / "net.json") == []
    assert [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line] == []
    shot = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_network_check_can_fail(tmp_path: Path) -> None:
    """Control: a page that does fetch something shows up in the network log the test above reads."""
    page = tmp_path / "fetches.html"
    page.write_text("<html><body><img src='http://127.0.0.1:9/x.png'></body></html>")
    chromium(tmp_path / "profile", f"--log-net-log={tmp_path / 'net.json'}", "--dump-dom", page.as_uri())
    assert page_requests(tmp_path / "net.json") == ["http://127.0.0.1:9/x.png"]


def test_report_tells_the_whole_story(logs: dict[str, Path]) -> None:
    """Documents with size and hashes, usage per model, start, duration, stop reason, policy digest, every call."""
    log = logs["three_turns"]
    records, page = events(log), build(log)
    text = main_text(page)
    doc = next(r for r in records if r["kind"] == "document")
    start = next(r for r in records if r["kind"] == "run.start")
    assert doc["sha256"] in text and doc["text_sha256"] in text and "31022" in text and "clauses.txt" in text
    assert start["policy_sha256"] in text and "Started" in text and "Duration" in text
    assert "answered (the model called answer())" in text
    usage = re.search(r"<section id='usage'>.*?</section>", page).group(0)
    roots = [r for r in records if r["kind"] == "root"]  # the prompt's size follows the shipped system prompt
    prompt, completion = sum(r["prompt_tokens"] for r in roots), sum(r["completion_tokens"] for r in roots)
    assert len(roots) == 3 and prompt > 1000 and completion == 53
    assert re.search(rf"<td>root</td><td>root</td><td>3</td><td>{prompt}</td><td>53</td>", usage)
    assert re.search(r"<td>sub</td><td>sub</td><td>1</td><td>76</td><td>2</td>", usage)
    for record in records:
        if record["kind"] in {"root", "subcall"}:
            assert html.escape(record["prompt"]) in page and html.escape(record["response"]) in page
        if record["kind"] == "cell":
            assert html.escape(record["code"]) in page and html.escape(record["stdout"].rstrip()) in page
    assert "EUR 48,500" in text and "(last-resort answer)" not in text


def test_twenty_iterations(logs: dict[str, Path]) -> None:
    """Every one of 20 iterations has its code and output; the iteration limit is shown in place, in the last one."""
    page = build(logs["twenty_iterations"])
    blocks = re.findall(r"<div class='iteration' data-iteration='(\d+)'>(.*?)(?=<div class='iteration'|</section>)",
                        page, re.S)
    assert [int(n) for n, _ in blocks] == list(range(1, 21))
    for n, block in blocks:
        assert f"chunk_{int(n) - 1} = context" in block and block.count("<pre class='code'>") == 1
    assert "data-kind='limit.max_iterations'" in blocks[-1][1]
    assert "reached the iteration limit" in page and "(last-resort answer)" in page


def test_forty_documents(logs: dict[str, Path]) -> None:
    """Each of 40 documents is listed with its size and both hashes."""
    page = build(logs["forty_documents"])
    docs = [r for r in events(logs["forty_documents"]) if r["kind"] == "document"]
    assert len(docs) == 40 and "Documents (40)" in page
    for doc in docs:
        assert re.search(rf"<td>{re.escape(doc['name'])}</td><td>text</td><td>{doc['size']}</td>.*?{doc['sha256']}",
                         page)


def test_failed_run_says_why(tmp_path: Path, logs: dict[str, Path]) -> None:
    """A failed run leads with its failure and cause, says there is no answer and why, and its sealed log exits 0."""
    made = report_cli(logs["failed_run"], tmp_path / "failed.html")
    assert made.returncode == 0, made.stderr
    page = (tmp_path / "failed.html").read_text()
    main = page[page.index("<main"):]
    assert main.index("id='failure'") < main.index("id='answer'")
    failure = main_text(re.search(r"<section id='failure'>.*?</section>", page).group(0))
    assert "The run failed during iteration 3: LMError" in failure and "401" in failure and "OPENAI_API_KEY" in failure
    assert "no answer: the run failed" in page and "intact and sealed" in page
    assert "summed from the calls it recorded" in page


def test_exec_log_is_one_cell(logs: dict[str, Path]) -> None:
    """An exec log is recognised: one cell with its code and output, its documents; not an unfinished run."""
    page = build(logs["exec_log"])
    text = main_text(page)
    assert "<title>rlm-host exec " in page and "The cell (rlm-host exec)" in text
    assert page.count("<pre class='code'>") == 1 and "print(len(context))" in text and "31022" in text
    assert "clauses.txt" in text and "ran its one cell" in text
    for wrong in ("Question", "no answer", "did not finish", "unfinished", "Timeline"):
        assert wrong not in text, wrong


def test_hashes_level_says_so(logs: dict[str, Path]) -> None:
    """At audit level `hashes` the page says only digests exist and shows them, never a text it has not got."""
    log = logs["hashes"]
    page = build(log)
    assert "Audit level <b>hashes</b>: only the size and SHA-256 digest" in page
    digests = [r["prompt_digest"]["sha256"] for r in events(log) if r["kind"] in {"root", "subcall"}]
    assert digests and all(d in page for d in digests)
    assert "not recorded at this audit level" in page and "Clause 121" not in page


# -- logs that do not verify ---------------------------------------------------------------------------

def _edit_byte(log: Path) -> None:
    data = bytearray(log.read_bytes())
    data[data.index(b"EUR 48,500")] = ord("9")
    log.write_bytes(bytes(data))


def _drop_line(log: Path) -> None:
    lines = log.read_bytes().split(b"\n")
    log.write_bytes(b"\n".join(lines[:5] + lines[6:]))


def _forge_line(log: Path) -> None:
    lines = log.read_bytes().split(b"\n")
    forged = json.loads(lines[6])
    forged["stdout"] = "FORGED OUTPUT"
    log.write_bytes(b"\n".join([*lines[:6], json.dumps(forged).encode(), *lines[6:]]))


def _truncate(log: Path) -> None:
    log.write_bytes(log.read_bytes()[:-40])


def _cut_and_unseal(log: Path) -> None:
    log.write_bytes(b"\n".join(log.read_bytes().split(b"\n")[:8]) + b"\n")
    log.with_suffix(".seal").unlink()


TAMPERING = {"a byte edited": (_edit_byte, 1, "edited or forged"), "a line dropped": (_drop_line, 1, "removed"),
             "a line forged": (_forge_line, 1, "line 7"), "truncated mid-line": (_truncate, 1, "truncated"),
             "cut and unsealed": (_cut_and_unseal, 2, "unfinished")}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_log_that_does_not_verify_gets_a_warning_page(name: str, tmp_path: Path, logs: dict[str, Path]) -> None:
    """A tampered or cut log: the page is written, its warning comes first with the line; the exit code says why."""
    tamper, code, words = TAMPERING[name]
    log = tmp_path / logs["three_turns"].name
    shutil.copy(logs["three_turns"], log)
    shutil.copy(logs["three_turns"].with_suffix(".seal"), log.with_suffix(".seal"))
    tamper(log)
    made = report_cli(log, tmp_path / "r.html")
    assert made.returncode == code, made.stderr
    assert len(made.stderr.splitlines()) == 1 and words in made.stderr
    page = (tmp_path / "r.html").read_text()
    body = page[page.index("<body"):]
    assert body.index("<section id='warning'") < body.index("<header>") and "intact and sealed" not in page
    warning = main_text(re.search(r"<section id='warning'.*?</section>", page, re.S).group(0))
    assert words in warning
    line = int(re.search(r"line (\d+)", made.stderr).group(1)) if code == 1 else 0
    assert code == 2 or f"Lines 1 to {line - 1} verify; from line {line} on nothing can be trusted" in warning
    assert ("<main class='untrusted'>" in page) == (code == 1)
    assert report_cli(logs["three_turns"], tmp_path / "ok.html").returncode == 0  # the genuine log still reports


def test_without_a_key_the_page_is_unverified(tmp_path: Path, logs: dict[str, Path]) -> None:
    """With no key the page says it cannot verify and marks the content untrusted; exit 5; no key is created."""
    state = tmp_path / "state"
    made = report_cli(logs["three_turns"], tmp_path / "r.html", RLM_HOST_STATE_DIR=str(state), HOME=str(tmp_path),
                      RLM_HOST_AUDIT_KEY_FILE="")
    assert made.returncode == 5, made.stderr
    page = (tmp_path / "r.html").read_text()
    assert "could not be verified" in page and "<main class='untrusted'>" in page and "UNVERIFIED: " in page
    assert not state.exists() or not list(state.rglob("*key*"))


# -- contrast ----------------------------------------------------------------------------------------------

def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_stylesheet_pairs_meet_wcag_aa() -> None:
    """Every text colour on every background the stylesheet pairs is at least 4.5:1, read from the CSS itself."""
    props = dict(re.findall(r"--([\w-]+):(#[0-9a-fA-F]{6})", re.search(r":root\{(.*?)\}", STYLE).group(1)))
    low = [(fg, bg, round(contrast(props[fg], props[bg]), 2)) for fg, bg in PAIRS
           if contrast(props[fg], props[bg]) < 4.5]
    assert low == []
    used_fg = set(re.findall(r"(?<![-\w])color:var\(--([\w-]+)\)", STYLE))
    used_bg = set(re.findall(r"background:var\(--([\w-]+)\)", STYLE))
    assert used_fg <= {fg for fg, _ in PAIRS} and used_bg <= {bg for _, bg in PAIRS}
    assert not re.search(r"(?<![-\w])color:#", STYLE)  # every text colour is a checked property


CONTRAST_JS = """
(function () {
  function rgb(s) { var m = s.match(/[\\d.]+/g); return m ? m.map(Number) : null; }
  function lum(c) {
    var a = c.slice(0, 3).map(function (v) {
      v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2];
  }
  function back(el) {
    for (; el; el = el.parentElement) {
      var c = rgb(getComputedStyle(el).backgroundColor);
      if (c && (c.length < 4 || c[3] > 0)) { return c; }
    }
    return [255, 255, 255];
  }
  function ratio(a, b) { var x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); }
  document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  var worst = 99, where = '', checked = 0;
  document.querySelectorAll('body *').forEach(function (el) {
    var style = getComputedStyle(el), after = getComputedStyle(el, '::after');
    var own = [].some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
    var fg = el instanceof SVGElement ? style.fill : style.color;
    var colours = own ? [fg] : [];
    if (after.content && after.content !== 'none' && after.content !== 'normal') { colours.push(after.color); }
    colours.forEach(function (c) {
      var r = ratio(rgb(c), back(el)); checked += 1;
      if (r < worst) { worst = r; where = el.tagName + '.' + el.className + ': ' + el.textContent.slice(0, 60); }
    });
  });
  document.body.dataset.contrast = JSON.stringify({worst: worst, where: where, checked: checked});
})();
"""


def measured(page: Path, profile: Path, extra: str = "") -> dict:
    """The lowest contrast of any text on the page as Chromium computes it (script added to a copy)."""
    probe = page.with_name("probe-" + page.name)
    source = re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", page.read_text())
    probe.write_text(source.replace("</body>", f"{extra}<script>{CONTRAST_JS}</script></body>"))
    dom = chromium(profile, "--dump-dom", probe.as_uri())
    return json.loads(html.unescape(re.search(r'data-contrast="([^"]*)"', dom.stdout).group(1)))


@pytest.mark.parametrize("shape", ["three_turns", "failed_run", "tampered"])
def test_every_text_meets_wcag_aa_in_chromium(shape: str, tmp_path: Path, logs: dict[str, Path]) -> None:
    """Every piece of text on the page, as Chromium renders it, has at least 4.5:1 against its background."""
    log = tmp_path / logs["three_turns" if shape == "tampered" else shape].name
    shutil.copy(logs["three_turns" if shape == "tampered" else shape], log)
    shutil.copy(logs["three_turns" if shape == "tampered" else shape].with_suffix(".seal"), log.with_suffix(".seal"))
    if shape == "tampered":
        _edit_byte(log)
    page = tmp_path / "r.html"
    page.write_text(render(log).html)
    found = measured(page, tmp_path / "profile")
    assert found["checked"] > 50 and found["worst"] >= 4.5, found
    control = measured(page, tmp_path / "profile", "<p style='color:#999;background:#aaa'>low</p>")
    assert control["worst"] < 2, control  # the probe does see low contrast


def test_report_of_a_missing_log_is_one_line(tmp_path: Path) -> None:
    """A missing audit log is one clear line and exit 4 (not found); no page is written."""
    proc = report_cli(tmp_path / "nope.jsonl", tmp_path / "out.html")
    assert proc.returncode == 4 and "not found" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "out.html").exists()


def test_genuine_logs_verify_after_reporting(logs: dict[str, Path]) -> None:
    """Reporting changes nothing: every log still verifies intact afterwards and no file was added beside it."""
    for log in logs.values():
        before = sorted(p.name for p in log.parent.iterdir())
        render(log)
        assert verify(log).status == "intact" and sorted(p.name for p in log.parent.iterdir()) == before


def test_unknown_event_kinds_are_shown(tmp_path: Path) -> None:
    """An event kind the report does not know (a newer writer's) is still shown in place, by name and fields."""
    from rlm_host.audit import AuditLog

    log = AuditLog("newer", "full", directory=tmp_path)
    log.record("run.start", {"depth": 1, "query": "q"})
    log.record("iteration.start", {"iteration": 1, "depth": 1})
    log.record("future.thing", {"detail": "kept"})
    log.seal()
    block = re.search(r"<div class='iteration'.*?</section>", build(log.path), re.S).group(0)
    assert "data-kind='future.thing'" in block and "&quot;detail&quot;: &quot;kept&quot;" in block
