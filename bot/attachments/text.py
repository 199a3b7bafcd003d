"""Text people share as files: decoded whatever the encoding, cut to the room the turn has, fenced for the model."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from bot.attachments.kinds import UnusableAttachment, quoted

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Files up to this size are decoded whole, so the cut marker can give their exact length; of a bigger
# one only the bytes the kept text can need are decoded (4 a character at most), and its length estimated.
WHOLE_FILE_BYTES = 4_000_000
# Where the encoding is guessed from the bytes, this much of the file decides.
SNIFF_BYTES = 8192
# A cut this close to the allowance's end moves back to the line break before it, so no line is halved.
LINE_BREAK_WINDOW = 0.2
BACKTICK_RUNS = re.compile(r"`+")
FENCE_LANGUAGE = re.compile(r"[a-z0-9+#-]{1,20}")


@dataclass(frozen=True)
class SharedText:
    """The text of a shared file as the model gets it, and how much of the file that is."""

    filename: str
    text: str  # the kept beginning of the file's text
    total_chars: int  # of the whole text (estimated when `exact` is false; PDFs: of the pages read)
    encoding: str  # the encoding it was decoded from ("pdf" for a PDF's text layer)
    exact: bool = True
    pages: tuple[int, int] | None = None  # PDFs: (pages read, pages in the file)
    unreadable_pages: int = 0  # PDFs: pages among those read whose text could not be extracted

    @property
    def kept_chars(self) -> int:
        """Characters of the file the model gets."""
        return len(self.text)

    @property
    def cut(self) -> bool:
        """Whether the model gets less than the whole file."""
        return self.kept_chars < self.total_chars or (self.pages is not None and self.pages[0] < self.pages[1])

    def render(self) -> str:
        """The file as the model sees it: under its name in a fenced block, with a marker where it was cut."""
        return render_shared_text(
            self.filename, self.text, self.kept_chars, self.total_chars, exact=self.exact, pages=self.pages
        )

    def note(self) -> str | None:
        """A short note for the person when the model gets only part of the file."""
        name = quoted(self.filename)
        pages = self.unreadable_pages
        unread = f"I couldn't read {'1 of its pages' if pages == 1 else f'{pages:,} of its pages'}" if pages else ""
        if not self.cut:
            return f"{name}: {unread}." if unread else None
        extent = _extent(self.kept_chars, self.total_chars, self.exact, self.pages)
        return f"{name} is long: I read {extent}" + (f"; {unread}." if unread else ".")

    def within(self, max_chars: int) -> SharedText:
        """The same file cut to at most `max_chars` characters (the beginning kept), for a smaller allowance."""
        if self.kept_chars <= max_chars:
            return self
        return replace(self, text=cut_text(self.text, max_chars))

    def within_tokens(self, max_tokens: int, count: Callable[[str], int]) -> SharedText:
        """The same file cut so that its rendered form counts at most `max_tokens` (by `count`, e.g. TokenCounter)."""
        shared = self
        for _ in range(4):  # each pass scales by the measured characters per token; two usually suffice
            tokens = count(shared.render())
            if tokens <= max_tokens or not shared.text:
                return shared
            shared = shared.within(int(shared.kept_chars * max_tokens / tokens * 0.97))
        return shared.within(0) if count(shared.render()) > max_tokens else shared


def read_text_file(data: bytes, filename: str, max_chars: int) -> SharedText:
    """A shared text file decoded and cut to `max_chars`; raises UnusableAttachment when it is not text."""
    whole = len(data) <= max(WHOLE_FILE_BYTES, 4 * max_chars + 4)
    sample = data if whole else data[: 4 * max_chars + 4]
    try:
        text, encoding = decode_text(sample, complete=whole)
    except ValueError:
        raise UnusableAttachment(f"{quoted(filename)} doesn't look like text, so I left it out.") from None
    text = text.replace("\r\n", "\n")
    total = len(text) if whole else round(len(text) * len(data) / len(sample))
    return SharedText(filename, cut_text(text, max_chars), total, encoding, exact=whole)


def decode_text(data: bytes, *, complete: bool = True) -> tuple[str, str]:
    """Text and the encoding it was in: a byte order mark, else UTF-8, UTF-16, Windows-1252, Latin-1.

    `complete=False` means `data` is the beginning of a file: a character cut at its end is dropped.
    Raises ValueError for binary data (NUL bytes that are not UTF-16's).
    """
    for mark, encoding in BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return _decode(data[len(mark) :], encoding, complete, "replace"), encoding
    # ASCII text in UTF-16 is also valid UTF-8 (with NULs between the letters), so the NULs decide first.
    utf16 = _utf16_by_nuls(data[:SNIFF_BYTES])
    if utf16 is not None:
        return _decode(data, utf16, complete, "replace"), utf16
    if b"\x00" in data[:SNIFF_BYTES]:
        raise ValueError("binary data")
    for encoding in ("utf-8", "cp1252"):
        try:
            return _decode(data, encoding, complete, "strict"), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"  # every byte is a Latin-1 character: the last resort never fails


def _decode(data: bytes, encoding: str, complete: bool, errors: str) -> str:
    return codecs.getincrementaldecoder(encoding)(errors).decode(data, final=complete)


def _utf16_by_nuls(sample: bytes) -> str | None:
    """UTF-16 LE or BE when NULs fill one byte of most pairs (mostly-ASCII text), else None."""
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even, odd = sample[0 : 2 * pairs : 2].count(0), sample[1 : 2 * pairs : 2].count(0)
    if odd >= 0.3 * pairs and even <= 0.02 * pairs:
        return "utf-16-le"
    if even >= 0.3 * pairs and odd <= 0.02 * pairs:
        return "utf-16-be"
    return None


def cut_text(text: str, max_chars: int) -> str:
    """The beginning of `text` in at most `max_chars` characters, ending at a line break when one is near."""
    if len(text) <= max_chars:
        return text
    head = text[: max(max_chars, 0)]
    line_end = head.rfind("\n")
    if line_end >= max_chars * (1 - LINE_BREAK_WINDOW):
        return head[: line_end + 1]
    return head


def render_shared_text(
    name: str, text: str, kept: int, total: int, *, exact: bool = True, pages: tuple[int, int] | None = None
) -> str:
    """A shared file as the model sees it: its name, the text in a fence no line of it can close, a cut marker."""
    longest_run = max((len(run) for run in BACKTICK_RUNS.findall(text)), default=0)
    fence = "`" * max(3, longest_run + 1)
    extension = PurePosixPath(name).suffix.lower().removeprefix(".")
    language = extension if FENCE_LANGUAGE.fullmatch(extension) else ""
    body = text if not text or text.endswith("\n") else text + "\n"
    rendered = f"File {quoted(name)}:\n{fence}{language}\n{body}{fence}"
    if kept < total or (pages is not None and pages[0] < pages[1]):
        rendered += f"\n[The file is cut here: kept {_extent(kept, total, exact, pages)}.]"
    return rendered


def _extent(kept: int, total: int, exact: bool, pages: tuple[int, int] | None) -> str:
    """How much was kept: "the first 100,000 of 512,345 characters", with pages when some went unread."""
    if pages is not None and pages[0] < pages[1]:
        return f"the first {kept:,} characters, from pages 1–{pages[0]:,} of {pages[1]:,}"
    return f"the first {kept:,} of {'' if exact else 'about '}{total:,} characters"
