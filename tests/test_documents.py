"""Turning files and folders into stageable UTF-8 documents (no Docker needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pypdf
import pytest

from pdf_fixtures import scanned_pdf, text_pdf
from rlm_host import documents
from rlm_host.documents import Ingested, SourceDocument, ingest
from rlm_host.errors import ConfigError
from rlm_kernel.documents import load_documents

MIB = 2**20


def write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path``, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def staged_text(document: SourceDocument) -> str:
    """What the kernel will read: the staged file decoded as UTF-8, strictly."""
    return document.text_path.read_bytes().decode("utf-8")


def one(path: Path, workdir: Path, lines: list[str] | None = None) -> SourceDocument:
    """Ingest a single file and return its document."""
    result = ingest([path], workdir, progress=None if lines is None else lines.append)
    assert len(result.documents) == 1 and not result.skipped
    return result.documents[0]


def refusal(path: Path, workdir: Path) -> str:
    """The one-line ConfigError message for a file given directly."""
    with pytest.raises(ConfigError) as caught:
        ingest([path], workdir)
    message = str(caught.value)
    assert "\n" not in message
    return message


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


# --- every supported type ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("notes.txt", "plain text, ünïcode ✓\n", "text"),
    ("notes.text", "plain text\n", "text"),
    ("server.log", "2024-01-01 INFO started\n", "text"),
    ("guide.rst", "Title\n=====\n\nBody.\n", "text"),
    ("readme.md", "# Title\n\n- item\n", "markdown"),
    ("readme.markdown", "*emphasis*\n", "markdown"),
    ("data.json", '{"a": [1, 2, {"b": "ç"}]}\n', "json"),
    ("rows.jsonl", '{"id": 1}\n\n{"id": 2}\n', "jsonl"),
    ("rows.ndjson", '{"id": 1}\r\n{"id": 2}', "jsonl"),
    ("table.csv", "a,b\n1,\"x, y\"\n", "csv"),
    ("table.tsv", "a\tb\n1\t2\n", "csv"),
])
def test_utf8_text_types_are_staged_from_the_original(tmp_path: Path, workdir: Path, name: str,
                                                      content: str, kind: str) -> None:
    """UTF-8 text of a text type is staged as the original file, with its kind, size and hash."""
    path = write(tmp_path / name, content)
    doc = one(path, workdir)
    assert (doc.name, doc.kind, doc.pages) == (name, kind, ())
    assert doc.source == doc.text_path == path
    assert doc.size == len(content.encode("utf-8")) and doc.sha256 == sha256(path)
    assert not workdir.exists() or not any(workdir.iterdir())


def test_extensions_are_matched_case_insensitively(tmp_path: Path, workdir: Path) -> None:
    """NOTES.TXT is text like notes.txt."""
    assert one(write(tmp_path / "NOTES.TXT", "hello\n"), workdir).kind == "text"


HTML = """<!doctype html><html><head><title>Not shown</title><style>p { color: red }</style>
<script>var hidden = "<p>no</p>";</script></head>
<body><h1>Title &amp; more</h1><p>Hello   <b>bold</b>
   world.</p><script>document.write("nope")</script>
<ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
<div>x<br>y<br/>z</div><pre>  code
    indented</pre><p>caf&eacute; &lt;tag&gt; &#8364; &#x2713;</p>



<p>end</p></body></html>"""
HTML_TEXT = ("Title & more\n\nHello bold world.\n\none\ntwo\n\na\tb\nc\td\n\nx\ny\nz\n\n"
             "  code\n    indented\n\ncafé <tag> € ✓\n\nend\n")


def test_html_is_converted_to_its_text(tmp_path: Path, workdir: Path) -> None:
    """HTML loses head, scripts and styles, keeps blocks as lines and unescapes entities."""
    path = write(tmp_path / "page.html", HTML)
    doc = one(path, workdir)
    assert doc.kind == "html" and doc.text_path.parent == workdir
    assert staged_text(doc) == HTML_TEXT
    assert doc.size == len(HTML_TEXT.encode("utf-8")) and doc.sha256 == sha256(path)


def test_html_collapses_runs_of_blank_lines(tmp_path: Path, workdir: Path) -> None:
    """Empty blocks and blank source lines never leave more than one blank line."""
    path = write(tmp_path / "gaps.htm", "<div>a</div><p></p><div></div>\n\n\n<p> </p><br><br><br><p>b</p>")
    assert staged_text(one(path, workdir)) == "a\n\nb\n"


def test_html_without_text_is_refused(tmp_path: Path, workdir: Path) -> None:
    """A page that is only markup and scripts has nothing to read."""
    path = write(tmp_path / "empty.html", "<html><head><title>t</title></head><body><script>x()</script></body></html>")
    assert "has no text outside its markup" in refusal(path, workdir)


def test_pdf_fixture_is_read_by_pypdf() -> None:
    """The test generator writes PDFs whose text pypdf extracts, and scans with none."""
    reader = pypdf.PdfReader(io.BytesIO(text_pdf([["First (one)", "café \\ 5"], ["Second"]])), strict=True)
    assert [page.extract_text() for page in reader.pages] == ["First (one)\ncafé \\ 5", "Second"]
    scan = pypdf.PdfReader(io.BytesIO(scanned_pdf(2)), strict=True)
    assert [page.extract_text() for page in scan.pages] == ["", ""]


PAGES = [["Première page", "naïve café — “quoted”"], ["Second page starts here", "and goes on"],
         ["Third page", "the end"]]


def test_pdf_text_is_extracted_with_page_offsets(tmp_path: Path, workdir: Path) -> None:
    """Each page offset (in characters, non-ASCII before it) points at that page's first line."""
    path = write(tmp_path / "report.pdf", text_pdf(PAGES))
    doc = one(path, workdir)
    text = staged_text(doc)
    assert doc.kind == "pdf" and len(doc.pages) == 3 and doc.pages[0] == 0
    for offset, lines in zip(doc.pages, PAGES):
        assert text[offset:].startswith(lines[0])
    assert all(line in text for page in PAGES for line in page)
    assert doc.size == len(text.encode("utf-8")) and doc.sha256 == sha256(path)


def test_pdf_with_some_blank_pages_loads_and_says_so(tmp_path: Path, workdir: Path) -> None:
    """A PDF with text on some pages loads; the blank pages are reported."""
    path = write(tmp_path / "mixed.pdf", text_pdf([["Only page with text"], [], []]))
    lines: list[str] = []
    doc = one(path, workdir, lines)
    assert staged_text(doc).startswith("Only page with text") and len(doc.pages) == 3
    assert lines == ["mixed.pdf: 2 of 3 pages have no text (scanned pages?)"]


def test_scanned_pdf_is_refused_with_an_ocr_hint(tmp_path: Path, workdir: Path) -> None:
    """A PDF of images only says it has no text layer and suggests OCR."""
    message = refusal(write(tmp_path / "scan.pdf", scanned_pdf(3)), workdir)
    assert "scan.pdf has no text layer (a scanned PDF?)" in message and "ocrmypdf" in message


def test_damaged_pdf_is_refused(tmp_path: Path, workdir: Path) -> None:
    """A file pypdf cannot parse is refused, naming it and pypdf's complaint."""
    message = refusal(write(tmp_path / "broken.pdf", b"%PDF-1.4\nnot really a pdf\n"), workdir)
    assert "broken.pdf cannot be read as a PDF (" in message and "PDF viewer" in message


def test_password_protected_pdf_is_refused_but_an_empty_password_opens(tmp_path: Path,
                                                                      workdir: Path) -> None:
    """A PDF that needs a password is refused; one with an empty user password loads."""
    def encrypted(user_password: str) -> bytes:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(text_pdf([["locked text"]]))))
        writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert "is encrypted with a password" in refusal(write(tmp_path / "locked.pdf", encrypted("pw")), workdir)
    assert "locked text" in staged_text(one(write(tmp_path / "open.pdf", encrypted("")), workdir))


# --- folders -------------------------------------------------------------------------------


def test_folder_is_read_recursively_sorted_without_hidden_files(tmp_path: Path, workdir: Path) -> None:
    """A folder yields its files by relative path, nested ones included, hidden ones left out."""
    folder = tmp_path / "notes"
    write(folder / "b.txt", "b\n")
    write(folder / "a" / "z.md", "z\n")
    write(folder / "a" / "b" / "c.json", "[1]\n")
    write(folder / ".secret.txt", "hidden\n")
    write(folder / ".git" / "config.txt", "hidden\n")
    write(folder / "a" / ".cache" / "x.txt", "hidden\n")
    result = ingest([folder], workdir)
    assert [d.name for d in result.documents] == ["a/b/c.json", "a/z.md", "b.txt"]
    assert result.documents[0].source == folder / "a" / "b" / "c.json"
    assert result.skipped == []


def test_bad_files_in_a_folder_are_skipped_with_reasons(tmp_path: Path, workdir: Path) -> None:
    """Bad files inside a folder are listed with why, and the good ones still load."""
    folder = tmp_path / "mixed"
    write(folder / "good.txt", "fine\n")
    write(folder / "image.png", b"\x89PNG\r\n\x1a\n")
    write(folder / "bad.json", '{"a": 1,\n  oops}')
    write(folder / "sub" / "empty.md", "")
    write(folder / "sub" / "scan.pdf", scanned_pdf(1))
    result = ingest([folder], workdir)
    assert [d.name for d in result.documents] == ["good.txt"]
    assert result.skipped == [
        (folder / "bad.json", "is not valid JSON (line 2: Expecting property name enclosed in double quotes)"),
        (folder / "image.png", "has unsupported type '.png'"),
        (folder / "sub" / "empty.md", "is empty"),
        (folder / "sub" / "scan.pdf", "has no text layer (a scanned PDF?)"),
    ]


def test_folder_with_nothing_usable_is_refused_with_reasons(tmp_path: Path, workdir: Path) -> None:
    """A folder where every file is bad is refused, naming it and up to five reasons."""
    folder = tmp_path / "junk"
    for index in range(7):
        write(folder / f"f{index}.bin", b"\x00\x01")
    message = refusal(folder, workdir)
    assert message.startswith(f"folder {folder} has no usable documents (f0.bin has unsupported type '.bin';")
    assert "f4.bin" in message and "f5.bin" not in message and "and 2 more" in message


def test_empty_folder_is_refused(tmp_path: Path, workdir: Path) -> None:
    """A folder with only hidden files has no documents, and says hidden files are ignored."""
    folder = tmp_path / "blank"
    write(folder / ".hidden.txt", "x")
    assert "has no files (hidden ones are ignored)" in refusal(folder, workdir)


def test_files_and_folders_keep_input_order_and_duplicates(tmp_path: Path, workdir: Path) -> None:
    """Inputs load in the order given; the same file twice gives two documents."""
    solo = write(tmp_path / "solo.txt", "solo\n")
    write(tmp_path / "dir" / "inner.md", "inner\n")
    result = ingest([solo, tmp_path / "dir", solo], workdir)
    assert isinstance(result, Ingested)
    assert [d.name for d in result.documents] == ["solo.txt", "inner.md", "solo.txt"]
    assert result.documents[0] == result.documents[2]


# --- bad inputs given directly ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("empty.txt", b"", "empty.txt is empty; "),
    ("blank.md", b"  \n\t\n", "blank.md is empty (only whitespace); "),
    ("bom-only.txt", b"\xef\xbb\xbf", "bom-only.txt is empty (only whitespace); "),
    ("nul.txt", b"text\x00more", "nul.txt looks binary (it has NUL bytes); "),
    ("controls.log", bytes(range(1, 9)) * 50, "controls.log looks binary (many control characters); "),
    ("photo.xyz", b"data", "photo.xyz has unsupported type '.xyz' (supported: .csv, .htm, .html, .json"),
    ("Makefile", b"all:\n", "Makefile has no file extension (supported: .csv"),
    ("bad.json", b'{"a": 1}\n{"b": 2}\n', "bad.json is not valid JSON (line 2: Extra data); fix it"),
    ("bad.jsonl", b'{"a": 1}\n\n{"b": }\n{"c": 3}\n', "bad.jsonl has invalid JSON on line 3 (Expecting value)"),
    ("trunc.ndjson", b'{"a": 1}\n{"b"', "trunc.ndjson has invalid JSON on line 2"),
    ("broken.html", b"<p>x\x00</p>", "broken.html looks binary (it has NUL bytes)"),
])
def test_bad_file_given_directly_is_refused(tmp_path: Path, workdir: Path, name: str, data: bytes,
                                            expected: str) -> None:
    """A bad file given directly is a one-line ConfigError naming it, the problem and the fix."""
    path = write(tmp_path / name, data)
    message = refusal(path, workdir)
    assert message.startswith(f"document {tmp_path}/") and expected in message
    assert not workdir.exists() or not any(workdir.iterdir())  # no half-written copy left


def test_missing_file_is_refused(tmp_path: Path, workdir: Path) -> None:
    """A path that does not exist is refused as not found."""
    assert refusal(tmp_path / "nope.txt", workdir) == f"document {tmp_path / 'nope.txt'} not found; check the path"


def test_unreadable_file_is_refused(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file without read permission is refused, saying so."""
    path = write(tmp_path / "secret.txt", "x\n")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anyway: make opening it fail as it would for a user
        real_open = Path.open

        def refusing_open(self: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "open", refusing_open)
    assert "secret.txt is not readable (permission denied); check its permissions" in refusal(path, workdir)


def test_fifo_is_refused_without_blocking(tmp_path: Path, workdir: Path) -> None:
    """A named pipe is not opened (that would block) but refused as not a regular file."""
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert "pipe.txt is not a regular file" in refusal(fifo, workdir)


def test_huge_html_is_refused_before_reading(tmp_path: Path, workdir: Path) -> None:
    """HTML (and PDF) over 256 MB is refused with its size, without reading it."""
    path = tmp_path / "huge.html"
    with path.open("wb") as file:
        file.truncate(300 * MIB)  # sparse: no disk used
    assert "huge.html is 300 MB, over the 256 MB limit for HTML files" in refusal(path, workdir)


# --- encodings -------------------------------------------------------------------------------


def test_cp1252_text_is_converted_to_a_utf8_copy(tmp_path: Path, workdir: Path) -> None:
    """Non-UTF-8 text is read as Windows-1252 and staged as a UTF-8 copy; the hash is the original's."""
    text = "Caf\u00e9 \u2013 \u201cquoted\u201d \u20ac5\n"
    path = write(tmp_path / "legacy.txt", text.encode("cp1252"))
    lines: list[str] = []
    doc = one(path, workdir, lines)
    assert doc.text_path.parent == workdir and staged_text(doc) == text
    assert doc.size == len(text.encode("utf-8")) and doc.sha256 == sha256(path)
    assert lines == ["legacy.txt is not UTF-8: read it as Windows-1252, staging a UTF-8 copy"]


def test_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path: Path, workdir: Path) -> None:
    """Text with bytes Windows-1252 leaves undefined is read as Latin-1."""
    path = write(tmp_path / "odd.csv", b"a,b\n\x81,\xe9\n")
    lines: list[str] = []
    assert staged_text(one(path, workdir, lines)) == "a,b\n\x81,\xe9\n"
    assert "Latin-1" in lines[0]


def test_invalid_utf8_late_in_a_big_file_still_converts(tmp_path: Path, workdir: Path) -> None:
    """A byte that is not UTF-8 after several read chunks restarts the file as Windows-1252."""
    head = b"ascii line\n" * (3 * documents.CHUNK // 11)
    path = write(tmp_path / "late.log", head + b"caf\xe9\n")
    doc = one(path, workdir)
    assert doc.size == len(head) + 6 and staged_text(doc).endswith("café\n")


def test_json_in_cp1252_is_validated_after_conversion(tmp_path: Path, workdir: Path) -> None:
    """JSON that is not UTF-8 is converted first and then must still parse."""
    path = write(tmp_path / "legacy.json", '{"name": "Jos\u00e9"}'.encode("cp1252"))
    assert json.loads(staged_text(one(path, workdir))) == {"name": "José"}


def test_utf8_bom_is_stripped_in_a_copy(tmp_path: Path, workdir: Path) -> None:
    """A UTF-8 byte-order mark is left out of the staged copy; the hash is of the original."""
    path = write(tmp_path / "bom.json", b"\xef\xbb\xbf" + b'{"a": "\xc3\xa9"}')
    doc = one(path, workdir)
    assert doc.text_path != path and doc.text_path.read_bytes() == b'{"a": "\xc3\xa9"}'
    assert doc.size == path.stat().st_size - 3 and doc.sha256 == sha256(path)


def test_utf16_with_bom_is_converted(tmp_path: Path, workdir: Path) -> None:
    """UTF-16 with a BOM (as Windows tools write it) is staged as UTF-8 rather than called binary."""
    path = write(tmp_path / "win.txt", "héllo\r\nwörld\r\n".encode("utf-16"))
    assert staged_text(one(path, workdir)) == "héllo\r\nwörld\r\n"


def test_cp1252_html_is_decoded(tmp_path: Path, workdir: Path) -> None:
    """HTML that is not UTF-8 is decoded as Windows-1252 before extracting its text."""
    path = write(tmp_path / "old.htm", "<p>na\u00efve \u2019quote\u2019</p>".encode("cp1252"))
    assert staged_text(one(path, workdir)) == "na\u00efve \u2019quote\u2019\n"


# --- big inputs ------------------------------------------------------------------------------


def test_json_over_the_parse_limit_is_checked_as_text(tmp_path: Path, workdir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON bigger than the parse limit is not parsed (it would be held whole), and that is said."""
    monkeypatch.setattr(documents, "BIG", 16)
    path = write(tmp_path / "big.json", '{"items": [1, 2, 3, 4, 5, 6]')  # unclosed, but not parsed
    lines: list[str] = []
    assert one(path, workdir, lines).kind == "json"
    assert "big.json is over 0 MB: checked as UTF-8 text, not parsed as JSON" in lines


LARGE_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from rlm_host.documents import ingest
    lines = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doc = ingest([Path(sys.argv[1])], Path(sys.argv[2]), progress=lines.append).documents[0]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_kib": after - before, "lines": lines, "sha256": doc.sha256,
                      "size": doc.size, "original": doc.text_path == doc.source}))
""")


def test_large_file_is_streamed_not_read_whole(tmp_path: Path) -> None:
    """A 300 MB text file is hashed and checked in a stream: peak memory grows far less than its size."""
    block = ("0123456789 abcdefghij çà ✓ " * 39 + "\n").encode("utf-8") * 1024  # about 1 MiB
    path, expected = tmp_path / "big.txt", hashlib.sha256()
    try:
        with path.open("wb") as file:
            for _ in range(300 * MIB // len(block)):
                file.write(block)
                expected.update(block)
        size = path.stat().st_size
        run = subprocess.run([sys.executable, "-c", LARGE_SCRIPT, str(path), str(tmp_path / "work")],
                             capture_output=True, text=True, timeout=120, check=True)
        report = json.loads(run.stdout)
    finally:
        path.unlink(missing_ok=True)
    print(f"peak RSS growth: {report['growth_kib'] / 1024:.1f} MiB")
    assert report["growth_kib"] < 32 * 1024, report["growth_kib"]  # under 32 MiB for a 300 MB file
    assert report["original"] and report["size"] == size and report["sha256"] == expected.hexdigest()
    shown = f"{size / MIB:,.0f} MB"
    assert report["lines"][0] == f"checking big.txt: 10% of {shown}"
    assert report["lines"][-1] == f"checking big.txt: 100% of {shown}" and len(report["lines"]) == 10


def test_kernel_reads_staged_documents_with_the_same_pages(tmp_path: Path, workdir: Path) -> None:
    """The kernel's loader, given these files, sizes and pages, finds each page's first line."""
    docs = tmp_path / "docs"
    docs.mkdir()
    result = ingest([write(tmp_path / "a.md", "# intro\n"), write(tmp_path / "r.pdf", text_pdf(PAGES))], workdir)
    entries = []
    for index, doc in enumerate(result.documents):
        (docs / f"{index:05d}.doc").write_bytes(doc.text_path.read_bytes())
        entries.append({"name": doc.name, "file": f"{index:05d}.doc", "size": doc.size, "pages": list(doc.pages)})
    write(docs / "manifest.json", json.dumps({"documents": entries}))
    context, loaded = load_documents(docs)
    assert [d.size for d in loaded] == [d.size for d in result.documents]
    for start, lines in zip(loaded[1].pages, PAGES):
        assert context[start:].startswith(lines[0]) and loaded[1].page_at(start + 1) == PAGES.index(lines) + 1
