"""Audio: checking files, converting and splitting long recordings, and transcribing against the fake API."""

from __future__ import annotations

import array
import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import av
import pytest

from bot import audio
from bot.api import OpenAIClient
from bot.audio import (
    DIRECT_FORMATS,
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
    measure_recording,
    probe_recording,
    prompt_tail,
    quietest_cut,
    upload_stem,
)
from bot.errors import ApiError, ApiErrorKind, UserError
from bot.jobs import JobRunner, JobsStopped, TooManyJobs
from tests.fakes.audio_fixtures import mp3_file, mp4_video, silent_video, tone, voice_message, wav_file
from tests.fakes.openai_server import FakeOpenAI, TranscriptReply, quota_exhausted

KEY = "sk-test-key"
MODEL = "gpt-transcribe"
MEMBER = 42
OGG_OPUS = DIRECT_FORMATS["ogg"]
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


def repeated_opus(seconds: float, *, step: int | None = None, container: str = "ogg", live: bool = False) -> bytes:
    """Ogg (or WebM) holding one real Opus packet again and again: hours of audio for the price of a copy.

    Each packet holds 20 ms; `step` (in 48 kHz samples) spaces their timestamps otherwise, so the header
    tells another length than the sound; `live` WebM states no length at all, as browsers record it.
    """
    with av.open(io.BytesIO(voice_message(0.2))) as source:
        stream = source.streams.audio[0]
        packet_data = bytes(next(packet for packet in source.demux(stream) if packet.size))
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=container, options={"live": "1"} if live else {}) as out:
            copy = out.add_stream_from_template(stream)
            spacing = step if step is not None else 960
            for index in range(round(seconds / 0.02)):
                packet = av.Packet(packet_data)
                packet.stream = copy
                packet.time_base = stream.time_base
                packet.pts = packet.dts = index * spacing
                packet.duration = spacing
                out.mux(packet)
    return buffer.getvalue()


def long_opus(seconds: float) -> bytes:
    """A low-bitrate Ogg/Opus file of `seconds`, built without encoding it: 120 ms packets of about 90 bytes."""
    encoded = io.BytesIO()
    with av.open(encoded, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48_000, layout="mono", options={"frame_duration": "120"})
        stream.bit_rate = 6_000
        samples = tone(0.6, 48_000)
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(samples))
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate, frame.pts = 48_000, 0
        out.mux([*stream.encode(frame), *stream.encode(None)])
    with av.open(io.BytesIO(encoded.getvalue())) as source:
        template = source.streams.audio[0]
        packet_data = bytes([packet for packet in source.demux(template) if packet.size][1])
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="ogg") as out:
            copy = out.add_stream_from_template(template)
            for index in range(round(seconds / 0.12)):
                packet = av.Packet(packet_data)
                packet.stream = copy
                packet.time_base = template.time_base
                packet.pts = packet.dts = index * 5760
                packet.duration = 5760
                out.mux(packet)
    return buffer.getvalue()


@pytest.fixture
async def jobs() -> AsyncIterator[JobRunner]:
    runner = JobRunner(workers=1)
    runner.start()
    yield runner
    runner.stop()


@pytest.fixture
async def transcriber(fake_openai: FakeOpenAI, jobs: JobRunner) -> AsyncIterator[Transcriber]:
    async with aiohttp.ClientSession() as session:
        api = OpenAIClient(session, base_url=fake_openai.base_url, api_key=KEY, timeout_seconds=5, max_retries=0)
        yield Transcriber(api, jobs)


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
    probe = probe_recording(recording)
    assert probe.direct == OGG_OPUS
    upload = measure_recording(recording, "voice-message.ogg", OGG_OPUS)
    assert upload == Upload(recording, "voice-message.ogg", "audio/ogg", pytest.approx(3.0, abs=0.05))


def test_an_mp3_is_uploaded_as_it_is_whatever_its_name_says() -> None:
    recording = mp3_file(2.0)
    probe = probe_recording(recording)
    assert probe.direct is not None
    upload = measure_recording(recording, "song.bin", probe.direct)
    assert upload is not None
    assert (upload.filename, upload.content_type) == ("song.mp3", "audio/mpeg")


def test_a_video_is_converted_to_its_sound_track() -> None:
    assert probe_recording(mp4_video(3.0)).direct is None
    [piece] = convert_recording(mp4_video(3.0), "clip.mp4")
    assert (piece.filename, piece.content_type) == ("clip.ogg", "audio/ogg")
    seconds, codec, channels = decoded_seconds(piece)
    assert (codec, channels) == ("opus", 1)
    assert seconds == pytest.approx(3.0, abs=0.05)


def test_a_video_without_sound_is_refused() -> None:
    with pytest.raises(NoSoundTrack):
        probe_recording(silent_video())


def test_the_header_tells_the_length_without_decoding() -> None:
    started = time.process_time()
    probe = probe_recording(long_opus(150 * 60))
    assert probe.seconds == pytest.approx(150 * 60, abs=1)
    assert probe.direct is None  # over the upload's 1400 s: it would be converted
    assert time.process_time() - started < 1


def test_a_file_whose_header_states_no_length_is_measured_by_its_packets() -> None:
    recording = repeated_opus(20.0, container="webm", live=True)
    with av.open(io.BytesIO(recording)) as container:
        assert container.duration is None  # as browsers record WebM
    assert probe_recording(recording).seconds == pytest.approx(20.0, abs=0.05)


def test_a_file_of_countless_packets_and_no_stated_length_is_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "MAX_PROBE_PACKETS", 100)
    with pytest.raises(UnreadableAudio):
        probe_recording(repeated_opus(3.0, container="webm", live=True))  # 150 packets


@pytest.mark.parametrize(
    "content",
    [b"Meeting notes: nothing happened.\n" * 50, bytes(4096), b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(300)],
    ids=["text", "zeros", "mp3-header-only"],
)
def test_a_file_that_does_not_decode_is_unreadable(content: bytes) -> None:
    with pytest.raises(UnreadableAudio, match="couldn't read"):
        probe_recording(content)


def test_a_recording_over_the_length_limit_is_refused_before_converting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "MAX_AUDIO_SECONDS", 2)
    with pytest.raises(AudioTooLong, match="3 s long; I transcribe up to 2 s"):
        probe_recording(voice_message(3.0))


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
        recording, "voice-message.ogg", owner=MEMBER, model=MODEL, language="en", prompt="Names: Ana."
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
        wav_file(tone(5.0)), "talk.wav", owner=MEMBER, model=MODEL, prompt="Glossary: Ana.", on_progress=note
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
        await transcriber.transcribe(make_content(), "upload.mp4", owner=MEMBER, model=MODEL)
    assert fake_openai.requests_to(TRANSCRIPTIONS) == []


async def test_an_api_error_reaches_the_caller(transcriber: Transcriber, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(TRANSCRIPTIONS, quota_exhausted())
    with pytest.raises(ApiError) as raised:
        await transcriber.transcribe(voice_message(1.0), "voice-message.ogg", owner=MEMBER, model=MODEL)
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


# The budget is checked with the header's length before any decoding


class Budget:
    """A before_upload hook standing in for the daily audio budget: it notes each length and refuses past 60 min."""

    def __init__(self, minutes: float = 60) -> None:
        self.seconds = minutes * 60
        self.asked: list[float] = []
        self.events: list[str] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.events.append("budget")
        if seconds > self.seconds:
            raise UserError(f"📊 That needs {seconds / 60:.0f} minutes of audio; you have 60 left today.")

    async def progress(self, step: Progress) -> None:
        self.events.append(step.stage.value)


async def test_150_minutes_are_refused_by_the_budget_before_any_conversion(
    transcriber: Transcriber, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = long_opus(150 * 60)  # 6.8 MB: converting it takes 20 to 60 s of CPU
    conversions: list[str] = []
    monkeypatch.setattr(audio, "convert_recording", lambda *args: conversions.append("converted") or [])
    budget = Budget()
    started = time.process_time()
    with pytest.raises(UserError, match="That needs 150 minutes of audio"):
        await transcriber.transcribe(recording, "lecture.ogg", owner=MEMBER, model=MODEL, before_upload=budget)
    assert time.process_time() - started < 0.5
    assert budget.asked == [pytest.approx(150 * 60, abs=1)]
    assert conversions == []
    assert fake_openai.requests_to(TRANSCRIPTIONS) == []


async def test_the_budget_hears_the_headers_length_before_converting(
    transcriber: Transcriber, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("A tone."))
    budget = Budget()
    await transcriber.transcribe(
        mp4_video(3.0), "clip.mp4", owner=MEMBER, model=MODEL, on_progress=budget.progress, before_upload=budget
    )
    assert budget.events[:2] == ["budget", "converting"]
    assert budget.asked[0] == pytest.approx(3.0, abs=0.1)


async def test_a_header_that_understates_the_length_is_held_at_the_measured_length(
    transcriber: Transcriber, fake_openai: FakeOpenAI
) -> None:
    recording = repeated_opus(6.0, step=96)  # the header says 0.6 s; the packets hold about 5 s
    budget = Budget(minutes=2 / 60)
    with pytest.raises(UserError, match="That needs"):
        await transcriber.transcribe(recording, "voice-message.ogg", owner=MEMBER, model=MODEL, before_upload=budget)
    header, measured = budget.asked
    assert header == pytest.approx(probe_recording(recording).seconds)
    assert header < 1
    assert measured > 4
    assert fake_openai.requests_to(TRANSCRIPTIONS) == []


async def test_audio_work_waits_its_turn_in_the_job_runner_as_the_member(
    transcriber: Transcriber, jobs: JobRunner, fake_openai: FakeOpenAI
) -> None:
    release = threading.Event()
    busy = [asyncio.ensure_future(jobs.run(release.wait, 5, owner=MEMBER, cost=1, label="busy")) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(TooManyJobs, match="You already have 2 files being processed"):
        await transcriber.transcribe(voice_message(1.0), "voice-message.ogg", owner=MEMBER, model=MODEL)
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Someone else."))
    other = asyncio.ensure_future(transcriber.transcribe(voice_message(1.0), "voice-message.ogg", owner=7, model=MODEL))
    release.set()
    assert (await other).text == "Someone else."
    await asyncio.gather(*busy)


async def test_a_transcription_asked_for_while_the_bot_stops_is_refused(
    transcriber: Transcriber, jobs: JobRunner, fake_openai: FakeOpenAI
) -> None:
    jobs.stop()
    with pytest.raises(JobsStopped):
        await transcriber.transcribe(voice_message(1.0), "voice-message.ogg", owner=MEMBER, model=MODEL)
    assert fake_openai.requests_to(TRANSCRIPTIONS) == []


async def test_a_conversion_under_way_stops_when_the_bot_stops(transcriber: Transcriber, jobs: JobRunner) -> None:
    converting = asyncio.Event()

    async def progress(step: Progress) -> None:
        if step.stage is Stage.CONVERTING:
            converting.set()

    task = asyncio.ensure_future(
        transcriber.transcribe(long_opus(150 * 60), "lecture.ogg", owner=MEMBER, model=MODEL, on_progress=progress)
    )
    await converting.wait()
    await asyncio.sleep(0.1)  # well into the 20 s or more the conversion takes
    jobs.stop()
    with pytest.raises(JobsStopped):
        await task
    assert await asyncio.to_thread(jobs.join, 1.0)  # the worker left the conversion at its next packet
