"""The audit-reading commands on real logs: the exit-code table, read-only, list, verify DIR, the index, diff."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

import run_logs

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, docker_ready: str) -> dict[str, Path]:
    """Five real runs in one folder: two of the same query differing in a sub-call reply, a failed
    run, a 20-iteration last-resort run and an exec log; one more run of another query elsewhere."""
    folder = tmp_path_factory.mktemp("runs")
    made = {"a": run_logs.three_turns(folder), "b": run_logs.three_turns(folder, sub_reply="EUR 50,000"),
            "failed": run_logs.failed_run(folder), "twenty": run_logs.twenty_iterations(folder),
            "exec": run_logs.exec_log(folder)}
    other = tmp_path_factory.mktemp("other")
    made["other"] = run_logs.three_turns(other, query="What is the notice period?")
    return made


def cli(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def copy_log(log: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(log, folder)
    shutil.copy(log.with_suffix(".seal"), folder)
    return folder / log.name


def tampered(log: Path, folder: Path, how: str) -> Path:
    """A copy of a real log, changed one way a forger or a crash would change it."""
    path = copy_log(log, folder)
    lines = path.read_bytes().split(b"\n")[:-1]
    if how == "byte":
        lines[3] = lines[3].replace(b'"ts":1', b'"ts":2', 1)
    elif how == "drop":
        del lines[4]
    elif how == "forge":
        record = json.loads(lines[5])
        record["kind"] = "answer"
        lines[5] = json.dumps(record).encode()
    elif how == "truncate":
        path.write_bytes(b"\n".join(lines)[:-30])
        return path
    elif how == "unsealed":
        path.with_suffix(".seal").unlink()
        path.write_bytes(b"\n".join(lines[:-1]) + b"\n")
        return path
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def not_a_log(folder: Path, how: str) -> Path:
    """A path that is no audit log: text, empty, binary, other JSON, a directory, a FIFO, nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{how}.jsonl"
    if how == "text":
        path.write_text("hello\nworld\n")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "binary":
        path.write_bytes(bytes(range(256)) * 20)
    elif how == "json":
        path.write_text('{"seq": "1", "kind": "cell"}\n[1, 2]\n')
    elif how == "directory":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    return path


@pytest.mark.parametrize("how", ["byte", "drop", "forge", "truncate"])
def test_a_tampered_log_exits_1_in_verify_and_show(logs: dict[str, Path], tmp_path: Path, how: str) -> None:
    """An edited byte, a dropped, forged or cut line: verify and show exit 1, name the line; the original verifies."""
    path = tampered(logs["a"], tmp_path, how)
    verify = cli("audit", "verify", path)
    assert verify.returncode == 1 and ": tampered: line " in verify.stdout, verify
    show = cli("audit", "show", path)
    assert show.returncode == 1 and "tampered: line" in show.stderr and "run.start" in show.stdout, show
    assert cli("audit", "verify", logs["a"]).returncode == 0


def test_an_unsealed_log_exits_2(logs: dict[str, Path], tmp_path: Path) -> None:
    """A log cut at a line boundary with no seal reads as unfinished, exit 2, in verify and show."""
    path = tampered(logs["a"], tmp_path, "unsealed")
    verify = cli("audit", "verify", path)
    assert verify.returncode == 2 and "unfinished" in verify.stdout, verify
    assert cli("audit", "show", path, "--json").returncode == 2


@pytest.mark.parametrize("how", ["text", "empty", "binary", "json", "directory", "fifo", "missing"])
@pytest.mark.parametrize("command", ["verify", "show", "report", "tui"])
def test_a_path_that_is_no_log_gets_one_line_everywhere(tmp_path: Path, how: str, command: str) -> None:
    """Text, empty, binary or other JSON files, a directory, a FIFO: exit 3; a missing file: exit 4; one line each."""
    path = not_a_log(tmp_path, how)
    folder_mode = command in ("verify", "report") and how == "directory"
    if folder_mode:  # verify and report take a folder: its one non-log decides the exit code
        (path / "x.jsonl").write_text("hello\n")
    args = {"verify": ["audit", "verify", path], "show": ["audit", "show", path],
            "report": ["report", path, "-o", tmp_path / "out.html"], "tui": ["tui", "--replay", path]}[command]
    proc = cli(*args)
    assert proc.returncode == (4 if how == "missing" else 3), proc
    assert "Traceback" not in proc.stderr, proc
    if folder_mode:
        assert proc.stderr == "" and ("is not an audit log" in proc.stdout or "1 run(s), 0 report(s)" in proc.stdout)
        return
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlm-host: error: ") and proc.stdout == "", proc
    assert ("not found" if how == "missing" else "not ") in lines[0]
    assert not (tmp_path / "out.html").exists()


def test_readers_create_no_file_and_say_no_key(logs: dict[str, Path], tmp_path: Path) -> None:
    """With no key in a fresh HOME, every reader exits 5 with the key's path, and no file appears anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_HOST_", "XDG_"))}
    env["HOME"] = str(home)
    folder = logs["a"].parent
    before = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir())

    def run(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rlm_host", *map(str, args)], capture_output=True, text=True,
                              timeout=120, env=env, stdin=subprocess.DEVNULL)

    for args in (["audit", "verify", logs["a"]], ["audit", "verify", folder], ["audit", "show", logs["a"]],
                 ["audit", "diff", logs["a"], logs["b"]]):
        proc = run(*args)
        assert proc.returncode == 5, (args, proc)
        assert f"cannot verify: no key at {home}/.local/state/rlm-host/audit.key" in proc.stdout + proc.stderr
        assert "set RLM_HOST_AUDIT_KEY_FILE to the key that wrote it" in proc.stdout + proc.stderr
    listing = run("audit", "list", folder)
    assert listing.returncode == 0 and listing.stdout.count(" no-key ") == 5, listing
    assert list(home.rglob("*")) == []
    assert sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()) == before


def test_audit_list_one_line_per_run(logs: dict[str, Path]) -> None:
    """`audit list DIR` prints a header and one line per run with our columns: status, verification, limits, seal."""
    proc = cli("audit", "list", logs["a"].parent)
    assert proc.returncode == 0, proc
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:3] == ["when", "status", "verified"] and len(rows) == 5
    by_file = {next(f for f in logs.values() if f'"{f.name}"' in row).name: row.split() for row in rows}
    assert by_file[logs["a"].name][2:4] == ["answered", "intact"]
    assert by_file[logs["failed"].name][2:4] == ["failed", "intact"]
    assert by_file[logs["twenty"].name][2:4] == ["last_resort", "intact"] and by_file[logs["twenty"].name][6] != "0"
    assert by_file[logs["exec"].name][2:4] == ["exec", "intact"]
    assert all(row.endswith('"What is the termination fee?"') for row in rows if "exec" not in row.split()[2])


def test_audit_list_filters_and_json(logs: dict[str, Path]) -> None:
    """--status, --grep, --since/--until narrow the list; --json prints one object per run."""
    folder = logs["a"].parent
    failed = cli("audit", "list", folder, "--status", "failed").stdout.splitlines()[1:]
    assert len(failed) == 1 and logs["failed"].name in failed[0]
    assert len(cli("audit", "list", folder, "--status", "tampered").stdout.splitlines()) == 1
    assert len(cli("audit", "list", folder, "--status", "answered", "--status", "exec").stdout.splitlines()) == 4
    assert len(cli("audit", "list", folder, "--grep", "EUR 50,000").stdout.splitlines()) == 2
    today, tomorrow = date.today(), date.today() + timedelta(days=1)
    assert len(cli("audit", "list", folder, "--since", tomorrow).stdout.splitlines()) == 1
    assert len(cli("audit", "list", folder, "--until", today - timedelta(days=1)).stdout.splitlines()) == 1
    assert len(cli("audit", "list", folder, "--since", today, "--until", today).stdout.splitlines()) == 6
    rows = [json.loads(line) for line in cli("audit", "list", folder, "--json").stdout.splitlines()]
    assert len(rows) == 5 and {r["verification"] for r in rows} == {"intact"}
    assert {"file", "status", "started", "query", "cost_usd", "denials", "limits", "seal_reason"} <= set(rows[0])


@pytest.mark.parametrize(("args", "needle"), [(["--status", "bogus"], "unknown status 'bogus': use one of answered"),
                                              (["--since", "yesterday"], "use YYYY-MM-DD")])
def test_audit_list_refuses_bad_filters(logs: dict[str, Path], args: list[str], needle: str) -> None:
    """An unknown status or a date that is no date is one line naming what is accepted, exit 1."""
    proc = cli("audit", "list", logs["a"].parent, *args)
    assert proc.returncode == 1 and needle in proc.stderr and len(proc.stderr.splitlines()) == 1, proc


def test_verify_dir_prints_each_log_and_a_tally(logs: dict[str, Path], tmp_path: Path) -> None:
    """`audit verify DIR`: one line per log, a tally, and the gravest exit code (tampered over unfinished)."""
    for log in (logs["a"], logs["failed"]):
        copy_log(log, tmp_path)
    tampered(logs["b"], tmp_path, "unsealed")
    proc = cli("audit", "verify", tmp_path)
    assert proc.returncode == 2 and proc.stdout.splitlines()[-1] == "3 log(s): 2 intact, 1 unfinished", proc
    tampered(logs["twenty"], tmp_path, "forge")
    not_a_log(tmp_path, "text")
    proc = cli("audit", "verify", tmp_path)
    *each, tally = proc.stdout.splitlines()
    assert proc.returncode == 1 and tally == "5 log(s): 2 intact, 1 tampered, 1 unfinished, 1 not-a-log", proc
    assert len(each) == 5 and all(line.startswith(f'"{tmp_path}/') for line in each)


def test_unknown_kind_and_usage_errors(logs: dict[str, Path]) -> None:
    """`--kind bogus` is refused listing the kinds; usage errors exit 64, so 2 only means unfinished."""
    proc = cli("audit", "show", logs["a"], "--kind", "bogus")
    assert proc.returncode == 1 and "unknown event kind 'bogus': use one of answer, cell" in proc.stderr, proc
    shown = cli("audit", "show", logs["a"], "--kind", "subcall", "--json").stdout
    kinds = [json.loads(line)["kind"] for line in shown.splitlines()]
    assert kinds and set(kinds) == {"subcall"}
    for args in (["audit", "verify"], ["audit", "list", "--bogus"], ["report", logs["a"]]):
        proc = cli(*args)
        assert proc.returncode == 64 and len(proc.stderr.splitlines()) == 1 and "see --help" in proc.stderr, proc


def test_report_dir_writes_an_index_linking_each_report(logs: dict[str, Path], tmp_path: Path) -> None:
    """`report DIR -o index.html` writes each run's report beside the index, linked; a non-log is listed, not linked."""
    folder = tmp_path / "logs"
    for log in (logs["a"], logs["failed"], logs["exec"]):
        copy_log(log, folder)
    not_a_log(folder, "binary")
    out = tmp_path / "site"
    out.mkdir()
    proc = cli("report", folder, "-o", out / "index.html")
    assert proc.returncode == 3 and "4 run(s), 3 report(s)" in proc.stdout, proc
    page = (out / "index.html").read_text()
    links = [part.split("'")[0] for part in page.split("<a href='")[1:]]
    assert len(links) == 3 and all((out / link).is_file() for link in links)
    titles = sorted((out / link).read_text().split("<title>")[1].split(" ")[1] for link in links)
    assert titles == ["exec", "run", "run"]  # each a report page of its own log (the exec log's shape named)
    assert "binary.jsonl" in page and page.count("<tr data-verification=") == 4
    assert "Content-Security-Policy" in page and "http" not in page.replace("http-equiv", "")


def test_diff_of_two_runs_of_one_query(logs: dict[str, Path]) -> None:
    """`audit diff`: the sub-call reply and the answer that differ, the costs; a run against itself: the same."""
    proc = cli("audit", "diff", logs["a"], logs["b"])
    assert proc.returncode == 0, proc
    assert 'sub-call 1 reply differs: A "EUR 48,500", B "EUR 50,000"' in proc.stdout
    assert 'answer differs: A "EUR 48,500", B "EUR 50,000"' in proc.stdout
    assert "cost: A " in proc.stdout and "tokens: A " in proc.stdout and "code differs" not in proc.stdout
    same = cli("audit", "diff", logs["a"], logs["a"])
    assert "same code, sub-calls and answer" in same.stdout and "B - A = +0" in same.stdout
    code = cli("audit", "diff", logs["a"], logs["twenty"]).stdout
    assert "cells: A ran 3, B ran 20" in code and "    -hits = search(r'termination fee')" in code


def test_diff_of_different_queries_is_one_line(logs: dict[str, Path], tmp_path: Path) -> None:
    """Two runs of different queries: one line saying so; a tampered side makes the exit code 1."""
    proc = cli("audit", "diff", logs["a"], logs["other"])
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 3, proc
    assert lines[2].startswith('different queries: A asks "What is the termination fee?", B asks "What is the notice')
    bad = cli("audit", "diff", logs["a"], tampered(logs["b"], tmp_path, "forge"))
    assert bad.returncode == 1 and "tampered" in bad.stderr
