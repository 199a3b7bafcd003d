"""Answers read aloud: Markdown to speakable text, split for the speech endpoint, synthesized into one recording.

Discord-free. The CPU work (decoding and encoding audio) is `bot.voice_recording.encode_voice_recording`, which
`synthesize` runs through the `run_blocking` it is given (a worker thread by default).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import math
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.api import OpenAIClient
from bot.audio import format_duration
from bot.errors import UserError
from bot.voice_recording import VoiceRecording, audio_seconds, encode_voice_recording

log = logging.getLogger(__name__)

SPEECH_PATH = "/audio/speech"
# The endpoint refuses an `input` over 4096 characters.
MAX_INPUT_CHARS = 4096
# Opus answers are the smallest of the formats the endpoint offers and carry their own length, and PyAV decodes
# them exactly. Whatever a server sends instead is recognised by its content, not by this name.
RESPONSE_FORMAT = "opus"
# OpenAI's voices speak about 150 words a minute: some 15 characters a second. Text is requested for the time
# still to fill at this rate plus a margin, so a long answer is not synthesized far past the length limit; the
# measured length of each piece corrects the rate for the next.
SPEAKING_CHARS_PER_SECOND = 15.0
BUDGET_MARGIN = 1.25
# Requests smaller than this cost a round trip for a second or two of sound.
MIN_BUDGET_CHARS = 200
# tts-1 and tts-1-hd refuse `instructions` (FACTS.md); other speech models take them.
NO_INSTRUCTIONS_MODEL = re.compile(r"(^|/)tts-1(-|$)")

RunBlocking = Callable[[Callable[[], VoiceRecording]], Awaitable[VoiceRecording]]


class NothingToSay(UserError):
    """The answer holds nothing a voice could read: only code, links, mentions or notes."""

    def __init__(self) -> None:
        super().__init__(
            "🔇 There is nothing to read aloud in that answer: it holds only code, links or notes. "
            "Read it in the text answer instead."
        )


@dataclass(frozen=True)
class SpokenAnswer:
    """An answer as one voice recording; `characters` is what was sent to the speech endpoint (for usage).

    `cut` says the recording stops before the end of the answer (it reached the length limit).
    """

    recording: VoiceRecording
    characters: int
    requests: int
    cut: bool


# Markdown and Discord markup, in the order they are undone. Code comes first, so nothing inside it is touched.
CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)  # an answer cut short may leave a fence open
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~>:<@])")
# Placeholders (private-use characters) hold code and escaped characters while the markup around them goes.
PROTECTED = re.compile("\ue000(\\d+)\ue001")
SUBTEXT_LINE = re.compile(r"^\s*-#\s.*$", re.MULTILINE)
LINE_MARKERS = re.compile(r"^\s*(?:>>>\s?|(?:>\s?)+)?\s*(?:#{1,6}\s+|[-*+•]\s+)?")
RULE_LINE = re.compile(r"^\s*(?:[-*_]\s*){3,}$|^\s*\|?(?:\s*:?-{3,}:?\s*\|?)+\s*$")
IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
LINK = re.compile(r"\[([^\]]+)\]\(\s*<?[^)>\s]+>?(?:\s+\"[^\"]*\")?\s*\)")
URL = re.compile(r"<?https?://[^\s<>]*[^\s<>.,;:!?)\]'\"]>?")
MENTIONS = (
    (re.compile(r"<@!?\d+>"), "someone"),
    (re.compile(r"<@&\d+>"), "a role"),
    (re.compile(r"<#\d+>"), "a channel"),
    (re.compile(r"</([\w-]+(?: [\w-]+)*):\d+>"), r"/\1"),
    (re.compile(r"<a?:\w+:\d+>"), ""),  # custom emoji: their names ("pepe_laugh") read badly
    (re.compile(r"@(everyone|here)\b"), r"\1"),
)
TIMESTAMP = re.compile(r"<t:(-?\d+)(?::([tTdDfFR]))?>")
EMPHASIS = (
    re.compile(r"\*\*(.+?)\*\*"),
    re.compile(r"__(.+?)__"),
    re.compile(r"~~(.+?)~~"),
    re.compile(r"\|\|(.+?)\|\|"),
    re.compile(r"\*(?!\s)(.+?)(?<!\s)\*"),
    re.compile(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)"),
)
# A line ends in one of these (before closing quotes or brackets) or gets a full stop, so the voice pauses there.
SPOKEN_PUNCTUATION = ".!?…:;,"
CODE_BLOCK_WORDS = "(code block)"
LINK_WORDS = "a link"
# Lines that only stand in for something not read out.
STAND_INS = frozenset({f"{CODE_BLOCK_WORDS}.", f"{LINK_WORDS}."})
CLOSERS = "\"'”’)]»"

# Where a piece of speech may end, best first: after a sentence, after a clause, between words.
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]»]*(?=\s)|\n")
CLAUSE_END = re.compile(r"[,;:]+(?=\s)|\s[-–—](?=\s)")
WORD_GAP = re.compile(r"(?<=\S)\s")


def speakable_text(markdown: str) -> str:
    """The words of a Discord answer as a voice should read them: no code, link targets, markup or notes."""
    protected: list[str] = []

    def protect(text: str) -> str:
        protected.append(text)
        return f"\ue000{len(protected) - 1}\ue001"

    text = CODE_BLOCK.sub(f"\n{CODE_BLOCK_WORDS}\n", markdown)
    text = INLINE_CODE.sub(lambda match: protect(match.group(2).strip()), text)
    text = ESCAPED.sub(lambda match: protect(match.group(1)), text)
    text = SUBTEXT_LINE.sub("", text)
    lines = [line for line in map(_speakable_line, text.splitlines()) if line]
    if all(line in STAND_INS for line in lines):
        return ""  # "(code block). a link." says nothing
    text = "\n".join(lines)
    return PROTECTED.sub(lambda match: protected[int(match.group(1))], text).strip()


def _speakable_line(line: str) -> str:
    """One line without its markup, ending in punctuation; empty when nothing in it is worth saying."""
    if RULE_LINE.match(line):
        return ""
    line = LINE_MARKERS.sub("", line, count=1)
    if "|" in line and line.strip().startswith("|"):  # a table row: its cells, one after the other
        line = ", ".join(cell.strip() for cell in line.strip().strip("|").split("|") if cell.strip())
    line = IMAGE.sub(r"\1", line)
    line = LINK.sub(r"\1", line)
    line = URL.sub(LINK_WORDS, line)
    for pattern, replacement in MENTIONS:
        line = pattern.sub(replacement, line)
    line = TIMESTAMP.sub(_spoken_timestamp, line)
    for pattern in EMPHASIS:
        line = pattern.sub(r"\1", line)
    line = " ".join(line.split())
    if not any(character.isalnum() for character in line):
        return ""  # only symbols or emoji left
    if line.rstrip(CLOSERS)[-1:] not in SPOKEN_PUNCTUATION:
        line += "."
    return line


def _spoken_timestamp(match: re.Match[str]) -> str:
    """A Discord timestamp (<t:1700000000:f>) as a date, with its time unless the style shows only the date."""
    try:
        moment = datetime.datetime.fromtimestamp(int(match.group(1)), datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return "a date"
    date = f"{moment.day} {moment:%B %Y}"
    return date if match.group(2) in ("d", "D") else f"{date} at {moment:%H:%M} UTC"


def split_for_speech(text: str, limit: int = MAX_INPUT_CHARS) -> list[str]:
    """Text in pieces of at most `limit` characters, cut after sentences where possible, never empty."""
    pieces = []
    rest = text.strip()
    while rest:
        piece, rest = next_piece(rest, limit)
        pieces.append(piece)
    return pieces


def next_piece(text: str, limit: int) -> tuple[str, str]:
    """The first piece of `text` (at most `limit` characters) and the rest, both stripped.

    A piece ends after the last sentence in reach, unless that leaves it under half the limit: then after the
    last clause, then between words; only a word longer than the limit is cut inside.
    """
    text = text.strip()
    if len(text) <= limit:
        return text, ""
    window = text[: limit + 1]  # a space right after the limit still ends a piece of `limit` characters
    cut = 0
    for pattern in (SENTENCE_END, CLAUSE_END):
        ends = [match.end() for match in pattern.finditer(window) if 0 < match.end() <= limit]
        if ends and ends[-1] >= limit // 2:
            cut = ends[-1]
            break
    if not cut:
        gaps = [match.start() for match in WORD_GAP.finditer(window)]
        cut = gaps[-1] if gaps else limit
    return text[:cut].strip(), text[cut:].strip()


def cut_note(max_seconds: float) -> str:
    """The note under a recording that stops at the length limit."""
    return f"-# The answer is longer than {format_duration(max_seconds)}, so the recording stops there."


def speech_request(text: str, *, model: str, voice: str, instructions: str | None) -> dict[str, Any]:
    """The body for the speech endpoint; `instructions` only for models that take them."""
    body: dict[str, Any] = {"model": model, "input": text, "voice": voice, "response_format": RESPONSE_FORMAT}
    if instructions and not NO_INSTRUCTIONS_MODEL.search(model):
        body["instructions"] = instructions
    return body


async def synthesize(
    api: OpenAIClient,
    text: str,
    *,
    model: str,
    voice: str,
    instructions: str | None,
    max_seconds: float,
    chars_per_second: float = SPEAKING_CHARS_PER_SECOND,
    run_blocking: RunBlocking = asyncio.to_thread,
    stopping: threading.Event | None = None,
) -> SpokenAnswer:
    """Read a Markdown answer aloud: one Ogg/Opus voice recording of at most `max_seconds`.

    Pieces of up to 4096 characters are requested in order until the answer is spoken or the limit is reached.
    Raises NothingToSay when no words remain after `speakable_text`, ApiError when the endpoint fails.
    """
    rest = speakable_text(text)
    if not rest:
        raise NothingToSay()
    pieces: list[bytes] = []
    sent = 0
    seconds = 0.0
    rate = chars_per_second
    while rest and seconds < max_seconds:
        budget = max(MIN_BUDGET_CHARS, math.ceil((max_seconds - seconds) * rate * BUDGET_MARGIN))
        piece, rest = next_piece(rest, min(MAX_INPUT_CHARS, budget))
        body = speech_request(piece, model=model, voice=voice, instructions=instructions)
        pieces.append(await api.post_json_for_bytes(SPEECH_PATH, body, model=model))
        sent += len(piece)
        # Reading the length from the headers takes well under a millisecond, so it stays on the event loop.
        measured = audio_seconds(pieces[-1])
        seconds += measured if measured else len(piece) / rate
        rate = sent / seconds if seconds > 0 else rate
    log.debug("synthesized %d characters in %d requests (%.1f s)", sent, len(pieces), seconds)
    recording = await run_blocking(functools.partial(encode_voice_recording, pieces, max_seconds, stopping))
    return SpokenAnswer(recording, characters=sent, requests=len(pieces), cut=bool(rest) or recording.truncated)
