"""Pure text helpers for what the bot posts: splitting at Discord's limit, notes, thread names."""

from __future__ import annotations

import re

MESSAGE_LIMIT = 2000
THREAD_NAME_LIMIT = 100
FENCE = "```"
CLOSING_FENCE = "\n" + FENCE
# A reopened fence repeats the opening line (to keep the language); very long info strings are dropped.
MAX_REOPENED_FENCE = 32


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split text into messages of at most `limit` characters, on line boundaries where possible.

    A code block cut by a split is closed at the end of one message and reopened (with its language)
    at the start of the next, so each message renders on its own. Blank pieces are dropped: Discord
    refuses empty messages.
    """
    if len(text) <= limit:
        return [text] if text.strip() else []
    chunks: list[str] = []
    lines: list[str] = []
    length = 0
    fence: str | None = None  # the opening line of the code block open at the end of `lines`

    def flush() -> None:
        nonlocal lines, length
        body = "\n".join(lines) + (CLOSING_FENCE if fence is not None else "")
        if body.strip():
            chunks.append(body)
        lines = [fence] if fence is not None else []
        length = len(fence) if fence is not None else 0

    for line in text.split("\n"):
        # Room for a reopened fence and the closing fence around every piece of an over-long line.
        for index, piece in enumerate(_hard_split(line, limit - MAX_REOPENED_FENCE - 1 - len(CLOSING_FENCE))):
            added = len(piece) + (1 if lines else 0)
            if lines and length + added + len(CLOSING_FENCE) > limit:
                flush()
                added = len(piece) + (1 if lines else 0)
            lines.append(piece)
            length += added
            if index == 0 and piece.lstrip().startswith(FENCE):
                fence = None if fence is not None else _reopening_line(piece)
    fence = None  # the text's own last block is left as the author wrote it
    flush()
    return chunks


def _reopening_line(opening: str) -> str:
    opening = opening.strip()
    return opening if len(opening) <= MAX_REOPENED_FENCE else FENCE


def _hard_split(line: str, width: int) -> list[str]:
    """Cut a line longer than `width`, preferring the last space before the cut."""
    pieces: list[str] = []
    while len(line) > width:
        cut = line.rfind(" ", width // 2, width)
        cut = width if cut == -1 else cut + 1
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def with_notes(text: str, notes: list[str]) -> str:
    """The answer followed by short notes in Discord's small grey subtext."""
    if not notes:
        return text
    rendered = "\n".join(f"-# {note}" for note in notes)
    return f"{text}\n\n{rendered}" if text.strip() else rendered


def thread_name(prompt: str) -> str:
    """A thread name from a prompt: its first line, mentions and markup removed, within Discord's 1–100 chars."""
    first_line = next((line for line in prompt.splitlines() if line.strip()), "")
    cleaned = re.sub(r"<[@#][!&]?\d+>|[*_`~|>]", "", first_line)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > THREAD_NAME_LIMIT:
        cleaned = cleaned[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return cleaned or "Conversation"


def plural(number: float | str, singular: str, plural_form: str | None = None) -> str:
    """The noun that agrees with `number` (a figure or its text): singular for exactly 1, else the plural.

    The plural is `singular` + "s" unless given ("minute of audio" → "minutes of audio").
    """
    one = number == "1" if isinstance(number, str) else number == 1
    return singular if one else plural_form or f"{singular}s"


def count(number: float, singular: str, plural_form: str | None = None, *, spec: str = ",") -> str:
    """A number and its noun, agreeing: count(1, "image") → "1 image", count(1500, "token") → "1,500 tokens".

    `spec` formats the number (",.1f" for tenths); the noun agrees with the number as shown, so 1.0 minutes
    reads "1.0 minutes" and 1 minute "1 minute".
    """
    shown = format(number, spec)
    return f"{shown} {plural(shown, singular, plural_form)}"


def truncate(text: str, limit: int) -> str:
    """Text cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
