"""Turning the user's files and folders into UTF-8 text documents the sandbox can stage.

The host never parses a document. It walks what the user named (no link followed, nothing of
rlm-host's own state), copies each file's bytes into its own work directory while hashing exactly
those bytes, and hands the copies to the ingestion sandbox (``sandbox.ingest_box``), which turns
them into UTF-8 text in a container under the policy's ``ingest`` limits. The host then copies
the sandbox's text into a host-owned file, hashing it and counting its characters, and that copy
is what is staged. See docs/documents.md for the rules.

A bad file given directly is a ``ConfigError`` naming it and the fix; inside a folder it is
skipped and listed in ``Ingested.skipped`` so one stray binary does not stop a folder of notes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from .errors import ConfigError
from .events import Say
from .policy import Policy
from .sandbox.document import Document, Marks, TextCount
from .sandbox.ingest_box import IngestBox, Job, Parsed, Refused, Result
from .settings import audit_dir, audit_key_path, cache_dir, runtime_dir, state_dir

KINDS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".log": "text", ".rst": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "csv",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
}
MIB = 2**20
CHUNK = 2 * MIB            # read size when copying
BIG = 64 * MIB             # copies over this report progress
ENCODING_NAMES = {"cp1252": "Windows-1252", "latin-1": "Latin-1", "utf-16": "UTF-16"}
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NEVER_STAGED = "rlm-host never stages its own state"
LINK_SKIP = "is a symbolic link (links inside folders are never followed; pass its target directly if you mean it)"
FIX_BINARY = "pass text, Markdown, JSON, CSV, HTML or PDF files"
FIX_LIMIT = "split it or raise the limit in the policy"
# What the sandbox's refusal codes mean, in the host's words: (reason, fix); {…} from the policy.
REASONS: dict[str, tuple[str, str]] = {
    "blank": ("is empty (only whitespace)", "remove it or give a file with text"),
    "binary_nul": ("looks binary (it has NUL bytes)", FIX_BINARY),
    "binary_control": ("looks binary (many control characters)", FIX_BINARY),
    "bad_encoding": ("is not valid {encoding} text", "convert it to UTF-8, e.g. with iconv"),
    "bad_json": ("is not valid JSON", "fix it, or rename it to .txt to load it as plain text"),
    "bad_jsonl": ("has invalid JSON", "fix or remove that line, or rename the file to .txt"),
    "html_no_text": ("has no text outside its markup", "check it is the page you meant"),
    "pdf_unreadable": ("cannot be read as a PDF", "check it opens in a PDF viewer, or export it again"),
    "pdf_encrypted": ("is encrypted with a password",
                      "decrypt it first, e.g. qpdf --decrypt --password=PASSWORD in.pdf out.pdf"),
    "pdf_no_text": ("has no text layer (a scanned PDF?)", "run OCR on it first, e.g. ocrmypdf in.pdf out.pdf"),
    "memory": ("needed more than the {memory_mb} MB memory limit of ingest.memory_mb to parse", FIX_LIMIT),
    "timeout": ("took longer than the {timeout_s:g} s time limit of ingest.timeout_s to parse", FIX_LIMIT),
    "text_too_big": ("has more text than the {max_text_mb} MB limit of ingest.max_text_mb", FIX_LIMIT),
    "crashed": ("made the parser fail in the ingestion sandbox", "check the file, or convert it to text"),
    "unreadable": ("could not be read in the ingestion sandbox", "check the file"),
}
LIMIT_CODES = frozenset({"memory", "timeout", "text_too_big"})
NO_RESULT = ("the ingestion sandbox returned no usable result", "try again; if it persists, convert it to text")


@dataclass
class Ingested:
    """The documents, in input order, and the files inside folders that were skipped, with why."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class _Rejected(Exception):
    """A file that cannot become a document: ``reason`` is a short phrase, ``fix`` what to do."""

    def __init__(self, reason: str, fix: str, detail: str = "", *, limit: bool = False,
                 list_detail: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.fix, self.detail, self.limit = reason, fix, detail, limit
        self.list_detail = list_detail  # False: the detail is the same for every file (e.g. the kinds)

    def message(self, path: Path) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"document {path} {self.reason}{detail}; {self.fix}"

    def skip_reason(self) -> str:
        """Why a folder's file was skipped: over a limit says which and what to do."""
        detail = f" ({self.detail})" if self.detail and self.list_detail else ""
        return f"{self.reason}{detail}; {self.fix}" if self.limit else f"{self.reason}{detail}"


@dataclass(frozen=True)
class _Copy:
    """A file as the host copied it: what was read (and hashed) is what the sandbox gets."""

    path: Path           # as the user can find it (the folder joined with the relative path)
    name: str            # the document's name (relative to its folder)
    kind: str
    copy: Path
    size: int
    sha256: str
    chars: int
    marks: Marks


@dataclass
class _Input:
    """One item the user named: a file or a folder, its copies, and what was skipped."""

    path: Path
    folder: bool
    copies: list[_Copy] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class _Context:
    workdir: Path
    progress: Say
    guard: _Guard
    policy: Policy


def ingest(inputs: Sequence[Path], workdir: Path, *, policy: Policy, image: str | None = None,
           progress: Say | None = None) -> Ingested:
    """Turn files and folders into documents; raise ``ConfigError`` for an unusable input.

    ``image`` is the kernel image to parse in (default: the current one, as sandboxes start from).
    """
    context = _Context(Path(workdir), progress or (lambda line: None), _Guard.current(Path(workdir)), policy)
    _make_workdir(context.workdir)
    items = [_collect(Path(item), context) for item in inputs]
    copies = [copy for item in items for copy in item.copies]
    results = _parse(copies, policy, image, context) if copies else {}
    return _assemble(items, results)


def stage_text(text: str, workdir: Path) -> Document:
    """The caller's own text (not a document): written as UTF-8 and staged, no parsing needed."""
    _make_workdir(workdir)
    data = text.encode("utf-8", "replace")  # a lone surrogate becomes '?'
    path = _new_file(workdir, "context.txt")
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "wb") as out:
        out.write(data)
    digest, counter = hashlib.sha256(data).hexdigest(), TextCount()
    counter.feed(data)
    chars, marks = counter.close()
    return Document("context.txt", path, chars, (), path, len(data), digest, "text", len(data), digest, marks)


# --- what is staged: never a link, never rlm-host's state ----------------------------------------


@dataclass(frozen=True)
class _Guard:
    """rlm-host's own state (and this run's work directory): by real path and by inode."""

    places: tuple[tuple[str, str], ...]          # (real path, what it is)
    inodes: dict[tuple[int, int], str]

    @classmethod
    def current(cls, workdir: Path) -> _Guard:
        named = [("rlm-host's state directory", state_dir()), ("rlm-host's audit directory", audit_dir()),
                 ("rlm-host's runtime directory", runtime_dir()), ("rlm-host's cache directory", cache_dir()),
                 ("rlm-host's audit key", audit_key_path()),
                 ("this run's work directory", workdir)]
        places = tuple((os.path.realpath(path), what) for what, path in named)
        return cls(places, {ident: what for what, path in named if (ident := _identity(path))})

    def covering(self, path: str) -> str | None:
        """What protected place ``path`` (a real path) is, or lies inside."""
        for place, what in self.places:
            if path == place or path.startswith(place.rstrip("/") + "/"):
                return what
        return None

    def same(self, info: os.stat_result) -> str | None:
        return self.inodes.get((info.st_dev, info.st_ino))

    def linked(self, info: os.stat_result) -> str | None:
        """For a file with other hard links: is one of them inside a protected place?"""
        if info.st_nlink <= 1:
            return None
        for place, what in self.places:
            if os.path.isdir(place) and _inode_under(place, (info.st_dev, info.st_ino)):
                return what
        return None


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _inode_under(folder: str, wanted: tuple[int, int]) -> bool:
    for _root, _dirs, files, root_fd in os.fwalk(folder, follow_symlinks=False):
        for name in files:
            try:
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == wanted:
                return True
    return False


def _state_refusal(what: str) -> _Rejected:
    return _Rejected(f"is, or lies inside, {what}", f"{NEVER_STAGED}; pass your documents instead")


# --- a file given directly --------------------------------------------------------------------------


def _collect(item: Path, context: _Context) -> _Input:
    """Copy one named file, or every usable file of one named folder."""
    try:
        info = os.lstat(item)
    except OSError as exc:
        raise ConfigError(_os_rejection(exc).message(item)) from exc
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(_direct_link(item))
    if stat.S_ISDIR(info.st_mode):
        return _collect_folder(item, context)
    try:
        return _Input(item, False, [_copy_direct(item, info, context)])
    except _Rejected as exc:
        raise ConfigError(exc.message(item)) from exc


def _direct_link(item: Path) -> str:
    try:
        target = os.readlink(item)
    except OSError:
        target = "?"
    return (f"document {item} is a symbolic link to {target}; rlm-host does not follow links: "
            f"pass {target} itself")


def _copy_direct(item: Path, info: os.stat_result, context: _Context) -> _Copy:
    """A file the user named: opened without following a link, never a FIFO or a device."""
    what = context.guard.covering(os.path.realpath(item))
    if what:
        raise _state_refusal(what)
    _refuse_special(info)
    kind = _kind(item)
    fd = _open(str(item), None)
    try:
        return _copy_open(fd, info, item, item.name, kind, context)
    finally:
        os.close(fd)


def _open(name: str, dir_fd: int | None) -> int:
    try:
        return os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _os_rejection(exc) from exc


def _os_rejection(exc: OSError) -> _Rejected:
    if isinstance(exc, PermissionError):
        return _Rejected("is not readable (permission denied)", "check its permissions")
    if isinstance(exc, FileNotFoundError):
        return _Rejected("not found", "check the path")
    if exc.errno == 40:  # ELOOP: the last component became a link
        return _Rejected(LINK_SKIP, "pass its target directly")
    return _Rejected(f"cannot be read ({exc.strerror or exc})", "check the file")


def _refuse_special(info: os.stat_result) -> None:
    """FIFOs, sockets and devices are never opened (a FIFO would block, a device could be anything)."""
    mode = info.st_mode
    if stat.S_ISFIFO(mode):
        raise _Rejected("is a named pipe (FIFO), not a regular file", "pass files or folders")
    if stat.S_ISSOCK(mode):
        raise _Rejected("is a socket, not a regular file", "pass files or folders")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise _Rejected("is a device, not a regular file", "pass files or folders")
    if not stat.S_ISREG(mode):
        raise _Rejected("is not a regular file", "pass files or folders")


def _kind(path: PurePath) -> str:
    suffix = path.suffix.lower()
    if suffix in KINDS:
        return KINDS[suffix]
    label = f"unsupported type '{suffix}'" if suffix else "no file extension"
    supported = f"supported: {', '.join(sorted(KINDS))}"
    raise _Rejected(f"has {label}", "convert it to one of those, or rename it if it is text", supported,
                    list_detail=False)


# --- copying exactly what was checked ------------------------------------------------------------


def _copy_open(fd: int, seen: os.stat_result, path: Path, name: str, kind: str, context: _Context) -> _Copy:
    """Copy the open file's bytes (its size as fstat says) into the work directory, hashing them."""
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
        raise _Rejected("changed while it was read (replaced)", "pass it again once nothing changes it")
    _refuse_special(info)
    what = context.guard.same(info) or context.guard.linked(info)
    if what:
        raise _state_refusal(what)
    if info.st_size == 0:
        raise _Rejected("is empty", "remove it or give a file with text")
    _refuse_unparseable_size(kind, info.st_size, context.policy)
    dest = _new_file(context.workdir, name)
    meter = _Meter(f"copying {name}", info.st_size, context.progress)
    sha256, chars, marks = _copy_exact(fd, info.st_size, dest, meter)
    return _Copy(path, _display(name), kind, dest, info.st_size, sha256, chars, marks)


def _refuse_unparseable_size(kind: str, size: int, policy: Policy) -> None:
    """Refused before a byte is copied: text bigger than the text limit (a sparse file would fill the
    disk), HTML or PDF bigger than the parsing memory limit (they are parsed whole)."""
    text_limit, limit = policy.ingest.max_text_mb, policy.ingest.memory_mb
    if kind not in ("html", "pdf") and size > text_limit * MIB:
        raise _Rejected(f"is {size / MIB:,.0f} MB, more than the {text_limit} MB limit of ingest.max_text_mb",
                        FIX_LIMIT, limit=True)
    if kind in ("html", "pdf") and size > limit * MIB:
        raise _Rejected(f"is {size / MIB:,.0f} MB, more than the {limit} MB memory limit of "
                        f"ingest.memory_mb to parse a {kind.upper()} file", FIX_LIMIT, limit=True)


def _copy_exact(fd: int, size: int, dest: Path, meter: _Meter) -> tuple[str, int, Marks]:
    """Exactly ``size`` bytes from ``fd`` to ``dest``: their sha256, their characters as UTF-8 and
    the checkpoints quotes start from (counted once, here).

    A file that ends early changed while it was read; bytes past ``size`` (appended since the
    fstat) are never read, so what is hashed is what the sandbox reads.
    """
    digest, chars = hashlib.sha256(), TextCount()
    with os.fdopen(os.open(dest, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "wb") as out:
        remaining = size
        while remaining:
            chunk = os.read(fd, min(CHUNK, remaining))
            if not chunk:
                dest.unlink(missing_ok=True)
                raise _Rejected("changed while it was read (it got shorter)", "pass it again once nothing writes to it")
            digest.update(chunk)
            chars.feed(chunk)
            _write(out, chunk, dest.parent)
            remaining -= len(chunk)
            meter.advance(len(chunk))
    return (digest.hexdigest(), *chars.close())


class _Meter:
    """Reports each tenth of a long copy, e.g. "copying big.txt: 40% of 1,024 MB"."""

    def __init__(self, label: str, total: int, report: Say) -> None:
        self.label, self.total, self.report = label, max(total, 1), report
        self.done, self.next_tenth = 0, 1 if total > BIG else 11  # 11: never reports

    def advance(self, count: int) -> None:
        self.done += count
        tenth = min(self.done * 10 // self.total, 10)
        if tenth >= self.next_tenth:
            self.report(f"{self.label}: {tenth * 10}% of {self.total / MIB:,.0f} MB")
            self.next_tenth = tenth + 1


def _display(name: str) -> str:
    """A name as text: bytes that are not UTF-8 in a file name become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _make_workdir(workdir: Path) -> None:
    try:
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise _workdir_error(workdir, exc) from exc


def _new_file(workdir: Path, name: str) -> Path:
    """A new empty host-owned file under the work directory (0644: staging links it, uid 1000 reads it)."""
    stem = re.sub(r"[^\w.-]", "_", PurePath(_display(name)).name)[:60]
    for _ in range(100):
        path = workdir / f"{stem}-{os.urandom(4).hex()}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
        except FileExistsError:
            continue
        except OSError as exc:
            raise _workdir_error(workdir, exc) from exc
        os.chmod(path, 0o644)  # whatever the umask
        return path
    raise _workdir_error(workdir, FileExistsError("no free name"))


def _write(out: object, data: bytes, workdir: Path) -> None:
    try:
        out.write(data)  # type: ignore[attr-defined]
    except OSError as exc:
        raise _workdir_error(workdir, exc) from exc


def _workdir_error(workdir: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write copies of documents to {workdir} ({exc.strerror or exc}); "
                       "free some space there or choose another work directory")


# --- folders: walked without following links ------------------------------------------------------


def _collect_folder(folder: Path, context: _Context) -> _Input:
    """Every usable file under ``folder`` (sorted by relative path); the others skipped, with why."""
    real = os.path.realpath(folder)
    what = context.guard.covering(real)
    if what:
        raise ConfigError(_state_refusal(what).message(folder).replace("document", "folder", 1))
    item = _Input(folder, True)
    found: list[tuple[tuple[str, ...], _Copy]] = []
    for relative, fd_info in _walk(folder, real, item, context):
        try:
            found.append((relative.parts, _copy_in_folder(folder, relative, fd_info, context)))
        except _Rejected as exc:
            item.skipped.append((folder / relative, exc.skip_reason()))
    item.copies = [copy for _, copy in sorted(found, key=lambda pair: pair[0])]
    return item


def _walk(folder: Path, real: str, item: _Input,
          context: _Context) -> Iterator[tuple[PurePath, tuple[int, os.stat_result]]]:
    """(relative path, (dir fd, lstat)) of each regular file; links, specials and state are skipped."""
    def unlistable(exc: OSError) -> None:
        item.skipped.append((Path(exc.filename or folder), f"cannot be listed ({exc.strerror})"))

    for root, dirs, files, root_fd in os.fwalk(folder, onerror=unlistable, follow_symlinks=False):
        base = PurePath(root).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if _enter(d, root_fd, base, real, folder, item, context))
        for name in sorted(files):
            if name.startswith("."):
                continue
            try:
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except OSError as exc:
                item.skipped.append((folder / base / name, _os_rejection(exc).reason))
                continue
            yield base / name, (root_fd, info)


def _enter(name: str, root_fd: int, base: PurePath, real: str, folder: Path, item: _Input,
           context: _Context) -> bool:
    """Whether the walk goes into subfolder ``name``: not hidden, not a link, not rlm-host's state."""
    if name.startswith("."):
        return False
    try:
        info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
    except OSError as exc:
        item.skipped.append((folder / base / name, _os_rejection(exc).reason))
        return False
    if stat.S_ISLNK(info.st_mode):
        item.skipped.append((folder / base / name, LINK_SKIP))
        return False
    what = context.guard.same(info) or context.guard.covering(os.path.join(real, base, name))
    if what:
        item.skipped.append((folder / base / name, f"is {what} ({NEVER_STAGED}); its files were skipped"))
        return False
    return True


def _copy_in_folder(folder: Path, relative: PurePath, fd_info: tuple[int, os.stat_result],
                    context: _Context) -> _Copy:
    """A file inside a folder: links, FIFOs, devices, sockets and hard-linked files are skipped."""
    root_fd, info = fd_info
    if stat.S_ISLNK(info.st_mode):
        raise _Rejected(LINK_SKIP, "")
    _refuse_special(info)
    if info.st_nlink > 1:
        raise _Rejected(f"has {info.st_nlink - 1} other hard link(s) (a hard-linked file inside a folder is "
                        "never staged: it may be a file from elsewhere; pass it directly if you mean it)", "")
    kind = _kind(relative)
    fd = _open(relative.name, root_fd)
    try:
        copy = _copy_open(fd, info, folder / relative, relative.as_posix(), kind, context)
    finally:
        os.close(fd)
    return copy


# --- parsing in the sandbox, and what comes back -------------------------------------------------


def _parse(copies: list[_Copy], policy: Policy, image: str | None,
           context: _Context) -> dict[int, Document | _Rejected]:
    """Each copy's document (or rejection), parsed in one ingestion container."""
    with IngestBox(policy, image, context.progress) as box:
        results = box.run([Job(copy.copy, copy.kind) for copy in copies])
        return {index: _outcome(box, index, copy, result, context)
                for index, (copy, result) in enumerate(zip(copies, results, strict=False))}


def _outcome(box: IngestBox, index: int, copy: _Copy, result: Result | None,
             context: _Context) -> Document | _Rejected:
    if isinstance(result, Refused):
        return _refusal(result, context.policy)
    if result is None or not _plausible(copy, result):
        return _Rejected(*NO_RESULT)
    try:
        document = _document(box, index, copy, result, context)
    except _Rejected as exc:
        return exc
    _notes(document, result, context.progress)
    return document


def _refusal(result: Refused, policy: Policy) -> _Rejected:
    reason, fix = REASONS[result.code]
    encoding = ENCODING_NAMES.get(result.detail, "UTF-8") if result.code == "bad_encoding" else ""
    reason = reason.format(encoding=encoding, **policy.ingest.model_dump())
    shown = result.detail if result.code in ("bad_json", "bad_jsonl", "pdf_unreadable", "crashed") else ""
    return _Rejected(reason, fix, "".join(c if c.isprintable() else "?" for c in shown),
                     limit=result.code in LIMIT_CODES)


def _plausible(copy: _Copy, result: Parsed) -> bool:
    """HTML and PDF are always converted; only PDFs have pages; as-is text was UTF-8."""
    converted = copy.kind in ("html", "pdf") or result.converted
    pages_ok = bool(result.pages) == (copy.kind == "pdf") and result.empty_pages <= len(result.pages)
    return converted == result.converted and pages_ok and (result.converted or result.encoding == "utf-8")


def _document(box: IngestBox, index: int, copy: _Copy, result: Parsed, context: _Context) -> Document:
    """The staged document: the host's copy of the sandbox's text (or the original, when it was UTF-8)."""
    if result.converted:
        text_path, text_bytes, text_sha256, chars, marks = _copy_text(box, index, copy.name, context)
    else:
        text_path, text_bytes, text_sha256, chars, marks = copy.copy, copy.size, copy.sha256, copy.chars, copy.marks
    pages = tuple(result.pages)
    if pages and (pages[0] != 0 or any(b <= a for a, b in itertools.pairwise(pages)) or pages[-1] > chars):
        raise _Rejected(*NO_RESULT)
    return Document(copy.name, text_path, chars, pages, copy.path, copy.size, copy.sha256, copy.kind,
                    text_bytes, text_sha256, marks)


def _copy_text(box: IngestBox, index: int, name: str, context: _Context) -> tuple[Path, int, str, int, Marks]:
    opened = box.text(index)
    if opened is None:
        raise _Rejected(*NO_RESULT)
    fd, size = opened
    try:
        dest = _new_file(context.workdir, name)
        meter = _Meter(f"copying the text of {name}", size, context.progress)
        sha256, chars, marks = _copy_exact(fd, size, dest, meter)
    finally:
        os.close(fd)
    return dest, size, sha256, chars, marks


def _notes(document: Document, result: Parsed, progress: Say) -> None:
    """What the user should know about a document that loaded: its encoding, blank pages, unparsed JSON."""
    if result.encoding in ENCODING_NAMES:
        progress(f"{document.name} is not UTF-8: read it as {ENCODING_NAMES[result.encoding]}, staging a UTF-8 copy")
    if result.empty_pages:
        progress(f"{document.name}: {result.empty_pages} of {len(result.pages)} pages have no text (scanned pages?)")
    if not result.parsed:
        progress(f"{document.name} is over 64 MB: checked as UTF-8 text, not parsed as JSON")


# --- putting it together in input order -----------------------------------------------------------


def _assemble(items: list[_Input], results: dict[int, Document | _Rejected]) -> Ingested:
    ingested, index = Ingested(), 0
    for item in items:
        usable = 0
        for copy in item.copies:
            outcome = results[index]
            index += 1
            if isinstance(outcome, Document):
                ingested.documents.append(outcome)
                usable += 1
            elif not item.folder:
                raise ConfigError(outcome.message(item.path))
            else:
                item.skipped.append((copy.path, outcome.skip_reason()))
        ingested.skipped.extend(item.skipped)
        if item.folder and not usable:
            raise ConfigError(_empty_folder_message(item.path, item.skipped))
    return ingested


def _empty_folder_message(folder: Path, skipped: list[tuple[Path, str]]) -> str:
    """One line: which folder, up to five reasons, and what would work."""
    supported = ", ".join(sorted(KINDS))
    if not skipped:
        return f"folder {folder} has no files (hidden ones are ignored); add documents ({supported})"
    reasons = "; ".join(f"{_shown(path, folder)} {reason}" for path, reason in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"folder {folder} has no usable documents ({reasons}{more}); fix them or add {supported} files"


def _shown(path: Path, folder: Path) -> str:
    """A skipped path as the folder message names it: relative to the folder when inside it."""
    try:
        relative = path.relative_to(folder)
    except ValueError:
        return str(path)
    return str(path) if relative == PurePath(".") else relative.as_posix()
