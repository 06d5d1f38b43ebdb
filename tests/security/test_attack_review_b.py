"""Hostile logs against the many-runs views: `audit list`, `audit verify DIR`, the index page, `audit diff`.

Each attack is a log that verifies intact (chained with the real key, as a writer with the key, or
a model steering a real run, could make it) or a hostile file name, whose query, answer, run id,
code, sub-call reply, cost and seal reason try to pose as other columns, other rows, a verdict, a
seal reason, HTML or terminal escapes. Each asserts the views show our own columns from our own
vocabulary, the log's text only quoted and visible (or HTML-escaped), and that a genuine log in
the same folder still reads as it should afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import run_logs
from rlm_host.audit import GENESIS, line_hash

pytestmark = pytest.mark.docker
CATEGORY = "reviewer's screen"
KEY = bytes(range(32))
ROW = '2026-01-01 00:00:00  answered     intact      $0.0000       0       0  answered       "genuine.jsonl"  "q"'
HOSTILE = ('\x1b]0;PWNED\x07\x1b[2J\u202e\x9b31m"  intact  \n' + ROW + '\u2028"/x.jsonl": intact and sealed, 9 lines'
           "</td></tr><script>alert(1)</script><a href='http://evil.example/'>x</a><img src=http://evil.example/p>")
RAW = ("\x1b", "\x07", "\u202e", "\x9b", "\u2028")
OURS = ("A: ", "B: ", "cells: ", "cell ", "    ", "sub-call", "answer differs", "last-resort", "cost: ", "tokens: ",
        "different queries", "same code")


def chained(folder: Path, name: str, records: list[dict]) -> Path:
    """A log with these events, keyed and chained and sealed exactly as the writer does: it verifies intact."""
    folder.mkdir(parents=True, exist_ok=True)
    path, prev, lines = folder / name, GENESIS, []
    for seq, fields in enumerate(records, 1):
        record = {"seq": seq, "ts": 1_800_000_000.0 + seq, "run_id": HOSTILE, **fields, "prev": prev}
        record["hash"] = prev = line_hash(KEY, record)
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".seal").write_text(json.dumps({"run_id": HOSTILE, "seq": len(records), "hash": prev}))
    return path


def hostile_run(folder: Path, name: str = "hostile.jsonl", code: str = HOSTILE) -> Path:
    return chained(folder, name, [
        {"kind": "run.start", "query": HOSTILE, "depth": 1},
        {"kind": "iteration.start", "iteration": HOSTILE, "depth": 1},
        {"kind": "cell", "code": code + "\nprint(1)\n" + HOSTILE, "status": "ok"},
        {"kind": "subcall", "prompt": HOSTILE, "response": HOSTILE, "prompt_tokens": "9" * 50},
        {"kind": "run.end", "depth": 1, "answer": HOSTILE, "cost_usd": "$0.0000 intact", "iterations": HOSTILE,
         "fallback": HOSTILE},
        {"kind": "seal", "reason": HOSTILE, "lines": 6}])


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> Path:
    """A real run's log (the real writer's key), copied into each test's folder beside the attacks."""
    return run_logs.three_turns(tmp_path_factory.mktemp("genuine"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The key the hostile logs were chained with, for the commands under test."""
    key = tmp_path / "key"
    key.write_text(KEY.hex())
    return {**os.environ, "RLM_HOST_AUDIT_KEY_FILE": str(key)}


def cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)


def no_raw(text: str) -> None:
    assert not [c for c in RAW if c in text], [c for c in RAW if c in text]


def test_list_columns_cannot_be_spoofed(tmp_path: Path, env: dict[str, str], genuine: Path, evidence) -> None:
    """`audit list` of an intact log whose query, answer, run id, cost and seal reason pose as columns and rows"""
    folder = tmp_path / "logs"
    hostile_run(folder)
    hostile_run(folder, name='x"  intact  \x1b[2J.jsonl')
    proc = cli(env, "audit", "list", folder)
    no_raw(proc.stdout)
    _header, *rows = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(rows) == 2, proc
    for row in rows:
        columns = row.split()
        assert columns[2:8] == ["answered", "intact", "-", "0", "0", "?"], row  # our vocabulary, nothing of theirs
        assert columns[8].startswith('"') and row.endswith('"') and "\\x1b]0;PWNED" in row
    assert '"x\\x22  intact  \\x1b[2J.jsonl"' in proc.stdout  # the name's quote cannot close its column
    listed = [json.loads(line) for line in cli(env, "audit", "list", folder, "--json").stdout.splitlines()]
    assert [r["seal_reason"] for r in listed] == ["?", "?"] and {r["cost_usd"] for r in listed} == {None}
    shutil.copy(genuine, folder)
    shutil.copy(genuine.with_suffix(".seal"), folder)
    mine = {k: v for k, v in env.items() if k != "RLM_HOST_AUDIT_KEY_FILE"}  # the key the real run used
    after = cli(mine, "audit", "list", folder, "--grep", "termination fee").stdout.splitlines()
    assert len(after) == 2 and after[1].split()[2:4] == ["answered", "intact"]  # the genuine run, its own key
    evidence("attacks", category=CATEGORY, attack="audit list: query, run id, cost and seal reason posing as columns",
             runtime="host", outcome="our columns only; their text quoted, visible, last")


def test_verify_dir_verdicts_cannot_be_spoofed(tmp_path: Path, env: dict[str, str], genuine: Path, evidence) -> None:
    """`audit verify DIR` with file names and run ids that read as another log's verdict"""
    folder = tmp_path / "logs"
    hostile_run(folder)
    (folder / 'a.jsonl": intact and sealed, 18 lines, run x\x1b[2K.jsonl').write_text("not a log\n")
    edited = hostile_run(folder, name="edited.jsonl")
    edited.write_text(edited.read_text().replace("run.end", "run.end ", 1))
    proc = cli(env, "audit", "verify", folder)
    no_raw(proc.stdout)
    *each, tally = proc.stdout.splitlines()
    assert proc.returncode == 1 and tally == "3 log(s): 1 intact, 1 tampered, 1 not-a-log", proc
    assert all(line.startswith(f'"{folder}/') for line in each)
    assert sum(": intact and sealed, 6 lines, run \"" in line for line in each) == 1
    assert '/a.jsonl\\x22: intact and sealed, 18 lines, run x\\x1b[2K.jsonl" is not an audit log' in proc.stdout
    mine = {k: v for k, v in env.items() if k != "RLM_HOST_AUDIT_KEY_FILE"}
    assert cli(mine, "audit", "verify", genuine).returncode == 0
    evidence("attacks", category=CATEGORY, attack="audit verify DIR: file names and run ids posing as verdicts",
             runtime="host", outcome="each line begins with its quoted path; tally and exit code ours")


def test_index_page_escapes_every_field(tmp_path: Path, env: dict[str, str], evidence) -> None:
    """`report DIR` index of a log whose every field is HTML, script, remote URLs and terminal escapes"""
    folder = tmp_path / "logs"
    hostile_run(folder, name="<script>alert(1)<\u202e.jsonl")
    out = tmp_path / "site"
    out.mkdir()
    proc = cli(env, "report", folder, "-o", out / "index.html")
    assert proc.returncode == 0 and "1 run(s), 1 report(s)" in proc.stdout, proc
    page = (out / "index.html").read_text()
    assert "<script" not in page and "<img" not in page and "http://evil" not in page.split("</style>")[0]
    assert not re.search(r"<[a-z]+[^>]*\s(href|src)=['\"]?(https?:|//|javascript:)", page, re.I)
    links = re.findall(r"href='([^']*)'", page)
    assert len(links) == 1 and re.fullmatch(r"run-0001-[A-Za-z0-9_-]+\.html", links[0]) and (out / links[0]).is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.html", links[0]])
    no_raw(page)
    dom = subprocess.run([shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "<script" not in dom.stdout and dom.stdout.count("<tr data-verification=") == 1
    evidence("attacks", category=CATEGORY, attack="report DIR index: HTML, script and remote URLs in every field",
             runtime="host", outcome="escaped text; one local link of our own name; nothing loaded")


def test_diff_lines_are_ours(tmp_path: Path, env: dict[str, str], evidence) -> None:
    """`audit diff` of two hostile runs of one query whose code and replies carry fake diff lines and escapes"""
    a = hostile_run(tmp_path / "a", code="x = 1\n@@ -1 +1 @@\n+answer differs: A \"ok\"")
    b = hostile_run(tmp_path / "b", code="x = 2\ncost: A $0, B $0\x1b[2J")
    proc = cli(env, "audit", "diff", a, b)
    assert proc.returncode == 0, proc
    no_raw(proc.stdout)
    lines = proc.stdout.splitlines()
    assert all(line.startswith(OURS) for line in lines), lines
    assert [line for line in lines if line.startswith(("answer differs", "cost: "))] == ["cost: A unknown, B unknown"]
    assert "    +cost: A $0, B $0\\x1b[2J" in lines and "    -+answer differs: A \"ok\"" in lines
    assert lines[-1] == "tokens: A 0, B 0 (B - A = +0)"
    evidence("attacks", category=CATEGORY, attack="audit diff: code and replies posing as diff lines, costs, escapes",
             runtime="host", outcome="every line ours; their text after a diff marker or quoted")
