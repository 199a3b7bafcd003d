"""The text layer of PDFs people share, read within bounds a hostile PDF cannot push (pypdf does the parsing).

A "PDF bomb" is small on disk and huge to process: streams that inflate to gigabytes, thousands of
pages, objects nested thousands deep. Reading is bounded four ways: pypdf's own limits, set tighter
than its defaults for this call only; at most `max_pages` pages; no page after the text allowance is
full; and a deadline or stop request checked between pages, for the worker running it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

from pypdf import PdfReader, apply_configuration

from bot.attachments.kinds import UnusableAttachment, out_of_time, quoted
from bot.attachments.text import SharedText, cut_text

log = logging.getLogger(__name__)

MAX_PDF_PAGES = 200
# pypdf's limits (pypdf.readthedocs.io/en/stable/user/security.html) default to 75 MB of decoded data per
# stream and 300 MB of decoding work; a page's text needs far less, so a bomb fails sooner and smaller.
PDF_LIMITS = {
    "maximum_declared_stream_length": 10_000_000,
    "array_based_stream_maximum_output_length": 10_000_000,
    "zlib_maximum_output_length": 10_000_000,
    "lzw_maximum_output_length": 10_000_000,
    "run_length_maximum_output_length": 10_000_000,
    "brotli_maximum_output_length": 10_000_000,
    "stream_decoding_work_maximum_length": 30_000_000,
    "stream_parsing_work_maximum_count": 1_000_000,
    "xform_maximum_invocations_per_extraction": 500,
    "page_tree_maximum_entries": 50_000,
    "jbig2dec_binary": None,  # never run an external decoder on what strangers send
}
PAGE_SEPARATOR = "\n\n"


class NoTextLayer(UnusableAttachment):
    """A PDF with no text to read: scanned pages, or text drawn as pictures."""


def read_pdf(
    data: bytes,
    filename: str,
    max_chars: int,
    *,
    max_pages: int = MAX_PDF_PAGES,
    deadline: float | None = None,
    stopping: Callable[[], bool] | None = None,
) -> SharedText:
    """The text of a PDF's first pages, cut to `max_chars`; raises UnusableAttachment (NoTextLayer) with a note.

    Reading stops after `max_pages` pages, once `max_chars` characters are read, at `deadline` (a
    time.monotonic() value) or when `stopping()` says so; what was read by then is kept. Blocking.
    """
    name = quoted(filename)
    with apply_configuration(None, **PDF_LIMITS):
        reader = _open(data, name)
        try:
            total_pages = len(reader.pages)
        except Exception:  # the page tree itself is damaged or over the limits
            log.debug("Could not count the pages of a shared PDF", exc_info=True)
            raise UnusableAttachment(f"I couldn't read {name}; the PDF seems damaged.") from None
        pieces: list[str] = []
        chars = failed = read = 0
        for index in range(min(total_pages, max_pages)):
            if chars >= max_chars or out_of_time(deadline, stopping):
                break
            read = index + 1
            try:
                page_text = (reader.pages[index].extract_text() or "").strip()
            except Exception:  # any pypdf error on one page: skip the page, keep the others
                log.debug("Could not read page %d of a shared PDF", read, exc_info=True)
                failed += 1
                continue
            if page_text:
                pieces.append(page_text)
                chars += len(page_text) + len(PAGE_SEPARATOR)
    return _result(filename, name, PAGE_SEPARATOR.join(pieces), max_chars, (read, total_pages), failed)


def _open(data: bytes, name: str) -> PdfReader:
    """A reader over the PDF, decrypted if it opens without a password; refuses what it cannot open."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
    except Exception:  # pypdf raises PdfReadError, LimitReachedError, but also ValueError, KeyError, ...
        log.debug("Could not open a shared PDF", exc_info=True)
        raise UnusableAttachment(f"I couldn't read {name}; the PDF seems damaged.") from None
    if encrypted and not _opens_without_password(reader):
        raise UnusableAttachment(f"{name} is protected with a password, so I couldn't read it.")
    return reader


def _opens_without_password(reader: PdfReader) -> bool:
    """Whether an encrypted PDF opens with the empty password (many are encrypted only against editing)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # AES needs the optional `cryptography` package; without it, treat the PDF as locked
        return False


def _result(filename: str, name: str, text: str, max_chars: int, pages: tuple[int, int], failed: int) -> SharedText:
    """What was read as SharedText, or the note for a PDF that gave no text."""
    read, total = pages
    if not text:
        if failed and failed == read:
            raise UnusableAttachment(f"I couldn't read {name}; the PDF seems damaged.")
        if read < min(total, 1):
            raise UnusableAttachment(f"Reading {name} took too long, so I left it out.")
        raise NoTextLayer(
            f"{name} has no text I can read (its pages may be scans). Send the pages as pictures instead."
        )
    return SharedText(filename, cut_text(text, max_chars), len(text), "pdf", pages=pages, unreadable_pages=failed)
