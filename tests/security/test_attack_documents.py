"""Hostile documents against ingestion and staging: links, specials, rlm-host's state, races, bombs.

Each attack is a real file (real PDFs from tests/pdf_fixtures.py) ingested by the real ingestion
sandbox under both runtimes, and each test proves two things: the attack failed (nothing from
outside the folder was staged, the host stayed small, the container and its directory are gone)
and the good document next to it still arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pdf_fixtures import heavy_pdf, text_pdf, zero_stream_pdf

from rlm_host import documents
from rlm_host.documents import Ingested, ingest
from rlm_host.sandbox.docker_engine import docker_client
from rlm_host.errors import ConfigError
from rlm_host.policy import Policy, load_policy
from rlm_host.sandbox import Document, DockerSandbox
from rlm_host.sandbox.ingest_box import IngestBox
from rlm_host.settings import OWNER_LABEL, runtime_dir

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("private_runtime")]

CATEGORY = "host parsing"
GOOD = "the good document arrived\n"
SECRET = "TOP-SECRET-HOST-FILE"
LIMITS = {"timeout_s": 5, "memory_mb": 256, "max_text_mb": 64}
MIB = 2**20
# Ingests in a child process and prints the result and that process's peak RSS (KiB).
CHILD = """
import json, resource, sys
from pathlib import Path
from rlm_host.documents import ingest
from rlm_host.errors import ConfigError
from rlm_host.policy import load_policy
name, limits, work, *inputs = sys.argv[1:]
policy = load_policy(name).with_ingest(**json.loads(limits))
try:
    got = ingest([Path(p) for p in inputs], Path(work), policy=policy)
    out = {"documents": [d.name for d in got.documents], "skipped": [[str(p), w] for p, w in got.skipped]}
except ConfigError as exc:
    out = {"error": str(exc)}
print(json.dumps(out))
"""
# Runs the command as its own child and prints that child's peak RSS (KiB): measured from a small
# parent, since Linux keeps a process's peak across exec (the test process's own would show).
MEASURED = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")


@pytest.fixture(params=["standard", "strict"], ids=["runc", "runsc"])
def policy(request: pytest.FixtureRequest, docker_ready: str) -> Policy:
    """Each shipped policy with short ingestion limits, so bombs end in seconds."""
    return load_policy(request.param).with_ingest(**LIMITS)


@pytest.fixture
def record(evidence: Callable[..., None], request: pytest.FixtureRequest) -> Callable[[Policy, str], None]:
    """``record(policy, outcome)``: this attack's cell in SECURITY.md's table (row: the docstring's first line)."""
    title = (request.node.function.__doc__ or request.node.originalname).strip().splitlines()[0]

    def add(policy: Policy | None, outcome: str) -> None:
        evidence("attacks", category=CATEGORY, attack=title, runtime=policy.runtime if policy else "host",
                 outcome=outcome)
    return add


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """rlm-host's state (audit logs and key) in a directory of this test, with a key in place."""
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RLM_HOST_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("RLM_HOST_AUDIT_DIR", raising=False)
    (tmp_path / "state" / "audit").mkdir(parents=True)
    (tmp_path / "state" / "audit.key").write_text(SECRET + "-KEY\n")
    (tmp_path / "state" / "audit" / "run.jsonl").write_text(SECRET + "-LOG\n")
    return tmp_path / "state"


def folder_with_good(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir(exist_ok=True)
    (folder / "good.txt").write_text(GOOD)
    return folder


def secret_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SECRET + "\n")
    return path


def staged(result: Ingested) -> str:
    """Everything that would reach the sandbox's /docs."""
    return "".join(doc.text_path.read_text(errors="replace") for doc in result.documents)


def skipped(result: Ingested) -> dict[str, str]:
    return {path.name: why for path, why in result.skipped}


def clean() -> bool:
    """No ingestion container of this process and no ingestion directory are left."""
    label = f"{OWNER_LABEL}={os.getpid()}"
    left = [c for c in docker_client().containers.list(all=True, filters={"label": label})
            if c.name.startswith("rlm-host-ingest-")]
    return not left and not list(runtime_dir().glob("ingest-*"))


def holds(result: Ingested, names: list[str]) -> None:
    """The attack failed and the good documents still arrived; nothing is left behind."""
    assert SECRET not in staged(result)
    assert [d.name for d in result.documents] == names
    assert GOOD in staged(result)
    assert clean()


def in_child(policy: Policy, tmp_path: Path, *inputs: Path) -> dict:
    """Ingest in a fresh host process: its result and its peak memory (MB)."""
    proc = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-c", CHILD, policy.name,
                           json.dumps(LIMITS), str(tmp_path / "work"), *map(str, inputs)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    result, peak = proc.stdout.strip().splitlines()[-2:]
    return {**json.loads(result), "peak_mb": int(peak) / 1024}


# --- links -----------------------------------------------------------------------------------------


def test_symlink_to_etc_shadow(policy: Policy, tmp_path: Path, record) -> None:
    """A symlink to /etc/shadow inside a context folder"""
    folder = folder_with_good(tmp_path)
    (folder / "shadow.txt").symlink_to("/etc/shadow")
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert "root:" not in staged(result) and "symbolic link" in skipped(result)["shadow.txt"]
    record(policy, "skipped as a link, never opened; the rest staged")


def test_symlink_to_another_users_private_file(policy: Policy, tmp_path: Path, record) -> None:
    """A symlink to a 0600 file of another user"""
    folder = folder_with_good(tmp_path)
    private = secret_file(tmp_path / "other" / "private.txt")
    os.chown(private, 4321, 4321)
    private.chmod(0o600)
    (folder / "private.txt").symlink_to(private)
    holds(ingest([folder], tmp_path / "work", policy=policy), ["good.txt"])
    record(policy, "skipped as a link; the rest staged")


def test_symlink_to_the_audit_key(policy: Policy, tmp_path: Path, state: Path, record) -> None:
    """A symlink to rlm-host's audit key inside a context folder"""
    folder = folder_with_good(tmp_path)
    (folder / "key.txt").symlink_to(state / "audit.key")
    holds(ingest([folder], tmp_path / "work", policy=policy), ["good.txt"])
    with pytest.raises(ConfigError, match=r"is a symbolic link to .*audit\.key"):
        ingest([folder / "key.txt"], tmp_path / "work", policy=policy)
    with pytest.raises(ConfigError, match="rlm-host never stages its own state"):
        ingest([state / "audit.key"], tmp_path / "work", policy=policy)
    record(policy, "skipped in a folder; refused given directly, as a link and by its own path")


def test_symlinked_directory(policy: Policy, tmp_path: Path, record) -> None:
    """A symlink to a directory outside the folder"""
    folder = folder_with_good(tmp_path)
    secret_file(tmp_path / "outside" / "secret.txt")
    (folder / "more").symlink_to(tmp_path / "outside", target_is_directory=True)
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert "symbolic link" in skipped(result)["more"]
    record(policy, "not entered; named as a link; the rest staged")


def test_dangling_and_looping_links(policy: Policy, tmp_path: Path, record) -> None:
    """Dangling and looping symlinks in a folder"""
    folder = folder_with_good(tmp_path)
    (folder / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    (folder / "a.txt").symlink_to(folder / "b.txt")
    (folder / "b.txt").symlink_to(folder / "a.txt")
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert set(skipped(result)) == {"dangling.txt", "loop.txt", "a.txt", "b.txt"}
    record(policy, "each skipped as a link, nothing blocks; the rest staged")


def test_file_swapped_for_a_link_during_the_walk(policy: Policy, tmp_path: Path, monkeypatch, record) -> None:
    """A file swapped for a symlink between the walk's look and its open"""
    folder = folder_with_good(tmp_path)
    (folder / "swap.txt").write_text("harmless\n")
    secret = secret_file(tmp_path / "secret.txt")
    real_kind = documents._kind

    def swapping(path):  # runs after the lstat, before the open: the race window, made certain
        if path.name == "swap.txt":
            (folder / "swap.txt").unlink()
            (folder / "swap.txt").symlink_to(secret)
        return real_kind(path)

    monkeypatch.setattr(documents, "_kind", swapping)
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert "symbolic link" in skipped(result)["swap.txt"]
    record(policy, "the open refuses the link (O_NOFOLLOW); the rest staged")


def test_directory_swapped_for_a_link_during_the_walk(policy: Policy, tmp_path: Path, monkeypatch, record) -> None:
    """A subfolder swapped for a symlink to outside after the walk decided to enter it"""
    folder = folder_with_good(tmp_path)
    (folder / "sub").mkdir()
    secret_file(tmp_path / "outside" / "secret.txt")
    real_enter = documents._enter

    def swapping(name, *args):
        verdict = real_enter(name, *args)
        if name == "sub":
            (folder / "sub").rmdir()
            (folder / "sub").symlink_to(tmp_path / "outside", target_is_directory=True)
        return verdict

    monkeypatch.setattr(documents, "_enter", swapping)
    holds(ingest([folder], tmp_path / "work", policy=policy), ["good.txt"])
    record(policy, "not entered (the walk checks the directory it opened); the rest staged")


def test_hard_link_to_the_audit_key(policy: Policy, tmp_path: Path, state: Path, record) -> None:
    """A hard link to the audit key, in a folder and given directly under a harmless name"""
    folder = folder_with_good(tmp_path)
    os.link(state / "audit.key", folder / "notes.txt")
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert "hard link" in skipped(result)["notes.txt"]
    with pytest.raises(ConfigError, match="rlm-host's audit key; rlm-host never stages its own state"):
        ingest([folder / "notes.txt"], tmp_path / "work", policy=policy)
    record(policy, "skipped in a folder; refused given directly (same inode as the key)")


def test_hard_link_to_a_file_outside_the_folder(policy: Policy, tmp_path: Path, record) -> None:
    """A hard link to a file outside the folder"""
    folder = folder_with_good(tmp_path)
    os.link(secret_file(tmp_path / "elsewhere.txt"), folder / "linked.txt")
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert "1 other hard link" in skipped(result)["linked.txt"]
    record(policy, "skipped (a file with other names is never staged from a folder); the rest staged")


# --- special files -----------------------------------------------------------------------------------


def test_fifo_device_and_socket_in_a_folder(policy: Policy, tmp_path: Path, record) -> None:
    """A FIFO, a device node and a socket in a folder"""
    import socket

    folder = folder_with_good(tmp_path)
    os.mkfifo(folder / "pipe.txt")
    os.mknod(folder / "zero.txt", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.txt"))
    try:
        done: list[Ingested] = []
        worker = threading.Thread(target=lambda: done.append(ingest([folder], tmp_path / "work", policy=policy)))
        worker.start()
        worker.join(120)
        assert done, "ingesting a folder with a FIFO, a device or a socket blocked"
    finally:
        server.close()
    holds(done[0], ["good.txt"])
    reasons = skipped(done[0])
    assert "FIFO" in reasons["pipe.txt"] and "device" in reasons["zero.txt"] and "socket" in reasons["sock.txt"]
    record(policy, "each skipped without being opened (nothing blocks); the rest staged")


# --- rlm-host's own state ----------------------------------------------------------------------------


def test_folder_that_contains_the_state_directory(policy: Policy, tmp_path: Path, monkeypatch, record) -> None:
    """A context folder that contains rlm-host's state directory (logs and key)"""
    folder = folder_with_good(tmp_path)
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(folder / "state"))
    monkeypatch.delenv("RLM_HOST_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("RLM_HOST_AUDIT_DIR", raising=False)
    secret_file(folder / "state" / "audit.key")
    secret_file(folder / "state" / "audit" / "run.jsonl.txt")
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert "never stages its own state" in skipped(result)["state"]
    with pytest.raises(ConfigError, match="never stages its own state"):
        ingest([folder / "state"], tmp_path / "work", policy=policy)
    record(policy, "its subtree skipped, named; given directly refused; the rest staged")


def test_runtime_directory_as_context(policy: Policy, tmp_path: Path, record) -> None:
    """The runtime directory (other sessions' documents and sockets) given as context"""
    runtime_dir().mkdir(parents=True, exist_ok=True)
    with pytest.raises(ConfigError, match="rlm-host's runtime directory; rlm-host never stages its own state"):
        ingest([runtime_dir()], tmp_path / "work", policy=policy)
    folder = folder_with_good(tmp_path)
    holds(ingest([folder], tmp_path / "work", policy=policy), ["good.txt"])
    record(policy, "refused in one line; the next ingestion works")


# --- what is hashed is what is read ----------------------------------------------------------------


def test_file_growing_while_ingested(policy: Policy, tmp_path: Path, monkeypatch, record) -> None:
    """A file that grows while it is ingested"""
    path = tmp_path / "grow.txt"
    path.write_bytes(b"first part of the file\n" * (8 * MIB // 23))
    size_at_start = path.stat().st_size

    def grow(line: str) -> None:  # runs inside the copy loop: the append lands mid-copy, every time
        if line.startswith("copying grow.txt"):
            with path.open("ab") as more:
                more.write(b"APPENDED WHILE COPYING\n" * 1000)

    monkeypatch.setattr(documents, "BIG", 4 * MIB)  # so the copy reports progress, from inside its loop
    result = ingest([path], tmp_path / "work", policy=policy, progress=grow)
    doc = result.documents[0]
    assert path.stat().st_size > size_at_start  # it did grow
    assert doc.size == size_at_start and doc.text_bytes == size_at_start
    assert doc.sha256 == hashlib.sha256(doc.text_path.read_bytes()).hexdigest() == doc.text_sha256
    assert in_sandbox(policy, doc) == [doc.chars, 0]
    assert clean()
    record(policy, "recorded size and digest equal what the sandbox reads; appended bytes never staged")


def in_sandbox(policy: Policy, doc: Document) -> list[int]:
    """len(context) and the count of appended lines, as a cell in a real sandbox sees them."""
    with DockerSandbox.start(policy, [doc]) as sandbox:
        out = sandbox.execute("print(len(context), context.count('APPENDED'))")
    return [int(x) for x in out.stdout.split()]


def test_file_truncated_while_ingested(policy: Policy, tmp_path: Path, monkeypatch, record) -> None:
    """A file truncated while it is ingested"""
    path = tmp_path / "shrink.txt"
    path.write_bytes(b"x" * (8 * MIB))
    good = tmp_path / "good.txt"
    good.write_text(GOOD)

    def shrink(line: str) -> None:
        if line.startswith("copying shrink.txt"):
            os.truncate(path, 100)

    monkeypatch.setattr(documents, "BIG", 4 * MIB)
    with pytest.raises(ConfigError, match=re.escape("shrink.txt changed while it was read")):
        ingest([path], tmp_path / "work", policy=policy, progress=shrink)
    holds(ingest([good], tmp_path / "work", policy=policy), ["good.txt"])
    record(policy, "refused in one line (changed while read); the next ingestion works")


# --- bombs: memory, time, size ------------------------------------------------------------------------


def bomb(policy: Policy, tmp_path: Path, name: str, data: bytes) -> dict:
    """A folder with the bomb and a good file, ingested in a fresh host process."""
    folder = folder_with_good(tmp_path)
    (folder / name).write_bytes(data)
    out = in_child(policy, tmp_path, folder)
    assert out["documents"] == ["good.txt"], out
    assert out["peak_mb"] < 120, f"the host process peaked at {out['peak_mb']:.0f} MB"  # about 85 MB idle
    assert clean()
    return dict(out["skipped"])


def test_pdf_of_zero_filled_content_streams(policy: Policy, tmp_path: Path, record) -> None:
    """A PDF of many pages of zero-filled content streams (memory)"""
    reasons = bomb(policy, tmp_path, "zeros.pdf", zero_stream_pdf(40, 64))
    why = reasons[str(tmp_path / "inbox" / "zeros.pdf")]
    assert "limit of ingest." in why, why
    record(policy, f"skipped over a limit ({why.split(' limit')[0].split('than the ')[-1]}); host stayed small")


def test_pdf_repeating_one_heavy_page(policy: Policy, tmp_path: Path, record) -> None:
    """A small PDF that repeats one heavy page thousands of times (time)"""
    reasons = bomb(policy, tmp_path, "heavy.pdf", heavy_pdf(5000))
    assert "5 s time limit of ingest.timeout_s" in reasons[str(tmp_path / "inbox" / "heavy.pdf")]
    record(policy, "killed at the 5 s limit, skipped naming it; the rest staged")


def test_decompression_bomb_stream(policy: Policy, tmp_path: Path, record) -> None:
    """A PDF whose one Flate stream inflates to 512 MB"""
    reasons = bomb(policy, tmp_path, "bomb.pdf", zero_stream_pdf(1, 512))
    why = reasons[str(tmp_path / "inbox" / "bomb.pdf")]
    assert "limit of ingest." in why or why.startswith("cannot be read as a PDF (LimitReachedError"), why
    record(policy, "skipped (pypdf's inflate limit, else ours); host stayed small")


def test_deep_json_nesting_in_a_folder(policy: Policy, tmp_path: Path, record) -> None:
    """100,000 levels of JSON nesting in a folder"""
    reasons = bomb(policy, tmp_path, "deep.json", b"[" * 100_000 + b"]" * 100_000)
    assert reasons[str(tmp_path / "inbox" / "deep.json")] == "is not valid JSON (nested too deeply to parse)"
    record(policy, "a clean refusal, the folder goes on")


def test_huge_html(policy: Policy, tmp_path: Path, record) -> None:
    """A 60 MB HTML page of unclosed nested tags"""
    reasons = bomb(policy, tmp_path, "huge.html", b"<div><b>x" * (60 * MIB // 9))
    why = reasons.get(str(tmp_path / "inbox" / "huge.html"), "")
    assert "limit of ingest." in why, reasons
    record(policy, "skipped over a limit; host stayed small")


def test_sparse_text_file_larger_than_the_text_limit(policy: Policy, tmp_path: Path, record) -> None:
    """A sparse 100 GB text file (would fill the host's disk if copied)"""
    folder = folder_with_good(tmp_path)
    with (folder / "sparse.txt").open("wb") as file:
        file.truncate(100 * 1024 * MIB)
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert "limit of ingest.max_text_mb" in skipped(result)["sparse.txt"]
    assert sum(p.stat().st_size for p in (tmp_path / "work").iterdir()) < MIB
    record(policy, "refused before a byte is copied; the rest staged")


def test_encrypted_pdf(policy: Policy, tmp_path: Path, record) -> None:
    """A PDF encrypted with a password"""
    import io

    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(text_pdf([[SECRET]]))))
    writer.encrypt("pw", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    folder = folder_with_good(tmp_path)
    (folder / "locked.pdf").write_bytes(out.getvalue())
    result = ingest([folder], tmp_path / "work", policy=policy)
    holds(result, ["good.txt"])
    assert skipped(result)["locked.pdf"] == "is encrypted with a password"
    record(policy, "refused cleanly; the rest staged")


def test_names_with_control_characters(policy: Policy, tmp_path: Path, record) -> None:
    """File names with escape sequences, newlines and bytes that are not UTF-8"""
    folder = folder_with_good(tmp_path)
    (folder / "\x1b]0;pwned\x07.txt").write_text("title attack\n")
    (folder / "line\nbreak.txt").write_text("newline name\n")
    os.close(os.open(os.fsencode(folder) + b"/bad\xff.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    os.truncate(os.fsencode(folder) + b"/bad\xff.txt", 0)
    result = ingest([folder], tmp_path / "work", policy=policy)
    names = sorted(d.name for d in result.documents)
    assert names == sorted(["\x1b]0;pwned\x07.txt", "good.txt", "line\nbreak.txt"])
    assert [p.name for p, _ in result.skipped] == [os.fsdecode(b"bad\xff.txt")]
    assert all(not any(0xD800 <= ord(c) <= 0xDFFF for c in d.name) for d in result.documents)
    assert all(p.parent == tmp_path / "work" for p in (d.text_path for d in result.documents))
    assert clean()
    record(policy, "names kept as data (never a path); copies get safe names; the rest staged")


# --- the sandbox's results are hostile -------------------------------------------------------------


@pytest.mark.parametrize("forged", ["link", "huge", "not json", "deep", "unknown key", "wrong type", "fifo"])
def test_forged_ingestion_results(tmp_path: Path, monkeypatch, record, forged: str, docker_ready: str) -> None:
    """Forged results in the ingestion sandbox's output (links, huge, malformed, FIFOs)"""
    monkeypatch.setenv("RLM_HOST_RUNTIME_DIR", str(tmp_path / "rt"))
    secret = secret_file(tmp_path / "secret.json")
    with IngestBox(load_policy("standard"), docker_ready, print) as box:
        target = box.root / "out" / "00000.json"
        text = box.root / "out" / "00000.txt"
        forge = {
            "link": lambda: target.symlink_to(secret),
            "huge": lambda: target.write_bytes(b" " * (1 << 20) + b"{}"),
            "not json": lambda: target.write_bytes(b"\xff{oops"),
            "deep": lambda: target.write_bytes(b"[" * 50_000),
            "unknown key": lambda: target.write_text('{"status": "ok", "converted": false, "encoding": "utf-8", '
                                                     '"pages": [], "empty_pages": 0, "parsed": true, "x": 1}'),
            "wrong type": lambda: target.write_text('{"status": "rejected", "code": "memory", "detail": 7}'),
            "fifo": lambda: os.mkfifo(target),
        }
        forge[forged]()
        text.symlink_to(secret)
        assert box._result(0) is None and box.text(0) is None
    record(None, "no usable result: the document is rejected; nothing read through a link")


def test_results_that_lie_about_pages(tmp_path: Path, record) -> None:
    """A result whose page offsets are out of order or past the text"""
    from rlm_host.sandbox.ingest_box import Parsed

    copy = documents._Copy(tmp_path / "r.pdf", "r.pdf", "pdf", tmp_path / "c", 10, "0" * 64, 10, ((0, 0),))
    for pages in ([0, 5, 3], [0, 999], [4], []):
        result = Parsed(status="ok", converted=True, encoding="", pages=pages, empty_pages=0, parsed=True)
        assert not documents._plausible(copy, result) or _rejects_pages(copy, result, tmp_path)
    record(None, "no usable result: the document is rejected")


def _rejects_pages(copy, result, tmp_path: Path) -> bool:
    class Box:
        def text(self, index):
            path = tmp_path / "t.txt"
            path.write_text("0123456789")
            return os.open(path, os.O_RDONLY), 10

    context = documents._Context(tmp_path, print, documents._Guard.current(tmp_path), load_policy("standard"))
    return isinstance(documents._outcome(Box(), 0, copy, result, context), documents._Rejected)
