"""Small, valid PDFs for tests, written with the standard library only.

``text_pdf`` draws each page's lines in Helvetica (one of the 14 standard fonts,
so nothing is embedded) with WinAnsiEncoding, so Latin-1-ish text round-trips
through a text extractor. ``scanned_pdf`` draws only an image on each page, like
a scan with no OCR text layer.
"""

from __future__ import annotations

from collections.abc import Sequence

GRAY_PIXELS = bytes([0, 85, 170, 255])  # a 2x2 grayscale image


def text_pdf(pages: Sequence[Sequence[str]]) -> bytes:
    """A PDF with one page per entry of ``pages``, each drawing its lines top-down."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    resources = b"<< /Font << /F1 3 0 R >> >>"
    return _pdf([font], [(resources, _text_stream(lines)) for lines in pages])


def scanned_pdf(page_count: int) -> bytes:
    """A PDF of ``page_count`` pages that each show an image and hold no text at all."""
    image = (b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray"
             b" /BitsPerComponent 8 /Length 4 >>\nstream\n" + GRAY_PIXELS + b"\nendstream")
    resources = b"<< /XObject << /Im1 3 0 R >> >>"
    content = b"q 400 0 0 600 100 100 cm /Im1 Do Q"
    return _pdf([image], [(resources, content)] * page_count)


def _text_stream(lines: Sequence[str]) -> bytes:
    """A content stream showing ``lines`` from the top of a Letter page, 14 points apart."""
    shown = b" T*\n".join(b"(" + _escape(line) + b") Tj" for line in lines)
    return b"BT /F1 12 Tf 14 TL 72 720 Td\n" + shown + b"\nET"


def _escape(line: str) -> bytes:
    """A PDF literal string body: WinAnsi bytes with backslash and parentheses escaped."""
    raw = line.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _pdf(shared: list[bytes], pages: list[tuple[bytes, bytes]]) -> bytes:
    """Objects 1 catalog, 2 page tree, 3.. ``shared``, then a page and its content per page."""
    first_page = 3 + len(shared)
    kids = [first_page + 2 * i for i in range(len(pages))]
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids)
               + b"] /Count %d >>" % len(pages), *shared]
    for kid, (resources, content) in zip(kids, pages, strict=False):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
                       + resources + b" /Contents %d 0 R >>" % (kid + 1))
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    return _serialize(objects)


def _serialize(objects: list[bytes]) -> bytes:
    """The file: header, numbered objects, a cross-reference table with true offsets, trailer."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def heavy_pdf(repeats: int) -> bytes:
    """A small PDF of ``repeats`` pages that all draw one shared, text-heavy content stream (slow to extract)."""
    lines = [f"line {i} " + "word " * 30 for i in range(300)]
    content = _text_stream(lines)
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    stream = b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"
    resources = b"<< /Font << /F1 3 0 R >> >>"
    kids = [5 + i for i in range(repeats)]
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % repeats,
               font, stream]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources " + resources
                + b" /Contents 4 0 R >>"] * repeats
    return _serialize(objects)


def zero_stream_pdf(pages: int, stream_mb: int) -> bytes:
    """A PDF whose pages each draw a Flate stream that inflates to ``stream_mb`` MB of zeros (tiny on disk)."""
    import zlib

    data = zlib.compress(b"\0" * (stream_mb * 2**20), 9)
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    resources = b"<< /Font << /F1 3 0 R >> >>"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
               + b"] /Count %d >>" % pages, font, stream]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources " + resources
                + b" /Contents 4 0 R >>"] * pages
    return _serialize(objects)
