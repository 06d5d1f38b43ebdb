"""The reviewer's TUI on real logs: Textual's pilot presses the keys, the test reads the screen; then tmux.

The logs come from real runs (tests/run_logs.py: a real container, a real kernel, the scripted model).
After each key the screen is read back as text and checked: the selected row, the detail pane, the
meter's step and iteration, all agreeing with the selection.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import run_logs
from helpers import Tmux
from rlm_host.audit import events, verify
from rlm_host.rlm.lm import LMClient
from rlm_host.rlm.loop import RLM
from rlm_host.rlm.config import Models
from rlm_host.testing import ScriptedLM
from rlm_host.review.tui import RLMApp
from rlm_host.review.tui.annotations import LOOP, SEARCH, SUBCALL, SYNTHESIS, VARIABLE, annotate
from rlm_host.review.tui.view import build

pytestmark = pytest.mark.docker



def _log(make: Callable[[Path], Path]) -> Callable[..., Path]:
    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> Path:
        return make(tmp_path_factory.mktemp(make.__name__))
    return fixture


three_turns = _log(run_logs.three_turns)
twenty = _log(run_logs.twenty_iterations)
forty = _log(run_logs.forty_documents)
failed = _log(run_logs.failed_run)
exec_log = _log(run_logs.exec_log)


def screen(app: RLMApp) -> str:
    """The whole screen as plain text, as the terminal would show it."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def text_of(app: RLMApp, selector: str) -> str:
    return str(app.query_one(selector).render())


def agrees(app: RLMApp) -> str:
    """The meter, the detail pane and the visible row all describe the selected step; returns the screen."""
    shown, step = screen(app), app.steps[app.selected]
    total = len(app.steps)
    assert f"step {step.index + 1}/{total} · iteration {step.status.iteration}" in text_of(app, "#meter")
    assert f"step {step.index + 1}" in shown  # the detail pane's title
    assert step.row[:40] in shown, (step.row, shown)  # the selected row is scrolled into view
    assert text_of(app, "#detail").startswith(step.kind[:40])
    return shown


def drive(path: Path, size: tuple[int, int], check: Callable[[RLMApp, Callable], asyncio.Future[None]]) -> None:
    """Open the replay of ``path`` at ``size`` and let ``check`` press keys and read the screen."""
    async def run() -> None:
        app = RLMApp(events(path), title=path.name)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()

            async def press(*keys: str) -> str:
                await pilot.press(*keys)
                await pilot.pause()
                return agrees(app)
            await check(app, press)
    asyncio.run(run())


def test_twenty_iterations_at_80x24(twenty: Path) -> None:
    """At 80x24, End shows the last iteration's code; [ and ] walk iterations; Home, PageDown, n, p move one by one."""
    async def check(app: RLMApp, press) -> None:
        total = len(app.steps)
        shown = await press("end")
        assert app.selected == total - 1 and "chunk_19 = context[1900:2000]" in shown and "iteration 20" in shown
        shown = await press("left_square_bracket")
        assert app.steps[app.selected].row == "── iteration 20 ──" and "iteration 20" in text_of(app, "#meter")
        await press("left_square_bracket")
        assert app.steps[app.selected].row == "── iteration 19 ──"
        shown = await press("home")
        assert app.selected == 0 and "· progress" in shown and "chunk_19" not in shown
        await press("right_square_bracket")
        assert app.steps[app.selected].row == "── iteration 1 ──" and app.steps[app.selected].status.iteration == 1
        await press("n")
        assert app.steps[app.selected].kind == "root" and "chunk_0 = context[0:100]" in text_of(app, "#detail")
        before = app.selected
        await press("pagedown")
        assert app.selected > before + 3
        await press("p")
        await press("down", "up", "up")
        assert app.selected > before
    drive(twenty, (80, 24), check)


def test_forty_documents_scroll_at_200x50(forty: Path) -> None:
    """40 document rows do not hide the run: ] reaches iteration 1 and End the answer, both scrolled into view."""
    async def check(app: RLMApp, press) -> None:
        shown = await press("right_square_bracket")
        assert app.steps[app.selected].row == "── iteration 1 ──" and "── iteration 1 ──" in shown
        assert "note-00.txt" not in shown  # scrolled past the ingestion
        shown = await press("end")
        assert "✔ answer: EUR 1000" in shown and "finished" in text_of(app, "#meter")
        shown = await press("home")
        assert "note-00.txt" in shown and "waiting" in text_of(app, "#meter")
    drive(forty, (200, 50), check)


def test_full_outputs_toggle(forty: Path) -> None:
    """f shows a long field in full (the prompt listing the documents), and f again shortens it."""
    async def check(app: RLMApp, press) -> None:
        await press("right_square_bracket", "n")
        assert app.steps[app.selected].kind == "root"
        short = text_of(app, "#detail")
        assert "more lines (f: full)" in short and "note-19.txt" not in short
        await press("f")
        assert "note-19.txt" in text_of(app, "#detail") and "step 4" in screen(app) and "full" in screen(app)
        await press("f")
        assert "note-19.txt" not in text_of(app, "#detail")
    drive(forty, (120, 40), check)


def test_failed_run_search(failed: Path) -> None:
    """/ finds the failure: the row says the run failed, the detail holds the 401, the meter says failed."""
    async def check(app: RLMApp, press) -> None:
        shown = await press("slash", *"LMError", "enter")
        step = app.steps[app.selected]
        assert step.kind == "run.error" and "✘ run failed: LMError" in shown
        assert "401" in text_of(app, "#detail") and "failed" in text_of(app, "#meter")
        await press("escape")
        at = app.selected
        await press("slash", *"no-such-text", "enter")
        assert app.selected == at  # no match: the selection stays, a notice says so
        await press("escape", "home")
        assert app.selected == 0
    drive(failed, (80, 24), check)


def test_exec_log(exec_log: Path) -> None:
    """An exec log replays as its one cell: the code in the row, its output in the detail, finished at the end."""
    async def check(app: RLMApp, press) -> None:
        shown = await press("n", "n")
        assert app.steps[app.selected].kind == "cell" and "▷ cell ok: print(len(context))" in shown
        assert "31022" in text_of(app, "#detail")
        await press("end")
        assert "finished" in text_of(app, "#meter")
    drive(exec_log, (80, 24), check)


def test_annotations_follow_the_selection(three_turns: Path) -> None:
    """Stepping shows each paper annotation at its step, and going back shows the earlier one again."""
    log = events(three_turns)
    expected = {i: annotate(e) for i, e in enumerate(log) if annotate(e)}
    assert {n for notes in expected.values() for n in notes} >= {LOOP, SEARCH, VARIABLE, SUBCALL, SYNTHESIS}

    async def check(app: RLMApp, press) -> None:
        seen = {0: text_of(app, "#notes")}
        for i in range(1, len(log)):
            await press("n")
            seen[i] = text_of(app, "#notes")
        for i, notes in expected.items():
            assert all(note in seen[i].replace("\n", " ") for note in notes), (i, notes, seen[i])
        first_search = min(i for i, notes in expected.items() if SEARCH in notes)
        await press("home", *["n"] * (first_search - 1))
        assert SEARCH not in text_of(app, "#notes").replace("\n", " ")
        assert "Traditional:" in seen[len(log) - 1]
    drive(three_turns, (160, 50), check)


def test_live_mode_follows_the_run(docker_ready: str) -> None:
    """A live run posts its events as it runs; the cursor follows the newest step to the end and the notes with it."""
    from rlm_host.review.tui.live import run_live

    async def go(lm: ScriptedLM) -> tuple[list[str], str, int, int]:
        app = RLMApp(live=True, title="live")

        def start(hook):
            return RLM(Models("root", sub_model="sub", lm=LMClient(base_url=lm.base_url)),
                       on_event=hook).complete(run_logs.QUERY, [run_logs.CLAUSES])

        async with app.run_test(size=(80, 24)) as pilot:
            live = run_live(app, start)
            for _ in range(300):
                await pilot.pause(0.1)
                if live.result is not None:
                    break
            await pilot.pause(0.3)
            agrees(app)
            return [e["kind"] for e in app.events], text_of(app, "#notes"), app.selected, len(app.steps)

    with ScriptedLM() as lm:
        lm.script("root", run_logs.THREE_TURNS)
        lm.rule("sub", lambda messages: "EUR 48,500")
        kinds, notes, selected, total = asyncio.run(go(lm))
    recorded = [k for k in kinds if k != "progress"]  # the ingestion sandbox's progress lines come first
    assert recorded[0] == "document" and "subcall" in kinds and kinds[-1] == "run.end"
    assert selected == total - 1 and "Traditional:" in notes


HOSTILE = ["[@click=app.quit]click me[/]", "[/]", "[link=file:///etc/passwd]x[/link]", "\x1b]0;PWN\x07", "\x9b2J",
           "\u202eevil", "\ud800", "x" * 200_000, "[b]bold", "\u2028"]


def hostile_events() -> list:
    """Events with markup, escapes, huge strings, and missing or wrongly typed fields."""
    found: list = []
    for h in HOSTILE:
        found += [{"kind": "cell", "code": h, "stdout": h, "status": h}, {"kind": h}, {"kind": "answer", "answer": h},
                  {"kind": "root", "prompt_tokens": h, "completion_tokens": [h]},
                  {"kind": "iteration.start", "iteration": h},
                  {"kind": "subcall", "model": {"a": h}, "cost_usd": h}, {"kind": "run.end", "comparison": h},
                  {"kind": "cell", "code": 5, "stdout": None}, {"kind": None}, {"kind": "run.start", "limits": [h]},
                  {"kind": "seal", "reason": h}, {"kind": "document", "name": h, "size": h}, {h: h}]
    return [*found, [], "x", 5, None]


def test_replay_survives_any_event_content() -> None:
    """Every key over hostile events: markup and click actions stay text, escapes visible, the app keeps running."""
    log = hostile_events()

    async def go() -> tuple[list[str], RLMApp]:
        app = RLMApp(log, title="[/]\x1b]0;T\x07")
        screens = []
        async with app.run_test(size=(120, 40)) as pilot:
            for key in ("n",) * len(log) + ("home", "f", "end", "pagedown", "left_square_bracket", "f", "pageup"):
                await pilot.press(key)
                screens.append(screen(app) + text_of(app, "#detail"))
            assert app.title == "rlm-host · [/]\\x1b]0;T\\x07" and app.is_running
        return screens, app

    screens, app = asyncio.run(go())
    everything = "\n".join(screens)
    assert app.return_code in (None, 0) and "unreadable event" in everything
    assert not any(c in everything for c in "\x1b\x9b\u202e\u2028\x07")
    assert "[@click=app.quit]click me[/]" in everything and "[link=file:///etc/passwd]x[/link]" in everything
    assert "\\x1b]0;PWN" in everything and "\\u202eevil" in everything
    lines = "\n".join(build(log).lines)
    assert "[link=file:///etc/passwd]x[/link]" in lines and "\\x1b]0;PWN" in lines


def test_seal_reason_in_the_meter() -> None:
    """A seal's reason shows in the status (made visible); a log without one still reads finished or failed."""
    assert build([{"kind": "seal", "reason": "answered"}]).steps[-1].status.status == "finished (answered)"
    failed = build([{"kind": "run.error", "error": "x"}, {"kind": "seal", "reason": "lm_error\x1b]0;T\x07"}])
    assert failed.steps[-1].status.status == "failed (lm_error\\x1b]0;T\\x07)"
    assert build([{"kind": "run.error"}, {"kind": "seal"}]).steps[-1].status.status == "failed"


def test_a_failing_tui_keeps_one_visible_line() -> None:
    """An unhandled error in the app sets a non-zero exit and one visible line, not a traceback of its locals."""

    app = RLMApp([], title="t")

    async def go() -> None:
        async with app.run_test(size=(80, 24)):
            app._handle_exception(RuntimeError("boom \x1b]0;PWN\x07"))

    with pytest.raises(RuntimeError):  # the pilot re-raises it for the test; `app.run()` does not
        asyncio.run(go())
    assert app.return_code == 1 and app.failure == "RuntimeError: boom \\x1b]0;PWN\\x07"


def test_no_terminal_one_line(three_turns: Path) -> None:
    """Without a terminal, `tui` says so in one line and exits 1; it draws nothing and waits for nothing."""
    proc = subprocess.run([sys.executable, "-m", "rlm_host", "tui", "--replay", str(three_turns)],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == b"", proc
    assert proc.stderr.count(b"\n") == 1 and b"needs a terminal" in proc.stderr and b"\x1b" not in proc.stderr


@pytest.fixture
def tmux_session() -> Iterator[Callable[..., Tmux]]:
    made: list[Tmux] = []

    def make(*args, **kwargs) -> Tmux:
        made.append(Tmux(*args, **kwargs))
        return made[-1]
    yield make
    for session in made:
        session.close()


def test_tui_under_tmux(twenty: Path, tmux_session) -> None:
    """`rlm-host tui --replay` in a real 80x24 terminal: End shows the last code, [ steps back, q quits with 0."""
    pane = tmux_session(f"{sys.executable} -m rlm_host tui --replay {twenty}", size=(80, 24))
    pane.wait_for("The paper")
    pane.keys("End")
    shown = pane.wait_for("step 69/69 · iteration 20")
    assert "chunk_19 = context[1900:2000]" in shown, shown
    pane.keys("[")
    shown = pane.wait_for("step 62/69")
    assert "── iteration 20 ──" in shown
    pane.keys("n", "n")
    assert "chunk_19 = context[1900:2000]" in pane.wait_for("step 64/69")
    pane.keys("q")
    pane.wait_for("EXIT=0")


def test_live_tui_under_tmux_prints_the_log(tmp_path: Path, tmux_session) -> None:
    """A live run in a real terminal: its steps appear, q quits mid-run, the log's path is printed and it verifies."""
    with ScriptedLM(latency_s=0.5) as lm:
        lm.script("root", run_logs.THREE_TURNS)
        lm.rule("sub", lambda messages: "EUR 48,500")
        env = {**os.environ, "RLM_HOST_AUDIT_DIR": str(tmp_path)}
        cmd = (f"{sys.executable} -m rlm_host tui --query 'What is the termination fee?' --context "
               f"{run_logs.CLAUSES} --base-url {lm.base_url} --model root")
        pane = tmux_session(cmd, env=env)
        pane.wait_for("── iteration 1 ──", timeout=120)
        pane.keys("q")
        shown = pane.wait_for("EXIT=", timeout=60)
    logs = list(tmp_path.glob("*.jsonl"))
    assert len(logs) == 1 and f"audit log: {logs[0]}" in shown.replace("\n", ""), shown
    assert verify(logs[0]).status == "intact"
    assert events(logs[0])[-2]["kind"] == "run.error"  # stopped at its next step, and sealed
    assert "the TUI was closed" in events(logs[0])[-2]["error"]


def test_tui_in_a_terminal_ends_on_sigterm_with_one_line(three_turns: Path, tmp_path: Path, tmux_session) -> None:
    """SIGTERM to a TUI in a real terminal: it leaves the screen as it was, prints one line, exits 143."""
    pid_file = tmp_path / "pid"
    pane = tmux_session(f"sh -c 'echo $$ > {pid_file}; exec {sys.executable} -m rlm_host tui --replay {three_turns}'")
    pane.wait_for("The paper")
    os.kill(int(pid_file.read_text()), 15)
    shown = pane.wait_for("EXIT=")
    assert "EXIT=143" in shown and "rlm-host: the TUI stopped on SIGTERM" in shown, shown
    assert "Traceback" not in shown and "The paper" not in shown  # the app's screen is gone
