"""Signed checkpoints and manifests: a log verified with the public key alone, every tamper caught and named."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm_host import signing
from rlm_host.audit import AuditLog, verify
from rlm_host.checkpoints import read_manifest, verify_signed, write_manifest
from rlm_host.errors import ConfigError, ExitCode, ManifestTampered, NoAuditKey
from rlm_host.policy import Checkpoints, load_policy
from rlm_host.signing import Signer, load_verifiers

ROOT = Path(__file__).resolve().parent.parent
EVERY = Checkpoints(every_events=4)
# 10 cells with a checkpoint after every 4: lines 1-4 cells, 5 checkpoint (of 4), 6-9 cells, 10 checkpoint
# (of 9), 11-12 cells, 13 the seal; the seal file signs all 13.


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Signer:
    """A host with its own state (HMAC key, signing key) and audit folder."""
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RLM_HOST_AUDIT_DIR", str(tmp_path / "audit"))
    monkeypatch.delenv("RLM_HOST_AUDIT_KEY_FILE", raising=False)
    return signing.keygen()


def write_log(folder: Path, run_id: str, cells: int = 10, *, seal: bool = True, signer: Signer | None = None) -> Path:
    log = AuditLog(run_id, "full", directory=folder, checkpoints=EVERY, signer=signer)
    for i in range(cells):
        log.record("cell", {"code": f"x = {i}", "status": "ok"})
    if seal:
        log.seal("answered")
    else:
        log.close()
    return log.path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def put(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlm_host", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env if env is not None else dict(os.environ), stdin=subprocess.DEVNULL)


def reviewer_env(home: Path) -> dict[str, str]:
    """What an outside reviewer has: a fresh HOME, no rlm-host state, no HMAC key."""
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_HOST_", "XDG_"))}
    return {**keep, "HOME": str(home)}


def test_a_reviewer_with_only_the_public_key_verifies_a_log(host: Signer, tmp_path: Path) -> None:
    """A process with a fresh HOME, no HMAC key, no state verifies the log, checkpoints and seal by the public key."""
    log = write_log(tmp_path / "audit", "run1")
    given = tmp_path / "given"
    given.mkdir()
    shutil.copy(log, given)
    shutil.copy(log.with_suffix(".seal"), given)
    shutil.copy(signing.public_key_path(), given / "host.pub")
    home = tmp_path / "home"
    done = cli("audit", "verify", given / log.name, "--pubkey", given / "host.pub", env=reviewer_env(home))
    assert done.returncode == ExitCode.INTACT, done.stderr
    assert "intact and sealed, 13 lines" in done.stdout and host.key_id in done.stdout
    assert not any(home.rglob("*")), "verifying created a file"
    no_key = cli("audit", "verify", given / log.name, env=reviewer_env(tmp_path / "home2"))
    assert no_key.returncode == ExitCode.NO_KEY  # the HMAC check needs the secret the reviewer lacks


def test_checkpoints_are_c2sp_signed_notes_in_the_log(host: Signer, tmp_path: Path) -> None:
    """Each checkpoint is origin, size, base64 root, a blank line and `— name base64(keyhash||sig)` by the host key."""
    log = write_log(tmp_path / "audit", "run1")
    records = [json.loads(line) for line in lines_of(log)]
    points = [r for r in records if r["kind"] == "checkpoint"]
    assert [(r["seq"], r["size"]) for r in points] == [(5, 4), (10, 9)]
    body, sig = points[0]["note"].split("\n\n")
    assert body.split("\n") == ["rlm-host/audit/run1", "4", body.split("\n")[2]]
    assert sig.startswith(f"\u2014 {signing.KEY_NAME} ") and sig.endswith("\n")
    assert points[0]["key"] == host.key_id
    assert verify(log).status == "intact"  # the HMAC chain holds, checkpoints included
    seal = json.loads(log.with_suffix(".seal").read_text())
    assert seal["checkpoint"].split("\n")[:2] == ["rlm-host/audit/run1", "13"]


def test_a_checkpoint_is_due_after_T_seconds_too(host: Signer, tmp_path: Path) -> None:
    """With every_s, a quiet run gets a checkpoint after the next event, however few events came."""
    log = AuditLog("slow", "full", directory=tmp_path, checkpoints=Checkpoints(every_events=1000, every_s=0.05))
    log.record("cell", {"code": "1"})
    time.sleep(0.1)
    log.record("cell", {"code": "2"})
    log.seal("answered")
    kinds = [json.loads(line)["kind"] for line in lines_of(log.path)]
    assert kinds == ["cell", "cell", "checkpoint", "seal"]
    assert verify_signed(log.path, load_verifiers()).status == "intact"


def test_without_a_signing_key_a_log_has_the_hmac_chain_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key made: no checkpoint, a seal file as before, and --pubkey says only the HMAC key verifies it."""
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))
    log = write_log(tmp_path, "plain")
    assert all(json.loads(line)["kind"] != "checkpoint" for line in lines_of(log))
    assert set(json.loads(log.with_suffix(".seal").read_text())) == {"run_id", "seq", "hash"}
    assert verify(log).status == "intact"
    other = Signer.generate().verifier
    with pytest.raises(NoAuditKey, match="no signed checkpoint"):
        verify_signed(log, {other.hash: other})


NOTE_EDITS = {"note_garbage": lambda _note: {"size": 9}, "note_control": lambda note: note.replace("\n", "\r\n", 1)}


def tamper(log: Path, how: str, other: Path | None = None) -> Path:
    """The log changed one way a forger would change it (``other``: a second log to take a checkpoint from)."""
    lines = lines_of(log)
    if how == "byte":
        lines[6] = lines[6].replace(b"x = 5", b"x = 6")
    elif how == "byte_after_checkpoint":
        lines[10] = lines[10].replace(b"x = 8", b"x = 9")
    elif how == "deleted":
        del lines[2]
    elif how == "swapped":
        lines[1], lines[2] = lines[2], lines[1]
    elif how == "inserted":
        lines.insert(3, lines[2])
    elif how == "inserted_renumbered":
        lines = _renumbered([*lines[:3], lines[2], *lines[3:]])
    elif how == "not_an_event":
        lines[3] = b'{"seq": 4, "note": "x"}'
    elif how in NOTE_EDITS:
        record = json.loads(lines[9])
        record["note"] = NOTE_EDITS[how](record["note"])
        lines[9] = json.dumps(record).encode()
    elif how == "replayed":
        assert other is not None
        record = json.loads(lines[9])
        record["note"] = json.loads(lines_of(other)[9])["note"]
        lines[9] = json.dumps(record, ensure_ascii=False).encode()
    return put(log, lines)


def _renumbered(lines: list[bytes]) -> list[bytes]:
    """Lines renumbered and relinked as a forger without the HMAC key would (``prev`` follows ``hash``)."""
    out, prev = [], "0" * 64
    for seq, line in enumerate(lines, 1):
        record = json.loads(line)
        record["seq"], record["prev"] = seq, prev
        record["hash"] = f"{seq:064x}"
        prev = record["hash"]
        out.append(json.dumps(record, ensure_ascii=False).encode())
    return out


@pytest.mark.parametrize(("how", "bad_line", "why"), [
    ("byte", 10, "lines 5..9 changed after they were signed"),
    ("byte_after_checkpoint", 13, "the signed seal: lines 10..13 changed after they were signed"),
    ("deleted", 3, "removed: line(s) missing"),
    ("swapped", 2, "reordered"),
    ("inserted", 4, "inserted or reordered: sequence number 3 where 4 belongs"),
    ("inserted_renumbered", 6, "lines 1..4 changed after they were signed"),
    ("not_an_event", 4, "edited: not an audit event"),
    ("note_garbage", 10, "checkpoint malformed: not a signed note"),
    ("note_control", 10, "checkpoint malformed: not a signed note (a control character"),
])
def test_each_tamper_is_caught_and_named_with_the_public_key(host: Signer, tmp_path: Path, how: str,
                                                              bad_line: int, why: str) -> None:
    """A byte changed, a line deleted, swapped or inserted (even renumbered, relinked): tampered, where and why."""
    log = tamper(write_log(tmp_path / "audit", "run1"), how)
    verdict = verify_signed(log, load_verifiers(signing.public_key_path()))
    assert (verdict.status, verdict.bad_line) == ("broken", bad_line), verdict
    assert why in verdict.reason
    assert verdict.exit_code == ExitCode.TAMPERED


def test_a_checkpoint_replayed_from_another_log_is_named(host: Signer, tmp_path: Path) -> None:
    """Another run's genuine, validly signed checkpoint put in this log is refused as replayed, by its origin."""
    other = write_log(tmp_path / "other", "run2")
    log = tamper(write_log(tmp_path / "audit", "run1"), "replayed", other)
    verdict = verify_signed(log, load_verifiers())
    assert (verdict.status, verdict.bad_line) == ("broken", 10)
    assert "replayed from another log" in verdict.reason and "rlm-host/audit/run2" in verdict.reason
    seal_file = write_log(tmp_path / "third", "run3").with_suffix(".seal")
    seal = json.loads(seal_file.read_text())
    seal["checkpoint"] = json.loads(other.with_suffix(".seal").read_text())["checkpoint"]
    seal_file.write_text(json.dumps(seal))
    verdict = verify_signed(seal_file.with_suffix(".jsonl"), load_verifiers())
    assert verdict.status == "broken" and "the signed seal: checkpoint replayed" in verdict.reason


def test_a_checkpoint_forged_with_another_key_is_named(host: Signer, tmp_path: Path) -> None:
    """A checkpoint re-signed by another key (over the lines as edited), or with a bad signature, is tampered."""
    log = tamper(write_log(tmp_path / "audit", "run1"), "byte")
    lines = lines_of(log)
    record = json.loads(lines[9])
    forger = Signer.generate()
    record["note"] = forger.sign(record["note"].split("\n\n")[0] + "\n")
    put(log, [*lines[:9], json.dumps(record, ensure_ascii=False).encode(), *lines[10:]])
    verdict = verify_signed(log, load_verifiers())
    assert (verdict.status, verdict.bad_line) == ("broken", 10)
    assert "checkpoint signed by another key" in verdict.reason
    original = json.loads(lines_of(write_log(tmp_path / "again", "run1"))[9])["note"]
    body = original.split("\n\n")[0] + "\n"
    record["note"] = f"{body}\n\u2014 {signing.KEY_NAME} {base64.b64encode(host.verifier.hash + bytes(64)).decode()}\n"
    put(log, [*lines[:9], json.dumps(record, ensure_ascii=False).encode(), *lines[10:]])
    verdict = verify_signed(log, load_verifiers())
    assert verdict.status == "broken" and "forged: its signature by" in verdict.reason


def test_a_log_cut_after_a_checkpoint_verifies_up_to_it(host: Signer, tmp_path: Path) -> None:
    """Cut after line 11 (the seal file gone with it): unfinished, 9 lines verify, up to the checkpoint at line 10."""
    log = write_log(tmp_path / "audit", "run1")
    log.with_suffix(".seal").unlink()
    put(log, lines_of(log)[:11])
    done = cli("audit", "verify", log, "--pubkey", signing.public_key_path())
    assert done.returncode == ExitCode.UNFINISHED, done.stderr
    assert "unfinished: 9 lines verify, up to the signed checkpoint at line 10; lines 10..11" in done.stdout
    unsealed = write_log(tmp_path / "killed", "run2", cells=6, seal=False)
    verdict = verify_signed(unsealed, load_verifiers())
    assert (verdict.status, verdict.lines) == ("unfinished", 4)


def test_a_log_cut_with_its_signed_seal_kept_is_truncated(host: Signer, tmp_path: Path) -> None:
    """The last lines removed but the seal file kept: tampered (truncated), not unfinished."""
    log = write_log(tmp_path / "audit", "run1")
    put(log, lines_of(log)[:11])
    verdict = verify_signed(log, load_verifiers())
    assert verdict.status == "broken" and "truncated: the seal says 13 lines" in verdict.reason


def test_the_wrong_public_key_cannot_verify(host: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another host's public key: exit 5 (cannot verify), naming the key hash the log was signed with."""
    log = write_log(tmp_path / "audit", "run1")
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "elsewhere"))
    signing.keygen()
    done = cli("audit", "verify", log, "--pubkey", signing.public_key_path())
    assert done.returncode == ExitCode.NO_KEY
    assert f"signed by key hash {host.verifier.hash.hex()}, not by the key given" in done.stderr


def test_keygen_refuses_to_overwrite_and_rotation_keeps_old_logs_verifiable(host: Signer, tmp_path: Path) -> None:
    """The private key is 0600; keygen refuses without --force; after --force old logs verify by the kept public key."""
    assert stat.S_IMODE(signing.private_key_path().stat().st_mode) == 0o600
    old = write_log(tmp_path / "audit", "old")
    with pytest.raises(ConfigError, match="already exists"):
        signing.keygen()
    done = cli("audit", "keygen")
    assert done.returncode == 1 and "already exists" in done.stderr
    done = cli("audit", "keygen", "--force")
    assert done.returncode == 0 and "key id: rlm-host-audit+" in done.stdout
    new_signer = signing.host_signer()
    assert new_signer is not None and new_signer.key_id != host.key_id
    new = write_log(tmp_path / "audit", "new")
    kept = signing.private_key_path().parent / f"{host.verifier.hash.hex()}.pub"
    assert verify_signed(old, load_verifiers(kept)).status == "intact"
    with pytest.raises(NoAuditKey):
        verify_signed(old, load_verifiers(signing.public_key_path()))
    ring = load_verifiers()  # the host's key ring: every key it has had
    assert verify_signed(old, ring).status == verify_signed(new, ring).status == "intact"
    assert cli("audit", "pubkey").stdout.strip() == str(signing.public_key_path())


def test_a_manifest_catches_a_run_dropped_added_or_swapped(host: Signer, tmp_path: Path) -> None:
    """The signed list of runs: intact as written; then each run dropped, added and swapped is named."""
    folder = tmp_path / "audit"
    logs = [write_log(folder, f"run{i}", cells=3 + i) for i in range(3)]
    manifest = tmp_path / "runs.manifest"
    assert cli("audit", "manifest", folder, "-o", manifest).returncode == 0
    done = cli("audit", "verify", "--manifest", manifest, folder)
    assert done.returncode == ExitCode.INTACT and "3 run(s) signed by" in done.stdout, done.stderr
    a, b = logs[0].read_bytes(), logs[1].read_bytes()
    logs[0].write_bytes(b)
    logs[1].write_bytes(a)
    logs[2].unlink()
    write_log(folder, "intruder")
    done = cli("audit", "verify", "--manifest", manifest, folder, "--pubkey", signing.public_key_path())
    assert done.returncode == ExitCode.TAMPERED
    assert f'dropped: "{logs[2].name}" (run "run2")' in done.stdout
    assert f'swapped: "{logs[0].name}" holds run "run1", which the manifest lists as "{logs[1].name}"' in done.stdout
    assert 'added: "' in done.stdout and '(run "intruder") is not in the manifest' in done.stdout
    assert "3 problem(s)" not in done.stdout and "4 problem(s)" in done.stdout


def test_a_manifest_edited_or_signed_by_another_key_is_refused(host: Signer, tmp_path: Path) -> None:
    """An entry edited in the manifest: tampered (exit 1); checked with another key: cannot verify (exit 5)."""
    folder = tmp_path / "audit"
    write_log(folder, "run1")
    manifest = tmp_path / "runs.manifest"
    write_manifest([folder], manifest, host)
    assert len(read_manifest(manifest, load_verifiers())[0]) == 1
    other = Signer.generate().verifier
    with pytest.raises(NoAuditKey):
        read_manifest(manifest, {other.hash: other})
    manifest.write_text(manifest.read_text().replace('"lines":13', '"lines":12'))
    with pytest.raises(ManifestTampered, match="forged"):
        read_manifest(manifest, load_verifiers())
    assert cli("audit", "verify", "--manifest", manifest, folder).returncode == ExitCode.TAMPERED


def test_a_tampered_log_is_not_put_in_a_manifest(host: Signer, tmp_path: Path) -> None:
    """Writing a manifest checks each log with the HMAC key first and names the one that fails."""
    folder = tmp_path / "audit"
    tamper(write_log(folder, "run1"), "byte")
    with pytest.raises(ConfigError, match="tampered: line 7"):
        write_manifest([folder], tmp_path / "m", host)


def test_a_policy_without_checkpoints_loads_with_the_defaults(tmp_path: Path) -> None:
    """A policy file written before the section existed loads: every 64 events or 10 s."""
    text = (ROOT / "policies" / "standard.yaml").read_text()
    old = tmp_path / "old.yaml"
    old.write_text(text.split("checkpoints:")[0])
    shutil.copy(ROOT / "policies" / "seccomp-standard.json", tmp_path)
    assert load_policy(str(old)).checkpoints == Checkpoints(every_events=64, every_s=10)


@pytest.mark.docker
def test_a_real_run_is_signed_and_verifies_with_the_public_key_alone(host: Signer, tmp_path: Path,
                                                                     docker_ready: str) -> None:
    """A real run through the sandbox on a host with a key: its seal is signed; a reviewer verifies it keylessly."""
    import run_logs

    log = run_logs.three_turns(tmp_path / "audit")
    assert verify(log).status == "intact"  # the HMAC still verifies it as before
    seal = json.loads(log.with_suffix(".seal").read_text())
    assert seal["checkpoint"].startswith(f"rlm-host/audit/{seal['run_id']}\n{seal['seq']}\n")
    done = cli("audit", "verify", log, "--pubkey", signing.public_key_path(), env=reviewer_env(tmp_path / "home"))
    assert done.returncode == ExitCode.INTACT, done.stdout + done.stderr
    assert f"signed by {host.key_id}" in done.stdout
    lines = lines_of(log)
    assert b"EUR" in lines[-2]  # run.end, after the last checkpoint: only the signed seal covers it
    put(log, [*lines[:-2], lines[-2].replace(b"EUR", b"USD"), lines[-1]])
    done = cli("audit", "verify", log, "--pubkey", signing.public_key_path(), env=reviewer_env(tmp_path / "home2"))
    assert done.returncode == ExitCode.TAMPERED and "the signed seal: lines 1.." in done.stdout
