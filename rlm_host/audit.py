"""The tamper-evident audit log: one JSON line per event, keyed hash chain, fsync'd.

Each line is built by a pipeline of structlog processors, one job each:

    number (seq, run id) -> timestamp -> redact (by audit level) -> chain (HMAC) -> render (JSON)

and written by a logger that flushes and fsyncs before the run goes on, so a killed process leaves
a log that verifies up to its last line. The chain is keyed (HMAC-SHA256 over the line without its
``hash``, chained through ``prev``), so editing the file and recomputing plain hashes does not pass:
the key lives outside the log (``RLM_HOST_AUDIT_KEY_FILE``, or ``audit.key`` in the state directory,
created on first use). Every run ends with a ``seal`` event whose ``reason`` says why (answered,
interrupted, an LM error ...; ``SEAL_REASONS``) and whose hash is also written beside the log
(``<log>.seal``); a log cut at a line boundary therefore reads as unfinished, not intact.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeGuard

import structlog
from structlog.typing import EventDict

from .errors import (AuditError, AuditReadError, ConfigError, ExitCode, LMError, LogNotFound, NoAuditKey, NotAnAuditLog,
                     SandboxError)
from .events import Event, EventHook, Seal
from .policy import Checkpoints
from .sanitize import json_escape, visible
from .settings import audit_dir, audit_key_named, audit_key_path
from .signing import Checkpoint, Signer, host_signer, origin_of

Level = Literal["full", "redacted", "hashes"]
GENESIS = "0" * 64
# Fields that carry text a model or a document produced; what each level keeps of them.
TEXT_FIELDS = {"code", "stdout", "stderr", "result", "output", "prompt", "response", "answer", "query",
               "question", "reason_text", "error_value", "evidence", "passages"}
KEPT_AT_REDACTED = {"code", "query"}


def load_key(*, create: bool = True) -> bytes:
    """The chain key, made on first use by a writer.

    Readers pass ``create=False``: checking a log with a key made on the spot could only fail, and
    would leave a key behind that the log was never written with; they get ``NoAuditKey`` instead.
    """
    path = audit_key_path()
    if not path.exists():
        if not create:
            raise NoAuditKey(f"cannot verify: no key at {path}; set RLM_HOST_AUDIT_KEY_FILE to the key that wrote it")
        if audit_key_named():
            raise ConfigError(f"audit key file {path} (RLM_HOST_AUDIT_KEY_FILE) not found")
        _create_key(path)
    try:
        return bytes.fromhex(read_regular(path, KEY_MAX_BYTES, "a key").decode("ascii").strip())
    except (AuditReadError, OSError, ValueError) as exc:
        if create:
            raise ConfigError(f"audit key file {path} is unreadable or not a hex key: {exc}") from exc
        raise NoAuditKey(f"cannot verify: the key file {path} is unreadable or not a hex key ({exc}); set "
                         "RLM_HOST_AUDIT_KEY_FILE to the key that wrote the log") from exc


KEY_MAX_BYTES = 4096


def _create_key(path: Path) -> None:
    """Put a new key in place whole, or keep the one a concurrent first run put there.

    The key is written to a private temporary file and linked to its name; a link never replaces a
    file, so runs racing to create it all read the same complete key (creating the file in place let
    a racing run read it empty and chain its log with an empty key, or fail with FileExistsError).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with suppress(FileExistsError):  # another run created it first: everyone uses that one
            os.link(temp, path)
    finally:
        os.unlink(temp)


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a line's hash covers; a lone surrogate (hostile kernel output) hashes, never raises."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8", "surrogatepass")


def line_hash(key: bytes, record: Mapping[str, Any]) -> str:
    """HMAC-SHA256 of the record without its own ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


def plain_link(head: bytes, body: bytes, line_hmac: str) -> bytes:
    """The keyless chain: SHA-256(head before || canonical record without ``hash`` || its ``hash``).

    Anyone can recompute it from the log alone; signed checkpoints cover it (``signing.py``), so a
    holder of the public key checks every field of every line without the HMAC key.
    """
    return hashlib.sha256(head + body + line_hmac.encode("ascii", "replace")).digest()


PLAIN_GENESIS = bytes(32)


def digest(text: str) -> dict[str, Any]:
    data = text.encode("utf-8", "replace")
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


# -- the processors ---------------------------------------------------------------------------

class Number:
    """Adds the sequence number and the run id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0

    def __call__(self, _logger: Any, _name: str, event: EventDict) -> dict[str, Any]:
        self.seq += 1
        kind = event.pop("event")
        event.pop("run_id", None)  # the log's run id is the chain's: a field cannot replace it
        return {"seq": self.seq, "run_id": self.run_id, **event, "kind": kind}


def timestamp(_logger: Any, _name: str, event: EventDict) -> dict[str, Any]:
    return {"seq": event.pop("seq"), "ts": round(time.time(), 6), **event}


class Redact:
    """Keeps, shortens to hashes, or drops text fields, by audit level."""

    def __init__(self, level: Level) -> None:
        self.level = level

    def __call__(self, _logger: Any, _name: str, event: EventDict) -> EventDict:
        if self.level == "full":
            return event
        for name in list(event):
            if name in TEXT_FIELDS and not (self.level == "redacted" and name in KEPT_AT_REDACTED):
                value = event.pop(name)
                event[f"{name}_digest"] = digest(value if isinstance(value, str) else json.dumps(value, default=str))
        return event


class Chain:
    """Links each line to the one before with a keyed hash."""

    def __init__(self, key: bytes, *, keyless: bool = False) -> None:
        self.key = key
        self.head = GENESIS
        self.keyless = keyless  # also keep the keyless head (plain_link), which checkpoints sign
        self.plain = PLAIN_GENESIS

    def __call__(self, _logger: Any, _name: str, event: EventDict) -> EventDict:
        event["prev"] = self.head
        body = canonical(event)
        event["hash"] = hmac.new(self.key, body, hashlib.sha256).hexdigest()
        self.head = event["hash"]
        if self.keyless:
            self.plain = plain_link(self.plain, body, self.head)
        return event


def render(_logger: Any, _name: str, event: EventDict) -> str:
    """One JSON line, with no raw character any reader (or a terminal) could take as a line break.

    Line separators (U+2028, U+2029, NEL, \\v, \\f, \\x1c-\\x1e), every other control, bidi and
    format character, and lone surrogates are written as JSON ``\\uXXXX`` escapes: the line parses
    back to the same record, so its hash (over ``canonical(record)``) is unchanged, and it is UTF-8.
    """
    return json_escape(json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str))


class FsyncWriter:
    """A structlog logger that appends a line and fsyncs it before returning.

    A failed write is undone (the file is cut back to its last whole line) and sticks: every later
    line raises the same ``AuditError``, so a run cannot go on past a hole in its record.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failure: AuditError | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {path}: {exc.strerror}; make {path.parent} "
                             "writable or point RLM_HOST_AUDIT_DIR at a writable directory, then run again") from exc

    def msg(self, line: str) -> None:
        if self.failure is not None:
            raise AuditError(str(self.failure))
        if self._fd is None:
            raise AuditError(f"the audit log {self.path} is closed")
        data = (line + "\n").encode("utf-8")
        size = os.fstat(self._fd).st_size
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as exc:
            self._undo(self._fd, size)
            self.failure = AuditError(
                f"cannot write the audit log {self.path}: {exc.strerror}; the run stops rather than go on "
                f"unrecorded: free space in {self.path.parent} or point RLM_HOST_AUDIT_DIR at a writable directory")
            raise self.failure from exc

    info = msg

    def _undo(self, fd: int, size: int) -> None:
        """Cut a partly written line off, so the log still verifies up to its last whole line."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            pass  # verify then reports the cut line as "truncated mid-line"

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with suppress(OSError):  # every line was already fsync'd
                os.close(fd)


# Why a run ended, as its seal records it (a log written before the field existed has none).
SEAL_REASONS = ("answered", "last_resort", "interrupted", "terminated", "lm_error", "sandbox_error", "error",
                "audit_error", "exec_done", "exec_error")
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def seal_reason(exc: BaseException) -> str:
    """The seal reason of a run that ended with ``exc``: Ctrl-C, a signal, or which part failed."""
    for kind, reason in ((KeyboardInterrupt, "interrupted"), (SystemExit, "terminated"), (AuditError, "audit_error"),
                         (LMError, "lm_error"), (SandboxError, "sandbox_error")):
        if isinstance(exc, kind):
            return reason
    return "error"


@contextmanager
def audited(log: AuditLog, record: EventHook, failed: Callable[[str], Event],
            reason_of: Callable[[BaseException], str] = seal_reason) -> Iterator[AuditLog]:
    """Whatever ends the block, the log ends sealed with why (the block seals it itself on success).

    An exception is recorded as ``failed(message)`` unless it is Ctrl-C, a signal or the log's own
    failure, and sealed with ``reason_of(exc)``; it then carries ``audit_log`` (the log's path, which
    the CLI prints on every exit). A log that cannot take its seal stays unfinished, and says so.
    """
    try:
        yield log
    except BaseException as exc:
        exc.audit_log = str(log.path)  # type: ignore[attr-defined]
        reason = reason_of(exc)
        try:
            if reason not in ("interrupted", "terminated", "audit_error"):
                failed(f"{type(exc).__name__}: {exc}").to(record)
            log.seal(reason)
        except AuditError:
            if not isinstance(exc, AuditError):
                raise
        raise
    finally:
        log.close()  # after seal() a no-op


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C or SIGTERM wait until a line is whole: a signal raising mid-line would number a line it
    never wrote, and the seal that follows would then read as a removed line."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class Signing:
    """When the next checkpoint is due, and what it and the seal say (nothing without a signer)."""

    def __init__(self, signer: Signer | None, every: Checkpoints, run_id: str) -> None:
        self.signer, self.every, self.origin = signer, every, origin_of(run_id)
        self.events, self.last = 0, time.monotonic()

    def due(self) -> bool:
        self.events += 1
        return self.signer is not None and (self.events >= self.every.every_events
                                            or time.monotonic() - self.last >= self.every.every_s)

    def note(self, size: int, head: bytes) -> str:
        assert self.signer is not None
        self.events, self.last = 0, time.monotonic()
        return self.signer.sign(Checkpoint(self.origin, size, head).body())

    def checkpoint(self, size: int, head: bytes) -> dict[str, Any]:
        """The fields of a ``checkpoint`` event over the first ``size`` lines."""
        assert self.signer is not None
        return {"size": size, "key": self.signer.key_id, "note": self.note(size, head)}

    def seal(self, size: int, head: bytes) -> dict[str, Any]:
        """What the seal file adds: a checkpoint of every line, the seal's own included."""
        return {"checkpoint": self.note(size, head)} if self.signer is not None else {}


class AuditLog:
    """One run's audit log. ``record`` is an event hook (see ``events.py``)."""

    def __init__(self, run_id: str, level: Level, *, directory: Path | None = None, key: bytes | None = None,
                 checkpoints: Checkpoints | None = None, signer: Signer | None = None) -> None:
        """``signer`` (default: the host's key, if ``rlm-host audit keygen`` made one) signs checkpoints
        every ``checkpoints`` events or seconds and the seal; without one the log has the HMAC chain only."""
        self.run_id = run_id
        self.path = (directory or audit_dir()) / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id}.jsonl"
        signer = signer or host_signer()  # a broken key file is refused before the log is opened
        self._writer = FsyncWriter(self.path)
        self._chain = Chain(key if key is not None else load_key(), keyless=signer is not None)
        self._number = Number(run_id)
        self._logger = structlog.wrap_logger(
            self._writer, processors=[self._number, timestamp, Redact(level), self._chain, render])
        self._lock = threading.Lock()
        self.sealed = False
        self._signing = Signing(signer, checkpoints or Checkpoints(), run_id)

    def record(self, kind: str, fields: dict[str, Any]) -> None:
        with self._lock, _signals_held():
            if not self.sealed:
                self._logger.info(kind, **fields)
                if self._signing.due():
                    self._logger.info("checkpoint", **self._signing.checkpoint(self._number.seq, self._chain.plain))

    __call__ = record

    def seal(self, reason: str | None = None) -> None:
        """End the log: a seal event saying why the run ended (one of ``SEAL_REASONS``; every run of
        rlm-host names one), and its hash beside the log."""
        with self._lock, _signals_held():
            if self.sealed:
                return
            self._logger.info(Seal.kind, lines=self._number.seq + 1, **({"reason": reason} if reason else {}))
            self.sealed = True
            seal = {"run_id": self.run_id, "seq": self._number.seq, "hash": self._chain.head,
                    **self._signing.seal(self._number.seq, self._chain.plain)}
            seal_file = seal_path(self.path)
            try:
                seal_file.write_text(json.dumps(seal) + "\n")
            except OSError as exc:
                raise AuditError(f"cannot write the seal {seal_file}: {exc.strerror}; the log reads as "
                                 f"unfinished: free space in {seal_file.parent}") from exc
            finally:
                self._writer.close()

    def close(self) -> None:
        """Stop writing without a seal: the log reads as unfinished (a run that could not seal it)."""
        with self._lock:
            self.sealed = True
            self._writer.close()


# -- verification -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """The outcome of ``verify``: ``status`` is intact, unfinished or broken (tampered)."""

    status: Literal["intact", "unfinished", "broken"]
    lines: int
    bad_line: int | None = None
    reason: str = ""
    run_id: str | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The verdict's place in the exit-code table (``errors.ExitCode``)."""
        return {"intact": ExitCode.INTACT, "unfinished": ExitCode.UNFINISHED, "broken": ExitCode.TAMPERED}[self.status]

    def summary(self, path: Path) -> str:
        """One line; the path (a hostile name) is quoted, so it cannot pose as the verdict."""
        where = quoted(path)
        if self.status == "intact":
            return f"{where}: intact and sealed, {self.lines} lines, run {quoted(self.run_id)}"
        if self.status == "unfinished":
            return f"{where}: unfinished: {self.lines} lines verify, {self.reason}"
        return f"{where}: tampered: line {self.bad_line}: {self.reason}"


def quoted(value: object) -> str:
    """A hostile name as one visible, double-quoted string: a quote in it is shown as ``\\x22``, never closes it."""
    return '"' + visible(value).replace('"', "\\x22") + '"'



class Line(NamedTuple):
    """One line of a log as the one reader saw it: ``record`` is None when ``problem`` says why."""

    number: int
    raw: bytes
    record: dict[str, Any] | None
    problem: str = ""


def seal_path(log: Path) -> Path:
    """Where a log's seal is: beside it, ``<log>.seal`` (the writer, ``verify`` and batches agree on it here)."""
    return log.with_suffix(".seal")


def read_regular(path: Path, limit: int | None = None, what: str = "an audit log") -> bytes:
    """A regular file's bytes; a directory, FIFO, socket or device is refused at once, never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise LogNotFound(f"{quoted(path)} not found; audit logs are in {audit_dir()} (RLM_HOST_AUDIT_DIR)") from exc
    except OSError as exc:
        raise LogNotFound(f"cannot read {quoted(path)}: {exc.strerror}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise NotAnAuditLog(f"{quoted(path)} is a directory, not {what}; give one .jsonl file, or "
                                "`rlm-host audit list DIR` for every log in a folder")
        raise NotAnAuditLog(f"{quoted(path)} is not a regular file (a FIFO, socket or device), so not {what}")
    with os.fdopen(fd, "rb") as file:
        try:
            return file.read() if limit is None else file.read(limit)
        except OSError as exc:
            raise LogNotFound(f"cannot read {quoted(path)}: {exc.strerror}") from exc


def read_records(path: Path) -> Iterator[Line]:
    """Every line of a log, split on ``\\n`` only (the writer's one separator), decoded strictly.

    The only way anything reads a log (verify, show, report, replay, list, diff): a character that
    another splitter takes as a line break (U+2028, NEL, \\v ...) stays inside its line. A last line
    with no ``\\n`` that does not parse is reported as truncated. Raises ``LogNotFound`` or
    ``NotAnAuditLog`` for a path that is no readable regular file.
    """
    chunks = read_regular(path).split(b"\n")
    ends_cleanly = chunks[-1] == b""
    if ends_cleanly:
        chunks.pop()
    for number, raw in enumerate(chunks, 1):
        record, problem = _parse(raw)
        if record is None and number == len(chunks) and not ends_cleanly:
            problem = "truncated mid-line"
        yield Line(number, raw, record, problem)


def read_log(path: Path) -> list[Line]:
    """The lines of an audit log, or ``NotAnAuditLog`` when no line is an audit event.

    A log with some lines edited is still a log (verify names the first bad one); a file none of
    whose lines has the shape of an event (an empty, text, binary or other JSON file) is not.
    """
    lines = list(read_records(path))
    if not lines:
        raise NotAnAuditLog(f"{quoted(path)} is empty, so not an audit log "
                            "(a run that never wrote a line, or another file)")
    if not any(is_event(line.record) for line in lines):
        raise NotAnAuditLog(f"{quoted(path)} is not an audit log: no line is an audit event (a JSON object with seq, "
                            f"run_id, kind, prev and hash); line 1 {_what(lines[0])}")
    return lines


def is_event(record: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether a parsed line has the shape every audit event has (not whether its hash holds)."""
    if not isinstance(record, dict):
        return False
    fields = (record.get("run_id"), record.get("kind"), record.get("prev"), record.get("hash"))
    seq = record.get("seq")
    return isinstance(seq, int) and not isinstance(seq, bool) and all(isinstance(f, str) for f in fields)


def _what(line: Line) -> str:
    if line.problem == "edited: not valid UTF-8":
        return "is binary data (not UTF-8)"
    return "is not JSON" if line.record is None else "is JSON without those fields"


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """A line's record, or None and why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "edited: not valid UTF-8"
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, a 5000-digit number, or nesting past the stack
        return None, "edited: not a JSON object"
    return (record, "") if isinstance(record, dict) else (None, "edited: not a JSON object")


def verify(path: Path, key: bytes | None = None) -> Verdict:
    """Check every line's sequence, chain and keyed hash; then the seal.

    The log is read first (``LogNotFound``, ``NotAnAuditLog``), then the key (``NoAuditKey``):
    nothing is created or changed.
    """
    return verify_lines(path, read_log(path), key if key is not None else load_key(create=False))


def verify_lines(path: Path, lines: list[Line], key: bytes) -> Verdict:
    """``verify`` over lines already read by ``read_log`` (a caller that reads once, checks once)."""
    seqs = [line.record.get("seq") if line.record else None for line in lines]
    prev, run_id = GENESIS, None
    records: list[dict[str, Any]] = []
    for line in lines:
        record = line.record
        if record is None:  # read_log says why in line.problem
            return Verdict("broken", line.number - 1, line.number, line.problem, run_id)
        problem = line.problem or _check(line.number, record, prev, run_id, key, seqs)
        if problem:
            return Verdict("broken", line.number - 1, line.number, problem, run_id)
        records.append(record)
        prev, run_id = record["hash"], record["run_id"]
    return _sealed(path, records, run_id)


def _check(number: int, record: dict, prev: str, run_id: str | None, key: bytes, seqs: list) -> str:
    problem = linkage(number, record, prev, run_id, seqs)
    if not problem and not hmac.compare_digest(str(record.get("hash", "")), line_hash(key, record)):
        return "edited or forged: its keyed hash does not match (or the key is not this log's)"
    return problem


def linkage(number: int, record: dict, prev: str, run_id: str | None, seqs: list) -> str:
    """What is wrong with a line's place in the log (sequence, run, ``prev``), keyless; "" when nothing."""
    seq = record.get("seq")
    if seq != number:
        if isinstance(seq, int) and seq < number:
            return f"inserted or reordered: sequence number {seq} where {number} belongs"
        if number in seqs[number:]:
            return f"reordered: sequence number {seq} where {number} belongs"
        return f"removed: line(s) missing before it (sequence number {seq} where {number} belongs)"
    if run_id is not None and record.get("run_id") != run_id:
        return f"inserted: it belongs to run {record.get('run_id')!r}, not {run_id!r}"
    if record.get("prev") != prev:
        return "chain broken: it does not follow the line before"
    return ""


SEAL_MAX_BYTES = 4096


def read_seal(seal_file: Path) -> dict[str, Any] | None:
    """The seal beside a log, or None when there is none; a FIFO, a link or a huge file is no seal.

    A seal that is there but not one of ours reads as ``{"seq": -1}``, which never matches.
    """
    try:
        fd = os.open(seal_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return {"seq": -1}
    with os.fdopen(fd, "rb") as file:
        data = file.read(SEAL_MAX_BYTES + 1) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    seal = _parse(data.strip())[0] if len(data) <= SEAL_MAX_BYTES else None
    if seal is None or not isinstance(seal.get("seq"), int) or isinstance(seal.get("seq"), bool):
        return {"seq": -1}
    return seal


def _sealed(path: Path, records: list[dict], run_id: str | None) -> Verdict:
    count = len(records)
    seal_file = seal_path(path)
    seal = read_seal(seal_file)
    last = records[-1] if records else None
    if seal is not None and (last is None or seal.get("seq", 0) > count):
        return Verdict("broken", count, count + 1, f"truncated: the seal says {seal.get('seq')} lines, "
                                                   f"the log has {count}", run_id)
    if last is None or last.get("kind") != Seal.kind:
        return Verdict("unfinished", count, reason="no seal event (the run did not finish, or is running)",
                       run_id=run_id)
    if seal is None:
        return Verdict("unfinished", count, reason=f"the seal file {seal_file.name} is missing", run_id=run_id)
    if seal.get("hash") != last.get("hash") or seal.get("seq") != count:
        return Verdict("broken", count, count, "the seal file does not match the last line", run_id)
    return Verdict("intact", count, run_id=run_id)


def events(path: Path) -> list[dict[str, Any]]:
    """The parseable records of a log, in order (for show, report and replay), from the one reader.

    Raises ``LogNotFound`` or ``NotAnAuditLog`` (see ``read_log``), so no reader shows an empty run.
    """
    return [line.record for line in read_log(path) if line.record is not None]


# The event families a log holds (docs/audit.md); `audit show --kind` takes one of these or a kind in one.
KIND_FAMILIES = ("answer", "cell", "checkpoint", "document", "exec", "iteration", "kernel", "limit", "progress", "root",
                 "rpc", "run", "sandbox", "seal", "subcall")


def check_kind(kind: str) -> str:
    """A ``--kind`` value, or a ConfigError listing the families it can be."""
    if kind.split(".", maxsplit=1)[0] not in KIND_FAMILIES:
        raise ConfigError(f"unknown event kind {kind!r}: use one of {', '.join(KIND_FAMILIES)} "
                          "(or a kind in one, e.g. subcall.denied)")
    return kind


def of_kind(event: dict[str, Any], kinds: list[str]) -> bool:
    """Whether an event is of one of ``kinds``: the kind itself, or one in its family (``limit`` ⊃ ``limit.pids``)."""
    kind = event.get("kind")
    return isinstance(kind, str) and any(kind == k or kind.startswith(k + ".") for k in kinds)
