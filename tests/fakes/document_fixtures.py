"""Files people share, made on the spot: PDFs written by hand, pictures with Pillow, hostile ones without the cost.

A hostile file is built the way an attacker builds it: a few bytes that claim (or inflate to) a lot.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MB = 1 << 20


def text_page(text: str) -> bytes:
    """A page content stream that writes one line of text in Helvetica."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"BT /F1 12 Tf 72 720 Td (" + escaped.encode("latin-1") + b") Tj ET"


def drawing_page() -> bytes:
    """A page content stream that only paints a rectangle: what a scanned page's text layer amounts to."""
    return b"0.5 g 72 72 468 648 re f"


def make_pdf(contents: Sequence[bytes], *, flate: Sequence[bool] = (), page_extra: bytes = b"") -> bytes:
    """A valid PDF with one page per content stream (FlateDecode-compressed ones marked in `flate`)."""
    count = len(contents)
    kids = b" ".join(b"%d 0 R" % (4 + 2 * index) for index in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, content in enumerate(contents):
        resources = b"/Resources << /Font << /F1 3 0 R >> >>"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] %s /Contents %d 0 R %s >>"
            % (resources, 5 + 2 * index, page_extra)
        )
        compressed = index < len(flate) and flate[index]
        header = b"<< /Length %d%s >>" % (len(content), b" /Filter /FlateDecode" if compressed else b"")
        objects.append(header + b"\nstream\n" + content + b"\nendstream")
    return _with_xref(objects)


def _with_xref(objects: Sequence[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def deflate_bomb(megabytes: int, fill: bytes = b" ") -> bytes:
    """Zlib data that inflates to `megabytes` MiB of `fill`, compressed a MiB at a time (never all in memory)."""
    compressor = zlib.compressobj(9)
    block = fill * (MB // len(fill))
    return b"".join([*(compressor.compress(block) for _ in range(megabytes)), compressor.flush()])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims `width` x `height` RGB pixels, with almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_bomb(width: int, height: int) -> bytes:
    """A real grey PNG of `width` x `height` black pixels: tiny compressed, width x height bytes decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte, then the row
    idat = b"".join([*(compressor.compress(row) for _ in range(height)), compressor.flush()])
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    """The picture encoded in a format."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()
