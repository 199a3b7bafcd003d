"""Shared PDFs: their text layer read within the limits, and hostile ones refused or cut quickly and cheaply."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from bot.attachments import NoTextLayer, UnusableAttachment, read_pdf
from tests.fakes.document_fixtures import deflate_bomb, drawing_page, make_pdf, text_page

ROOT = Path(__file__).resolve().parents[2]


def pages(count: int) -> list[bytes]:
    return [text_page(f"Page {number} of the handbook.") for number in range(1, count + 1)]


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_a_pdfs_text_is_read_page_by_page() -> None:
    shared = read_pdf(make_pdf([text_page("Quarterly report (draft)."), text_page("Revenue rose.")]), "q3.pdf", 10_000)

    assert shared.text == "Quarterly report (draft).\n\nRevenue rose."
    assert (shared.pages, shared.cut, shared.encoding) == ((2, 2), False, "pdf")
    assert shared.render() == "File `q3.pdf`:\n```pdf\nQuarterly report (draft).\n\nRevenue rose.\n```"


def test_a_scanned_pdf_without_text_gets_the_no_text_note() -> None:
    with pytest.raises(NoTextLayer) as caught:
        read_pdf(make_pdf([drawing_page(), drawing_page()]), "scan.pdf", 10_000)
    assert caught.value.note == (
        "`scan.pdf` has no text I can read (its pages may be scans). Send the pages as pictures instead."
    )


def test_something_that_is_not_a_pdf_is_refused_as_damaged() -> None:
    with pytest.raises(UnusableAttachment) as caught:
        read_pdf(b"PK\x03\x04 a zip file renamed", "contract.pdf", 10_000)
    assert caught.value.note == "I couldn't read `contract.pdf`; the PDF seems damaged."


def test_a_password_protected_pdf_is_named_and_one_with_an_empty_password_is_read() -> None:
    pdf = make_pdf([text_page("Salaries.")])

    with pytest.raises(UnusableAttachment) as caught:
        read_pdf(encrypted(pdf, "secret"), "salaries.pdf", 10_000)

    assert caught.value.note == "`salaries.pdf` is protected with a password, so I couldn't read it."
    assert read_pdf(encrypted(pdf, ""), "no-edit.pdf", 10_000).text == "Salaries."


def test_a_10000_page_pdf_is_read_to_the_page_cap_quickly() -> None:
    started = time.monotonic()

    shared = read_pdf(make_pdf(pages(10_000)), "handbook.pdf", 1_000_000, max_pages=200)

    assert time.monotonic() - started < 15  # about 1 s here; generous for a loaded CI machine
    assert shared.pages == (200, 10_000) and shared.cut
    assert shared.text.endswith("Page 200 of the handbook.")
    assert shared.note() == (
        f"`handbook.pdf` is long: I read the first {shared.kept_chars:,} characters, from pages 1–200 of 10,000."
    )


def test_reading_stops_once_the_text_allowance_is_full() -> None:
    shared = read_pdf(make_pdf(pages(1_000)), "handbook.pdf", 100)

    assert shared.pages is not None and shared.pages[0] <= 5  # about 30 characters a page
    assert shared.kept_chars <= 100
    assert "[The file is cut here: kept the first" in shared.render()


def test_a_deadline_or_a_stop_request_ends_reading_between_pages() -> None:
    pdf = make_pdf(pages(50))
    calls = 0

    def stop_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    stopped = read_pdf(pdf, "a.pdf", 100_000, stopping=stop_after_three)

    assert stopped.pages == (3, 50)
    with pytest.raises(UnusableAttachment) as caught:
        read_pdf(pdf, "slow.pdf", 100_000, deadline=time.monotonic() - 1)
    assert caught.value.note == "Reading `slow.pdf` took too long, so I left it out."


def test_a_page_that_inflates_to_hundreds_of_megabytes_is_skipped_and_named() -> None:
    bomb = deflate_bomb(256)  # 256 MiB of spaces in about 250 KB
    pdf = make_pdf([text_page("The only real page."), bomb], flate=[False, True])
    started = time.monotonic()

    shared = read_pdf(pdf, "bomb.pdf", 100_000)

    assert time.monotonic() - started < 10
    assert shared.text == "The only real page."
    assert shared.note() == "`bomb.pdf`: I couldn't read 1 of its pages."


def test_a_pdf_bomb_stays_within_a_small_memory_budget(tmp_path: Path) -> None:
    source = tmp_path / "bomb.pdf"
    source.write_bytes(make_pdf([deflate_bomb(256), deflate_bomb(256)], flate=[True, True]))
    code = (
        "import resource\n"
        "from bot.attachments import UnusableAttachment, read_pdf\n"
        f"data = open({str(source)!r}, 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    read_pdf(data, 'bomb.pdf', 100_000)\n"
        "except UnusableAttachment as refused:\n"
        "    print(refused.note)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )

    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    note, growth_mb = run.stdout.strip().splitlines()
    assert note == "I couldn't read `bomb.pdf`; the PDF seems damaged."
    assert float(growth_mb) < 60  # pypdf's own limit alone would let a stream grow to 75 MB


def test_deeply_nested_objects_are_refused_quickly() -> None:
    nested = b"/Junk " + b"[" * 100_000 + b"]" * 100_000
    started = time.monotonic()

    with pytest.raises(UnusableAttachment) as caught:
        read_pdf(make_pdf([text_page("Hi")], page_extra=nested), "deep.pdf", 10_000)

    assert time.monotonic() - started < 5
    assert "`deep.pdf`" in caught.value.note
