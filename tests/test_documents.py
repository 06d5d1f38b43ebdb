"""Documents: the converters of the ingestion sandbox run directly, and the host's walk, copy and refusals.

The converters (``rlm_kernel.ingest``) are imported here as test fixtures; on a real run they only
ever run in the ingestion container (tests/test_documents_sandbox.py). The host-side tests need no
container: every input they give is refused before one would start.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import os
import socket
import threading
import time
from pathlib import Path

import pypdf
import pytest

from pdf_fixtures import scanned_pdf, text_pdf
from rlm_host import documents
from rlm_host.documents import ingest, stage_text
from rlm_host.sandbox.document import TextCount
from rlm_host.errors import ConfigError
from rlm_host.policy import load_policy
from rlm_kernel import ingest as kernel

MIB = 2**20
POLICY = load_policy("standard")


def write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path``, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def parse(path: Path, kind: str) -> tuple[dict, str | None]:
    """What the ingestion sandbox makes of a file: its result and its text (None: staged as it is)."""
    out = path.with_name(path.name + ".out")
    result = kernel.parse(str(path), kind, str(out), 64 * MIB)
    text = out.read_bytes().decode("utf-8") if result["converted"] else None
    return result, text


def rejection(path: Path, kind: str) -> tuple[str, str]:
    """The sandbox's refusal code and detail for a file."""
    with pytest.raises(kernel.Rejected) as caught:
        parse(path, kind)
    return caught.value.code, caught.value.detail


def refusal(path: Path, workdir: Path) -> str:
    """The one-line ConfigError message for an input given directly."""
    with pytest.raises(ConfigError) as caught:
        ingest([path], workdir, policy=POLICY)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


# --- the converters, as the sandbox runs them --------------------------------------------------


@pytest.mark.parametrize(("name", "content", "kind"), [
    ("notes.txt", "plain text, ünïcode ✓\n", "text"),
    ("readme.md", "# Title\n\n- item\n", "markdown"),
    ("data.json", '{"a": [1, 2, {"b": "ç"}]}\n', "json"),
    ("rows.jsonl", '{"id": 1}\n\n{"id": 2}\n', "jsonl"),
    ("rows.ndjson", '{"id": 1}\r\n{"id": 2}', "jsonl"),
    ("table.csv", "a,b\n1,\"x, y\"\n", "csv"),
])
def test_utf8_text_is_staged_as_it_is(tmp_path: Path, name: str, content: str, kind: str) -> None:
    """UTF-8 text of a text type is checked and left as it is (the host stages its own copy)."""
    result, text = parse(write(tmp_path / name, content), kind)
    assert result["status"] == "ok" and not result["converted"] and text is None
    assert result["encoding"] == "utf-8" and result["pages"] == []


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


def test_html_is_converted_to_its_text(tmp_path: Path) -> None:
    """HTML loses head, scripts and styles, keeps blocks as lines and unescapes entities."""
    assert parse(write(tmp_path / "page.html", HTML), "html")[1] == HTML_TEXT


def test_html_collapses_runs_of_blank_lines(tmp_path: Path) -> None:
    """Empty blocks and blank source lines never leave more than one blank line."""
    path = write(tmp_path / "gaps.htm", "<div>a</div><p></p><div></div>\n\n\n<p> </p><br><br><br><p>b</p>")
    assert parse(path, "html")[1] == "a\n\nb\n"


def test_html_without_text_is_refused(tmp_path: Path) -> None:
    """A page that is only markup and scripts has nothing to read."""
    path = write(tmp_path / "empty.html", "<html><head><title>t</title></head><body><script>x()</script></body></html>")
    assert rejection(path, "html")[0] == "html_no_text"


def test_cp1252_html_is_decoded(tmp_path: Path) -> None:
    """HTML that is not UTF-8 is decoded as Windows-1252 before extracting its text."""
    path = write(tmp_path / "old.htm", "<p>na\u00efve \u2019quote\u2019</p>".encode("cp1252"))
    result, text = parse(path, "html")
    assert text == "na\u00efve \u2019quote\u2019\n" and result["encoding"] == "cp1252"


def test_pdf_fixture_is_read_by_pypdf() -> None:
    """The test generator writes PDFs whose text pypdf extracts, and scans with none."""
    reader = pypdf.PdfReader(io.BytesIO(text_pdf([["First (one)", "café \\ 5"], ["Second"]])), strict=True)
    assert [page.extract_text() for page in reader.pages] == ["First (one)\ncafé \\ 5", "Second"]
    scan = pypdf.PdfReader(io.BytesIO(scanned_pdf(2)), strict=True)
    assert [page.extract_text() for page in scan.pages] == ["", ""]


PAGES = [["Première page", "naïve café — “quoted”"], ["Second page starts here", "and goes on"],
         ["Third page", "the end"]]


def test_pdf_text_is_extracted_with_page_offsets(tmp_path: Path) -> None:
    """Each page offset (in characters, non-ASCII before it) points at that page's first line."""
    result, text = parse(write(tmp_path / "report.pdf", text_pdf(PAGES)), "pdf")
    assert len(result["pages"]) == 3 and result["pages"][0] == 0 and result["empty_pages"] == 0
    for offset, lines in zip(result["pages"], PAGES, strict=False):
        assert text[offset:].startswith(lines[0])


def test_pdf_with_some_blank_pages_counts_them(tmp_path: Path) -> None:
    """A PDF with text on some pages loads; the blank pages are counted."""
    result, text = parse(write(tmp_path / "mixed.pdf", text_pdf([["Only page with text"], [], []])), "pdf")
    assert text.startswith("Only page with text") and result["empty_pages"] == 2


@pytest.mark.parametrize(("name", "data", "code"), [
    ("scan.pdf", scanned_pdf(3), "pdf_no_text"),
    ("broken.pdf", b"%PDF-1.4\nnot really a pdf\n", "pdf_unreadable"),
    ("blank.md", b"  \n\t\n", "blank"),
    ("bom-only.txt", b"\xef\xbb\xbf", "blank"),
    ("nul.txt", b"text\x00more", "binary_nul"),
    ("controls.log", bytes(range(1, 9)) * 50, "binary_control"),
    ("bad.json", b'{"a": 1}\n{"b": 2}\n', "bad_json"),
    ("bad.jsonl", b'{"a": 1}\n\n{"b": }\n{"c": 3}\n', "bad_jsonl"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "bad_json"),
    ("deep.jsonl", b'{"a": 1}\n' + b"[" * 100_000 + b"\n", "bad_jsonl"),
    ("broken.html", b"<p>x\x00</p>", "binary_nul"),
])
def test_bad_files_are_refused_with_a_code(tmp_path: Path, name: str, data: bytes, code: str) -> None:
    """Each kind of unusable file ends in a refusal code the host words (never a traceback)."""
    kind = documents.KINDS[Path(name).suffix]
    assert rejection(write(tmp_path / name, data), kind)[0] == code


def test_json_errors_say_where(tmp_path: Path) -> None:
    """A JSON refusal names the line and the problem; too deep says so."""
    assert rejection(write(tmp_path / "a.json", '{"a": 1,\n  oops}'), "json")[1] == \
        "line 2: Expecting property name enclosed in double quotes"
    assert rejection(write(tmp_path / "b.json", "[" * 100_000), "json")[1] == "nested too deeply to parse"
    assert rejection(write(tmp_path / "c.jsonl", '{"a": 1}\n{"b"'), "jsonl")[1].startswith("line 2: ")


def test_password_protected_pdf_is_refused_but_an_empty_password_opens(tmp_path: Path) -> None:
    """A PDF that needs a password is refused; one with an empty user password loads."""
    def encrypted(user_password: str) -> bytes:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(text_pdf([["locked text"]]))))
        writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    assert rejection(write(tmp_path / "locked.pdf", encrypted("pw")), "pdf")[0] == "pdf_encrypted"
    assert "locked text" in parse(write(tmp_path / "open.pdf", encrypted("")), "pdf")[1]


@pytest.mark.parametrize(("data", "encoding", "text"), [
    ("Caf\u00e9 \u2013 \u201cquoted\u201d \u20ac5\n".encode("cp1252"), "cp1252",
     "Caf\u00e9 \u2013 \u201cquoted\u201d \u20ac5\n"),
    (b"a,b\n\x81,\xe9\n", "latin-1", "a,b\n\x81,\xe9\n"),
    (b"\xef\xbb\xbf" + '{"a": "é"}'.encode(), "utf-8-sig", '{"a": "é"}'),
    ("héllo\r\nwörld\r\n".encode("utf-16"), "utf-16", "héllo\r\nwörld\r\n"),
    (b"ascii line\n" * (3 * kernel.CHUNK // 11) + b"caf\xe9\n", "cp1252", None),
])
def test_other_encodings_become_a_utf8_copy(tmp_path: Path, data: bytes, encoding: str, text: str | None) -> None:
    """Windows-1252, Latin-1, a UTF-8 BOM and UTF-16 become UTF-8 text, even when the bad byte is late."""
    result, staged = parse(write(tmp_path / "legacy.csv", data), "csv")
    assert result["converted"] and result["encoding"] == encoding
    assert staged == text if text is not None else staged.endswith("café\n")


def test_json_in_cp1252_is_validated_after_conversion(tmp_path: Path) -> None:
    """JSON that is not UTF-8 is converted first and then must still parse."""
    result, text = parse(write(tmp_path / "legacy.json", '{"name": "Jos\u00e9"}'.encode("cp1252")), "json")
    assert json.loads(text) == {"name": "José"} and result["parsed"]


def test_json_over_the_parse_limit_is_checked_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON bigger than the parse limit is not parsed (it would be held whole), and the result says so."""
    monkeypatch.setattr(kernel, "BIG", 16)
    result, _ = parse(write(tmp_path / "big.json", '{"items": [1, 2, 3, 4, 5, 6]'), "json")
    assert result["status"] == "ok" and not result["parsed"]


def test_text_over_the_limit_is_refused(tmp_path: Path) -> None:
    """A converted text bigger than the policy's max text size is refused, not written whole."""
    path = write(tmp_path / "big.html", "<p>" + "x" * 4096 + "</p>")
    with pytest.raises(kernel.Rejected) as caught:
        kernel.parse(str(path), "html", str(tmp_path / "out.txt"), 1024)
    assert caught.value.code == "text_too_big"


# --- one child per document: the parent's limits ------------------------------------------------


def run_job(tmp_path: Path, name: str, data: bytes, kind: str, *, memory_mb: int = 256,
            timeout_s: float = 30) -> dict:
    """The sandbox's parent running one job in a forked child; the result file it leaves."""
    path = write(tmp_path / name, data)
    base = str(tmp_path / "00000")
    kernel.run_one({"file": str(path), "kind": kind}, base, memory_mb, timeout_s, 64 * MIB)
    return json.loads(Path(base + ".json").read_text())


def test_a_child_over_its_memory_limit_is_refused_as_memory(tmp_path: Path) -> None:
    """A document whose parsing needs more address space than the limit ends as 'memory'.

    The parent is a fresh interpreter, as in the container: a fork of this test process would start
    with the suite's own address space already near the limit.
    """
    objects = b'{"a":1},' * (3 * MIB)  # 24 MB of JSON, under the size that is parsed: ~600 MB as objects
    path = write(tmp_path / "big.json", b"[" + objects + b"{}]")
    base = tmp_path / "00000"
    code = ("import sys, rlm_kernel.ingest as k; "
            "k.run_one({'file': sys.argv[1], 'kind': 'json'}, sys.argv[2], 200, 30, 64 * 2**20)")
    subprocess.run([sys.executable, "-c", code, str(path), str(base)], check=True, timeout=120)
    assert json.loads(Path(f"{base}.json").read_text())["code"] == "memory"


def test_a_child_past_its_time_limit_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A document that takes longer than the time limit is killed by the parent and ends as 'timeout'."""
    monkeypatch.setattr(kernel, "parse", lambda *args: time.sleep(600))  # never returns in time, allocates nothing
    assert run_job(tmp_path, "slow.txt", b"x\n", "text", timeout_s=1)["code"] == "timeout"


def test_a_child_that_crashes_leaves_a_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that dies without writing its result gets one from the parent."""
    monkeypatch.setattr(kernel, "parse", lambda *args: os._exit(3))
    assert run_job(tmp_path, "crash.txt", b"x\n", "text")["code"] == "crashed"


# --- the host: refusals before any container ----------------------------------------------------


def test_missing_file_is_refused(tmp_path: Path, workdir: Path) -> None:
    """A path that does not exist is refused as not found."""
    assert refusal(tmp_path / "nope.txt", workdir) == f"document {tmp_path / 'nope.txt'} not found; check the path"


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("empty.txt", b"", "empty.txt is empty; "),
    ("photo.xyz", b"data", "photo.xyz has unsupported type '.xyz' (supported: .csv, .htm, .html, .json"),
    ("Makefile", b"all:\n", "Makefile has no file extension (supported: .csv"),
])
def test_bad_file_given_directly_is_refused(tmp_path: Path, workdir: Path, name: str, data: bytes,
                                            expected: str) -> None:
    """A file refused by name or size is a one-line ConfigError, and nothing is left in the work directory."""
    message = refusal(write(tmp_path / name, data), workdir)
    assert message.startswith(f"document {tmp_path}/") and expected in message
    assert not any(workdir.iterdir())


def test_unreadable_file_is_refused(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be opened is refused, saying so."""
    path = write(tmp_path / "secret.txt", "x\n")
    real_open = os.open

    def refusing(name, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(documents.os, "open", refusing)
    assert "secret.txt is not readable (permission denied); check its permissions" in refusal(path, workdir)


def test_fifo_socket_and_device_are_refused_without_blocking(tmp_path: Path, workdir: Path) -> None:
    """A named pipe, a socket and a device given directly are refused, and nothing blocks."""
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock.txt"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        done = threading.Event()
        messages: list[str] = []
        worker = threading.Thread(target=lambda: (messages.extend(
            refusal(p, workdir) for p in (fifo, sock_path, Path("/dev/zero"))), done.set()))
        worker.start()
        assert done.wait(10), "ingesting a FIFO, a socket or a device blocked"
    finally:
        server.close()
    assert "pipe.txt is a named pipe (FIFO)" in messages[0]
    assert "sock.txt is a socket" in messages[1] and "/dev/zero is a device" in messages[2]


def test_symlink_given_directly_names_its_target(tmp_path: Path, workdir: Path) -> None:
    """A link given directly is refused; the line names the target to pass instead."""
    target = write(tmp_path / "real.txt", "x\n")
    (tmp_path / "link.txt").symlink_to(target)
    assert refusal(tmp_path / "link.txt", workdir) == (
        f"document {tmp_path / 'link.txt'} is a symbolic link to {target}; rlm-host does not follow "
        f"links: pass {target} itself")


def test_huge_html_is_refused_before_reading(tmp_path: Path, workdir: Path) -> None:
    """HTML (and PDF) bigger than the parsing memory limit is refused with its size, without copying."""
    path = tmp_path / "huge.html"
    with path.open("wb") as file:
        file.truncate(900 * MIB)  # sparse: no disk used
    assert "huge.html is 900 MB, more than the 768 MB memory limit of ingest.memory_mb" in refusal(path, workdir)
    assert not any(workdir.iterdir())


@pytest.mark.parametrize("where", ["state", "audit", "key", "runtime", "cache"])
def test_rlm_host_state_is_never_staged(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                        where: str) -> None:
    """A file in (or the folder of) rlm-host's state, audit, runtime or cache directory, or the key, is refused."""
    for name in ("STATE", "AUDIT", "RUNTIME", "CACHE"):
        monkeypatch.setenv(f"RLM_HOST_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("RLM_HOST_AUDIT_KEY_FILE", str(tmp_path / "key" / "audit.key"))
    target = write(tmp_path / where / ("audit.key" if where == "key" else "log.txt"), "secret\n")
    assert "rlm-host never stages its own state" in refusal(target, workdir)
    if where != "key":
        assert "rlm-host never stages its own state" in refusal(target.parent, workdir)


def test_hard_link_to_the_audit_key_is_refused(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hard link to the key, outside the state directory and under a harmless name, is still the key."""
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RLM_HOST_AUDIT_KEY_FILE", raising=False)
    key = write(tmp_path / "state" / "audit.key", "00" * 32)
    os.link(key, tmp_path / "notes.txt")
    assert "is, or lies inside, rlm-host's audit key" in refusal(tmp_path / "notes.txt", workdir)


def test_hard_link_to_an_audit_log_is_refused(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hard link to any file under the state directory is found by its inode."""
    monkeypatch.setenv("RLM_HOST_STATE_DIR", str(tmp_path / "state"))
    log = write(tmp_path / "state" / "audit" / "run.jsonl", '{"kind": "x"}\n')
    os.link(log, tmp_path / "run.txt")
    assert "rlm-host's state directory" in refusal(tmp_path / "run.txt", workdir)


# --- the host's copy: exactly what was hashed ----------------------------------------------------


def test_copy_takes_exactly_the_size_fstat_said(tmp_path: Path) -> None:
    """Bytes past the size seen when the file was opened are not copied; the hash is of the copy."""
    path = write(tmp_path / "grow.txt", b"a" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        with path.open("ab") as more:
            more.write(b"b" * 1000)  # appended after the size was taken
        dest = tmp_path / "copy"
        dest.touch()
        digest, chars, _marks = documents._copy_exact(fd, 1000, dest, documents._Meter("x", 1000, print))
    finally:
        os.close(fd)
    assert dest.read_bytes() == b"a" * 1000 and digest == hashlib.sha256(b"a" * 1000).hexdigest() and chars == 1000


def test_copy_of_a_file_that_shrank_is_refused(tmp_path: Path) -> None:
    """A file that ends before the size seen at open changed while it was read: refused, no copy left."""
    path = write(tmp_path / "shrink.txt", b"a" * 1000)
    dest = tmp_path / "copy"
    dest.touch()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.truncate(path, 10)
        with pytest.raises(documents._Rejected, match="changed while it was read"):
            documents._copy_exact(fd, 1000, dest, documents._Meter("x", 1000, print))
    finally:
        os.close(fd)
    assert not dest.exists()


def test_characters_are_counted_as_the_kernel_decodes() -> None:
    """Invalid UTF-8 split across reads counts as the kernel's errors='replace' decoding does."""
    data = "é✓".encode() + b"\xff\xfe" + b"z" + "€".encode()[:2]
    counter = TextCount()
    for index in range(len(data)):
        counter.feed(data[index:index + 1])
    assert counter.close()[0] == len(data.decode("utf-8", "replace"))


def test_text_context_is_staged_without_parsing(tmp_path: Path) -> None:
    """The caller's own str becomes a UTF-8 document directly, with its hash and characters."""
    doc = stage_text("héllo \ud800 world", tmp_path / "work")
    data = doc.text_path.read_bytes()
    assert data == "héllo ? world".encode() and doc.sha256 == doc.text_sha256 == hashlib.sha256(data).hexdigest()
    assert doc.chars == 13 and doc.size == doc.text_bytes == len(data)
