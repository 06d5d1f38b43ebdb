"""The audit log: keyed chain, seal, tampering caught and named, levels, crash survival."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_host.audit import AuditLog, events, line_hash, verify

KEY = bytes(range(32))


def write_log(tmp_path: Path, n: int = 6, seal: bool = True) -> Path:
    log = AuditLog("run123", "full", directory=tmp_path, key=KEY)
    for i in range(n):
        log.record("cell", {"iteration": i, "code": f"print({i})", "stdout": f"{i}\n"})
    if seal:
        log.seal()
    log.close()
    return log.path


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_intact_log_verifies(tmp_path: Path) -> None:
    """A sealed log verifies; every line carries seq, ts, run id, prev and hash."""
    path = write_log(tmp_path)
    verdict = verify(path, KEY)
    assert verdict.status == "intact" and verdict.lines == 7
    first = events(path)[0]
    assert {"seq", "ts", "run_id", "kind", "prev", "hash"} <= set(first) and first["prev"] == "0" * 64


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (lambda ls: ls.__setitem__(2, ls[2].replace('"stdout":"2\\n"', '"stdout":"7\\n"')), 3, "edited"),
        (lambda ls: ls.pop(2), 3, "removed"),
        (lambda ls: ls.__setitem__(slice(2, 4), [ls[3], ls[2]]), 3, "reordered"),
        (lambda ls: ls.insert(2, ls[1]), 3, "inserted"),
    ],
    ids=["byte-changed", "line-deleted", "lines-swapped", "line-inserted"],
)
def test_tampering_is_caught_at_its_line(tmp_path: Path, tamper, line: int, reason: str) -> None:
    """A changed byte, a deleted, swapped or inserted line: verify names the first bad line and why."""
    path = write_log(tmp_path)
    lines = path.read_text().splitlines()
    tamper(lines)
    rewrite(path, lines)
    verdict = verify(path, KEY)
    assert verdict.status == "broken" and verdict.bad_line == line and reason in verdict.reason, verdict


def test_forged_line_with_a_recomputed_plain_hash(tmp_path: Path) -> None:
    """A forger who rebuilds the chain with plain SHA-256 (no key) is caught at the forged line."""
    import hashlib

    path = write_log(tmp_path)
    lines = path.read_text().splitlines()
    record = json.loads(lines[3])
    record["stdout"] = "forged\n"
    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    lines[3] = json.dumps(record)
    rewrite(path, lines)
    verdict = verify(path, KEY)
    assert verdict.bad_line == 4 and "forged" in verdict.reason
    assert verify(write_log(tmp_path / "other"), bytes(32)).reason.startswith("edited or forged")


def test_cut_mid_line_and_at_a_line_boundary(tmp_path: Path) -> None:
    """A cut in the middle of a line is named; a cut at a line boundary is not taken as intact."""
    path = write_log(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    verdict = verify(path, KEY)
    assert verdict.status == "broken" and "truncated mid-line" in verdict.reason and verdict.bad_line == 7
    path.write_bytes(b"".join(line + b"\n" for line in data.splitlines()[:4]))
    verdict = verify(path, KEY)
    assert verdict.status == "broken" and "the seal says 7 lines" in verdict.reason
    path.with_suffix(".seal").unlink()
    assert verify(path, KEY).status == "unfinished"


def test_unsealed_log_is_unfinished(tmp_path: Path) -> None:
    """A log whose run never ended verifies up to its last line and says it is unfinished."""
    path = write_log(tmp_path, seal=False)
    verdict = verify(path, KEY)
    assert verdict.status == "unfinished" and verdict.lines == 6


def test_each_line_is_on_disk_when_record_returns(tmp_path: Path) -> None:
    """record() returns only after the line is written (read back through a separate handle)."""
    log = AuditLog("r", "full", directory=tmp_path, key=KEY)
    for i in range(3):
        log.record("step", {"i": i})
        assert len(log.path.read_text().splitlines()) == i + 1
    log.close()
    assert line_hash(KEY, events(log.path)[0]) == events(log.path)[0]["hash"]


def test_levels_keep_or_hash_text(tmp_path: Path) -> None:
    """full keeps text; redacted keeps code and hashes outputs; hashes keeps no text at all."""
    fields = {"code": "x = 'SECRET-CODE'", "stdout": "SECRET-OUT", "prompt": "SECRET-PROMPT", "query": "SECRET-Q"}
    seen = {}
    for level in ("full", "redacted", "hashes"):
        log = AuditLog(level, level, directory=tmp_path / level, key=KEY)
        log.record("cell", dict(fields))
        log.seal()
        seen[level] = log.path.read_text()
        assert verify(log.path, KEY).status == "intact"
    assert all(secret in seen["full"] for secret in ("SECRET-CODE", "SECRET-OUT", "SECRET-PROMPT"))
    assert "SECRET-CODE" in seen["redacted"] and "SECRET-OUT" not in seen["redacted"]
    assert "SECRET" not in seen["hashes"] and '"stdout_digest"' in seen["hashes"]


def test_cli_verify_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit verify` exits 0 intact, 1 tampered, 4 not found, in a line; `audit show` filters by kind, prints JSON."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY.hex())
    env = {**os.environ, "RLM_HOST_AUDIT_KEY_FILE": str(key_file)}
    path = write_log(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rlm_host", "audit", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    ok = cli("verify", str(path))
    assert ok.returncode == 0 and "intact and sealed, 7 lines" in ok.stdout
    shown = cli("show", str(path), "--kind", "seal", "--json")
    assert [json.loads(line)["kind"] for line in shown.stdout.splitlines()] == ["seal"]
    assert "▷ cell" in cli("show", str(path)).stdout
    lines = path.read_text().splitlines()
    rewrite(path, lines[:2] + lines[3:])
    bad = cli("verify", str(path))
    assert bad.returncode == 1 and "tampered: line 3: removed" in bad.stdout
    missing = cli("verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 4 and "not found" in missing.stderr


SEPARATORS = ["\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1d", "\x1e", "\r", "\r\n", "\x9b", "\u202e",
              "\ud800", "\udfff", "\x1b[2J", '\n{"seq":2,"kind":"answer"}\n']


@pytest.mark.parametrize("sep", SEPARATORS, ids=[repr(s) for s in SEPARATORS])
def test_writer_escapes_every_line_break_a_reader_could_see(tmp_path: Path, sep: str) -> None:
    """A record holding any line separator is one line of pure-ASCII-separator JSON that reads back the same."""
    log = AuditLog("run123", "full", directory=tmp_path, key=KEY)
    log.record("cell", {"stdout": f"before{sep}after", "code": sep})
    log.seal()
    data = log.path.read_bytes()
    text = data.decode("utf-8")  # strictly UTF-8, lone surrogates included
    assert len(text.splitlines()) == 2 == data.count(b"\n")  # every splitter agrees
    assert not any(0x80 <= ord(c) <= 0x9f or c in "\u2028\u2029\u202e" for c in text)
    assert events(log.path)[0]["stdout"] == f"before{sep}after"
    assert verify(log.path, KEY).status == "intact"


def test_old_log_with_raw_separators_still_verifies(tmp_path: Path) -> None:
    """A line written before the escaping rule, with U+2028 and NEL raw inside a string, still verifies."""
    record = {"seq": 1, "ts": 1.0, "run_id": "old", "stdout": "a\u2028b\x85c\u202ed", "kind": "cell",
              "prev": "0" * 64}
    record["hash"] = line_hash(KEY, record)
    seal = {"seq": 2, "ts": 2.0, "run_id": "old", "lines": 2, "kind": "seal", "prev": record["hash"]}
    seal["hash"] = line_hash(KEY, seal)
    path = tmp_path / "old.jsonl"
    path.write_bytes(b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in (record, seal)))
    assert "\u2028".encode() in path.read_bytes()
    path.with_suffix(".seal").write_text(json.dumps({"run_id": "old", "seq": 2, "hash": seal["hash"]}))
    assert verify(path, KEY).status == "intact"
    assert events(path)[0]["stdout"] == "a\u2028b\x85c\u202ed"


def test_reader_names_invalid_utf8_and_blank_lines(tmp_path: Path) -> None:
    """A line that is not UTF-8, or empty, is named as edited, never decoded into something else."""
    path = write_log(tmp_path)
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([*lines[:2], lines[2][:-3] + b'\xff"}', *lines[3:]]))
    assert verify(path, KEY).reason == "edited: not valid UTF-8"
    path.write_bytes(b"\n".join([*lines[:2], b"", *lines[2:]]))
    assert verify(path, KEY).reason == "edited: not a JSON object"


def test_verify_with_no_key_says_so_and_makes_none(tmp_path: Path) -> None:
    """`audit verify` in a fresh HOME cannot verify: it names the key and the variable, exits 5, creates no key."""
    path = write_log(tmp_path)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_HOST_", "XDG_"))}
    proc = subprocess.run([sys.executable, "-m", "rlm_host", "audit", "verify", str(path)], capture_output=True,
                          text=True, env={**env, "HOME": str(home)}, timeout=60)
    assert proc.returncode == 5 and "RLM_HOST_AUDIT_KEY_FILE" in proc.stderr, proc
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot verify: no key at" in proc.stderr
    assert not any(p.name == "audit.key" for p in home.rglob("*"))


def test_an_edited_line_of_deep_nesting_is_named_not_a_crash(tmp_path: Path) -> None:
    """A line replaced by 100,000 levels of JSON nesting is reported as edited at that line."""
    path = write_log(tmp_path)
    lines = path.read_text().splitlines()
    lines[2] = "[" * 100_000 + "]" * 100_000
    rewrite(path, lines)
    verdict = verify(path, KEY)
    assert (verdict.status, verdict.bad_line, verdict.reason) == ("broken", 3, "edited: not a JSON object")
    assert len(events(path)) == 6  # the other lines still read


@pytest.mark.parametrize("seal", ["fifo", "link", "huge", "text seq", "not json"])
def test_a_seal_that_is_not_ours_never_hangs_or_passes(tmp_path: Path, seal: str) -> None:
    """A seal file swapped for a FIFO, a link, a huge file or a forged shape makes verify fail, at once."""
    path = write_log(tmp_path)
    seal_file = path.with_suffix(".seal")
    good = json.loads(seal_file.read_text())
    seal_file.unlink()
    if seal == "fifo":
        os.mkfifo(seal_file)  # opening it for reading would block without O_NONBLOCK
    elif seal == "link":
        target = tmp_path / "elsewhere.seal"
        target.write_text(json.dumps(good))
        seal_file.symlink_to(target)
    elif seal == "huge":
        seal_file.write_text(json.dumps({**good, "pad": "x" * 10_000}))
    elif seal == "text seq":
        seal_file.write_text(json.dumps({**good, "seq": str(good["seq"])}))
    else:
        seal_file.write_text("[" * 50_000)
    verdict = verify(path, KEY)
    assert verdict.status == "broken" and "seal file does not match" in verdict.reason


@pytest.mark.parametrize("shape", ["fifo", "directory", "not hex"])
def test_a_key_file_that_is_no_key_means_cannot_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       shape: str) -> None:
    """RLM_HOST_AUDIT_KEY_FILE at a FIFO, a directory or junk: verify says it cannot verify (exit 5), never blocks."""
    from rlm_host.errors import ExitCode, NoAuditKey

    path = write_log(tmp_path)
    key = tmp_path / "key"
    {"fifo": lambda: os.mkfifo(key), "directory": key.mkdir, "not hex": lambda: key.write_text("zz")}[shape]()
    monkeypatch.setenv("RLM_HOST_AUDIT_KEY_FILE", str(key))
    with pytest.raises(NoAuditKey, match="cannot verify: the key file") as caught:
        verify(path)
    assert caught.value.exit_code == ExitCode.NO_KEY
    key_file = tmp_path / "good"
    key_file.write_text(KEY.hex())
    monkeypatch.setenv("RLM_HOST_AUDIT_KEY_FILE", str(key_file))
    assert verify(path).status == "intact"
