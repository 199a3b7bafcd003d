"""Transcripts as Discord shows them, and the checks a file passes before it is downloaded (no Discord I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

import discord

from bot.audio import Progress, Stage, Transcript, format_duration, upload_stem
from bot.errors import UserError
from bot.render import MESSAGE_LIMIT, count, split_message, truncate

MB = 1_000_000  # as MAX_DOWNLOAD_MB and the API count them
# The switch in ChannelRecord.settings. The gate reads it from the channel, its parent, the server (which
# /settings transcription sets), and falls back to AUTO_TRANSCRIBE.
AUTO_TRANSCRIBE_SETTING = "auto_transcribe"
# The server recognises the format by the name, and Discord's own voice messages carry this one.
VOICE_MESSAGE_FILENAME = "voice-message.ogg"
# Past this many characters a transcript is attached as a .txt file: more than two messages of text is a
# wall in a channel, and a file is easier to read, search and keep.
FILE_THRESHOLD = 4000
PREVIEW_CHARS = 300
MEDIA_EXTENSIONS = frozenset(
    {
        "3g2", "3gp", "aac", "ac3", "aif", "aiff", "amr", "asf", "au", "avi", "caf", "flac", "flv", "m2ts",
        "m4a", "m4b", "m4v", "mka", "mkv", "mov", "mp2", "mp3", "mp4", "mpeg", "mpg", "mpga", "mts", "oga",
        "ogg", "opus", "spx", "wav", "weba", "webm", "wma", "wmv",
    }
)  # fmt: skip
# What a voice message gets: an answer in the conversation, or its transcript as a reply.
VoiceRoute = Literal["turn", "transcript"]
LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")


@dataclass(frozen=True)
class TranscriptView:
    """A transcript as Discord messages: the texts to post in order, and a .txt file to attach to the first."""

    messages: list[str]
    file_name: str | None = None
    file_text: str | None = None


def check_media(filename: str, content_type: str | None, size: int, max_download_bytes: int) -> None:
    """Refuse, before downloading, a file that is empty, too big, or neither audio nor video."""
    extension = PurePosixPath(filename).suffix.lower().removeprefix(".")
    kind = (content_type or "").split("/", 1)[0]
    if kind not in ("audio", "video") and extension not in MEDIA_EXTENSIONS:
        raise UserError(f"🎞️ **{discord.utils.escape_markdown(filename)}** is not an audio or video file.")
    if size == 0:
        raise UserError("That file is empty: there is nothing to transcribe.")
    if size > max_download_bytes:
        raise UserError(f"📦 That file is {size / MB:.1f} MB; I transcribe files up to {max_download_bytes / MB:g} MB.")


def check_language(language: str | None) -> str | None:
    """The language as the API wants it (ISO 639-1, lower case), or None to let the model detect it."""
    if language is None:
        return None
    code = language.strip().lower()
    if not LANGUAGE_CODE.match(code):
        raise UserError("🌐 Give the language as a two-letter code, such as `en`, `de` or `ja`.")
    return code


def render_progress(progress: Progress) -> str | None:
    """The text shown while a transcription runs, or None when there is nothing worth an edit."""
    length = f"{format_duration(progress.seconds)} of audio" if progress.seconds else "the audio"
    if progress.stage is Stage.CONVERTING:
        return f"🎛️ Converting {length}…"
    if progress.pieces > 1:
        return f"🎧 Transcribing {length}: piece {progress.piece} of {progress.pieces}…"
    return None


def render_transcript(transcript: Transcript, subject: str, filename: str) -> TranscriptView:
    """A transcript as messages of at most 2000 characters, or a preview and a .txt file when it is long."""
    header = f"-# 📝 Transcript of {subject} · {format_duration(transcript.seconds)}"
    text = transcript.text.strip()
    if not text:
        return TranscriptView([f"🔇 I couldn't hear any speech in {subject}."])
    body = discord.utils.escape_markdown(text)
    if len(header) + 1 + len(body) <= FILE_THRESHOLD:
        # Transcripts are mostly one long line: split the body on its own so the header shares its first message.
        first, *rest = split_message(body, MESSAGE_LIMIT - len(header) - 1)
        return TranscriptView([f"{header}\n{first}", *rest])
    preview = discord.utils.escape_markdown(truncate(text, PREVIEW_CHARS))
    note = f"-# {count(len(text), 'character')}: the whole transcript is attached."
    return TranscriptView([f"{header}\n{preview}\n{note}"], f"{upload_stem(filename)}-transcript.txt", text)


def describe_subject(filename: str, *, voice: bool) -> str:
    """How a transcript names what it transcribed."""
    return "this voice message" if voice else f"**{discord.utils.escape_markdown(filename)}**"


def media_attachment(message: discord.Message) -> discord.Attachment | None:
    """The message's voice recording, else its first audio or video attachment."""
    for attachment in message.attachments:
        if attachment.is_voice_message():
            return attachment
    for attachment in message.attachments:
        extension = PurePosixPath(attachment.filename).suffix.lower().removeprefix(".")
        if (attachment.content_type or "").startswith(("audio/", "video/")) or extension in MEDIA_EXTENSIONS:
            return attachment
    return None
