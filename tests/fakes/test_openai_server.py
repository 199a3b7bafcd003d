"""The fakes themselves: the OpenAPI validator against the real specs, and FakeOpenAI over real HTTP."""

from __future__ import annotations

import array
import asyncio
import base64
import io
import itertools
import json
import math
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest
from aiohttp.http_exceptions import LineTooLong
from av.audio.resampler import AudioResampler
from PIL import Image

from tests.fakes.openai_server import (
    HUGE_LINE_CHARS,
    FakeOpenAI,
    Hang,
    HugeLine,
    ModerationReply,
    Reply,
    SentImage,
    SpeechReply,
    StreamCut,
    StreamError,
    rate_limited,
)
from tests.fakes.openapi import SPECS_DIR, OpenApiValidator

GOOD_CHAT_BODY: dict[str, Any] = {
    "model": "gpt-5-mini",
    "messages": [
        {"role": "developer", "content": "You are a Discord bot."},
        {"role": "user", "content": "Hello", "name": "user_1234"},
        {"role": "assistant", "content": "Hi there."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}]},
    ],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_completion_tokens": 1000,
    "safety_identifier": "3f2a9c",
    "temperature": 0.7,
}


def _load_spec(name: str, **options: bool) -> OpenApiValidator:
    """A validator for a spec file in SPECS_DIR, skipping the test when the file is absent."""
    path = SPECS_DIR / name
    if not path.exists():
        pytest.skip(f"{path} not found: the fakes run without spec validation")
    return OpenApiValidator.load(path, **options)


@pytest.fixture(scope="module")
def openai_spec() -> OpenApiValidator:
    """The OpenAI spec validator."""
    return _load_spec("openai-openapi.yaml")


@pytest.fixture(scope="module")
def discord_spec() -> OpenApiValidator:
    """The Discord spec validator, accepting integer snowflakes like discord.py sends."""
    return _load_spec("discord-openapi.json", integer_snowflakes=True)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session carrying the fake's API key."""
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer sk-test-key"}) as session:
        yield session


def _chat(content: str = "Hello", **extra: Any) -> dict[str, Any]:
    """A minimal valid chat completion request body."""
    return {"model": "gpt-5-mini", "messages": [{"role": "user", "content": content}], **extra}


async def _events(response: aiohttp.ClientResponse) -> list[str]:
    """The `data:` payloads of a server-sent event stream, read until it ends."""
    return [line[len(b"data: ") :].decode().rstrip() async for line in response.content if line.startswith(b"data: ")]


def _text(events: list[str]) -> str:
    """The text the content deltas of a chat stream add up to."""
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    return "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])


def _chunks(events: list[str]) -> list[dict[str, Any]]:
    """The JSON chunks of a chat stream."""
    return [json.loads(event) for event in events if event != "[DONE]"]


def _data_url(image_format: str, size: tuple[int, int], mime: str | None = None) -> str:
    """A picture encoded with Pillow as a data: URL, labelled with its own mime type unless told otherwise."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 30)).save(buffer, format=image_format)
    label = mime or f"image/{image_format.lower()}"
    return f"data:{label};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _with_picture(url: str, model: str = "gpt-5-mini") -> dict[str, Any]:
    """A chat body whose user message has a text part and a picture part."""
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
    ]
    return {"model": model, "messages": [{"role": "user", "content": parts}]}


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature, chunk CRCs and pixel data."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, {}
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + data), f"bad CRC in {kind!r}"
        chunks[kind] = data
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks
    return width, height


# The validator against the real specs


def test_openai_spec_accepts_a_real_world_chat_request(openai_spec: OpenApiValidator) -> None:
    assert openai_spec.check_json("POST", "/chat/completions", GOOD_CHAT_BODY) == []


def test_openai_spec_rejects_a_chat_request_without_model(openai_spec: OpenApiValidator) -> None:
    body = {key: value for key, value in GOOD_CHAT_BODY.items() if key != "model"}

    assert openai_spec.check_json("POST", "/chat/completions", body) == ["$: 'model' is a required property"]


def test_openai_spec_rejects_messages_that_are_not_a_list(openai_spec: OpenApiValidator) -> None:
    errors = openai_spec.check_json("POST", "/chat/completions", {**GOOD_CHAT_BODY, "messages": "Hello"})

    assert errors == ["$.messages: 'Hello' is not of type 'array'"]


def test_openai_spec_rejects_an_unknown_role(openai_spec: OpenApiValidator) -> None:
    body = {**GOOD_CHAT_BODY, "messages": [{"role": "robot", "content": "beep"}]}

    [error] = openai_spec.check_json("POST", "/chat/completions", body)

    assert error.startswith("$.messages[0]:") and "'robot'" in error


def test_openai_spec_rejects_an_out_of_range_temperature(openai_spec: OpenApiValidator) -> None:
    [error] = openai_spec.check_json("POST", "/chat/completions", {**GOOD_CHAT_BODY, "temperature": 3})

    assert "maximum of 2" in error


def test_unknown_path_is_one_error(openai_spec: OpenApiValidator) -> None:
    assert openai_spec.check_json("POST", "/chat/complete", {}) == ["POST /chat/complete matches no path in the spec"]


def test_multipart_form_strings_are_coerced_to_schema_types(openai_spec: OpenApiValidator) -> None:
    fields = {"model": "gpt-image-2", "prompt": "add a hat", "n": "2", "size": "1024x1024", "stream": "false"}

    assert openai_spec.check_multipart("POST", "/images/edits", fields, {"image[]": "cat.png", "mask": "m.png"}) == []


def test_multipart_reports_a_field_that_is_not_a_number(openai_spec: OpenApiValidator) -> None:
    fields = {"model": "gpt-transcribe", "temperature": "warm"}

    errors = openai_spec.check_multipart("POST", "/audio/transcriptions", fields, {"file": "voice-message.ogg"})

    assert errors == ["$.temperature: 'warm' is not of type 'number'"]


def test_multipart_requires_the_file_upload(openai_spec: OpenApiValidator) -> None:
    errors = openai_spec.check_multipart("POST", "/audio/transcriptions", {"model": "gpt-transcribe"}, {})

    assert errors == ["$: 'file' is a required property"]


def test_multipart_reports_unknown_fields_when_the_schema_forbids_them(openai_spec: OpenApiValidator) -> None:
    fields = {"model": "gpt-transcribe", "speed": "fast"}

    errors = openai_spec.check_multipart("POST", "/audio/transcriptions", fields, {"file": "voice-message.ogg"})

    assert errors == ["$: Additional properties are not allowed ('speed' was unexpected)"]


def test_discord_spec_accepts_an_integer_snowflake(discord_spec: OpenApiValidator) -> None:
    body = {"content": "Hi", "message_reference": {"message_id": 123, "fail_if_not_exists": False}}

    assert discord_spec.check_json("POST", "/channels/456/messages", body) == []


def test_discord_spec_rejects_a_wrongly_typed_field(discord_spec: OpenApiValidator) -> None:
    [error] = discord_spec.check_json("POST", "/channels/456/messages", {"content": 42})

    assert error.startswith("$.content: 42 is not of type")


def test_discord_literal_path_wins_over_a_template(discord_spec: OpenApiValidator) -> None:
    # /users/@me has PATCH; /users/{user_id} only GET, so matching the template would report "no PATCH".
    [error] = discord_spec.check_json("PATCH", "/users/@me", {"username": 42})

    assert error.startswith("$.username:")


def test_openai_spec_accepts_a_user_message_with_a_picture_part(openai_spec: OpenApiValidator) -> None:
    body = _with_picture(_data_url("JPEG", (4, 4)))

    assert openai_spec.check_json("POST", "/chat/completions", body) == []


def test_openai_spec_rejects_a_picture_part_in_a_system_message(openai_spec: OpenApiValidator) -> None:
    parts = [{"type": "image_url", "image_url": {"url": _data_url("PNG", (2, 2))}}]
    body = {"model": "gpt-5-mini", "messages": [{"role": "system", "content": parts}]}

    assert openai_spec.check_json("POST", "/chat/completions", body) != []


# FakeOpenAI over real HTTP


async def test_streamed_reply_reassembles_to_the_text_and_ends_with_done(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", Reply("A reply long enough to need several chunks."))

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_chat(stream=True)) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await _events(response)

    assert _text(events) == "A reply long enough to need several chunks."
    assert json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"


async def test_include_usage_adds_a_final_usage_chunk(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    fake_openai.queue("/chat/completions", Reply("Hi", usage=(12, 3)))
    body = _chat(stream=True, stream_options={"include_usage": True})

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=body) as response:
        events = await _events(response)

    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 12 and usage_chunk["usage"]["completion_tokens"] == 3


async def test_unscripted_chat_echoes_the_last_user_message(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_chat("ping")) as response:
        completion = await response.json()

    assert completion["choices"][0]["message"]["content"] == "Echo: ping"
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["total_tokens"] > 0


async def test_queued_rate_limit_has_retry_after_then_the_default_applies(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", rate_limited(retry_after=0.25))
    url = f"{fake_openai.base_url}/chat/completions"

    async with http.post(url, json=_chat()) as limited:
        error = (await limited.json())["error"]
    async with http.post(url, json=_chat()) as retried:
        answer = await retried.json()

    assert limited.status == 429 and limited.headers["Retry-After"] == "0.25"
    assert error["code"] == "rate_limit_exceeded"
    assert answer["choices"][0]["message"]["content"] == "Echo: Hello"


async def test_stream_cut_ends_without_done(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    fake_openai.queue("/chat/completions", StreamCut("Partial ans"))
    lines: list[bytes] = []

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_chat(stream=True)) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            async for line in response.content:
                lines.append(line)

    events = [line[len(b"data: ") :].decode().rstrip() for line in lines if line.startswith(b"data: ")]
    assert _text(events) == "Partial ans"
    assert "[DONE]" not in events


async def test_stream_error_arrives_as_an_event_after_the_text(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", StreamError("Half", "server_error", None, "Stream broke"))

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_chat(stream=True)) as response:
        events = await _events(response)

    assert _text(events[:-1]) == "Half"
    assert json.loads(events[-1]) == {
        "error": {"message": "Stream broke", "type": "server_error", "param": None, "code": None}
    }


async def test_hang_never_answers_and_close_does_not_wait_for_it(
    openai_validator: OpenApiValidator | None, http: aiohttp.ClientSession
) -> None:
    fake = FakeOpenAI(validator=openai_validator)
    await fake.start()
    fake.queue("/chat/completions", Hang())
    timeout = aiohttp.ClientTimeout(total=0.2)

    with pytest.raises(asyncio.TimeoutError):
        await http.post(f"{fake.base_url}/chat/completions", json=_chat(), timeout=timeout)
    started = time.monotonic()
    await fake.close()

    assert time.monotonic() - started < 1


async def test_images_are_pngs_of_the_requested_size(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    body = {"model": "gpt-image-2", "prompt": "a lighthouse", "n": 2, "size": "1536x1024"}

    async with http.post(f"{fake_openai.base_url}/images/generations", json=body) as response:
        images = (await response.json())["data"]

    assert [_png_size(base64.b64decode(image["b64_json"])) for image in images] == [(1536, 1024)] * 2


async def test_image_edit_accepts_repeated_image_fields(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData({"model": "gpt-image-2", "prompt": "add a hat", "size": "auto"})
    form.add_field("image[]", b"first", filename="a.png", content_type="image/png")
    form.add_field("image[]", b"second", filename="b.png", content_type="image/png")

    async with http.post(f"{fake_openai.base_url}/images/edits", data=form) as response:
        images = (await response.json())["data"]

    assert [_png_size(base64.b64decode(image["b64_json"])) for image in images] == [(1024, 1024)]
    assert fake_openai.requests_to("/images/edits")[0].files["image[]"] == ("a.png", "image/png", b"first")


async def test_transcription_names_the_uploaded_file(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData({"model": "gpt-transcribe", "response_format": "json"})
    form.add_field("file", b"OggS" + bytes(96), filename="voice-message.ogg", content_type="audio/ogg")

    async with http.post(f"{fake_openai.base_url}/audio/transcriptions", data=form) as response:
        answer = await response.json()

    assert answer["text"] == "Transcript of voice-message.ogg (100 bytes)"


async def test_unsupported_audio_filename_is_refused(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData({"model": "gpt-transcribe"})
    form.add_field("file", b"not audio", filename="notes.txt", content_type="text/plain")

    async with http.post(f"{fake_openai.base_url}/audio/transcriptions", data=form) as response:
        error = (await response.json())["error"]

    assert response.status == 400 and error["type"] == "invalid_request_error"
    assert "Invalid file format" in error["message"]


async def test_moderation_reports_the_queued_verdict(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    fake_openai.queue("/moderations", ModerationReply(flagged=True, categories=["violence"]))
    body = {"model": "omni-moderation-latest", "input": ["one", "two"]}

    async with http.post(f"{fake_openai.base_url}/moderations", json=body) as response:
        results = (await response.json())["results"]

    assert [(result["flagged"], result["categories"]["violence"]) for result in results] == [(True, True)] * 2


async def test_wrong_api_key_is_refused(fake_openai: FakeOpenAI) -> None:
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer sk-wrong"}) as http,
        http.get(f"{fake_openai.base_url}/models") as response,
    ):
        error = (await response.json())["error"]

    assert response.status == 401 and error["code"] == "invalid_api_key"


async def test_spec_invalid_chat_body_is_refused_and_recorded(
    openai_validator: OpenApiValidator | None, http: aiohttp.ClientSession
) -> None:
    if openai_validator is None:
        pytest.skip(f"{SPECS_DIR / 'openai-openapi.yaml'} not found: the fakes run without spec validation")
    fake = FakeOpenAI(validator=openai_validator)
    await fake.start()
    try:
        async with http.post(f"{fake.base_url}/chat/completions", json={"messages": []}) as response:
            error = (await response.json())["error"]
    finally:
        await fake.close()

    assert response.status == 400 and error["type"] == "invalid_request_error"
    assert fake.violations == [
        "POST /chat/completions: $: 'model' is a required property",
        "POST /chat/completions: $.messages: [] should be non-empty",
    ]


async def test_chat_rules_the_spec_does_not_encode_are_enforced(
    http: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    body = {"model": "gpt-5-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi", "name": "Zoë B"}]}
    async with http.post(f"{fake_openai.base_url}/chat/completions", json=body) as response:
        assert response.status == 400
    assert any("max_tokens" in v for v in fake_openai.violations)
    assert any("name" in v for v in fake_openai.violations)
    fake_openai.violations.clear()  # seen and checked: the fixture must not fail the test for them


# /audio/speech


def _speech(text: str = "Hello there, how are you today?", **extra: Any) -> dict[str, Any]:
    """A minimal valid speech request body."""
    return {"model": "gpt-4o-mini-tts", "input": text, "voice": "alloy", **extra}


def _decode(audio: bytes) -> tuple[str, array.array[int], int]:
    """The codec of an audio file and its sound as 16-bit mono samples at their own rate."""
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        resampler = AudioResampler(format="s16", layout="mono", rate=stream.sample_rate)
        samples = array.array("h")
        for frame in itertools.chain(container.decode(stream), [None]):
            for mono in resampler.resample(frame):
                samples.frombytes(bytes(mono.planes[0])[: mono.samples * 2])
        return stream.codec_context.name, samples, stream.sample_rate


@pytest.mark.parametrize(
    ("response_format", "codec", "content_type"),
    [
        ("mp3", "mp3float", "audio/mpeg"),
        ("opus", "opus", "audio/ogg"),
        ("aac", "aac", "audio/aac"),
        ("flac", "flac", "audio/flac"),
        ("wav", "pcm_s16le", "audio/wav"),
    ],
)
async def test_speech_is_real_audio_in_the_requested_format_as_long_as_the_text_takes(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession, response_format: str, codec: str, content_type: str
) -> None:
    text = "x" * 45  # three seconds at the default 15 characters a second
    async with http.post(
        f"{fake_openai.base_url}/audio/speech", json=_speech(text, response_format=response_format)
    ) as r:
        audio = await r.read()

    assert r.status == 200 and r.content_type == content_type
    found, samples, rate = _decode(audio)
    assert found == codec
    assert len(samples) / rate == pytest.approx(fake_openai.speech_seconds(text), abs=0.08) == 3.0


async def test_speech_without_a_format_is_mp3_and_pcm_is_bare_samples(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.speech_chars_per_second = 30
    async with http.post(f"{fake_openai.base_url}/audio/speech", json=_speech("y" * 60)) as default:
        assert _decode(await default.read())[0] == "mp3float"
    async with http.post(f"{fake_openai.base_url}/audio/speech", json=_speech("y" * 60, response_format="pcm")) as pcm:
        assert len(await pcm.read()) == 2 * 24_000 * 2  # two seconds of 16-bit samples at 24 kHz


async def test_the_fake_voice_has_syllables_and_pauses(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{fake_openai.base_url}/audio/speech", json=_speech(response_format="wav")) as response:
        _, samples, rate = _decode(await response.read())

    step = rate // 20
    loudness = [
        math.sqrt(sum(s * s for s in samples[start : start + step]) / step)
        for start in range(0, len(samples) - step, step)
    ]
    assert max(loudness) > 5000
    assert sum(level < 50 for level in loudness) >= 5  # gaps between syllables and pauses between phrases
    assert len({round(level, -2) for level in loudness}) > 10  # not one steady tone


async def test_speech_over_4096_characters_is_refused_as_the_real_api_does(
    http: aiohttp.ClientSession,
) -> None:
    fake = FakeOpenAI(validator=None)  # the spec would refuse it first; this is the fake's own rule
    await fake.start()
    try:
        async with http.post(f"{fake.base_url}/audio/speech", json=_speech("z" * 4097)) as response:
            error = (await response.json())["error"]
    finally:
        await fake.close()

    assert response.status == 400 and error["code"] == "string_above_max_length"
    assert "maximum length 4096" in error["message"]


async def test_speech_with_an_unknown_model_is_404(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{fake_openai.base_url}/audio/speech", json=_speech(model="tts-9")) as response:
        error = (await response.json())["error"]

    assert response.status == 404 and error["code"] == "model_not_found"


async def test_instructions_for_tts_1_are_refused_and_recorded(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    body = _speech(model="tts-1", instructions="Speak slowly.")
    async with http.post(f"{fake_openai.base_url}/audio/speech", json=body) as response:
        assert response.status == 400

    assert fake_openai.violations == ["POST /audio/speech: instructions do not work with tts-1"]
    fake_openai.violations.clear()  # seen and checked: the fixture must not fail the test for them


async def test_speech_answers_queued_errors_and_lengths(fake_openai: FakeOpenAI, http: aiohttp.ClientSession) -> None:
    fake_openai.queue("/audio/speech", rate_limited(), SpeechReply(seconds=1.0, response_format="wav"))
    url = f"{fake_openai.base_url}/audio/speech"

    async with http.post(url, json=_speech()) as limited:
        assert limited.status == 429
    async with http.post(url, json=_speech(response_format="opus")) as answered:
        codec, samples, rate = _decode(await answered.read())

    assert (codec, len(samples) / rate) == ("pcm_s16le", 1.0)  # a server that sends its own format
    assert [request.json["input"] for request in fake_openai.requests_to("/audio/speech")] == [_speech()["input"]] * 2


async def test_a_spec_invalid_speech_body_is_refused_and_recorded(
    openai_validator: OpenApiValidator | None, http: aiohttp.ClientSession
) -> None:
    if openai_validator is None:
        pytest.skip(f"{SPECS_DIR / 'openai-openapi.yaml'} not found: the fakes run without spec validation")
    fake = FakeOpenAI(validator=openai_validator)
    await fake.start()
    try:
        body = {"model": "gpt-4o-mini-tts", "input": "Hi", "response_format": "ogg"}
        async with http.post(f"{fake.base_url}/audio/speech", json=body) as response:
            assert response.status == 400
    finally:
        await fake.close()

    assert len(fake.violations) == 2
    assert "'voice' is a required property" in fake.violations[0]
    assert "'ogg' is not one of" in fake.violations[1]


# Pictures in chat messages


async def test_pictures_are_decoded_and_texts_flattened_for_tests(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    body = _with_picture(_data_url("JPEG", (64, 48)))
    body["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": _data_url("PNG", (3, 5))}})
    body["messages"].insert(0, {"role": "developer", "content": "Be brief."})

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=body) as response:
        assert response.status == 200
    [recorded] = fake_openai.requests_to("/chat/completions")

    assert fake_openai.image_parts(recorded) == [
        SentImage("user", "image/jpeg", "JPEG", 64, 48, "high"),
        SentImage("user", "image/png", "PNG", 3, 5, None),
    ]
    assert fake_openai.message_texts(recorded) == ["Be brief.", "What is this?"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1", "is not a data: URL"),
        (_data_url("PNG", (4, 4), mime="image/jpeg"), "does not decode as the image/jpeg"),
        ("data:image/png;base64,not base64!", "base64 does not decode"),
        ("data:image/bmp;base64,Qk0=", "not a picture type the API takes"),
    ],
)
async def test_a_picture_that_is_not_a_true_data_url_is_refused_as_a_violation(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession, url: str, problem: str
) -> None:
    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_with_picture(url)) as response:
        error = (await response.json())["error"]

    assert response.status == 400 and problem in error["message"]
    assert len(fake_openai.violations) == 1 and problem in fake_openai.violations[0]
    fake_openai.violations.clear()  # seen and checked: the fixture must not fail the test for them


async def test_a_model_that_cannot_see_answers_as_the_real_api(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    body = _with_picture(_data_url("PNG", (4, 4)), model="gpt-3.5-turbo")

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=body) as response:
        error = (await response.json())["error"]

    assert response.status == 400
    assert error == {
        "message": "Invalid content type. image_url is only supported by certain models.",
        "type": "invalid_request_error",
        "param": "messages.[0].content.[1].type",
        "code": None,
    }


# Reasoning


async def test_think_is_streamed_in_tags_split_at_awkward_places(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", Reply("Four.", think="2+2 is 4."))

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_chat(stream=True)) as response:
        events = await _events(response)

    pieces = [choice["delta"].get("content") for chunk in _chunks(events) for choice in chunk["choices"]]
    assert _text(events) == "<think>2+2 is 4.</think>Four."
    assert "<th" in pieces  # neither tag arrives whole
    assert not any("<think>" in piece or "</think>" in piece for piece in pieces if piece)


async def test_reasoning_content_is_streamed_in_its_own_field_with_reasoning_tokens(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", Reply("Paris.", reasoning_content="France's capital.", reasoning_tokens=9))
    body = _chat(stream=True, stream_options={"include_usage": True})

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=body) as response:
        events = await _events(response)

    chunks = _chunks(events)
    reasoning = "".join(c["delta"].get("reasoning_content") or "" for chunk in chunks for c in chunk["choices"])
    assert (reasoning, _text(events)) == ("France's capital.", "Paris.")
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 9
    assert usage["completion_tokens"] >= 9  # as on the real API, reasoning counts among the completion tokens


async def test_an_empty_answer_cut_off_by_length_streams_no_text(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", Reply("", finish_reason="length"))

    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_chat(stream=True)) as response:
        events = await _events(response)

    assert _text(events) == ""
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize(("value", "shown"), [(0.7, "0.7"), (0, "0"), (0.0, "0.0"), (2, "2")])
async def test_a_reasoning_model_refuses_a_temperature_other_than_1(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession, value: float, shown: str
) -> None:
    async with http.post(f"{fake_openai.base_url}/chat/completions", json=_chat(temperature=value)) as response:
        error = (await response.json())["error"]

    assert response.status == 400
    assert error == {
        "message": f"Unsupported value: 'temperature' does not support {shown} with this model. "
        "Only the default (1) value is supported.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "unsupported_value",
    }


async def test_a_reasoning_model_refuses_top_p_but_takes_temperature_1(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    url = f"{fake_openai.base_url}/chat/completions"

    async with http.post(url, json=_chat(top_p=0.9)) as refused:
        error = (await refused.json())["error"]
    async with http.post(url, json=_chat(temperature=1)) as accepted:
        assert accepted.status == 200

    assert refused.status == 400 and (error["param"], error["code"]) == ("top_p", "unsupported_parameter")


async def test_other_models_take_any_temperature_and_the_list_is_configurable(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    url = f"{fake_openai.base_url}/chat/completions"
    async with http.post(url, json={**_chat(temperature=0.2), "model": "gpt-4.1-mini"}) as other:
        assert other.status == 200
    fake_openai.reasoning_models = ["my-reasoner*"]

    async with http.post(url, json={**_chat(temperature=0.2), "model": "my-reasoner-7b"}) as refused:
        assert refused.status == 400
    async with http.post(url, json=_chat(temperature=0.2)) as now_accepted:
        assert now_accepted.status == 200


async def test_a_refused_request_leaves_the_scripted_answer_for_the_next(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", Reply("Scripted."))
    url = f"{fake_openai.base_url}/chat/completions"

    async with http.post(url, json=_chat(temperature=0.5)) as refused:
        assert refused.status == 400
    async with http.post(url, json=_chat()) as answered:
        completion = await answered.json()

    assert completion["choices"][0]["message"]["content"] == "Scripted."


# A line too long for aiohttp


async def test_huge_line_sends_one_event_longer_than_aiohttps_line_limit(
    fake_openai: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    fake_openai.queue("/chat/completions", HugeLine(text_before="Hi"), HugeLine())
    url = f"{fake_openai.base_url}/chat/completions"

    async with http.post(url, json=_chat(stream=True)) as response:
        with pytest.raises(LineTooLong):
            async for _ in response.content:
                pass
    async with http.post(url, json=_chat(stream=True)) as response:
        raw = await response.read()  # read whole, the stream is well-formed

    events = [line[len(b"data: ") :].decode() for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert _text(events) == "A" * HUGE_LINE_CHARS
    assert max(map(len, events)) > 2 * 2**18  # aiohttp reads lines of at most 2 x read_bufsize (256 KiB)
    assert events[-1] == "[DONE]"
