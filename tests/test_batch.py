"""Batches on this machine: the tasks file, admission, real runs through the sandbox, resuming, stopping.

The runs are real `rlm-host run` processes with real containers, driven by the scripted model,
whose rule answers each task's "Say N" with N, so every result can be checked.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rlm_host import audit
from rlm_host.batches import Admission, read_tasks, results_of
from rlm_host.batches.admission import Need
from rlm_host.errors import ConfigError
from rlm_host.policy import load_policy, policies_dir
from rlm_host.testing import ScriptedLM

from helpers import Tmux, chromium, page_requests, say_n

DOC = Path(__file__).resolve().parent.parent / "examples" / "clauses.txt"


@pytest.fixture
def lm() -> Iterator[ScriptedLM]:
    with ScriptedLM() as server:
        server.rule("root", say_n)
        yield server


def write_tasks(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def task(n: int, **extra: object) -> dict:
    return {"id": f"t{n}", "query": f"Say {n}", "context": [str(DOC)], **extra}


def batch(lm: ScriptedLM, tasks: Path, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "rlm_host", "batch", str(tasks), "--out", str(out), "--base-url", lm.base_url,
            "--model", "root", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# -- the tasks file (no Docker) -------------------------------------------------------------------

def test_every_bad_line_is_named_with_its_number_and_the_rest_are_tasks(tmp_path: Path) -> None:
    """Malformed JSON, not an object, a missing file, an unknown policy or field, a duplicate id, a bad
    max_iterations: each its line and reason; the good lines are tasks."""
    path = write_tasks(tmp_path / "tasks.jsonl", [
        task(1), "{not json", "[1, 2]", task(2, context=["missing.txt"]), task(3, policy="nope"),
        task(4, colour="red"), task(1), task(5, max_iterations=0), "", task(6, policy="strict", max_iterations=3),
        {"id": "", "query": "q", "context": [str(DOC)]}, {"id": "t7", "query": " ", "context": [str(DOC)]},
    ])
    found = read_tasks(path)
    assert [t.id for t in found.tasks] == ["t1", "t6"]
    assert found.tasks[1].policy.name == "strict" and found.tasks[1].max_iterations == 3
    reasons = {p.line: p.reason for p in found.problems}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 11, 12]
    assert reasons[2].startswith("not JSON") and reasons[3] == "not a JSON object"
    assert "missing.txt' not found" in reasons[4] and "nope" in reasons[5] and "unknown field 'colour'" in reasons[6]
    assert "used by an earlier line" in reasons[7] and "max_iterations" in reasons[8]
    assert "'id' must be" in reasons[11] and "'query' must be" in reasons[12]


def test_csv_tasks_and_relative_paths(tmp_path: Path) -> None:
    """CSV with the same columns (context paths split on ;), relative to the tasks file; unknown columns refused."""
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    (tmp_path / "tasks.csv").write_text("id,query,context,max_iterations\nx,Say 1,a.txt;b.txt,4\ny,Say 2,a.txt,\n")
    found = read_tasks(tmp_path / "tasks.csv")
    assert [(t.id, t.context, t.max_iterations) for t in found.tasks] == [
        ("x", (tmp_path / "a.txt", tmp_path / "b.txt"), 4), ("y", (tmp_path / "a.txt",), None)]
    (tmp_path / "bad.csv").write_text("id,query,context,colour\nx,q,a.txt,red\n")
    assert "unknown column 'colour'" in read_tasks(tmp_path / "bad.csv").problems[0].reason
    with pytest.raises(ConfigError, match="not there or not a regular file"):
        read_tasks(tmp_path / "none.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_tasks(tmp_path / "bin.jsonl")


def test_task_ids_become_safe_distinct_folder_names(tmp_path: Path) -> None:
    """An id with slashes, dots or escapes names a folder inside the batch, and two ids never share one."""
    rows = [task(1, id="../../etc"), task(2, id="a/b"), task(3, id="a_b"), task(4, id="\x1b]0;x\x07")]
    slugs = [t.slug for t in read_tasks(write_tasks(tmp_path / "t.jsonl", rows)).tasks]
    assert len(set(slugs)) == 4 and all(re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", s) for s in slugs)


def test_admission_by_memory_and_cores() -> None:
    """A run holds memory x depth; the host keeps a reserve; cores and --concurrency cap the count."""
    standard = load_policy("standard")
    gate = Admission(memory_mb=24 * 1024, cores=2)
    assert gate.memory_mb == 18 * 1024 and gate.slots(Need.of(standard)) == 2
    assert Admission(memory_mb=24 * 1024, cores=16).slots(Need.of(standard)) == 9  # 18 GiB / 2 GiB
    assert Admission(memory_mb=24 * 1024, cores=16, concurrency=3).slots(Need.of(standard)) == 3
    deep = standard.with_subcalls(max_depth=3)
    assert Need.of(deep).memory_mb == 3 * standard.limits.memory_mb
    huge = standard.with_limits(memory_mb=20 * 1024)
    assert "more than the 18,432 MiB" in (gate.refusal(Need.of(huge)) or "")


# -- real batches ---------------------------------------------------------------------------------

@pytest.mark.docker
def test_a_batch_answers_every_task_and_resumes_without_rerunning(lm: ScriptedLM, tmp_path: Path) -> None:
    """Eight tasks under both policies: every answer right, every log verifies, one result line each,
    a bad line named; run again, nothing is re-run."""
    rows: list[dict | str] = [task(n, policy="strict" if n % 2 else "standard") for n in range(1, 9)]
    tasks = write_tasks(tmp_path / "tasks.jsonl", [*rows, "{broken"])
    proc = batch(lm, tasks, tmp_path / "out")
    assert proc.returncode == 1, proc.stderr  # one bad line: not every line was a task
    assert "line 9: not JSON" in proc.stderr and "8 done, 0 failed" in proc.stderr
    results = results_of(tmp_path / "out" / "results.jsonl")
    assert sorted(results) == [f"t{n}" for n in range(1, 9)]
    for n in range(1, 9):
        r = results[f"t{n}"]
        assert (r["status"], r["answer"], r["verified"]) == ("answered", str(n), "intact")
        assert r["node"] == socket.gethostname()
        log = Path(r["audit_log"])
        assert log.parent.parent == (tmp_path / "out" / "audit").resolve() and audit.verify(log).status == "intact"
        assert len(r["seal_sha256"]) == 64
        runtime = {e["runtime"] for e in audit.events(log) if e["kind"] == "sandbox.start"}
        assert runtime == {"runsc" if n % 2 else "runc"}
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    write_tasks(tasks, rows)
    again = batch(lm, tasks, tmp_path / "out")
    assert again.returncode == 0, again.stderr
    assert "8 of 8 tasks already done" in again.stderr
    assert (tmp_path / "out" / "results.jsonl").read_text().splitlines() == lines


@pytest.mark.docker
def test_a_policy_that_fits_once_runs_one_session_at_a_time(lm: ScriptedLM, tmp_path: Path) -> None:
    """A policy whose memory fits the host once, not twice: its runs never overlap (from their logs' times)."""
    host = Admission()
    raw = yaml.safe_load((policies_dir() / "standard.yaml").read_text())
    raw["limits"]["memory_mb"] = host.memory_mb // 2 + 64
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(raw))
    tasks = write_tasks(tmp_path / "tasks.jsonl", [task(n, policy="big.yaml") for n in range(1, 4)])
    proc = batch(lm, tasks, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    spans = []
    for r in results_of(tmp_path / "out" / "results.jsonl").values():
        events = audit.events(Path(r["audit_log"]))
        spans.append((events[0]["ts"], events[-1]["ts"]))
    spans.sort()
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans


@pytest.mark.docker
@pytest.mark.parametrize(("sig", "code", "reason"), [(signal.SIGTERM, 143, "terminated"),
                                                     (signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGKILL, -9, "terminated")],
                         ids=["SIGTERM", "SIGINT", "driver-killed"])
def test_a_signal_stops_every_run_cleanly_and_the_batch_resumes(lm: ScriptedLM, tmp_path: Path, sig: int, code: int,
                                                                reason: str) -> None:
    """SIGTERM or Ctrl-C mid-batch: 143 or 130, every stopped run's log sealed with that reason, no
    result for a stopped task, no container left; the same command then runs exactly the rest. A driver
    killed outright: its runs get SIGTERM as it dies (parent-death signal) and end the same way."""
    held = threading.Event()  # t1 and t2 answer at once; t3 on wait for the model until the signal is sent

    def slow_after_two(messages: list[dict]) -> str:
        reply = say_n(messages)
        if not re.search(r"answer\('[12]'\)", reply):
            held.wait(90)
        return reply

    lm.rule("root", slow_after_two)
    tasks = write_tasks(tmp_path / "tasks.jsonl", [task(n) for n in range(1, 7)])
    out = tmp_path / "out"
    args = [sys.executable, "-m", "rlm_host", "batch", str(tasks), "--out", str(out), "--base-url", lm.base_url,
            "--model", "root", "--concurrency", "2"]
    driver = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    deadline = time.monotonic() + 120
    def in_flight() -> bool:  # t1 and t2 have finished, and another task is waiting on the model
        finished = results_of(out / "results.jsonl")
        asked = [log for log in out.glob("audit/*/*.jsonl") if b"iteration.start" in log.read_bytes()]
        return sorted(finished) == ["t1", "t2"] and len(asked) > 2

    while time.monotonic() < deadline and not in_flight():
        time.sleep(0.1)
    driver.send_signal(sig)
    try:
        _, stderr = driver.communicate(timeout=120)
    finally:
        held.set()
    assert driver.returncode == code, stderr
    done = results_of(out / "results.jsonl")
    assert sorted(done) == ["t1", "t2"], (done.keys(), stderr)
    logs = list(out.glob("audit/*/*.jsonl"))
    deadline = time.monotonic() + 90  # a killed driver does not wait for its runs: they seal on their own
    while time.monotonic() < deadline and not all(log.with_suffix(".seal").exists() for log in logs):
        time.sleep(0.2)
    assert logs and all(audit.verify(log).status == "intact" for log in logs), [
        (audit.verify(log), audit.events(log)[-1]) for log in logs]
    stopped = [log for log in logs if str(log) not in {r["audit_log"] for r in done.values()}]
    seals = [audit.events(log)[-1] for log in stopped]
    assert stopped and all(seal["kind"] == "seal" and seal["reason"] == reason for seal in seals), seals
    assert not _still_there(logs)

    proc = batch(lm, tasks, out)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 6 tasks already done" in proc.stderr
    final = results_of(out / "results.jsonl")
    assert sorted(final) == [f"t{n}" for n in range(1, 7)] and all(r["status"] == "answered" for r in final.values())
    assert len((out / "results.jsonl").read_text().splitlines()) == 6  # nothing written twice


def _still_there(logs: list[Path]) -> list[str]:
    """The containers these runs started (their logs' sandbox.start events) that the engine still has."""
    started = {e["container"] for log in logs for e in audit.events(log) if e["kind"] == "sandbox.start"}
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, check=True,
                         env=os.environ)
    return sorted(started & set(out.stdout.split()))


def test_a_hostile_task_line_is_shown_as_text(tmp_path: Path) -> None:
    """An id or path carrying terminal escapes is named visibly in the one line about it, never emitted."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", [
        {"id": "\x1b]0;owned\x07\x1b[2J", "query": "Say 1", "context": ["\x1b]52;c;aGk=\x07.txt"]}])
    args = [sys.executable, "-m", "rlm_host", "batch", str(tasks), "--out", str(tmp_path / "out"), "--base-url",
            "http://127.0.0.1:9/v1", "--model", "root"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "line 1: task '\\x1b]0;owned" in proc.stderr and "not found; skipped" in proc.stderr


@pytest.mark.docker
def test_the_batch_page_lists_every_task_in_chromium(lm: ScriptedLM, tmp_path: Path) -> None:
    """`report DIR` on a batch's folder: one row per task with its run's answer and verification, each
    linked to its report; no request in Chromium. A forged result line naming a log outside the
    folder is shown as having no log (exit 4), and that file is not read."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", [task(n, id=f"<b>t{n}</b>") for n in range(1, 4)])
    out = tmp_path / "out"
    assert batch(lm, tasks, out).returncode == 0
    page = tmp_path / "site" / "index.html"
    page.parent.mkdir()
    report = [sys.executable, "-m", "rlm_host", "report", str(out), "-o", str(page)]
    made = subprocess.run(report, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0 and "3 task(s), 3 report(s)" in made.stdout, made.stderr
    dom = chromium(tmp_path / "profile", f"--log-net-log={tmp_path / 'net.json'}", "--dump-dom", page.as_uri())
    assert dom.returncode == 0 and page_requests(tmp_path / "net.json") == []
    rows = re.findall(r"<tr data-verification=\"intact\">(.*?)</tr>", dom.stdout, flags=re.S)
    assert len(rows) == 3 and "<b>" not in dom.stdout and "&lt;b&gt;t2&lt;/b&gt;" in dom.stdout
    for n in range(1, 4):
        assert any(f"&gt;t{n}&lt;" in row and f">{n}</a>" in row for row in rows), rows
    assert len(list(page.parent.glob("run-*.html"))) == 3

    secret = tmp_path / "elsewhere.jsonl"
    secret.write_text('{"kind": "run.start", "query": "SECRET-ELSEWHERE"}\n')
    with (out / "results.jsonl").open("a") as results:
        results.write(json.dumps({"id": "forged", "status": "answered", "audit_log": str(secret)}) + "\n")
    made = subprocess.run(report, capture_output=True, text=True, timeout=120)
    assert made.returncode == 4, made.stderr
    shown = page.read_text()
    assert "no log in the batch&#x27;s audit folder" in shown or "no log in the batch's audit folder" in shown
    assert "SECRET-ELSEWHERE" not in shown


@pytest.mark.docker
def test_a_terminal_sees_the_live_tally_and_a_line_per_task(lm: ScriptedLM, tmp_path: Path) -> None:
    """In a real terminal (tmux) the tally is live while runs go (running, queued), then each task's line
    and the totals stay on screen."""
    held = threading.Event()

    def wait_for_go(messages: list[dict]) -> str:
        held.wait(60)
        return say_n(messages)

    lm.rule("root", wait_for_go)
    tasks = write_tasks(tmp_path / "tasks.jsonl", [task(n) for n in range(1, 4)])
    cmd = (f"{sys.executable} -m rlm_host batch {tasks} --out {tmp_path / 'out'} --base-url {lm.base_url} "
           f"--model root --concurrency 2")
    pane = Tmux(cmd, size=(150, 20), env={**os.environ, "TERM": "xterm-256color"})
    try:
        live = pane.wait_for("2 running, 1 queued")
        assert "batch 0 done, 0 failed, 2 running, 1 queued" in live
        held.set()
        final = pane.wait_for("EXIT=")
    finally:
        held.set()
        pane.close()
    assert "EXIT=0" in final and "batch 3 done, 0 failed, 0 running, 0 queued" in final
    assert all(f"batch t{n}: answered" in final for n in range(1, 4)), final
