"""The transcription cog's pure parts: checks made before downloading, progress and transcript rendering."""

from __future__ import annotations

import pytest

from bot.audio import Progress, Stage, Transcript
from bot.errors import UserError
from bot.render import MESSAGE_LIMIT
from bot.transcripts import FILE_THRESHOLD, check_language, check_media, render_progress, render_transcript

MB = 1_000_000


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("talk.mp3", "audio/mpeg"), ("clip.MOV", None), ("voice.opus", "application/octet-stream"), ("x", "video/mp4")],
)
def test_audio_and_video_pass_by_type_or_extension(filename: str, content_type: str | None) -> None:
    check_media(filename, content_type, 1000, max_download_bytes=100 * MB)


@pytest.mark.parametrize(
    ("filename", "content_type", "size", "refusal"),
    [
        ("notes.txt", "text/plain; charset=utf-8", 10, "**notes.txt** is not an audio or video file."),
        ("photo.png", "image/png", 10, "**photo.png** is not an audio or video file."),
        ("empty.ogg", "audio/ogg", 0, "That file is empty: there is nothing to transcribe."),
        ("film.mkv", "video/x-matroska", 131 * MB, "📦 That file is 131.0 MB; I transcribe files up to 100 MB."),
    ],
)
def test_bad_files_are_refused_with_the_reason(filename: str, content_type: str, size: int, refusal: str) -> None:
    with pytest.raises(UserError) as raised:
        check_media(filename, content_type, size, max_download_bytes=100 * MB)
    assert refusal in str(raised.value)


def test_a_file_of_exactly_the_download_limit_passes() -> None:
    check_media("long.mp3", "audio/mpeg", 100 * MB, max_download_bytes=100 * MB)


@pytest.mark.parametrize(("given", "sent"), [(None, None), ("en", "en"), (" DE ", "de")])
def test_languages_are_sent_as_lower_case_codes(given: str | None, sent: str | None) -> None:
    assert check_language(given) == sent


@pytest.mark.parametrize("given", ["english", "e1", "en-US"])
def test_a_language_that_is_not_a_two_letter_code_is_refused(given: str) -> None:
    with pytest.raises(UserError, match="two-letter code"):
        check_language(given)


@pytest.mark.parametrize(
    ("progress", "shown"),
    [
        (Progress(Stage.CONVERTING, 3720.0), "🎛️ Converting 1 h 02 min of audio…"),
        (Progress(Stage.CONVERTING, 0.0), "🎛️ Converting the audio…"),
        (Progress(Stage.TRANSCRIBING, 3720.0, 2, 4), "🎧 Transcribing 1 h 02 min of audio: piece 2 of 4…"),
        (Progress(Stage.TRANSCRIBING, 30.0, 1, 1), None),
    ],
)
def test_progress_names_the_piece_of_how_many(progress: Progress, shown: str | None) -> None:
    assert render_progress(progress) == shown


def test_a_short_transcript_is_one_message_with_markdown_escaped() -> None:
    view = render_transcript(Transcript("I said *this* and __that__.", 5.0, 1), "**a.mp3**", "a.mp3")
    assert view.messages == ["-# 📝 Transcript of **a.mp3** · 5 s\nI said \\*this\\* and \\_\\_that\\_\\_."]
    assert view.file_name is None


def test_a_transcript_past_one_message_is_split_without_losing_words() -> None:
    text = " ".join(f"word{number}" for number in range(300))  # ~2,300 characters on one line
    view = render_transcript(Transcript(text, 60.0, 1), "**a.mp3**", "a.mp3")
    assert len(view.messages) == 2
    assert all(len(message) <= MESSAGE_LIMIT for message in view.messages)
    header = "-# 📝 Transcript of **a.mp3** · 1 min 00 s\n"
    assert view.messages[0].startswith(header)
    assert " ".join(view.messages).removeprefix(header).split() == text.split()


def test_a_transcript_past_the_threshold_is_a_file_with_a_preview() -> None:
    text = "Budget talk. " * (FILE_THRESHOLD // 10)
    view = render_transcript(Transcript(text, 600.0, 1), "**Q3 review.m4a**", "Q3 review.m4a")
    assert (view.file_name, view.file_text) == ("Q3-review-transcript.txt", text.strip())
    [message] = view.messages
    assert len(message) < 600
    assert message.startswith("-# 📝 Transcript of **Q3 review.m4a** · 10 min 00 s\nBudget talk. Budget talk.")


def test_silence_says_no_speech_was_heard() -> None:
    view = render_transcript(Transcript("  ", 4.0, 1), "this voice message", "voice-message.ogg")
    assert view.messages == ["🔇 I couldn't hear any speech in this voice message."]
