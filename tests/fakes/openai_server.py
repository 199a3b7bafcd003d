"""An in-process fake of an OpenAI-compatible API: scripted answers, every request recorded and spec-checked."""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import fnmatch
import functools
import io
import itertools
import json
import math
import re
import struct
import sys
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from aiohttp import BodyPartReader, web
from multidict import CIMultiDict
from PIL import Image, UnidentifiedImageError

from tests.fakes.audio_fixtures import encoded_file
from tests.fakes.openapi import OpenApiValidator

DEFAULT_MODELS = (
    "gpt-5-mini",
    "gpt-5",
    "gpt-image-2",
    "gpt-transcribe",
    "omni-moderation-latest",
    "gpt-4o-mini-tts",
    "tts-1",
)
# The real server identifies the audio format by the filename's extension.
AUDIO_EXTENSIONS = frozenset({"flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm"})
MAX_AUDIO_BYTES = 25 * 1024 * 1024
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
DEFAULT_IMAGE_SIZE = (1024, 1024)
IMAGE_COLOUR = (64, 128, 192)
# close() gives answers in flight this long, then aiohttp cancels them and drops their connections.
SHUTDOWN_SECONDS = 0.05
# aiohttp's default 1 MiB body limit is below what chat requests with long contexts reach.
MAX_BODY_BYTES = 64 * 1024 * 1024
# The real API refuses message names outside this pattern, though the spec does not say so.
CHAT_NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]+")
# Speech: OpenAI's voices speak at 24 kHz; the fake's voice says this many characters a second (configurable).
SPEECH_SAMPLE_RATE = 24_000
SPEECH_CHARS_PER_SECOND = 15.0
MAX_SPEECH_INPUT_CHARS = 4096
# response_format -> (FFmpeg muxer, encoder, Content-Type); pcm is headerless 16-bit little-endian samples.
SPEECH_FORMATS = {
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "opus": ("ogg", "libopus", "audio/ogg"),
    "aac": ("adts", "aac", "audio/aac"),
    "flac": ("flac", "flac", "audio/flac"),
    "wav": ("wav", "pcm_s16le", "audio/wav"),
    "pcm": ("", "", "audio/pcm"),
}
# The fake voice: syllables of a buzzing 150 Hz tone at these loudnesses (of full scale), then a breath's pause.
SPEECH_PITCH_HZ = 150.0
SYLLABLE_LEVELS = (0.5, 0.3, 0.42, 0.22, 0.38)
SYLLABLE_SECONDS = 0.2
SYLLABLE_GAP_SECONDS = 0.06
PHRASE_PAUSE_SECONDS = 0.4
# Models that take only the default temperature and no top_p, and models that take pictures (FACTS.md).
REASONING_MODELS = ("gpt-5*", "o1*", "o3*", "o4*")
VISION_MODELS = ("gpt-4o*", "gpt-4.1*", "gpt-5*", "o1*", "o3*", "o4*")
# The bot sends pictures as data URLs only; the fake checks the bytes are the picture type they claim.
DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
PICTURE_MIME_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
# Reasoning in <think> tags is streamed in pieces this small, so tags split at awkward places.
THINK_CHUNK_CHARS = 3
# aiohttp's client reads lines of at most 2 x read_bufsize (256 KiB by default since aiohttp 3.12, 64 KiB before).
HUGE_LINE_CHARS = 1_100_000


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; `path` is relative to /v1."""

    method: str
    path: str
    headers: Mapping[str, str]
    json: Any = None
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """A chat answer, streamed or not as the request asked; usage is (prompt, completion) tokens.

    `think` is reasoning sent inside `<think>...</think>` before the text (as open models on other
    servers do), `reasoning_content` reasoning sent in that field; `reasoning_tokens` goes in usage.
    """

    text: str
    finish_reason: str = "stop"
    refusal: str | None = None
    usage: tuple[int, int] | None = None
    think: str | None = None
    reasoning_content: str | None = None
    reasoning_tokens: int | None = None  # None: estimated from the reasoning text, if any


@dataclass(frozen=True)
class ApiErrorReply:
    """An error answer in the real API's shape, optionally with Retry-After / retry-after-ms headers."""

    status: int
    type: str
    code: str | None
    message: str
    retry_after: float | None = None
    retry_after_ms: int | None = None
    param: str | None = None


@dataclass(frozen=True)
class Hang:
    """Never answer; the request stays open until the fake closes."""


@dataclass(frozen=True)
class StreamCut:
    """A streamed 200 that sends this text and then drops the connection without [DONE]."""

    text_before_cut: str


@dataclass(frozen=True)
class StreamError:
    """A streamed 200 that sends this text and then an error event."""

    text_before_error: str
    type: str
    code: str | None
    message: str


@dataclass(frozen=True)
class HugeLine:
    """A streamed 200 whose text arrives as one event longer than aiohttp's line limit, then ends normally."""

    text_before: str = ""
    chars: int = HUGE_LINE_CHARS


@dataclass(frozen=True)
class SentImage:
    """A picture a chat request carried, as the fake decoded it."""

    role: str
    mime_type: str
    format: str
    width: int
    height: int
    detail: str | None


@dataclass(frozen=True)
class ImagesReply:
    """An images answer; None fields follow the request (`n`, `size`)."""

    count: int | None = None
    revised_prompt: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class TranscriptReply:
    """A transcription answer, sent after `delay` seconds (a long recording takes the real API a while)."""

    text: str
    delay: float = 0.0


@dataclass(frozen=True)
class ModerationReply:
    """A moderation verdict applied to every input of the request."""

    flagged: bool
    categories: Sequence[str] = ()


@dataclass(frozen=True)
class SpeechReply:
    """A speech answer `seconds` long (default: as long as the input takes to say) in `response_format`.

    The format defaults to the requested one; setting it plays a server that ignores the request and sends its own.
    """

    seconds: float | None = None
    response_format: str | None = None


Behaviour = (
    Reply
    | ApiErrorReply
    | Hang
    | StreamCut
    | StreamError
    | HugeLine
    | ImagesReply
    | TranscriptReply
    | ModerationReply
    | SpeechReply
)
ChatBehaviour = Reply | StreamCut | StreamError | HugeLine
Handler = Callable[[web.Request, RecordedRequest, Any], Awaitable[web.StreamResponse]]


def rate_limited(retry_after: float = 0.05) -> ApiErrorReply:
    """429 rate limit that clears after `retry_after` seconds."""
    return ApiErrorReply(
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.",
        retry_after=retry_after,
    )


def quota_exhausted() -> ApiErrorReply:
    """429 that waiting does not fix: the account is out of credit."""
    return ApiErrorReply(
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    )


def server_error() -> ApiErrorReply:
    """500 from the API itself."""
    return ApiErrorReply(
        500, "server_error", None, "The server had an error while processing your request. Sorry about that!"
    )


def unknown_model(model: str) -> ApiErrorReply:
    """404 for a model that does not exist or is not available to the key."""
    return ApiErrorReply(
        404,
        "invalid_request_error",
        "model_not_found",
        f"The model `{model}` does not exist or you do not have access to it.",
    )


def context_too_long() -> ApiErrorReply:
    """400 for a prompt larger than the model's context window."""
    return ApiErrorReply(
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. "
        "Please reduce the length of the messages.",
    )


def moderation_blocked() -> ApiErrorReply:
    """400 from the image safety system."""
    return ApiErrorReply(
        400,
        "image_generation_user_error",
        "moderation_blocked",
        "Your request was rejected by the safety system. If you believe this is an error, contact us.",
    )


def org_not_verified(model: str = "gpt-image-2") -> ApiErrorReply:
    """403 for a model that needs a verified organization."""
    return ApiErrorReply(
        403,
        "invalid_request_error",
        None,
        f"Your organization must be verified to use the model `{model}`. Please go to: "
        "https://platform.openai.com/settings/organization/general and click on Verify Organization.",
    )


def bad_key() -> ApiErrorReply:
    """401 for a wrong API key."""
    return ApiErrorReply(
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    )


def invalid_request(message: str, code: str | None = None, param: str | None = None) -> ApiErrorReply:
    """400 for a request the server refuses before doing any work."""
    return ApiErrorReply(400, "invalid_request_error", code, message, param=param)


def unsupported_temperature(value: object) -> ApiErrorReply:
    """400 from a reasoning model for a temperature other than the default, worded as the real API words it."""
    return invalid_request(
        f"Unsupported value: 'temperature' does not support {json.dumps(value)} with this model. "
        "Only the default (1) value is supported.",
        "unsupported_value",
        "temperature",
    )


def unsupported_top_p() -> ApiErrorReply:
    """400 from a reasoning model for any top_p."""
    return invalid_request(
        "Unsupported parameter: 'top_p' is not supported with this model.", "unsupported_parameter", "top_p"
    )


def pictures_unsupported(param: str) -> ApiErrorReply:
    """400 from a model that cannot see, for a request with a picture (code null, as the real API)."""
    return invalid_request("Invalid content type. image_url is only supported by certain models.", None, param)


class FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1 in the test's event loop, scripted per endpoint."""

    def __init__(self, *, validator: OpenApiValidator | None, api_key: str = "sk-test-key") -> None:
        self.models = list(DEFAULT_MODELS)
        self.reasoning_models = list(REASONING_MODELS)  # fnmatch patterns
        self.vision_models = list(VISION_MODELS)  # fnmatch patterns
        self.stream_chunk_chars = 8
        self.chunk_delay = 0.0
        # Seconds a streamed answer waits before its first text, as a model thinking first does.
        self.first_chunk_delay = 0.0
        self.speech_chars_per_second = SPEECH_CHARS_PER_SECOND
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._validator = validator
        self._api_key = api_key
        self._queues: defaultdict[str, deque[Behaviour]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)
        images = ("POST", self._images, (ImagesReply,))
        self._endpoints: dict[str, tuple[str, Handler, tuple[type, ...]]] = {
            "/models": ("GET", self._models, ()),
            "/chat/completions": ("POST", self._chat, (Reply, StreamCut, StreamError, HugeLine)),
            "/images/generations": images,
            "/images/edits": images,
            "/images/variations": images,
            "/audio/transcriptions": ("POST", self._transcription, (TranscriptReply,)),
            "/moderations": ("POST", self._moderation, (ModerationReply,)),
            "/audio/speech": ("POST", self._speech, (SpeechReply,)),
        }

    async def start(self) -> None:
        """Listen on a free port and set `base_url`."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def close(self) -> None:
        """Stop the server, dropping the connections of requests still in flight (Hang, slow streams)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def queue(self, path: str, *behaviours: Behaviour) -> None:
        """Script the next answers of an endpoint, used one per request before the default applies."""
        if path not in self._endpoints:
            raise ValueError(f"the fake has no endpoint {path}; it serves {', '.join(self._endpoints)}")
        allowed = (ApiErrorReply, Hang, *self._endpoints[path][2])
        for behaviour in behaviours:
            if not isinstance(behaviour, allowed):
                raise TypeError(f"{type(behaviour).__name__} does not apply to {path}")
        self._queues[path].extend(behaviours)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests to one endpoint, in order."""
        return [request for request in self.requests if request.path == path]

    @staticmethod
    def image_parts(request: RecordedRequest) -> list[SentImage]:
        """The pictures of a chat request's messages, in order, decoded."""
        images = []
        for message in (request.json or {}).get("messages") or []:
            for part in _parts(message):
                if part.get("type") == "image_url":
                    url = part["image_url"]["url"]
                    mime, data = _decode_data_url(url)
                    with Image.open(io.BytesIO(data)) as image:
                        size = image.size
                        image_format = image.format or ""
                    detail = part["image_url"].get("detail")
                    images.append(SentImage(message["role"], mime, image_format, *size, detail))
        return images

    @staticmethod
    def message_texts(request: RecordedRequest) -> list[str]:
        """The text of each message of a chat request, the text parts of a multi-part content joined."""
        texts = []
        for message in (request.json or {}).get("messages") or []:
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.append("\n".join(part["text"] for part in _parts(message) if part.get("type") == "text"))
        return texts

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Record, authenticate, route, check and answer one request."""
        path = request.path.removeprefix("/v1")
        recorded, problems = await _read_request(request, path)
        self.requests.append(recorded)
        if request.headers.get("Authorization") != f"Bearer {self._api_key}":
            return _error_response(bad_key())
        endpoint = self._endpoints.get(path)
        if endpoint is None or endpoint[0] != request.method:
            return _error_response(
                ApiErrorReply(404, "invalid_request_error", None, f"Invalid URL ({request.method} {request.path})")
            )
        problems = problems or self._spec_problems(recorded) + _chat_rules_problems(recorded)
        if problems:
            self.violations.extend(f"{request.method} {path}: {problem}" for problem in problems)
            return _error_response(invalid_request("; ".join(problems)))
        refusal = _upload_refusal(recorded) if path == "/audio/transcriptions" else None
        if refusal is not None:
            return _error_response(refusal)
        behaviour = self._queues[path].popleft() if self._queues[path] else None
        if isinstance(behaviour, ApiErrorReply):
            return _error_response(behaviour)
        if isinstance(behaviour, Hang):
            await asyncio.Event().wait()  # never set: close() cancels the wait and drops the connection
        return await endpoint[1](request, recorded, behaviour)

    def _spec_problems(self, recorded: RecordedRequest) -> list[str]:
        """What the spec says is wrong with the request body (nothing when validation is off)."""
        if self._validator is None:
            return []
        if recorded.headers.get("Content-Type", "").startswith("multipart/form-data"):
            files = {name: upload[0] for name, upload in recorded.files.items()}
            return self._validator.check_multipart(recorded.method, recorded.path, recorded.fields, files)
        return self._validator.check_json(recorded.method, recorded.path, recorded.json)

    async def _models(self, request: web.Request, recorded: RecordedRequest, behaviour: None) -> web.StreamResponse:
        """GET /models."""
        data = [
            {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "openai"} for model in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _chat(
        self, request: web.Request, recorded: RecordedRequest, behaviour: ChatBehaviour | None
    ) -> web.StreamResponse:
        """POST /chat/completions; StreamCut, StreamError and HugeLine always answer as a stream."""
        body = recorded.json
        refusal = self._chat_refusal(body)
        if refusal is not None:
            if behaviour is not None:
                self._queues[recorded.path].appendleft(behaviour)  # a refused request does no work: it waits
            return _error_response(refusal)
        if behaviour is None:
            behaviour = Reply(f"Echo: {_last_user_text(body['messages'])}")
        if isinstance(behaviour, Reply) and body.get("stream") is not True:
            return web.json_response(self._completion(body, behaviour))
        return await self._stream_completion(request, body, behaviour)

    def _chat_refusal(self, body: dict[str, Any]) -> ApiErrorReply | None:
        """The real API's 400 for parameters or pictures the model does not take, if any."""
        model = str(body.get("model", "")).lower()
        if any(fnmatch.fnmatchcase(model, pattern) for pattern in self.reasoning_models):
            if "temperature" in body and body["temperature"] != 1:
                return unsupported_temperature(body["temperature"])
            if "top_p" in body:
                return unsupported_top_p()
        if not any(fnmatch.fnmatchcase(model, pattern) for pattern in self.vision_models):
            for index, message in enumerate(body.get("messages") or []):
                for part_index, part in enumerate(_parts(message)):
                    if part.get("type") == "image_url":
                        return pictures_unsupported(f"messages.[{index}].content.[{part_index}].type")
        return None

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """A non-streamed ChatCompletion object."""
        text = _with_think(reply)
        content = None if reply.refusal is not None and not text else text
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": reply.refusal, "annotations": []}
        if reply.reasoning_content is not None:
            message["reasoning_content"] = reply.reasoning_content  # not OpenAI's: DeepSeek's and vLLM's field
        return {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
            "usage": _chat_usage(body, reply),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    async def _stream_completion(
        self, request: web.Request, body: dict[str, Any], behaviour: ChatBehaviour
    ) -> web.StreamResponse:
        """Server-sent chat.completion.chunk events, ended as the behaviour says."""
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        base = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            # With include_usage every chunk carries `usage: null` until the final usage chunk.
            return {**base, "choices": [choice], **({"usage": None} if include_usage else {})}

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        await _send_event(response, chunk({"role": "assistant", "content": "", "refusal": None}))
        if self.first_chunk_delay:
            await asyncio.sleep(self.first_chunk_delay)
        if isinstance(behaviour, StreamCut | StreamError):
            return await self._end_broken(request, response, behaviour, chunk)
        if isinstance(behaviour, HugeLine):
            await self._send_pieces(response, "content", behaviour.text_before, chunk)
            await _send_event(response, chunk({"content": "A" * behaviour.chars}))
            behaviour = Reply(behaviour.text_before + "A" * behaviour.chars)
        else:
            await self._send_reply_text(response, behaviour, chunk)
        await self._send_pieces(response, "refusal", behaviour.refusal or "", chunk)
        await _send_event(response, chunk({}, behaviour.finish_reason))
        if include_usage:
            await _send_event(response, {**base, "choices": [], "usage": _chat_usage(body, behaviour)})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _send_reply_text(
        self, response: web.StreamResponse, reply: Reply, chunk: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        """The reply's reasoning (in its field, or in <think> tags split awkwardly), then its text."""
        await self._send_pieces(response, "reasoning_content", reply.reasoning_content or "", chunk)
        if reply.think is not None:
            # One string in small pieces: tags split mid-name, and the closing tag shares a chunk with the text.
            await self._send_pieces(response, "content", _with_think(reply), chunk, THINK_CHUNK_CHARS)
        else:
            await self._send_pieces(response, "content", reply.text, chunk)

    async def _end_broken(
        self,
        request: web.Request,
        response: web.StreamResponse,
        behaviour: StreamCut | StreamError,
        chunk: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> web.StreamResponse:
        """Send the text before the break, then drop the connection (StreamCut) or send an error event."""
        if isinstance(behaviour, StreamCut):
            await self._send_pieces(response, "content", behaviour.text_before_cut, chunk)
            if request.transport is not None:
                request.transport.close()
            return response
        await self._send_pieces(response, "content", behaviour.text_before_error, chunk)
        error = {"message": behaviour.message, "type": behaviour.type, "param": None, "code": behaviour.code}
        await _send_event(response, {"error": error})
        await response.write_eof()
        return response

    async def _send_pieces(
        self,
        response: web.StreamResponse,
        key: str,
        text: str,
        chunk: Callable[[dict[str, Any]], dict[str, Any]],
        size: int | None = None,
    ) -> None:
        """Send text as deltas of `size` (default `stream_chunk_chars`) characters, `chunk_delay` seconds apart."""
        size = size or self.stream_chunk_chars
        for start in range(0, len(text), size):
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await _send_event(response, chunk({key: text[start : start + size]}))

    async def _images(
        self, request: web.Request, recorded: RecordedRequest, behaviour: ImagesReply | None
    ) -> web.StreamResponse:
        """POST /images/generations, /images/edits and /images/variations: solid-colour PNGs."""
        behaviour = behaviour or ImagesReply()
        params: Mapping[str, Any] = recorded.json if recorded.json is not None else recorded.fields
        count = behaviour.count if behaviour.count is not None else int(params.get("n") or 1)
        size = str(behaviour.size or params.get("size") or "auto")
        dimensions = re.fullmatch(r"(\d+)x(\d+)", size)
        if size != "auto" and dimensions is None:
            message = f"Invalid value: '{size}'. Use WIDTHxHEIGHT or auto."
            return _error_response(invalid_request(message, "invalid_value"))
        width, height = DEFAULT_IMAGE_SIZE if dimensions is None else map(int, dimensions.groups())
        png = base64.b64encode(_solid_png(width, height, IMAGE_COLOUR)).decode("ascii")
        image: dict[str, Any] = {"b64_json": png}
        if behaviour.revised_prompt is not None:
            image["revised_prompt"] = behaviour.revised_prompt
        prompt_tokens = _estimate_tokens(str(params.get("prompt", "")))
        usage = {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
            "output_tokens": 1056 * count,
            "total_tokens": prompt_tokens + 1056 * count,
        }
        return web.json_response({"created": int(time.time()), "data": [image] * count, "usage": usage})

    async def _transcription(
        self, request: web.Request, recorded: RecordedRequest, behaviour: TranscriptReply | None
    ) -> web.StreamResponse:
        """POST /audio/transcriptions."""
        filename, _, content = recorded.files["file"]
        if behaviour and behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        text = behaviour.text if behaviour else f"Transcript of {filename} ({len(content)} bytes)"
        if recorded.fields.get("response_format") == "text":
            return web.Response(text=text)
        output_tokens = _estimate_tokens(text)
        usage = {
            "type": "tokens",
            "input_tokens": 50,
            "output_tokens": output_tokens,
            "total_tokens": 50 + output_tokens,
        }
        return web.json_response({"text": text, "usage": usage})

    async def _moderation(
        self, request: web.Request, recorded: RecordedRequest, behaviour: ModerationReply | None
    ) -> web.StreamResponse:
        """POST /moderations: one result per input."""
        verdict = behaviour or ModerationReply(flagged=False)
        inputs = recorded.json["input"]
        result = {
            "flagged": verdict.flagged,
            "categories": {name: name in verdict.categories for name in MODERATION_CATEGORIES},
            "category_scores": {name: 0.9 if name in verdict.categories else 0.0001 for name in MODERATION_CATEGORIES},
            "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
        }
        results = [result] * (len(inputs) if isinstance(inputs, list) else 1)
        model = recorded.json.get("model") or "omni-moderation-latest"
        return web.json_response({"id": f"modr-fake{next(self._ids)}", "model": model, "results": results})

    def speech_seconds(self, text: str) -> float:
        """How long the fake voice takes to say `text`: what a test can expect of a speech answer."""
        return len(text) / self.speech_chars_per_second

    async def _speech(
        self, request: web.Request, recorded: RecordedRequest, behaviour: SpeechReply | None
    ) -> web.StreamResponse:
        """POST /audio/speech: speech-like audio, as long as the input takes to say, in the requested format."""
        body = recorded.json
        refusal = self._speech_refusal(body)
        if refusal is not None:
            return _error_response(refusal)
        behaviour = behaviour or SpeechReply()
        response_format = behaviour.response_format or body.get("response_format") or "mp3"
        seconds = behaviour.seconds if behaviour.seconds is not None else self.speech_seconds(body["input"])
        audio, content_type = speech_audio(seconds, response_format)
        return web.Response(body=audio, content_type=content_type)

    def _speech_refusal(self, body: dict[str, Any]) -> ApiErrorReply | None:
        """What the real server refuses beyond the spec; `instructions` for tts-1* also counts as a violation."""
        model, text = str(body["model"]), str(body["input"])
        if len(text) > MAX_SPEECH_INPUT_CHARS:
            return invalid_request(
                f"Invalid 'input': string too long. Expected a string with maximum length {MAX_SPEECH_INPUT_CHARS}, "
                f"but got a string with length {len(text)} instead.",
                "string_above_max_length",
            )
        if model not in self.models:
            return unknown_model(model)
        if "instructions" in body and model.startswith("tts-1"):
            self.violations.append(f"POST /audio/speech: instructions do not work with {model}")
            return invalid_request(f"instructions are not supported with {model}.", "unsupported_parameter")
        return None


def speech_audio(seconds: float, response_format: str) -> tuple[bytes, str]:
    """A real audio file of the fake voice `seconds` long, in a speech endpoint's format, and its Content-Type."""
    muxer, encoder, content_type = SPEECH_FORMATS[response_format]
    phrase = _speech_phrase()
    whole, part = divmod(max(1, round(seconds * SPEECH_SAMPLE_RATE)), len(phrase))
    samples = phrase * whole + phrase[:part]
    if response_format == "pcm":
        if sys.byteorder == "big":
            samples.byteswap()
        return samples.tobytes(), content_type
    return encoded_file(samples, SPEECH_SAMPLE_RATE, muxer, encoder), content_type


@functools.cache
def _speech_phrase() -> array.array[int]:
    """One phrase of the fake voice: a syllable at each of SYLLABLE_LEVELS, gaps between them, a pause after."""
    rate = SPEECH_SAMPLE_RATE
    length, gap = round(SYLLABLE_SECONDS * rate), round(SYLLABLE_GAP_SECONDS * rate)
    phrase = array.array("h")
    for level in SYLLABLE_LEVELS:
        for i in range(length):
            envelope = math.sin(math.pi * i / length) ** 2  # rises and falls like a spoken syllable
            phase = 2 * math.pi * SPEECH_PITCH_HZ * i / rate
            buzz = (math.sin(phase) + 0.5 * math.sin(2 * phase) + 0.25 * math.sin(3 * phase)) / 1.75
            phrase.append(round(32767 * level * envelope * buzz))
        phrase.extend(array.array("h", [0]) * gap)
    phrase.extend(array.array("h", [0]) * round(PHRASE_PAUSE_SECONDS * rate))
    return phrase


async def _read_request(request: web.Request, path: str) -> tuple[RecordedRequest, list[str]]:
    """Read the body (JSON or multipart) into a RecordedRequest, with any problem parsing it."""
    headers = CIMultiDict(request.headers)
    if request.content_type == "multipart/form-data":
        fields: dict[str, str] = {}
        files: dict[str, tuple[str, str, bytes]] = {}
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, BodyPartReader)  # the fake's clients never nest multiparts
            name = part.name or ""
            content_type = part.headers.get("Content-Type", "")
            if part.filename is not None or (content_type and not content_type.startswith("text/plain")):
                # A repeated field such as `image[]` keeps its first upload.
                files.setdefault(name, (part.filename or "", content_type, bytes(await part.read())))
            else:
                fields[name] = await part.text()
        return RecordedRequest(request.method, path, headers, fields=fields, files=files), []
    if not request.body_exists:
        return RecordedRequest(request.method, path, headers), []
    try:
        body = await request.json()
    except ValueError:
        return RecordedRequest(request.method, path, headers), ["the body is not valid JSON"]
    return RecordedRequest(request.method, path, headers, json=body), []


def _chat_rules_problems(recorded: RecordedRequest) -> list[str]:
    """Rules of the real API that the spec does not encode (FACTS.md), checked on chat requests."""
    body = recorded.json
    if recorded.path != "/chat/completions" or not isinstance(body, dict):
        return []
    problems = []
    if "max_tokens" in body:
        problems.append("max_tokens is rejected by gpt-5-family models: send max_completion_tokens")
    if "user" in body:
        problems.append("user is deprecated: send safety_identifier")
    for index, message in enumerate(body.get("messages") or []):
        name = message.get("name") if isinstance(message, dict) else None
        if name is not None and not CHAT_NAME_PATTERN.fullmatch(str(name)):
            problems.append(f"messages[{index}].name {name!r} does not match ^[a-zA-Z0-9_-]+$")
        for part_index, part in enumerate(_parts(message)):
            if part.get("type") == "image_url":
                problem = _picture_problem(str((part.get("image_url") or {}).get("url", "")))
                if problem:
                    problems.append(f"messages[{index}].content[{part_index}].image_url: {problem}")
    return problems


def _parts(message: Any) -> list[dict[str, Any]]:
    """The content parts of a message (none when its content is a string)."""
    content = message.get("content") if isinstance(message, dict) else None
    return [part for part in content if isinstance(part, dict)] if isinstance(content, list) else []


def _picture_problem(url: str) -> str | None:
    """Why a picture URL is not what the bot must send (a data: URL of a picture of its stated type), if so."""
    if not url.startswith("data:"):
        return f"{url[:60]!r} is not a data: URL (a Discord CDN link expires, and the provider would fetch it)"
    try:
        mime, data = _decode_data_url(url)
    except ValueError as exc:
        return str(exc)
    expected = PICTURE_MIME_FORMATS.get(mime)
    if expected is None:
        return f"{mime} is not a picture type the API takes ({', '.join(PICTURE_MIME_FORMATS)})"
    try:
        with Image.open(io.BytesIO(data), formats=[expected]) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return f"the data does not decode as the {mime} it claims to be"
    return None


def _decode_data_url(url: str) -> tuple[str, bytes]:
    """The mime type and bytes of a base64 data: URL; ValueError when it is not one."""
    match = DATA_URL.fullmatch(url)
    if match is None:
        raise ValueError("the data: URL is not of the form data:<mime type>;base64,<data>")
    try:
        return match["mime"], base64.b64decode(match["data"], validate=True)
    except binascii.Error:
        raise ValueError("the data: URL's base64 does not decode") from None


def _upload_refusal(recorded: RecordedRequest) -> ApiErrorReply | None:
    """The real server's refusal of an audio upload it cannot take, if any."""
    if "file" not in recorded.files:
        return invalid_request("Missing required parameter: 'file'.", "missing_required_parameter")
    filename, _, content = recorded.files["file"]
    extension = PurePosixPath(filename).suffix.lower().removeprefix(".")
    if extension not in AUDIO_EXTENSIONS:
        supported = ", ".join(sorted(AUDIO_EXTENSIONS))
        return invalid_request(f"Invalid file format. Supported formats: {supported}", "invalid_value")
    if len(content) > MAX_AUDIO_BYTES:
        return ApiErrorReply(
            413,
            "invalid_request_error",
            None,
            f"Maximum content size limit ({MAX_AUDIO_BYTES}) exceeded ({len(content)} bytes read)",
        )
    return None


def _error_response(error: ApiErrorReply) -> web.Response:
    """The JSON error answer, with retry headers when the error carries them."""
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = f"{error.retry_after:g}"
    if error.retry_after_ms is not None:
        headers["retry-after-ms"] = str(error.retry_after_ms)
    payload = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
    return web.json_response(payload, status=error.status, headers=headers)


async def _send_event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    """Write one server-sent event."""
    await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message, joining text parts of a multi-part content."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(part["text"] for part in content if part.get("type") == "text")
    return ""


def _estimate_tokens(text: str) -> int:
    """A rough token count: about four characters per token."""
    return len(text) // 4 + 1


def _with_think(reply: Reply) -> str:
    """The reply's content as sent: its <think> section, if any, then its text."""
    return f"<think>{reply.think}</think>{reply.text}" if reply.think is not None else reply.text


def _chat_usage(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The usage object: the reply's own counts, or estimates from the prompt and answer text.

    As with the real API, completion tokens include the reasoning tokens.
    """
    reasoning_text = (reply.think or "") + (reply.reasoning_content or "")
    reasoning_tokens = reply.reasoning_tokens
    if reasoning_tokens is None:
        reasoning_tokens = _estimate_tokens(reasoning_text) if reasoning_text else 0
    if reply.usage is not None:
        prompt_tokens, completion_tokens = reply.usage
    else:
        prompt_tokens = _estimate_tokens(json.dumps(body["messages"]))
        completion_tokens = _estimate_tokens(reply.text + (reply.refusal or "")) + reasoning_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0},
    }


def _solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid single-colour RGB PNG, built with zlib and struct only."""

    def png_chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width  # filter type 0 (None) before each scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(row * height, 9))
        + png_chunk(b"IEND", b"")
    )
