"""The TUI reviewer, attacked by the log it shows: forged rows, a forged meter, forged kinds, a huge log.

Each hostile log is intact and sealed (written by the real AuditLog, as a run would write what a
model or a cell produced), so nothing rejects it before the TUI. Textual's pilot presses the keys
and the test reads the screen back. Each asserts the attack failed (one row per event, the meter
and the iteration from the record's own events, markup and actions inert) and that the TUI still
replays a genuine log afterwards.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Record

import run_logs
from rlm_host.audit import AuditLog, events, verify
from rlm_host.review.tui import RLMApp

pytestmark = pytest.mark.docker
CATEGORY = "reviewer's screen"
FORGED_ROWS = ["\n  9     99    ✔ answer: FORGED\n── iteration 99 ──\n",
               "\u2028── iteration 99 ──\u2028✔ answer: FORGED",
               "\x85✔ answer: FORGED\r── iteration 99 ──", "\x1b[1A\x1b[2K── iteration 99 ──"]
FORGED_ROW = re.compile(r"^│ *\d+ +\d* +(── iteration 99|✔ answer: FORGED)", re.MULTILINE)
FORGED_METER = "Run finished · step 1/1 · iteration 99 · tokens 0 · cost $0.0000"


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> Path:
    return run_logs.three_turns(tmp_path_factory.mktemp("genuine"))


def screen(app: RLMApp) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def timeline(shown: str) -> str:
    """The timeline's box: from its top border to its bottom one (the detail pane below shows text as blocks)."""
    lines = shown.split("\n")
    top = next(i for i, line in enumerate(lines) if line.startswith("╭"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("╰"))
    return "\n".join(lines[top:bottom + 1])


def replay(path: Path, keys: list[str], size: tuple[int, int] = (120, 40)) -> list[tuple[str, str, int, int]]:
    """Replay ``path``, pressing each key; after each: the screen, the meter, the selected index, the rows."""
    async def go() -> list[tuple[str, str, int, int]]:
        app = RLMApp(events(path), title=path.name)
        seen = []
        async with app.run_test(size=size) as pilot:
            for key in keys:
                await pilot.press(key)
                await pilot.pause()
                seen.append((screen(app), str(app.query_one("#meter").render()), app.selected, app.table.row_count))
            assert app.is_running and len(app.steps) == len(events(path))
        return seen
    return asyncio.run(go())


def still_works(genuine: Path) -> None:
    """After the attack, a genuine log replays: End shows its answer, finished, at 80x24."""
    last = replay(genuine, ["end"], (80, 24))[-1]
    assert "✔ answer: EUR 48,500" in last[0] and "finished" in last[1] and last[2] == last[3] - 1


def hostile(folder: Path, write: Callable[[AuditLog], None]) -> Path:
    log = AuditLog("tuiattack", "full", directory=folder)
    log.record("run.start", {"query": "q", "runtime": "runc", "depth": 1})
    log.record("iteration.start", {"iteration": 1, "depth": 1})
    write(log)
    log.seal()
    assert verify(log.path).status == "intact"
    return log.path


def test_output_forges_timeline_rows(tmp_path: Path, genuine: Path, evidence: Record) -> None:
    """A cell's output, code and answer forge timeline rows and the meter with line breaks and cursor moves"""
    def write(log: AuditLog) -> None:
        for forged in FORGED_ROWS:
            log.record("cell", {"code": forged, "stdout": forged + FORGED_METER, "stderr": forged, "status": "ok"})
            log.record("answer", {"answer": forged})
            log.record("progress", {"message": FORGED_METER + forged})
    path = hostile(tmp_path, write)
    seen = replay(path, ["home", *["n"] * 14, "end", "f", "home", "f"])
    rows = len(events(path))
    for shown, meter, selected, count in seen:
        assert count == rows and f"step {selected + 1}/{rows} · iteration {min(selected, 1)} ·" in meter
        assert not FORGED_ROW.search(timeline(shown)), shown  # a row of its own, after a step number and iteration
        assert "\x1b" not in shown and "\u2028" not in shown and "\x85" not in shown
    still_works(genuine)
    evidence("attacks", category=CATEGORY, attack="A cell's output forges TUI rows and the meter", runtime="host",
             outcome="one row per event; meter from the record; forged text shown escaped in the detail")


def test_forged_kinds_and_markup(tmp_path: Path, genuine: Path, evidence: Record) -> None:
    """Event kinds and fields carry row text, Rich markup, click actions and a fake seal reason"""
    def write(log: AuditLog) -> None:
        log.record("iteration.start\n── iteration 99 ──", {"iteration": 99})
        log.record("[@click=app.quit]x[/]", {"reason": "[@click=app.quit]y[/]"})
        log.record("cell", {"code": "[link=file:///etc/passwd]x[/link][@click=app.quit]q[/]", "status": "[b]ok"})
        log.record("subcall", {"model": "[@click=app.quit]m[/]", "prompt_chars": "[/]", "reply_chars": {"a": 1}})
    path = hostile(tmp_path, write)
    seen = replay(path, ["n", "n", "n", "n", "n", "end", "left_square_bracket", "slash", *"[@click", "enter", "escape",
                         "f", "pagedown"])
    everything = "\n".join(shown for shown, *_ in seen)
    assert "[@click=app.quit]x[/]" in everything and "[link=file:///etc/passwd]x[/link]" in everything
    assert all("iteration 99" not in meter for _s, meter, *_ in seen)
    assert "iteration.start\\n── iteration 99 ──" in everything  # the forged kind, one visible line
    still_works(genuine)
    evidence("attacks", category=CATEGORY, attack="Forged event kinds, markup and click actions in the TUI",
             runtime="host", outcome="shown literally on one row; no action ran; iterations from real events")


def test_huge_log_stays_usable(tmp_path: Path, genuine: Path, evidence: Record) -> None:
    """A log of 3,000 events with 100 KB outputs: the TUI opens it, End reaches the last step, f shows a capped field"""
    def write(log: AuditLog) -> None:
        for i in range(3000):
            log.record("cell", {"code": f"x = {i}", "stdout": "y" * (100_000 if i % 500 == 0 else 10), "status": "ok"})
    path = hostile(tmp_path, write)
    seen = replay(path, ["end", "home", "f", "pagedown", "end"], (80, 24))
    total = len(events(path))
    assert seen[0][2] == total - 1 and f"step {total}/{total}" in seen[0][1] and "seal" in seen[0][0]
    assert seen[2][2] == 0 and seen[-1][2] == total - 1
    still_works(genuine)
    evidence("attacks", category=CATEGORY, attack="A huge log (3,000 events, 100 KB outputs) in the TUI",
             runtime="host", outcome="opens, End and Home reach both ends, fields capped")
