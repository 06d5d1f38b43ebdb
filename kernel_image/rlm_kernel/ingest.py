"""Parsing documents inside the ingestion sandbox: one fresh child process per document.

Run as ``python3 -m rlm_kernel.ingest JOBS OUT MEMORY_MB TIMEOUT_S MAX_TEXT_BYTES`` in a container
of its own (no network, read-only root, non-root, the policy's runtime). ``JOBS`` is a JSON list
of ``{"file": "/in/00000.in", "kind": "pdf"}``; the host copied those files and hashed them. For
job ``i`` this module writes, under ``OUT``:

    NNNNN.json   the result (always, by the child or, when the child died, by the parent):
                 {"status": "ok", "converted": bool, "encoding": str, "pages": [int, ...],
                  "empty_pages": int, "parsed": bool}
                 {"status": "rejected", "code": str, "detail": str}
    NNNNN.txt    the UTF-8 text, only when ``converted`` (HTML, PDF, other encodings, a BOM);
                 UTF-8 text without a BOM is staged by the host from its own copy.

Each child parses one document under ``RLIMIT_AS`` (MEMORY_MB) and ``RLIMIT_CPU``; the parent
kills it when TIMEOUT_S of wall-clock time pass. The host reads these files as hostile input and
words every message itself from ``code``: nothing here is trusted, it only does the parsing.

Stdlib and pypdf only (pypdf is vendored into the image next to this package).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

MIB = 2**20
CHUNK = 2 * MIB            # read size when streaming a text file
SNIFF = 64 * 1024          # bytes looked at to tell text from binary
BIG = 64 * MIB             # JSON over this is checked as text, not parsed (parsing holds it all)
PAGE_BREAK = "\n\f\n"      # between the pages of a PDF's text
FALLBACKS = ("cp1252", "latin-1")  # for text that is not UTF-8; latin-1 decodes any byte
CONTROL_BYTES = bytes([*range(0, 9), *range(14, 27), *range(28, 32)])  # not \t \n \v \f \r ESC
DETAIL_CHARS = 160
POLL_S = 0.02


class Rejected(Exception):
    """A document that cannot become text: ``code`` names why (the host words it), ``detail`` adds."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code, self.detail = code, " ".join(detail.split())[:DETAIL_CHARS]


# --- text types: checked in a stream ----------------------------------------------------------


def text_document(path: str, kind: str, out_path: str, max_text: int) -> dict[str, Any]:
    """A text-type file: valid UTF-8 without a BOM stays as it is, anything else becomes a UTF-8 copy."""
    with open(path, "rb") as file:
        head = file.read(SNIFF)
    encodings = encodings_for(head)
    for encoding in encodings:
        try:
            return _text_pass(path, kind, encoding, out_path, max_text)
        except UnicodeDecodeError:
            continue
    raise Rejected("bad_encoding", encodings[-1])


def encodings_for(head: bytes) -> tuple[str, ...]:
    """The encodings to try, in order; refuses what looks binary."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("utf-16",)  # Windows tools write this; its ASCII bytes are half NULs
    refuse_binary(head)
    first = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    return (first, *FALLBACKS)


def refuse_binary(head: bytes) -> None:
    """NUL bytes, or many control bytes, in the first 64 KiB mean this is not text."""
    if b"\x00" in head:
        raise Rejected("binary_nul")
    if len(head) - len(head.translate(None, CONTROL_BYTES)) > len(head) // 10:
        raise Rejected("binary_control")


def _text_pass(path: str, kind: str, encoding: str, out_path: str, max_text: int) -> dict[str, Any]:
    """Decode the file strictly in one stream, checking it; copy it as UTF-8 unless it already is."""
    check = checker(kind, os.path.getsize(path))
    out = None if encoding == "utf-8" else _Output(out_path, max_text)
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(CHUNK):
                _emit(decoder.decode(chunk), check, out)
        _emit(decoder.decode(b"", final=True), check, out)
        check.close()
    finally:
        if out is not None:
            out.close()
    return {"status": "ok", "converted": out is not None, "encoding": encoding, "pages": [],
            "empty_pages": 0, "parsed": not isinstance(check, _UnparsedJson)}


def _emit(text: str, check: Check, out: _Output | None) -> None:
    check.feed(text)
    if out is not None and text:
        out.write(text)


class _Output:
    """The UTF-8 text file the host will copy; refuses to grow past the policy's max text size."""

    def __init__(self, path: str, limit: int) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.limit, self.size = limit, 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.size += len(data)
        if self.size > self.limit:
            raise Rejected("text_too_big")
        self.file.write(data)

    def close(self) -> None:
        self.file.close()


class Check:
    """Sees the decoded text piece by piece; refuses a document with no text."""

    def __init__(self) -> None:
        self.blank = True

    def feed(self, text: str) -> None:
        self.blank = self.blank and (not text or text.isspace())

    def close(self) -> None:
        if self.blank:
            raise Rejected("blank")


class _UnparsedJson(Check):
    """JSON over ``BIG``: checked as UTF-8 text only (parsing would hold it whole)."""


class JsonCheck(Check):
    """Parses the whole text as JSON at the end (only used up to ``BIG``)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def feed(self, text: str) -> None:
        super().feed(text)
        self.parts.append(text)

    def close(self) -> None:
        super().close()
        parse_json("".join(self.parts), "bad_json", "")


class JsonLinesCheck(Check):
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
        if line.strip():
            parse_json(line, "bad_jsonl", f"line {self.line}: ")


def parse_json(text: str, code: str, where: str) -> None:
    """Parse ``text`` as JSON or reject it; nesting too deep to parse is a rejection, not a crash."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected(code, f"{where}line {exc.lineno}: {exc.msg}" if code == "bad_json" else
                       f"{where}{exc.msg}") from exc
    except RecursionError as exc:
        raise Rejected(code, f"{where}nested too deeply to parse") from exc


def checker(kind: str, size: int) -> Check:
    """The check for ``kind``; JSON over ``BIG`` is not parsed."""
    if kind == "jsonl":
        return JsonLinesCheck()
    if kind == "json":
        return JsonCheck() if size <= BIG else _UnparsedJson()
    return Check()


# --- HTML and PDF: converted, read whole -------------------------------------------------------


def converted_document(path: str, kind: str, out_path: str, max_text: int) -> dict[str, Any]:
    """Extract the text of an HTML or PDF file into ``out_path``."""
    with open(path, "rb") as file:
        data = file.read()
    if kind == "html":
        (text, encoding), pages, empty = html_text(data), [], 0
    else:
        (text, pages, empty), encoding = pdf_text(data), ""
    out = _Output(out_path, max_text)
    try:
        out.write(text)
    finally:
        out.close()
    return {"status": "ok", "converted": True, "encoding": encoding, "pages": pages,
            "empty_pages": empty, "parsed": True}


def html_text(data: bytes) -> tuple[str, str]:
    """The readable text of an HTML page and the encoding it was read in; refuses a page with none."""
    text, encoding = decode_whole(data)
    text = HtmlText.extract(text)
    if not text.strip():
        raise Rejected("html_no_text")
    return text, encoding


def decode_whole(data: bytes) -> tuple[str, str]:
    """Bytes to text with the same encodings, in the same order, as streamed text files."""
    encodings = encodings_for(data[:SNIFF])
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise Rejected("bad_encoding", encodings[-1])


class HtmlText(HTMLParser):
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


def pdf_text(data: bytes) -> tuple[str, list[int], int]:
    """Each page's text joined by ``PAGE_BREAK``, where each page starts, and how many are empty."""
    texts = pdf_pages(data)
    if not any(text.strip() for text in texts):
        raise Rejected("pdf_no_text")
    starts = [0]
    for text in texts[:-1]:
        starts.append(starts[-1] + len(text) + len(PAGE_BREAK))
    return PAGE_BREAK.join(texts), starts, sum(1 for text in texts if not text.strip())


def pdf_pages(data: bytes) -> list[str]:
    """The text of every page; pypdf's many failure modes become one clear refusal."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # an empty user password is common
            raise Rejected("pdf_encrypted")
        return [page_text(page) for page in reader.pages]
    except (Rejected, MemoryError, RecursionError):
        raise
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise Rejected("pdf_unreadable", f"{type(exc).__name__}: {exc}") from exc


def page_text(page: Any) -> str:
    """One page's text, as valid UTF-8 (a lone surrogate becomes '?', keeping offsets)."""
    text = page.extract_text() or ""
    return text.encode("utf-8", "replace").decode("utf-8")


# --- one child per document ---------------------------------------------------------------------


def parse(path: str, kind: str, out_path: str, max_text: int) -> dict[str, Any]:
    """The result for one document, or ``Rejected``."""
    if kind in ("html", "pdf"):
        return converted_document(path, kind, out_path, max_text)
    return text_document(path, kind, out_path, max_text)


def child(job: dict[str, str], base: str, memory_mb: int, cpu_s: int, max_text: int) -> None:
    """In the fork: limit this process, parse one document, write its result, exit."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * MIB, memory_mb * MIB))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the file size limit: EFBIG, not a kill
    try:
        result = parse(job["file"], job["kind"], base + ".txt", max_text)
    except Rejected as exc:
        result = rejected(exc.code, exc.detail)
    except MemoryError:
        result = rejected("memory")
    except RecursionError:
        result = rejected("crashed", "nested too deeply")
    except OSError as exc:
        result = rejected("text_too_big" if exc.errno == 27 else "unreadable", exc.strerror or "")
    write_result(base, result)


def rejected(code: str, detail: str = "") -> dict[str, Any]:
    return {"status": "rejected", "code": code, "detail": detail}


def write_result(base: str, result: dict[str, Any]) -> None:
    """The result file, written whole under a temporary name and renamed, so it is never half there."""
    if result["status"] != "ok":
        _remove(base + ".txt")
    with open(base + ".json.part", "w", encoding="utf-8") as file:
        json.dump(result, file)
    os.rename(base + ".json.part", base + ".json")


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def run_one(job: dict[str, str], base: str, memory_mb: int, timeout_s: float, max_text: int) -> None:
    """Fork a child for one document; kill it on time; say why when it died without a result."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child(job, base, memory_mb, max(int(timeout_s), 1), max_text)
        finally:
            os._exit(0)
    status, timed_out = wait(pid, timeout_s)
    if not os.path.exists(base + ".json"):
        write_result(base, died(status, timed_out))


def wait(pid: int, timeout_s: float) -> tuple[int, bool]:
    """The child's wait status, and whether it was killed for running past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1], True
        time.sleep(POLL_S)


def died(status: int, timed_out: bool) -> dict[str, Any]:
    """The result for a child that left none: over time, over memory, or crashed."""
    if timed_out or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU):
        return rejected("timeout")
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return rejected("memory")  # the container's memory cgroup killed it
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXFSZ:
        return rejected("text_too_big")
    return rejected("crashed", f"exit status {status}")


def jobs(path: str) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8") as file:
        yield from json.load(file)


def main(argv: list[str]) -> int:
    """Parse every job in order, one fresh child each."""
    jobs_path, out, memory_mb, timeout_s, max_text = argv
    needs_pdf = any(job["kind"] == "pdf" for job in jobs(jobs_path))
    if needs_pdf:
        import pypdf  # noqa: F401 - imported once here, inherited by every child
    for index, job in enumerate(jobs(jobs_path)):
        run_one(job, os.path.join(out, f"{index:05d}"), int(memory_mb), float(timeout_s), int(max_text))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
