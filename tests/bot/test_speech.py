"""Spoken answers: Markdown to speakable text, splitting, synthesis against the fake API, the recording itself."""

from __future__ import annotations

import array
import asyncio
import base64
import io
import math
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import av
import pytest
from aiohttp import web

from bot.api import OpenAIClient
from bot.audio import ConversionStopped
from bot.errors import ApiError, ApiErrorKind
from bot.speech import (
    MAX_INPUT_CHARS,
    NothingToSay,
    SpokenAnswer,
    cut_note,
    speakable_text,
    split_for_speech,
    synthesize,
)
from bot.voice_recording import SAMPLE_RATE, VoiceRecording, encode_voice_recording
from tests.fakes.audio_fixtures import encoded_file, wav_file
from tests.fakes.openai_server import (
    FakeOpenAI,
    Hang,
    SpeechReply,
    quota_exhausted,
    server_error,
    speech_audio,
)

KEY = "sk-test-key"
SPEECH = "/audio/speech"
MODEL = "gpt-4o-mini-tts"
FRAME = 0.02  # one Opus frame
SENTENCE = "The quick brown fox jumps over the lazy dog while the band plays on. "  # 68 characters


@pytest.fixture
async def api(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIClient]:
    async with aiohttp.ClientSession() as session:
        yield OpenAIClient(session, base_url=fake_openai.base_url, api_key=KEY, timeout_seconds=1, max_retries=0)


async def speak(api: OpenAIClient, text: str, *, max_seconds: float = 600, **options: object) -> SpokenAnswer:
    settings: dict[str, object] = {"model": MODEL, "voice": "alloy", "instructions": "Speak warmly.", **options}
    return await synthesize(api, text, max_seconds=max_seconds, **settings)  # type: ignore[arg-type]


def decoded(recording: VoiceRecording) -> tuple[str, int, int, float]:
    """What a listener's client finds in the file: codec, sample rate, channels and the decoded length."""
    with av.open(io.BytesIO(recording.data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return (
            stream.codec_context.name,
            stream.sample_rate,
            stream.codec_context.channels,
            samples / stream.sample_rate,
        )


def levels(recording: VoiceRecording) -> bytes:
    return base64.b64decode(recording.waveform)


def pattern(spans: list[tuple[float, float]], rate: int = 16_000) -> array.array[int]:
    """A 440 Hz tone made of (seconds, loudness as a fraction of full scale) spans; loudness 0 is silence."""
    samples = array.array("h")
    for seconds, loudness in spans:
        samples.extend(
            round(32767 * loudness * math.sin(2 * math.pi * 440 * i / rate)) for i in range(round(seconds * rate))
        )
    return samples


# What a voice reads


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        ("Try this:\n```python\nprint('hi')\n```\nThen run it.", "Try this:\n(code block).\nThen run it."),
        ("Run `pip install snake_case_pkg` first.", "Run pip install snake_case_pkg first."),
        ("See [the guide](https://example.com/guide) for more.", "See the guide for more."),
        ("Details: https://example.com/a/b?c=d.", "Details: a link."),
        ("Ask <@123> or <@!124> in <#456>, or ping <@&789>.", "Ask someone or someone in a channel, or ping a role."),
        ("Well done <:party_parrot:111> <a:dance:222>!", "Well done !"),
        ("## Steps\n- Open the app\n* Tap **Settings**\n1. Done", "Steps.\nOpen the app.\nTap Settings.\n1. Done."),
        ("> A *quoted*, _slanted_, ~~struck~~ and ||hidden|| line", "A quoted, slanted, struck and hidden line."),
        ("The answer is 42.\n-# Answered by gpt-5-mini · 120 tokens", "The answer is 42."),
        ("| Name | Age |\n|------|-----|\n| Ana | 31 |", "Name, Age.\nAna, 31."),
        (
            "We meet <t:1700000000:f>, or on <t:1700000000:D>.",
            "We meet 14 November 2023 at 22:13 UTC, or on 14 November 2023.",
        ),
        ("Not \\*italic\\* but snake_case_name.", "Not *italic* but snake_case_name."),
    ],
    ids=[
        "code-block",
        "inline-code",
        "link",
        "bare-url",
        "mentions",
        "custom-emoji",
        "heading-and-lists",
        "quote-and-emphasis",
        "notes",
        "table",
        "timestamps",
        "escapes",
    ],
)
def test_markdown_is_read_as_words(markdown: str, spoken: str) -> None:
    assert speakable_text(markdown) == spoken


@pytest.mark.parametrize("markdown", ["```py\nx = 1\n```\n-# Answered by gpt-5-mini", "<https://example.com>", " \n "])
def test_an_answer_of_only_code_links_or_notes_has_nothing_to_read(markdown: str) -> None:
    assert speakable_text(markdown) == ""


async def test_nothing_to_read_is_refused_without_calling_the_api(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    with pytest.raises(NothingToSay, match="There is nothing to read aloud"):
        await speak(api, "```py\nprint(1)\n```")
    assert fake_openai.requests_to(SPEECH) == []


# Splitting for the endpoint's 4096-character limit


def test_a_6000_character_answer_becomes_two_pieces_cut_after_a_sentence() -> None:
    text = SENTENCE * 89  # 6052 characters
    first, second = split_for_speech(text)
    assert len(first) <= MAX_INPUT_CHARS and first.endswith("plays on.")
    assert len(first) > MAX_INPUT_CHARS - len(SENTENCE)  # as full as whole sentences allow
    assert f"{first} {second}" == text.strip()


def test_a_sentence_longer_than_the_limit_is_cut_after_a_clause() -> None:
    monster = "and then it rained for a while, " * 200  # 6400 characters without a full stop
    pieces = split_for_speech(monster, limit=1000)
    assert all(len(piece) <= 1000 and piece.endswith(",") for piece in pieces[:-1])
    assert " ".join(pieces) == monster.strip()


def test_a_text_without_clauses_is_cut_between_words_and_a_huge_word_inside() -> None:
    words = split_for_speech("word " * 300, limit=100)
    assert all(len(piece) <= 100 and piece.endswith("word") for piece in words)
    assert split_for_speech("x" * 250, limit=100) == ["x" * 100, "x" * 100, "x" * 50]


def test_splitting_never_gives_an_empty_piece() -> None:
    assert split_for_speech("   \n ") == []
    assert split_for_speech("One.   \n\n   Two.", limit=5) == ["One.", "Two."]


# Synthesis against the fake API


async def test_a_long_answer_is_requested_in_two_pieces_and_joined_into_one_voice_recording(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.speech_chars_per_second = 300  # 20 s of audio rather than 400 s: the same code path, faster
    answer = await speak(api, SENTENCE * 89)
    sent = [request.json for request in fake_openai.requests_to(SPEECH)]
    assert len(sent) == 2 == answer.requests
    assert all(len(body["input"]) <= MAX_INPUT_CHARS for body in sent)
    assert sent[0] == {
        "model": MODEL,
        "input": sent[0]["input"],
        "voice": "alloy",
        "instructions": "Speak warmly.",
        "response_format": "opus",
    }
    assert answer.characters == sum(len(body["input"]) for body in sent)
    assert not answer.cut
    codec, rate, channels, seconds = decoded(answer.recording)
    assert (codec, rate, channels) == ("opus", 48_000, 1)
    assert seconds == pytest.approx(answer.recording.duration_secs, abs=FRAME)
    expected = sum(fake_openai.speech_seconds(body["input"]) for body in sent)
    assert answer.recording.duration_secs == pytest.approx(expected, abs=2 * FRAME)


def test_the_recording_is_encoded_at_about_32_kbps() -> None:
    # Opus varies its rate with the sound (pauses cost little): noise shows the ceiling it aims at.
    rng = random.Random(1)
    noise = array.array("h", (rng.randint(-8000, 8000) for _ in range(16_000 * 10)))
    recording = encode_voice_recording([wav_file(noise)], max_seconds=60)
    kbps = len(recording.data) * 8 / recording.duration_secs / 1000
    assert 24 <= kbps <= 40


async def test_tts_1_is_sent_no_instructions(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    await speak(api, "Hello there.", model="tts-1")
    [sent] = fake_openai.requests_to(SPEECH)
    assert "instructions" not in sent.json
    assert sent.json["model"] == "tts-1"


async def test_empty_instructions_are_left_out(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    await speak(api, "Hello there.", instructions=None)
    assert "instructions" not in fake_openai.requests_to(SPEECH)[0].json


async def test_what_is_read_is_the_speakable_text(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    answer = await speak(api, "**Hi** <@123>, see https://example.com\n-# Answered by gpt-5-mini")
    assert fake_openai.requests_to(SPEECH)[0].json["input"] == "Hi someone, see a link."
    assert answer.characters == len("Hi someone, see a link.")


async def test_a_server_sending_another_format_than_asked_still_works(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(SPEECH, SpeechReply(seconds=2.5, response_format="mp3"))
    answer = await speak(api, "Hello there.")
    assert answer.recording.duration_secs == pytest.approx(2.5, abs=FRAME)
    assert decoded(answer.recording)[:3] == ("opus", 48_000, 1)


async def test_a_long_answer_stops_at_the_limit_without_synthesizing_it_all(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    answer = await speak(api, SENTENCE * 20, max_seconds=3)  # 1360 characters: about 90 s at 15 a second
    assert answer.cut
    assert answer.recording.truncated
    assert answer.recording.duration_secs == pytest.approx(3, abs=FRAME)
    assert decoded(answer.recording)[3] == pytest.approx(3, abs=FRAME)
    [sent] = fake_openai.requests_to(SPEECH)
    assert answer.characters == len(sent.json["input"]) <= 200  # enough for 3 s, not for 90


async def test_a_voice_faster_than_expected_is_given_more_text_until_the_limit(
    api: OpenAIClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.speech_chars_per_second = 60  # four times the expected rate: the first piece falls short
    answer = await speak(api, SENTENCE * 40, max_seconds=10)
    sent = fake_openai.requests_to(SPEECH)
    assert len(sent) == 2
    assert fake_openai.speech_seconds(sent[0].json["input"]) < 10
    assert sum(fake_openai.speech_seconds(request.json["input"]) for request in sent) >= 10
    assert answer.cut and answer.recording.duration_secs == pytest.approx(10, abs=FRAME)


async def test_an_answer_that_fits_exactly_is_not_cut(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(SPEECH, SpeechReply(seconds=4.0))
    answer = await speak(api, "Hello there.", max_seconds=4)
    assert not answer.cut
    assert answer.recording.duration_secs == pytest.approx(4, abs=FRAME)


def test_the_cut_note_names_the_limit() -> None:
    assert cut_note(600) == "-# The answer is longer than 10 min 00 s, so the recording stops there."


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (quota_exhausted(), ApiErrorKind.QUOTA_EXHAUSTED),
        (server_error(), ApiErrorKind.SERVER_ERROR),
        (Hang(), ApiErrorKind.TIMEOUT),
    ],
    ids=["quota", "server-error", "no-answer"],
)
async def test_speech_endpoint_errors_keep_their_kinds(
    api: OpenAIClient, fake_openai: FakeOpenAI, behaviour: object, kind: ApiErrorKind
) -> None:
    fake_openai.queue(SPEECH, behaviour)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as raised:
        await speak(api, "Hello there.")
    assert raised.value.kind is kind


async def test_an_unknown_speech_model_is_named(api: OpenAIClient) -> None:
    with pytest.raises(ApiError) as raised:
        await speak(api, "Hello there.", model="tts-9")
    assert raised.value.kind is ApiErrorKind.MODEL_NOT_FOUND
    assert "`tts-9`" in raised.value.user_message()


async def test_an_unreachable_speech_server_is_reported() -> None:
    async with aiohttp.ClientSession() as session:
        api = OpenAIClient(session, base_url="http://127.0.0.1:9/v1", api_key=KEY, timeout_seconds=2, max_retries=0)
        with pytest.raises(ApiError) as raised:
            await speak(api, "Hello there.")
    assert raised.value.kind is ApiErrorKind.UNREACHABLE


async def test_an_answer_that_is_not_audio_is_a_server_error(api: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(SPEECH, SpeechReply(seconds=1.0, response_format="pcm"))  # headerless: nothing can tell it
    with pytest.raises(ApiError) as raised:
        await speak(api, "Hello there.")
    assert raised.value.kind is ApiErrorKind.SERVER_ERROR


async def test_the_encoding_runs_where_the_caller_says(api: OpenAIClient) -> None:
    ran_in: list[str] = []

    async def run_blocking(work: object) -> VoiceRecording:
        ran_in.append("runner")
        return await asyncio.to_thread(work)  # type: ignore[arg-type]

    answer = await speak(api, "Hello there.", run_blocking=run_blocking)
    assert ran_in == ["runner"] and answer.recording.duration_secs > 0


# A body that stalls or breaks off (the fake answers whole; these servers do not)


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/v1/audio/speech", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.05)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.parametrize(("breaks_off", "kind"), [(False, ApiErrorKind.TIMEOUT), (True, ApiErrorKind.SERVER_ERROR)])
async def test_a_speech_body_that_stalls_or_breaks_off_fails_cleanly(breaks_off: bool, kind: ApiErrorKind) -> None:
    async def half_an_answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/ogg", "Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"OggS" + bytes(96))
        if breaks_off and request.transport is not None:
            request.transport.close()
        else:
            await asyncio.sleep(5)
        return response

    runner = await serve(half_an_answer)
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            api = OpenAIClient(
                session, base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, timeout_seconds=0.3, max_retries=0
            )
            with pytest.raises(ApiError) as raised:
                await api.post_json_for_bytes(SPEECH, {"model": MODEL, "input": "Hi", "voice": "alloy"})
    finally:
        await runner.cleanup()
    assert raised.value.kind is kind


# The recording: length, cut, waveform


def test_pieces_in_different_formats_join_into_one_recording() -> None:
    pieces = [speech_audio(1.5, "mp3")[0], speech_audio(2.0, "wav")[0], speech_audio(1.0, "opus")[0]]
    recording = encode_voice_recording(pieces, max_seconds=60)
    assert recording.duration_secs == pytest.approx(4.5, abs=FRAME)
    assert decoded(recording) == ("opus", 48_000, 1, pytest.approx(4.5, abs=2 * FRAME))
    assert not recording.truncated


def test_the_waveform_follows_the_loudness() -> None:
    # 1 s loud, 1 s silent, 1 s at a quarter of the loudness, 1 s loud: ten waveform samples a second.
    spans = [(1.0, 0.8), (1.0, 0.0), (1.0, 0.2), (1.0, 0.8)]
    recording = encode_voice_recording([wav_file(pattern(spans))], max_seconds=60)
    waveform = levels(recording)
    assert len(waveform) == 40
    loud, silent, quiet, loud_again = (waveform[start + 1 : start + 9] for start in (0, 10, 20, 30))
    assert min(loud) >= 250 and min(loud_again) >= 250
    assert max(silent) == 0
    assert all(55 <= level <= 75 for level in quiet)  # a quarter of 255


def test_a_long_recording_has_256_waveform_samples() -> None:
    recording = encode_voice_recording([speech_audio(40, "opus")[0]], max_seconds=60)
    assert len(levels(recording)) == 256


def test_the_fake_voice_draws_syllables_and_pauses_not_a_flat_line() -> None:
    recording = encode_voice_recording([speech_audio(5, "opus")[0]], max_seconds=60)
    waveform = levels(recording)
    assert max(waveform) == 255
    assert min(waveform) <= 10  # the pauses between phrases
    assert len(set(waveform)) > 10


def test_the_recording_is_cut_exactly_at_the_limit() -> None:
    recording = encode_voice_recording([wav_file(pattern([(5.0, 0.5)]))], max_seconds=2.5)
    assert recording.truncated
    assert recording.duration_secs == 2.5
    assert decoded(recording)[3] == pytest.approx(2.5, abs=FRAME)


def test_the_duration_counts_the_samples() -> None:
    recording = encode_voice_recording([encoded_file(pattern([(1.234, 0.5)], 48_000), 48_000, "wav", "pcm_s16le")], 60)
    assert recording.duration_secs == round(1.234 * SAMPLE_RATE) / SAMPLE_RATE


def test_audio_without_sound_is_a_server_error() -> None:
    with pytest.raises(ApiError) as raised:
        encode_voice_recording([b"<html>Bad gateway</html>"], max_seconds=60)
    assert raised.value.kind is ApiErrorKind.SERVER_ERROR


def test_encoding_stops_when_the_bot_is_closing() -> None:
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(ConversionStopped):
        encode_voice_recording([speech_audio(2, "opus")[0]], max_seconds=60, stopping=stopping)
