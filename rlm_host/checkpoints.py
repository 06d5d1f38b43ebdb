"""Verifying a log, and a manifest of many runs, with a public key alone (no HMAC key, no secret).

A log's lines chain twice: by ``prev`` and the keyed ``hash`` (HMAC, ``audit.verify``), and by the
keyless head ``audit.plain_link`` over every field of every line. The host signs that head in
``checkpoint`` events every N events or T seconds and, in the seal file, over the whole log
(``signing.py``). ``verify_signed`` recomputes the keyless head and checks each line's place
(sequence, run id, ``prev``), every checkpoint's signature, origin and root, then the signed seal.
A manifest (``write_manifest``) is one signed note over many runs: each log's file name, run id,
line count and keyless head, so a reviewer finds a run dropped, added or swapped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audit import (GENESIS, PLAIN_GENESIS, Line, Verdict, read_regular, canonical, is_event, linkage, plain_link,
                    quoted, read_log, read_seal, seal_path, verify)
from .errors import AuditReadError, ConfigError, ManifestTampered, NoAuditKey
from .signing import NOTE_MAX_BYTES, Checkpoint, Signer, Verifier, origin_of, parse_checkpoint, parse_note

MANIFEST_ORIGIN = "rlm-host/audit-manifest"


def _body(record: dict[str, Any]) -> bytes:
    return canonical({k: v for k, v in record.items() if k != "hash"})


def _next_head(head: bytes, line: Line) -> bytes:
    if line.record is None:  # an unparsable line still changes the head (manifests compare heads)
        return hashlib.sha256(head + line.raw).digest()
    return plain_link(head, _body(line.record), str(line.record.get("hash")))


def plain_head(lines: Iterable[Line]) -> bytes:
    """The keyless chain head after ``lines`` (what a checkpoint of all of them signs)."""
    head = PLAIN_GENESIS
    for line in lines:
        head = _next_head(head, line)
    return head


@dataclass
class _Walk:
    """Where a keyless check has got to: heads after each line, the last checkpoint that held."""

    origin: str
    verifiers: dict[bytes, Verifier]
    heads: list[bytes]
    good: int = 0  # lines 1..good are covered by a valid signature
    good_at: int = 0  # the line of that checkpoint (0: the seal file)
    signer: str = ""

    def check(self, text: object, before: int) -> tuple[int, str]:
        """A checkpoint note found where ``before`` lines precede it: the size it covers, or why it fails."""
        try:
            note = parse_note(text)
            point = parse_checkpoint(note.body)
        except ValueError as exc:
            return 0, f"checkpoint malformed: {exc}"
        verifier, why = note.signed_by(self.verifiers)
        if verifier is None:
            return 0, f"checkpoint {why}"
        if point.origin != self.origin:
            return 0, (f"checkpoint replayed from another log: its origin is {quoted(point.origin)}, "
                       f"this log's is {quoted(self.origin)}")
        if point.size > before:
            return 0, f"checkpoint of {point.size} lines where only {before} precede it"
        if point.root != self.heads[point.size]:
            return 0, (f"lines {self.good + 1}..{point.size} changed after they were signed: they do not hash to "
                       f"this checkpoint's root (lines 1..{self.good} verify)")
        self.signer = verifier.key_id
        return point.size, ""


def verify_signed(path: Path, verifiers: dict[bytes, Verifier]) -> Verdict:
    """Check a log with public keys only: each line's place, the keyless chain, every checkpoint, the seal.

    Raises ``NoAuditKey`` when no signature in the log is by one of ``verifiers`` (another host's
    log, a log signed before a rotation: give its key) or the log carries none (written without a
    signing key: only the HMAC key verifies it).
    """
    lines = read_log(path)
    seal = read_seal(seal_path(path))
    _known_signer(path, lines, seal, verifiers)
    first = next((line.record for line in lines if line.record is not None), {})
    walk = _Walk(origin_of(str(first.get("run_id"))), verifiers, [PLAIN_GENESIS])
    seqs = [line.record.get("seq") if line.record else None for line in lines]
    prev, run_id = GENESIS, None
    for line in lines:
        record = line.record
        problem = line.problem if record is None else line.problem or _place(line.number, record, prev, run_id, seqs)
        if not problem and record is not None and record.get("kind") == "checkpoint":
            size, problem = walk.check(record.get("note"), line.number - 1)
            walk.good, walk.good_at = (size, line.number) if not problem else (walk.good, walk.good_at)
        if problem or record is None:
            return Verdict("broken", walk.good, line.number, problem, run_id)
        walk.heads.append(_next_head(walk.heads[-1], line))
        prev, run_id = record["hash"], record["run_id"]
    return _signed_seal(path, lines, seal, walk, run_id)


def _place(number: int, record: dict[str, Any], prev: str, run_id: str | None, seqs: list) -> str:
    """What is wrong with a line's shape or place, keyless (``audit.linkage``)."""
    if not is_event(record):
        return "edited: not an audit event (a JSON object with seq, run_id, kind, prev and hash)"
    return linkage(number, record, prev, run_id, seqs)


def _notes(lines: list[Line], seal: dict[str, Any] | None) -> list[object]:
    found = [line.record.get("note") for line in lines if line.record and line.record.get("kind") == "checkpoint"]
    return found + ([seal["checkpoint"]] if seal and "checkpoint" in seal else [])


def _known_signer(path: Path, lines: list[Line], seal: dict[str, Any] | None, verifiers: dict[bytes, Verifier]) -> None:
    """Refuse (``NoAuditKey``) a log none of whose signatures is by a key given: nothing here can verify it."""
    hashes: set[bytes] = set()
    for text in _notes(lines, seal):
        try:
            hashes |= parse_note(text).key_hashes()
        except ValueError:
            continue
    if not hashes:
        raise NoAuditKey(f"cannot verify {quoted(path)} with a public key: it has no signed checkpoint (written "
                         "without a signing key); only its HMAC key verifies it: `rlm-host audit verify FILE`")
    if not hashes & verifiers.keys():
        given = ", ".join(v.key_id for v in verifiers.values())
        ids = ", ".join(h.hex() for h in sorted(hashes))
        raise NoAuditKey(f"cannot verify {quoted(path)}: it is signed by key hash {ids}, not by the key given "
                         f"({given}); give the public key that signed it (keygen keeps old ones as HASH.pub)")


def _signed_seal(path: Path, lines: list[Line], seal: dict[str, Any] | None, walk: _Walk,
                 run_id: str | None) -> Verdict:
    count = len(lines)
    last = lines[-1].record or {}
    if seal is not None and isinstance(seal.get("seq"), int) and seal["seq"] > count:
        return Verdict("broken", walk.good, count + 1, f"truncated: the seal says {seal['seq']} lines, the log "
                                                       f"has {count}", run_id)
    if seal is not None and "checkpoint" in seal:
        size, problem = walk.check(seal["checkpoint"], count)
        if not problem and size != count:
            problem = f"lines {size + 1}..{count} were added after the signed seal"
        if not problem and (seal.get("seq") != count or seal.get("hash") != last.get("hash")):
            problem = "the seal file does not match the last line"
        if problem:
            return Verdict("broken", walk.good, count, f"the signed seal: {problem}", run_id)
        return Verdict("intact", count, reason=f"signed by {walk.signer}", run_id=run_id)
    where = f"the signed checkpoint at line {walk.good_at}" if walk.good_at else "no checkpoint"
    missing = " (its seal is not signed, or the seal file is missing)" if last.get("kind") == "seal" else ""
    return Verdict("unfinished", walk.good, reason=(
        f"up to {where}; lines {walk.good + 1}..{count} after it are not signed{missing}: the log was cut after "
        "that checkpoint, or the run did not finish"), run_id=run_id)


def summary(verdict: Verdict, path: Path) -> str:
    """``Verdict.summary``, and for an intact log which key signed it."""
    line = verdict.summary(path)
    return f"{line}, {verdict.reason}" if verdict.status == "intact" and verdict.reason else line


# -- manifests -------------------------------------------------------------------------------------

def _logs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{quoted(folder)} is not a folder of audit logs")
    return sorted(folder.glob("*.jsonl"))


def entry(path: Path) -> dict[str, Any]:
    """What a manifest says of one log: its file name, run id, line count and keyless head."""
    lines = read_log(path)
    first = next((line.record for line in lines if line.record is not None), {})
    last = lines[-1].record or {}
    return {"file": path.name, "run_id": str(first.get("run_id")), "lines": len(lines),
            "head": base64.b64encode(plain_head(lines)).decode(), "sealed": last.get("kind") == "seal"}


def _entry_line(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def write_manifest(folders: list[Path], output: Path, signer: Signer) -> int:
    """Sign one note over every log in ``folders`` (each verified with the HMAC key first); how many.

    A tampered log is refused by name rather than put on record as it is now.
    """
    entries: dict[str, dict[str, Any]] = {}
    for folder in folders:
        for log in _logs(folder):
            verdict = verify(log)
            if verdict.status == "broken":
                raise ConfigError(f"{verdict.summary(log)}; a tampered log is not put in a manifest")
            if log.name in entries:
                raise ConfigError(f"two logs are named {quoted(log.name)}; give folders whose log names differ")
            entries[log.name] = entry(log)
    items = [_entry_line(entries[name]) for name in sorted(entries)]
    root = hashlib.sha256("".join(item + "\n" for item in items).encode()).digest()
    note = signer.sign(Checkpoint(MANIFEST_ORIGIN, len(items), root, tuple(items)).body())
    _write(output, note)
    return len(items)


def _write(output: Path, text: str) -> None:
    try:
        fd, temp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, output)
    except OSError as exc:
        raise ConfigError(f"cannot write the manifest {output}: {exc.strerror}") from exc


def read_manifest(path: Path, verifiers: dict[bytes, Verifier]) -> tuple[dict[str, dict[str, Any]], str]:
    """The entries of a signed manifest and the key that signed it; ``NoAuditKey`` or ``ManifestTampered``."""
    data = read_regular(path, NOTE_MAX_BYTES + 1, "a manifest")
    try:
        note = parse_note(data.decode("utf-8"))
        point = parse_checkpoint(note.body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestTampered(f"{quoted(path)} is not a signed manifest: {exc}") from exc
    verifier, why = note.signed_by(verifiers)
    if verifier is None:
        error = NoAuditKey if not note.key_hashes() & verifiers.keys() else ManifestTampered
        raise error(f"the manifest {quoted(path)} is {why}")
    items = point.extra
    root = hashlib.sha256("".join(item + "\n" for item in items).encode()).digest()
    if point.origin != MANIFEST_ORIGIN or point.size != len(items) or point.root != root:
        raise ManifestTampered(f"the manifest {quoted(path)} is signed but not one rlm-host wrote (its origin, "
                               "size or root)")
    try:
        entries = [json.loads(item) for item in items]
    except ValueError as exc:
        raise ManifestTampered(f"the manifest {quoted(path)} is signed but an entry is not JSON") from exc
    return {str(e.get("file")): e for e in entries if isinstance(e, dict)}, verifier.key_id


def compare(listed: dict[str, dict[str, Any]], folder: Path) -> list[str]:
    """Every way ``folder``'s logs differ from a manifest: a run dropped, added, swapped or changed."""
    here: dict[str, dict[str, Any]] = {}
    for log in _logs(folder):
        try:
            here[log.name] = entry(log)
        except AuditReadError:
            here[log.name] = {"file": log.name, "run_id": None, "lines": 0, "head": ""}
    by_run = {str(e.get("run_id")): name for name, e in listed.items()}
    problems = [f"dropped: {quoted(name)} (run {quoted(e.get('run_id'))}) is in the manifest, not in the folder"
                for name, e in sorted(listed.items()) if name not in here]
    for name, found in sorted(here.items()):
        problems += _differs(name, found, listed.get(name), by_run)
    return problems


def _differs(name: str, found: dict[str, Any], wanted: dict[str, Any] | None, by_run: dict[str, str]) -> list[str]:
    if wanted is None:
        return [f"added: {quoted(name)} (run {quoted(found['run_id'])}) is not in the manifest"]
    keys = ("run_id", "lines", "head", "sealed")
    if all(found.get(k) == wanted.get(k) for k in keys):
        return []
    if found["run_id"] != wanted.get("run_id") and str(found["run_id"]) in by_run:
        return [f"swapped: {quoted(name)} holds run {quoted(found['run_id'])}, which the manifest lists as "
                f"{quoted(by_run[str(found['run_id'])])}"]
    return [f"changed: {quoted(name)} is not the log the manifest lists (run {quoted(wanted.get('run_id'))}, "
            f"{wanted.get('lines')} lines; here run {quoted(found['run_id'])}, {found['lines']} lines, another head)"]
