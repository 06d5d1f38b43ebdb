"""Turning the user's files and folders into UTF-8 text documents the sandbox can stage.

The sandbox loads every document as UTF-8 text into one ``context`` string, so each
input becomes a ``SourceDocument`` whose ``text_path`` is UTF-8 text:

    text, markdown, csv, json, jsonl   the original file itself when it is UTF-8 already
                                       (checked in a stream, never read whole, so 1 GB
                                       inputs cost a few MiB); else a converted copy
    html                               text extracted with the stdlib parser, written
    pdf                                text extracted per page with pypdf, written, with
                                       the character offset where each page starts

Copies and extracts go under the caller's ``workdir``. A bad file given directly is a
``ConfigError`` naming it and the fix; inside a folder it is skipped and listed in
``Ingested.skipped`` so one stray binary does not stop a folder of notes.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from .errors import ConfigError

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

T = TypeVar("T")

KINDS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".log": "text", ".rst": "text",
    ".md": "markdown", ".markdown": "markdown",
    ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv", ".tsv": "csv",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
}
MIB = 2**20
CHUNK = 2 * MIB            # read size when streaming a text file
SNIFF = 64 * 1024          # bytes looked at to tell text from binary
BIG = 64 * MIB             # files over this report progress; JSON over this is not parsed
MAX_CONVERTED = 256 * MIB  # HTML and PDF are read whole to convert them: refuse beyond this
PAGE_BREAK = "\n\f\n"      # between the pages of a PDF's text
PAGES_FOR_PROGRESS = 50    # PDFs with this many pages report extraction progress
FALLBACKS = ("cp1252", "latin-1")  # for text that is not UTF-8; latin-1 decodes any byte
ENCODING_NAMES = {"cp1252": "Windows-1252", "latin-1": "Latin-1", "utf-16": "UTF-16"}
CONTROL_BYTES = bytes([*range(0, 9), *range(14, 27), *range(28, 32)])  # not \t \n \v \f \r ESC


@dataclass(frozen=True)
class SourceDocument:
    """One input ready to stage: what to call it, where its UTF-8 text is, and its origin.

    ``sha256`` is of the original file (what the user gave, for the audit log);
    ``size`` is the byte size of ``text_path`` (what is staged); ``pages`` holds,
    for a PDF, the offset in characters of ``text_path``'s text where each page starts.
    """

    name: str
    source: Path
    text_path: Path
    size: int
    sha256: str
    kind: str
    pages: tuple[int, ...] = ()


@dataclass
class Ingested:
    """The documents, in input order, and the files inside folders that were skipped, with why."""

    documents: list[SourceDocument] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


class _Rejected(Exception):
    """A file that cannot become a document: ``reason`` is a short phrase, ``fix`` what to do."""

    def __init__(self, reason: str, fix: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.fix, self.detail = reason, fix, detail

    def message(self, path: Path) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"document {path} {self.reason}{detail}; {self.fix}"


@dataclass
class _Context:
    """Where converted copies go and whom to tell about slow or surprising steps."""

    workdir: Path
    progress: Callable[[str], None]


def ingest(inputs: Sequence[Path], workdir: Path, *,
           progress: Callable[[str], None] | None = None) -> Ingested:
    """Turn files and folders into documents; raise ``ConfigError`` for an unusable input."""
    context = _Context(Path(workdir), progress or (lambda line: None))
    result = Ingested()
    for item in map(Path, inputs):
        if item.is_dir():
            _ingest_folder(item, context, result)
        else:
            result.documents.append(_ingest_file(item, context))
    return result


def _ingest_file(path: Path, context: _Context) -> SourceDocument:
    """A file given directly: any problem with it stops the run with one clear line."""
    try:
        return _load(path, path.name, context)
    except _Rejected as exc:
        raise ConfigError(exc.message(path)) from exc


def _ingest_folder(folder: Path, context: _Context, result: Ingested) -> None:
    """Every usable file under ``folder``; the others are skipped, but not all of them."""
    skipped: list[tuple[Path, str]] = []
    found = 0
    for relative in _folder_files(folder, skipped):
        try:
            result.documents.append(_load(folder / relative, relative.as_posix(), context))
            found += 1
        except _Rejected as exc:
            skipped.append((folder / relative, exc.reason))
    result.skipped.extend(skipped)
    if not found:
        raise ConfigError(_empty_folder_message(folder, skipped))


def _folder_files(folder: Path, skipped: list[tuple[Path, str]]) -> list[PurePath]:
    """Paths under ``folder``, relative to it and sorted, leaving out hidden files and folders."""
    found: list[PurePath] = []

    def unlistable(exc: OSError) -> None:
        skipped.append((Path(exc.filename or folder), f"cannot be listed ({exc.strerror})"))

    for root, dirs, files in os.walk(folder, onerror=unlistable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root).relative_to(folder)
        found.extend(PurePath(base, name) for name in files if not name.startswith("."))
    return sorted(found, key=lambda path: path.parts)


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


def _load(path: Path, name: str, context: _Context) -> SourceDocument:
    """One file as a document, or ``_Rejected`` saying why not."""
    try:
        size = _regular_size(path)
        kind = _kind(path)
        if kind in ("html", "pdf"):
            return _converted_document(path, name, kind, size, context)
        return _text_document(path, name, kind, size, context)
    except PermissionError as exc:
        raise _Rejected("is not readable (permission denied)", "check its permissions") from exc
    except FileNotFoundError as exc:
        raise _Rejected("not found", "check the path") from exc
    except OSError as exc:
        raise _Rejected(f"cannot be read ({exc.strerror or exc})", "check the file") from exc


def _regular_size(path: Path) -> int:
    """The size of a non-empty regular file (never open a FIFO or a device: it could block)."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise _Rejected("is not a regular file", "pass files or folders")
    if info.st_size == 0:
        raise _Rejected("is empty", "remove it or give a file with text")
    return info.st_size


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in KINDS:
        return KINDS[suffix]
    label = f"unsupported type '{suffix}'" if suffix else "no file extension"
    supported = f"supported: {', '.join(sorted(KINDS))}"
    raise _Rejected(f"has {label}", "convert it to one of those, or rename it if it is text", supported)


# --- text types: checked in a stream ---------------------------------------------------


def _text_document(path: Path, name: str, kind: str, size: int, context: _Context) -> SourceDocument:
    """A text-type file: the original when it is UTF-8 without a BOM, else a UTF-8 copy."""
    with path.open("rb") as file:
        head = file.read(SNIFF)
    encodings = _encodings(head)
    for encoding in encodings:
        try:
            return _text_pass(path, name, kind, size, encoding, context)
        except UnicodeDecodeError:
            continue
    raise _Rejected(f"is not valid {ENCODING_NAMES.get(encodings[-1], encodings[-1])} text",
                    "convert it to UTF-8, e.g. with iconv")


def _encodings(head: bytes) -> tuple[str, ...]:
    """The encodings to try, in order; refuses what looks binary."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("utf-16",)  # Windows tools write this; its ASCII bytes are half NULs
    _refuse_binary(head)
    first = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    return (first, *FALLBACKS)


def _refuse_binary(head: bytes) -> None:
    """NUL bytes, or many control bytes, in the first 64 KiB mean this is not text."""
    fix = "pass text, Markdown, JSON, CSV, HTML or PDF files"
    if b"\x00" in head:
        raise _Rejected("looks binary (it has NUL bytes)", fix)
    if len(head) - len(head.translate(None, CONTROL_BYTES)) > len(head) // 10:
        raise _Rejected("looks binary (many control characters)", fix)


def _text_pass(path: Path, name: str, kind: str, size: int, encoding: str,
               context: _Context) -> SourceDocument:
    """Hash and decode the file in one stream; copy it as UTF-8 unless it already is."""
    check = _checker(kind, name, size, context)
    if encoding == "utf-8":
        digest = _scan(path, encoding, check, _Meter.for_bytes(f"checking {name}", size, context.progress))
        return SourceDocument(name, path, path, size, digest, kind)
    meter = _Meter.for_bytes(f"converting {name}", size, context.progress)
    text_path, digest = _write_copy(context, name, lambda out: _scan(path, encoding, check, meter, out))
    if encoding in ENCODING_NAMES:
        context.progress(f"{name} is not UTF-8: read it as {ENCODING_NAMES[encoding]}, "
                         f"staging a UTF-8 copy")
    return SourceDocument(name, path, text_path, text_path.stat().st_size, digest, kind)


def _scan(path: Path, encoding: str, check: _Check, meter: _Meter,
          out: _WorkdirWriter | None = None) -> str:
    """Stream the file: sha256 of its bytes, strict decoding, checks, and an optional UTF-8 copy."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            _emit(decoder.decode(chunk), check, out)
            meter.advance(len(chunk))
    _emit(decoder.decode(b"", final=True), check, out)
    check.close()
    return digest.hexdigest()


def _emit(text: str, check: _Check, out: _WorkdirWriter | None) -> None:
    check.feed(text)
    if out is not None and text:
        out.write(text.encode("utf-8"))


class _Meter:
    """Reports each tenth of a long step done, e.g. "checking big.txt: 40% of 1,024 MB"."""

    def __init__(self, label: str, total: int, shown: str, report: Callable[[str], None], *,
                 active: bool) -> None:
        self.label, self.total, self.shown, self.report = label, max(total, 1), shown, report
        self.done = 0
        self.next_tenth = 1 if active else 11  # 11: never reports

    @classmethod
    def for_bytes(cls, label: str, size: int, report: Callable[[str], None]) -> _Meter:
        """A meter over a file's bytes that speaks only for files over ``BIG``."""
        return cls(label, size, f"{size / MIB:,.0f} MB", report, active=size > BIG)

    def advance(self, count: int) -> None:
        self.done += count
        tenth = min(self.done * 10 // self.total, 10)
        if tenth >= self.next_tenth:
            self.report(f"{self.label}: {tenth * 10}% of {self.shown}")
            self.next_tenth = tenth + 1


class _Check:
    """Sees the decoded text piece by piece; refuses a document with no text."""

    def __init__(self) -> None:
        self.blank = True

    def feed(self, text: str) -> None:
        self.blank = self.blank and (not text or text.isspace())

    def close(self) -> None:
        if self.blank:
            raise _Rejected("is empty (only whitespace)", "remove it or give a file with text")


class _JsonCheck(_Check):
    """Parses the whole text as JSON at the end (only used below ``BIG``: it holds the text)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def feed(self, text: str) -> None:
        super().feed(text)
        self.parts.append(text)

    def close(self) -> None:
        super().close()
        try:
            json.loads("".join(self.parts))
        except json.JSONDecodeError as exc:
            raise _Rejected(f"is not valid JSON (line {exc.lineno}: {exc.msg})",
                            "fix it, or rename it to .txt to load it as plain text") from exc


class _JsonLinesCheck(_Check):
    """Parses each non-empty line as JSON as it streams past; a long line is joined once."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[str] = []
        self.line = 0

    def feed(self, text: str) -> None:
        super().feed(text)
        if "\n" not in text:
            self.pending.append(text)
            return
        first, *middle, last = text.split("\n")
        self._line("".join(self.pending) + first)
        for line in middle:
            self._line(line)
        self.pending = [last]

    def close(self) -> None:
        super().close()
        self._line("".join(self.pending))

    def _line(self, line: str) -> None:
        self.line += 1
        if not line.strip():
            return
        try:
            json.loads(line)
        except json.JSONDecodeError as exc:
            raise _Rejected(f"has invalid JSON on line {self.line} ({exc.msg})",
                            "fix or remove that line, or rename the file to .txt") from exc


def _checker(kind: str, name: str, size: int, context: _Context) -> _Check:
    """The check for ``kind``; JSON over ``BIG`` is not parsed (that would hold it all in memory)."""
    if kind == "jsonl":
        return _JsonLinesCheck()
    if kind == "json" and size <= BIG:
        return _JsonCheck()
    if kind == "json":
        context.progress(f"{name} is over {BIG // MIB} MB: checked as UTF-8 text, not parsed as JSON")
    return _Check()


# --- HTML and PDF: converted, read whole -------------------------------------------------


def _converted_document(path: Path, name: str, kind: str, size: int,
                        context: _Context) -> SourceDocument:
    """Extract the text of an HTML or PDF file and stage that instead of the original."""
    if size > MAX_CONVERTED:
        raise _Rejected(f"is {size / MIB:,.0f} MB, over the {MAX_CONVERTED // MIB} MB limit for "
                        f"{kind.upper()} files", "split it, or convert it to text and pass that")
    with path.open("rb") as file:
        data = file.read()
    text, pages = _html_text(data, name, context) if kind == "html" else _pdf_text(data, name, context)
    encoded = text.encode("utf-8")
    text_path, _ = _write_copy(context, name, lambda out: out.write(encoded))
    digest = hashlib.sha256(data).hexdigest()
    return SourceDocument(name, path, text_path, len(encoded), digest, kind, pages)


def _html_text(data: bytes, name: str, context: _Context) -> tuple[str, tuple[int, ...]]:
    """The readable text of an HTML page; refuses a page that has none."""
    text = _HtmlText.extract(_decode_whole(data, name, context))
    if not text.strip():
        raise _Rejected("has no text outside its markup", "check it is the page you meant")
    return text, ()


def _decode_whole(data: bytes, name: str, context: _Context) -> str:
    """Bytes to text with the same encodings, in the same order, as streamed text files."""
    encodings = _encodings(data[:SNIFF])
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding in ENCODING_NAMES:
            context.progress(f"{name} is not UTF-8: read it as {ENCODING_NAMES[encoding]}")
        return text
    raise _Rejected("is not valid UTF-16 text", "convert it to UTF-8, e.g. with iconv")


class _HtmlText(HTMLParser):
    """Collects the text of a page: no head, scripts or styles; blocks become line breaks."""

    SKIP = frozenset({"script", "style", "template"})
    PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "table",
                           "ul", "ol", "dl", "figure", "section", "article", "header", "footer",
                           "main", "aside", "nav", "form", "details", "hr", "address"})
    LINE = frozenset({"br", "div", "li", "tr", "dt", "dd", "caption", "figcaption", "summary",
                      "fieldset", "legend", "option"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities arrive unescaped in handle_data
        self.out: list[str] = []
        self.skipping = 0
        self.in_head = False
        self.in_pre = 0

    @classmethod
    def extract(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        parser.close()
        return re.sub(r"\n{3,}", "\n\n", "".join(parser.out)).lstrip("\n").rstrip() + "\n"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, opening=False)

    def _tag(self, tag: str, *, opening: bool) -> None:
        if tag in self.SKIP:
            self.skipping = max(self.skipping + (1 if opening else -1), 0)
        elif tag == "head" or (tag == "body" and opening):
            self.in_head = opening and tag == "head"  # a missing </head> ends at <body>
        elif tag == "pre":
            self.in_pre = max(self.in_pre + (1 if opening else -1), 0)
        if tag in self.PARAGRAPH:
            self._break(2)
        elif tag in self.LINE and (opening or tag != "br"):
            self._break(1)
        elif tag in ("td", "th") and not opening:
            self.out.append("\t")

    def handle_data(self, data: str) -> None:
        if self.skipping or self.in_head:
            return
        if not self.in_pre:
            data = re.sub(r"\s+", " ", data)  # outside <pre>, any run of whitespace is one space
            if not self.out or self.out[-1][-1] in " \t\n":
                data = data.lstrip(" ")
        if data:
            self.out.append(data)

    def _break(self, newlines: int) -> None:
        """End the current line; ``newlines`` 2 leaves a blank line (never more)."""
        while self.out and not self.in_pre and not self.out[-1].rstrip(" \t"):
            self.out.pop()  # spaces or cell tabs at the end of a line
        if self.out and not self.in_pre:
            self.out[-1] = self.out[-1].rstrip(" \t")
        if self.out and newlines > self._trailing_newlines():
            self.out.append("\n" * (newlines - self._trailing_newlines()))

    def _trailing_newlines(self) -> int:
        count = 0
        for piece in reversed(self.out):
            stripped = piece.rstrip("\n")
            count += len(piece) - len(stripped)
            if stripped:
                break
        return count


def _pdf_text(data: bytes, name: str, context: _Context) -> tuple[str, tuple[int, ...]]:
    """Each page's text, joined by ``PAGE_BREAK``, and where each page starts in it."""
    texts = _pdf_pages(data, name, context)
    if not any(text.strip() for text in texts):
        raise _Rejected("has no text layer (a scanned PDF?)",
                        "run OCR on it first, e.g. ocrmypdf in.pdf out.pdf")
    empty = sum(1 for text in texts if not text.strip())
    if empty:
        context.progress(f"{name}: {empty} of {len(texts)} pages have no text (scanned pages?)")
    starts = [0]
    for text in texts[:-1]:
        starts.append(starts[-1] + len(text) + len(PAGE_BREAK))
    return PAGE_BREAK.join(texts), tuple(starts)


def _pdf_pages(data: bytes, name: str, context: _Context) -> list[str]:
    """The text of every page; pypdf's many failure modes become one clear refusal."""
    from pypdf import PdfReader  # imported here: only PDF inputs pay for it

    try:
        reader = PdfReader(io.BytesIO(data))
        _unlock(reader)
        count = len(reader.pages)
        meter = _Meter(f"extracting text from {name}", count, f"{count:,} pages", context.progress,
                       active=count >= PAGES_FOR_PROGRESS)
        return [_page_text(page, meter) for page in reader.pages]
    except _Rejected:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise _Rejected("cannot be read as a PDF", "check it opens in a PDF viewer, or export it "
                        "again", detail) from exc


def _unlock(reader: PdfReader) -> None:
    """Open a PDF encrypted with an empty user password (common: 'no copying' flags)."""
    if reader.is_encrypted and not reader.decrypt(""):
        raise _Rejected("is encrypted with a password", "decrypt it first, e.g. qpdf --decrypt "
                        "--password=PASSWORD in.pdf out.pdf")


def _page_text(page: PageObject, meter: _Meter) -> str:
    """One page's text, as valid UTF-8 (a lone surrogate becomes '?', keeping offsets)."""
    text = page.extract_text() or ""
    meter.advance(1)
    return text.encode("utf-8", "replace").decode("utf-8")


# --- copies under the workdir -------------------------------------------------------------


def _write_copy(context: _Context, name: str, fill: Callable[[_WorkdirWriter], T]) -> tuple[Path, T]:
    """A new file under the workdir filled by ``fill``; removed again if anything fails.

    The file keeps mkstemp's owner-only mode: staging copies it rather than widen
    who can read a user's document.
    """
    path, out = _new_copy(context, name)
    try:
        with _WorkdirWriter(out, context.workdir) as writer:
            return path, fill(writer)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _new_copy(context: _Context, name: str) -> tuple[Path, BinaryIO]:
    stem = re.sub(r"[^\w.-]", "_", PurePath(name).name)[:60]
    try:
        context.workdir.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=f"{stem}-", suffix=".txt", dir=context.workdir)
    except OSError as exc:
        raise _workdir_error(context.workdir, exc) from exc
    return Path(path), os.fdopen(handle, "wb")


class _WorkdirWriter:
    """Writes a copy; a failed write is the work directory's problem, not the document's."""

    def __init__(self, out: BinaryIO, workdir: Path) -> None:
        self.out, self.workdir = out, workdir

    def __enter__(self) -> _WorkdirWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.out.close()
        except OSError as exc:
            raise _workdir_error(self.workdir, exc) from exc

    def write(self, data: bytes) -> None:
        try:
            self.out.write(data)
        except OSError as exc:
            raise _workdir_error(self.workdir, exc) from exc


def _workdir_error(workdir: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write converted documents to {workdir} ({exc.strerror or exc}); "
                       "free some space there or choose another work directory")

