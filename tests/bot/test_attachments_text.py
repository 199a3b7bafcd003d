"""Shared text files: decoded in any encoding, fenced under their name, cut with a marker and a note."""

from __future__ import annotations

import codecs

import pytest

from bot.attachments import UnusableAttachment, decode_text, read_text_file, render_shared_text
from bot.tokens import TokenCounter

LOG_LINE = "2026-01-05 12:00:00 INFO request handled in 12 ms\n"  # 50 characters


def log_text(chars: int) -> str:
    """A log of exactly `chars` characters, in whole lines but the last."""
    return (LOG_LINE * (chars // len(LOG_LINE) + 1))[:chars]


def test_a_40_kb_log_arrives_whole_in_a_fenced_block_under_its_name() -> None:
    text = log_text(40_000)

    shared = read_text_file(text.encode(), "server.log", 100_000)

    assert (shared.kept_chars, shared.total_chars, shared.cut, shared.encoding) == (40_000, 40_000, False, "utf-8")
    assert text.endswith("\n")
    assert shared.render() == f"File `server.log`:\n```log\n{text}```"
    assert shared.note() is None


def test_a_500_kb_log_is_cut_at_a_line_with_a_marker_and_a_note() -> None:
    shared = read_text_file(log_text(500_000).encode(), "big.log", 100_000)

    assert shared.cut and shared.total_chars == 500_000
    assert shared.kept_chars == 100_000  # 2,000 whole lines: the cut falls on a line break
    assert shared.text.endswith(LOG_LINE)
    assert shared.render().endswith("\n```\n[The file is cut here: kept the first 100,000 of 500,000 characters.]")
    assert shared.note() == "`big.log` is long: I read the first 100,000 of 500,000 characters."


def test_a_cut_moves_back_to_a_line_break_only_when_one_is_near() -> None:
    far = "a" * 50 + "\n" + "b" * 400
    near = "a" * 280 + "\n" + "b" * 100

    assert read_text_file(far.encode(), "far.txt", 300).text == far[:300]
    assert read_text_file(near.encode(), "near.txt", 300).text == "a" * 280 + "\n"


def test_the_fence_is_longer_than_any_backtick_run_in_the_text() -> None:
    text = "Use ``` to open a block, or ```` in a block.\n"

    rendered = render_shared_text("README.md", text, len(text), len(text))

    assert rendered == f"File `README.md`:\n`````md\n{text}`````"


def test_a_file_name_cannot_break_out_of_the_header() -> None:
    rendered = render_shared_text("evil`\n```\nname", "x", 1, 1)
    assert rendered.splitlines()[0] == "File `evil' ''' name`:"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (codecs.BOM_UTF16_LE + "Grüße, 世界 €\n".encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF16_BE + "Grüße, 世界 €\n".encode("utf-16-be"), "utf-16-be"),
        (codecs.BOM_UTF32_LE + "Grüße, 世界 €\n".encode("utf-32-le"), "utf-32-le"),
        (codecs.BOM_UTF8 + "Grüße, 世界 €\n".encode(), "utf-8"),
        ("Grüße, 世界 €\n".encode(), "utf-8"),
        ("Grüße, 世界 €\n".encode("utf-16-le"), "utf-16-le"),  # no BOM: the NULs tell
    ],
)
def test_unicode_files_decode_in_their_encoding(data: bytes, encoding: str) -> None:
    assert decode_text(data) == ("Grüße, 世界 €\n", encoding)


def test_a_windows_1252_file_decodes_with_its_euro_signs_and_quotes() -> None:
    data = "Café costs 5 € – “quoted”\r\n".encode("cp1252")

    shared = read_text_file(data, "menu.txt", 1000)

    assert (shared.text, shared.encoding) == ("Café costs 5 € – “quoted”\n", "cp1252")


def test_bytes_no_code_page_defines_fall_back_to_latin_1() -> None:
    assert decode_text(b"caf\xe9 \x81") == ("café \x81", "latin-1")  # 0x81 is undefined in Windows-1252


def test_binary_data_with_a_text_name_is_refused() -> None:
    with pytest.raises(UnusableAttachment) as caught:
        read_text_file(bytes(range(256)) * 10, "data.txt", 1000)
    assert caught.value.note == "`data.txt` doesn't look like text, so I left it out."


def test_a_huge_file_is_decoded_only_as_far_as_the_kept_text_needs() -> None:
    data = log_text(10_000_000).encode()

    shared = read_text_file(data, "huge.log", 1_000)

    assert shared.kept_chars == 1_000 and not shared.exact
    assert abs(shared.total_chars - 10_000_000) < 1_000
    assert shared.note() == "`huge.log` is long: I read the first 1,000 of about 10,000,000 characters."


def test_a_prefix_never_ends_in_a_broken_character() -> None:
    data = ("é" * 5_000_000).encode()  # two bytes each: a prefix of an odd length halves the last one

    shared = read_text_file(data, "accents.txt", 1_001)

    assert shared.encoding == "utf-8" and shared.text == "é" * 1_001


def test_a_file_within_the_limits_is_cut_further_to_fit_the_window() -> None:
    shared = read_text_file(log_text(40_000).encode(), "server.log", 100_000)

    smaller = shared.within(10_000)

    assert (smaller.kept_chars, smaller.total_chars) == (10_000, 40_000)
    assert smaller.note() == "`server.log` is long: I read the first 10,000 of 40,000 characters."


def test_a_file_is_cut_to_a_token_allowance_by_the_counter() -> None:
    counter = TokenCounter()  # the estimate: tests run offline
    shared = read_text_file(log_text(40_000).encode(), "server.log", 100_000)

    fitted = shared.within_tokens(2_000, counter.count)

    assert counter.count(fitted.render()) <= 2_000
    assert counter.count(fitted.render()) > 1_500  # not needlessly short
    assert fitted.cut and fitted.text == log_text(40_000)[: fitted.kept_chars]
