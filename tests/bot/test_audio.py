"""Audio: checking files, converting and splitting long recordings, and transcribing against the fake API."""

from __future__ import annotations

import array
import io
import threading
from collections.abc import AsyncIterator, Callable

import aiohttp
import av
import pytest

from bot import audio
from bot.api import OpenAIClient
from bot.audio import (
    AudioTooLong,
    ConversionStopped,
    NoSoundTrack,
    Progress,
    Stage,
    Transcriber,
    UnreadableAudio,
    Upload,
    convert_recording,
    format_duration,
    inspect_recording,
    prompt_tail,
    quietest_cut,
    upload_stem,
)
from bot.errors import ApiError, ApiErrorKind, UserError
from tests.fakes.audio_fixtures import mp3_file, mp4_video, silent_video, tone, voice_message, wav_file
from tests.fakes.openai_server import FakeOpenAI, TranscriptReply, quota_exhausted

KEY = "sk-test-key"
MODEL = "gpt-transcribe"
TRANSCRIPTIONS = "/audio/transcriptions"
HALF_HOUR = 30 * 60
# The half-hour test recording goes quiet here, 19 min 40 s in: inside the search window of the first cut.
PAUSE = (19 * 60 + 40, 19 * 60 + 41)


def decoded_seconds(upload: Upload) -> tuple[float, str, int]:
    """Decode an upload the way the server would: its length, codec and channel count."""
    with av.open(io.BytesIO(upload.data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.sample_rate, stream.codec_context.name, stream.codec_context.channels


@pytest.fixture(scope="module")
def half_hour_pieces() -> list[Upload]:
    """A 30-minute, 28.8 MB WAV (over both upload limits) converted once for the tests that look at its pieces."""
    recording = wav_file(tone(HALF_HOUR, 8_000, silences=[PAUSE]), 8_000)
    assert len(recording) > audio.MAX_UPLOAD_BYTES
    return convert_recording(recording, "Team meeting (March).wav")


@pytest.fixture
async def transcriber(fake_openai: FakeOpenAI) -> AsyncIterator[Transcriber]:
    async with aiohttp.ClientSession() as session:
        api = OpenAIClient(session, base_url=fake_openai.base_url, api_key=KEY, timeout_seconds=5, max_retries=0)
        yield Transcriber(api)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Limits scaled down so a few seconds of audio takes the long-recording path in three pieces."""
    monkeypatch.setattr(audio, "MAX_UPLOAD_SECONDS", 2)
    monkeypatch.setattr(audio, "MAX_PIECE_SECONDS", 2)
    monkeypatch.setattr(audio, "CUT_SEARCH_SECONDS", 1)
    monkeypatch.setattr(audio, "MIN_LAST_PIECE_SECONDS", 0)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0 s"), (45, "45 s"), (187, "3 min 07 s"), (3720, "1 h 02 min"), (3 * 3600, "3 h 00 min")],
)
def test_durations_read_naturally(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


@pytest.mark.parametrize(
    ("filename", "stem"),
    [("voice-message.ogg", "voice-message"), ("My talk (v2).mp3", "My-talk-v2"), ("¿¿.wav", "audio"), ("x", "x")],
)
def test_upload_names_keep_only_safe_characters(filename: str, stem: str) -> None:
    assert upload_stem(filename) == stem


def test_prompt_tail_starts_at_a_word_and_keeps_the_end() -> None:
    text = " ".join(f"word{number}" for number in range(500))
    tail = prompt_tail(text, limit=100)
    assert len(tail) <= 100
    assert tail.endswith("word499")
    assert text.endswith(" " + tail)


def test_prompt_tail_keeps_a_short_text_whole() -> None:
    assert prompt_tail("  Hello there.  ") == "Hello there."


def test_quietest_cut_lands_in_the_pause() -> None:
    rate = 1000
    samples = tone(10, rate, silences=[(6.2, 6.5)])
    cut = quietest_cut(samples.tobytes(), 5 * rate, 8 * rate, rate)
    assert 6.2 * rate <= cut <= 6.5 * rate


def test_quietest_cut_without_a_pause_stays_near_the_end() -> None:
    rate = 1000
    samples = array.array("h", [1000, -1000] * 5 * rate)  # a steady signal: every block is as loud
    assert 9.8 * rate <= quietest_cut(samples.tobytes(), 8 * rate, 10 * rate, rate) <= 10 * rate


def test_a_voice_message_is_uploaded_as_it_is() -> None:
    recording = voice_message(3.0)
    result = inspect_recording(recording, "voice-message.ogg")
    assert result.direct_upload == Upload(recording, "voice-message.ogg", "audio/ogg", result.seconds)
    assert result.seconds == pytest.approx(3.0, abs=0.05)


def test_an_mp3_is_uploaded_as_it_is_whatever_its_name_says() -> None:
    result = inspect_recording(mp3_file(2.0), "song.bin")
    assert result.direct_upload is not None
    assert (result.direct_upload.filename, result.direct_upload.content_type) == ("song.mp3", "audio/mpeg")


def test_a_video_is_converted_to_its_sound_track() -> None:
    assert inspect_recording(mp4_video(3.0), "clip.mp4").direct_upload is None
    [piece] = convert_recording(mp4_video(3.0), "clip.mp4")
    assert (piece.filename, piece.content_type) == ("clip.ogg", "audio/ogg")
    seconds, codec, channels = decoded_seconds(piece)
    assert (codec, channels) == ("opus", 1)
    assert seconds == pytest.approx(3.0, abs=0.05)


def test_a_video_without_sound_is_refused() -> None:
    with pytest.raises(NoSoundTrack):
        inspect_recording(silent_video(), "screen.mp4")


@pytest.mark.parametrize(
    "content",
    [b"Meeting notes: nothing happened.\n" * 50, bytes(4096), b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(300)],
    ids=["text", "zeros", "mp3-header-only"],
)
def test_a_file_that_does_not_decode_is_unreadable(content: bytes) -> None:
    with pytest.raises(UnreadableAudio, match="couldn't read"):
        inspect_recording(content, "recording.mp3")


def test_a_recording_over_the_length_limit_is_refused_before_converting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "MAX_AUDIO_SECONDS", 2)
    with pytest.raises(AudioTooLong, match="3 s long; I transcribe up to 2 s"):
        inspect_recording(voice_message(3.0), "voice-message.ogg")


def test_conversion_itself_enforces_the_length_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "MAX_AUDIO_SECONDS", 2)
    with pytest.raises(AudioTooLong):
        convert_recording(wav_file(tone(3.0)), "long.wav")


def test_half_an_hour_becomes_pieces_within_the_limits(half_hour_pieces: list[Upload]) -> None:
    assert len(half_hour_pieces) == 2
    for piece in half_hour_pieces:
        assert len(piece.data) <= audio.MAX_UPLOAD_BYTES
        assert piece.seconds <= audio.MAX_PIECE_SECONDS
        assert (piece.filename, piece.content_type) == ("Team-meeting-March.ogg", "audio/ogg")
    assert sum(piece.seconds for piece in half_hour_pieces) == pytest.approx(HALF_HOUR, abs=0.01)


def test_pieces_decode_to_mono_opus_of_their_stated_length(half_hour_pieces: list[Upload]) -> None:
    for piece in half_hour_pieces:
        seconds, codec, channels = decoded_seconds(piece)
        assert (codec, channels) == ("opus", 1)
        assert seconds == pytest.approx(piece.seconds, abs=0.05)


def test_the_first_piece_ends_in_the_pause(half_hour_pieces: list[Upload]) -> None:
    assert PAUSE[0] <= half_hour_pieces[0].seconds <= PAUSE[1]


async def test_a_voice_message_is_sent_as_voice_message_ogg(transcriber: Transcriber, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Hello from the park."))
    recording = voice_message(2.0)
    transcript = await transcriber.transcribe(
        recording, "voice-message.ogg", model=MODEL, language="en", prompt="Names: Ana."
    )
    assert transcript.text == "Hello from the park."
    assert (transcript.pieces, transcript.seconds) == (1, pytest.approx(2.0, abs=0.05))
    [sent] = fake_openai.requests_to(TRANSCRIPTIONS)
    assert sent.files["file"] == ("voice-message.ogg", "audio/ogg", recording)
    assert sent.fields == {"model": MODEL, "response_format": "json", "language": "en", "prompt": "Names: Ana."}


@pytest.mark.usefixtures("small_pieces")
async def test_a_long_recording_is_sent_in_order_each_piece_prompted_with_the_last(
    transcriber: Transcriber, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(
        TRANSCRIPTIONS, TranscriptReply("One two."), TranscriptReply("Three four."), TranscriptReply("Five.")
    )
    progress: list[Progress] = []

    async def note(step: Progress) -> None:
        progress.append(step)

    transcript = await transcriber.transcribe(
        wav_file(tone(5.0)), "talk.wav", model=MODEL, prompt="Glossary: Ana.", on_progress=note
    )
    assert transcript.text == "One two. Three four. Five."
    assert transcript.pieces == 3
    assert transcript.seconds == pytest.approx(5.0, abs=0.01)
    sent = fake_openai.requests_to(TRANSCRIPTIONS)
    assert [request.files["file"][0] for request in sent] == ["talk.ogg"] * 3
    assert [request.fields.get("prompt") for request in sent] == [
        "Glossary: Ana.",
        "Glossary: Ana. One two.",
        "Glossary: Ana. Three four.",
    ]
    assert [(step.stage, step.piece, step.pieces) for step in progress] == [
        (Stage.CONVERTING, 1, 1),
        (Stage.TRANSCRIBING, 1, 3),
        (Stage.TRANSCRIBING, 2, 3),
        (Stage.TRANSCRIBING, 3, 3),
    ]


@pytest.mark.parametrize(
    ("make_content", "error"),
    [(bytes, UserError), (lambda: b"just some text, honestly" * 20, UnreadableAudio), (silent_video, NoSoundTrack)],
    ids=["empty", "not-media", "no-sound"],
)
async def test_bad_input_is_refused_without_calling_the_api(
    transcriber: Transcriber, fake_openai: FakeOpenAI, make_content: Callable[[], bytes], error: type[UserError]
) -> None:
    with pytest.raises(error):
        await transcriber.transcribe(make_content(), "upload.mp4", model=MODEL)
    assert fake_openai.requests_to(TRANSCRIPTIONS) == []


async def test_an_api_error_reaches_the_caller(transcriber: Transcriber, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(TRANSCRIPTIONS, quota_exhausted())
    with pytest.raises(ApiError) as raised:
        await transcriber.transcribe(voice_message(1.0), "voice-message.ogg", model=MODEL)
    assert raised.value.kind is ApiErrorKind.QUOTA_EXHAUSTED


def test_a_conversion_stops_at_once_when_the_bot_is_closing() -> None:
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(ConversionStopped):
        convert_recording(wav_file(tone(3.0)), "long.wav", stopping)


def test_a_recording_just_over_the_piece_limit_leaves_no_sliver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "MAX_UPLOAD_SECONDS", 2)
    monkeypatch.setattr(audio, "MAX_PIECE_SECONDS", 2)
    monkeypatch.setattr(audio, "CUT_SEARCH_SECONDS", 1)
    monkeypatch.setattr(audio, "MIN_LAST_PIECE_SECONDS", 0.4)
    pieces = convert_recording(wav_file(tone(4.02)), "steady.wav")  # no pause to cut at: cuts fall early
    assert all(0.4 <= piece.seconds <= 2 for piece in pieces)
    assert sum(piece.seconds for piece in pieces) == pytest.approx(4.02, abs=0.05)
