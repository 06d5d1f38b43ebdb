"""The educational TUI: replay a recorded run with Textual's pilot, and once under tmux as a person would."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm_host.audit import events
from rlm_host.lm import LMClient
from rlm_host.rlm import RLM
from rlm_host.tui import RLMApp
from rlm_host.tui.annotations import LOOP, SEARCH, SUBCALL, SYNTHESIS, VARIABLE, annotate
from rlm_host.tui.view import build
from scripted_lm import ScriptedLM

pytestmark = pytest.mark.docker

DOC = Path(__file__).resolve().parent.parent / "examples" / "clauses.txt"
RUN = ["```python\nhits = search(r'termination fee')\nprint(hits[0])\n```",
       "```python\nreply = llm_query('What is the fee?', peek(hits[0].start, hits[0].end + 150))\nprint(reply)\n```",
       "```python\nanswer(reply, citations=[hits[0]])\n```"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> Path:
    """The audit log of a scripted three-turn run through the real sandbox."""
    folder = tmp_path_factory.mktemp("tui")
    with ScriptedLM() as lm:
        lm.script("root", RUN)
        lm.rule("sub", lambda messages: "EUR 48,500")
        result = RLM(model="root", sub_model="sub", lm=LMClient(base_url=lm.base_url),
                     audit_dir=folder).complete("What is the termination fee?", [DOC])
    return Path(result.audit_log)


def text_of(app: RLMApp, selector: str) -> str:
    return str(app.query_one(selector).render())


def test_annotations_appear_at_the_right_steps(recorded: Path) -> None:
    """Stepping with the keyboard shows each paper annotation when its step comes, and back undoes it."""
    log = events(recorded)
    expected = {i + 1: annotate(e) for i, e in enumerate(log) if annotate(e)}
    assert [n for notes in expected.values() for n in notes if n in {LOOP, SEARCH, VARIABLE, SUBCALL, SYNTHESIS}]

    async def drive() -> dict[int, str]:
        seen = {}
        app = RLMApp(log, title="test")
        async with app.run_test(size=(160, 50)) as pilot:
            app.playing = False
            for step in range(1, len(log) + 1):
                seen[step] = text_of(app, "#notes")
                await pilot.press("n")
            await pilot.press("p", "p")
            seen["back"] = text_of(app, "#meter")
        return seen

    seen = asyncio.run(drive())
    for step, notes in expected.items():
        assert all(note in seen[step] for note in notes), (step, notes, seen[step])
    assert "Traditional:" in seen[len(log) - 1] or "Traditional:" in seen[len(log)]
    assert f"step {len(log) - 2}/{len(log)}" in seen["back"]
    first_search = next(i + 1 for i, e in enumerate(log) if SEARCH in annotate(e))
    assert SEARCH not in seen[first_search - 1] or first_search == 1


def test_tui_under_tmux(recorded: Path, tmp_path: Path) -> None:
    """`rlm-host tui --replay` in a real terminal: keys step it, the screen shows the paper, q quits."""
    assert shutil.which("tmux"), "tmux is needed for this test: apt-get install tmux (make test does)"
    session = f"rlmtui{int(time.time() * 1000) % 100000}"
    cmd = f"{sys.executable} -m rlm_host tui --replay {recorded}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
    try:
        time.sleep(3)
        for _ in range(8):
            subprocess.run(["tmux", "send-keys", "-t", session, "n"], check=True)
            time.sleep(0.2)
        time.sleep(1)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        assert "The paper" in screen and "step 9/" in screen and "iteration" in screen, screen
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        time.sleep(1.5)
        alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0
        assert not alive, "q did not quit the TUI"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_live_mode_shows_events_as_they_happen(docker_ready: str) -> None:
    """A live run posts its events to the app while it runs; the paper notes follow to the end."""
    from rlm_host.tui.live import run_live

    async def drive(lm: ScriptedLM) -> tuple[list[str], str]:
        app = RLMApp(live=True, title="live")

        def start(hook):
            return RLM(model="root", sub_model="sub", lm=LMClient(base_url=lm.base_url),
                       on_event=hook).complete("What is the termination fee?", [DOC])

        async with app.run_test(size=(160, 50)) as pilot:
            run_live(app, start)
            for _ in range(300):
                await pilot.pause(0.1)
                if any(e["kind"] == "run.end" for e in app.events):
                    break
            await pilot.pause(0.3)
            return [e["kind"] for e in app.events], text_of(app, "#notes")

    with ScriptedLM() as lm:
        lm.script("root", RUN)
        lm.rule("sub", lambda messages: "EUR 48,500")
        kinds, notes = asyncio.run(drive(lm))
    recorded = [k for k in kinds if k != "progress"]  # the ingestion sandbox's progress lines come first
    assert recorded[0] == "document" and "subcall" in kinds and kinds[-1] == "run.end"
    assert "Traditional:" in notes


HOSTILE = ["[@click=app.quit]click me[/]", "[/]", "[link=file:///etc/passwd]x[/link]", "\x1b]0;PWN\x07", "\x9b2J",
           "\u202eevil", "\ud800", "x" * 200_000, "[b]bold", "\u2028"]


def hostile_events() -> list:
    """Events with markup, escapes, huge strings, and missing or wrongly typed fields."""
    found: list = []
    for h in HOSTILE:
        found += [{"kind": "cell", "code": h, "stdout": h, "status": h}, {"kind": h}, {"kind": "answer", "answer": h},
                  {"kind": "root", "prompt_tokens": h, "completion_tokens": [h]}, {"kind": "iteration.start", "iteration": h},
                  {"kind": "subcall", "model": {"a": h}, "cost_usd": h}, {"kind": "run.end", "comparison": h},
                  {"kind": "cell", "code": 5, "stdout": None}, {"kind": None}, {"kind": "run.start", "limits": [h]}]
    return found + [[], "x", 5, None]


def test_replay_survives_any_event_content() -> None:
    """Stepping through hostile events never crashes: markup and click actions are literal text, escapes visible."""
    log = hostile_events()

    async def drive() -> tuple[str, RLMApp]:
        app = RLMApp(log, title="[/]\x1b]0;T\x07")
        async with app.run_test(size=(120, 40)) as pilot:
            app.playing = False
            for _ in range(len(log)):
                await pilot.press("n")
            screen = text_of(app, "#timeline")
            assert app.title == "rlm-host · [/]\\x1b]0;T\\x07"
        return screen, app

    screen, app = asyncio.run(drive())
    assert app.return_code in (None, 0) and "unreadable event" in screen and "\x1b" not in screen
    everything = "\n".join(build(log).lines)
    assert "[link=file:///etc/passwd]x[/link]" in everything and "\\x1b]0;PWN" in everything


def test_a_failing_tui_keeps_one_visible_line() -> None:
    """An unhandled error in the app sets a non-zero exit and one visible line, not a traceback of its locals."""

    app = RLMApp([], title="t")

    async def drive() -> None:
        async with app.run_test(size=(80, 24)):
            app._handle_exception(RuntimeError("boom \x1b]0;PWN\x07"))

    with pytest.raises(RuntimeError):  # the pilot re-raises it for the test; `app.run()` does not
        asyncio.run(drive())
    assert app.return_code == 1 and app.failure == "RuntimeError: boom \\x1b]0;PWN\\x07"
