"""The client for the OpenAI-compatible API: one aiohttp session, retries, errors classified by code."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp

from bot.chat_messages import ChatRequest, ChatResult
from bot.chat_stream import apply_chunk, event_batches
from bot.errors import ApiError, ApiErrorKind
from bot.models import DEFAULT_REASONING_MODELS, model_matches
from bot.reasoning import ThinkFilter

log = logging.getLogger(__name__)

# As the official SDK: back off from 0.5 s, doubling, at most 8 s between tries.
INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
# Waiting longer than this for a rate limit is worse than telling the user to come back.
MAX_RETRY_AFTER_SECONDS = 30.0
RETRYABLE_STATUSES = frozenset({408, 409, 500, 502, 503, 504})
# Error messages sometimes quote (part of) a key back; keys never reach a log or a user.
KEY_PATTERN = re.compile(r"\b(sk-|key-)[A-Za-z0-9_\-*.]{4,}")

Sleep = Callable[[float], Awaitable[None]]
# What a model name can look like ("gpt-5-mini", "meta-llama/Llama-3.1-8B:free"); anything else is a typo.
MODEL_NAME = re.compile(r"^[\w.\-:/]{1,100}$")


class OpenAIClient:
    """Calls an OpenAI-compatible API at `base_url`; every failure becomes an ApiError with a kind."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        timeout_seconds: float,
        max_retries: int,
        reasoning_models: Sequence[str] = DEFAULT_REASONING_MODELS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._reasoning_models = tuple(reasoning_models)
        self._base_url = base_url.rstrip("/")
        # A password written into the URL (a proxy's) is a secret like the key: error texts never repeat it.
        self._url_password = unquote(urlsplit(base_url).password or "")
        self._api_key = api_key
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._sleep = sleep

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def takes_temperature(self, model: str) -> bool:
        """Whether the model takes a temperature: reasoning models (REASONING_MODELS) accept only the default."""
        return not model_matches(model, self._reasoning_models)

    def _chat_body(self, request: ChatRequest, result: ChatResult) -> bytes:
        """The streamed request's body, without the temperature a reasoning model would refuse with a 400."""
        takes_temperature = self.takes_temperature(request.model)
        result.temperature_ignored = request.temperature is not None and not takes_temperature
        return request.encode(stream=True, temperature=takes_temperature)

    def redact(self, text: str) -> str:
        """Text with the API key, the URL's password, and anything shaped like a key, removed."""
        for secret in (self._api_key, self._url_password):
            if secret:
                text = text.replace(secret, "[redacted]")
        return KEY_PATTERN.sub("[redacted]", text)

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[tuple[str, ChatResult]]:
        """Stream a chat answer: yields (new text, the result so far) as text arrives, the last with its end.

        Only the visible answer is yielded: reasoning streamed as `<think>` sections or in reasoning
        fields is left out (`saw_reasoning` says there was some). Retries happen only before the first
        byte of the answer; a stream cut or an error event later raises ApiError(STREAM_BROKEN or the
        error's kind), since part of the answer is already shown.
        """
        result = ChatResult()
        think = ThinkFilter()
        body = self._chat_body(request, result)
        async with self._open("POST", "/chat/completions", request.model, encoded_json=body) as r:
            saw_done = False
            added = ""
            try:
                # Events that arrived together are folded in together: an answer whose end is already here is
                # handed over once, whole, rather than shown and then stored again.
                async for batch in event_batches(r.content, self._timeout):
                    added = ""
                    for data in batch:
                        if data == "[DONE]":
                            saw_done = True
                            break
                        event = json.loads(data)
                        if "error" in event:
                            raise self._error_from_body(event, status=None, model=request.model)
                        added += apply_chunk(result, event, think)
                    if saw_done:
                        break
                    if added:
                        yield added, result
                        added = ""
            except (aiohttp.ClientError, ValueError) as exc:  # json raises ValueError for a broken event
                raise ApiError(ApiErrorKind.STREAM_BROKEN, f"stream failed: {type(exc).__name__}") from None
            except TimeoutError:
                raise ApiError(ApiErrorKind.TIMEOUT, "no data from the stream in time") from None
            if not saw_done and result.finish_reason is None:
                raise ApiError(ApiErrorKind.STREAM_BROKEN, "the stream ended before the answer was complete")
        tail = think.finish()
        result.text += tail
        result.complete = True
        yield added + tail, result

    async def post_json(self, path: str, body: Mapping[str, Any], *, model: str | None = None) -> dict[str, Any]:
        """POST a JSON body and return the JSON answer, with retries."""
        async with self._open("POST", path, model, json_body=body) as response:
            return await self._read_json(response)

    async def post_json_for_bytes(self, path: str, body: Mapping[str, Any], *, model: str | None = None) -> bytes:
        """POST a JSON body and return the raw answer (such as audio), with retries.

        The body may stream for as long as the server needs to make it (speech arrives as it is spoken), so the
        timeout bounds each wait for more data, not the whole transfer.
        """
        async with self._open("POST", path, model, json_body=body) as response:
            data = bytearray()
            try:
                while chunk := await asyncio.wait_for(response.content.readany(), self._timeout):
                    data += chunk
            except aiohttp.ClientError as exc:
                raise ApiError(ApiErrorKind.SERVER_ERROR, f"unreadable answer: {type(exc).__name__}") from None
            except TimeoutError:
                raise ApiError(ApiErrorKind.TIMEOUT, "the answer stopped arriving") from None
            return bytes(data)

    async def post_form(
        self, path: str, build_form: Callable[[], aiohttp.FormData], *, model: str | None = None
    ) -> dict[str, Any]:
        """POST a multipart form (built afresh for each try, since a form is consumed when sent)."""
        async with self._open("POST", path, model, form=build_form) as response:
            return await self._read_json(response)

    async def get_json(self, path: str) -> dict[str, Any]:
        """GET a JSON document, with retries."""
        async with self._open("GET", path, None) as response:
            return await self._read_json(response)

    async def _read_json(self, response: aiohttp.ClientResponse) -> dict[str, Any]:
        try:
            body = await asyncio.wait_for(response.json(content_type=None), self._timeout)
        except (aiohttp.ClientError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(ApiErrorKind.SERVER_ERROR, f"unreadable answer: {type(exc).__name__}") from None
        except TimeoutError:
            raise ApiError(ApiErrorKind.TIMEOUT, "the answer did not arrive in time") from None
        if not isinstance(body, dict):
            raise ApiError(ApiErrorKind.SERVER_ERROR, "the answer was not a JSON object")
        return body

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        model: str | None,
        *,
        json_body: Mapping[str, Any] | None = None,
        encoded_json: bytes | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request (a JSON body, one already encoded, or a form), retrying what is worth retrying, and yield
        the successful response."""
        url = self._base_url + path
        headers = self._headers()
        if encoded_json is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            try:
                response = await asyncio.wait_for(
                    self._session.request(
                        method,
                        url,
                        json=json_body,
                        data=form() if form else encoded_json,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout),
                    ),
                    self._timeout,
                )
            except TimeoutError:
                raise ApiError(ApiErrorKind.TIMEOUT, f"{method} {path}: no answer in {self._timeout:g} s") from None
            except aiohttp.ClientError as exc:
                error = ApiError(ApiErrorKind.UNREACHABLE, f"{method} {path}: {self.redact(type(exc).__name__)}")
                delay: float | None = self._backoff(attempt)
            else:
                if response.status < 400:
                    try:
                        yield response
                    finally:
                        response.release()
                    return
                error = await self._error_from_response(response, model)
                response.release()
                delay = self._retry_delay(error, attempt)
            if delay is None or attempt >= self._max_retries:
                raise error
            attempt += 1
            log.warning("%s %s failed (%s); retry %d in %.1f s", method, path, error.kind.value, attempt, delay)
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        delay: float = min(INITIAL_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
        return delay * random.uniform(0.75, 1.0)  # jitter spreads retries from many channels

    def _retry_delay(self, error: ApiError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when retrying cannot help."""
        if error.kind is ApiErrorKind.RATE_LIMITED:
            wait = error.retry_after if error.retry_after is not None else self._backoff(attempt)
            return wait if wait <= MAX_RETRY_AFTER_SECONDS else None
        if (
            error.kind is ApiErrorKind.SERVER_ERROR
            and error.status is not None
            and (error.status in RETRYABLE_STATUSES or error.status >= 500)
        ):
            return error.retry_after if error.retry_after is not None else self._backoff(attempt)
        return None

    async def _error_from_response(self, response: aiohttp.ClientResponse, model: str | None) -> ApiError:
        try:
            body = await asyncio.wait_for(response.json(content_type=None), self._timeout)
        except (aiohttp.ClientError, json.JSONDecodeError, UnicodeDecodeError, TimeoutError):
            body = None
        error = self._error_from_body(body, status=response.status, model=model)
        error.retry_after = _retry_after(response.headers)
        return error

    def _error_from_body(self, body: Any, *, status: int | None, model: str | None) -> ApiError:
        """Classify an error by its status, `code` and `type` (never by its message text)."""
        details = body.get("error") if isinstance(body, dict) else None
        if not isinstance(details, dict):
            details = {}
        code = details.get("code")
        code = str(code) if code is not None else None
        error_type = str(details.get("type") or "")
        message = self.redact(str(details.get("message") or f"HTTP {status}"))
        kind = _classify(status, code, error_type)
        param = str(details["param"]) if details.get("param") is not None else None
        return ApiError(kind, message, status=status, code=code or error_type or None, model=model, param=param)


def _classify(status: int | None, code: str | None, error_type: str) -> ApiErrorKind:
    if error_type == "insufficient_quota" or code in ("insufficient_quota", "credit_balance_exhausted"):
        return ApiErrorKind.QUOTA_EXHAUSTED
    if code in ("moderation_blocked", "content_policy_violation"):
        return ApiErrorKind.SAFETY_REFUSAL
    if code == "context_length_exceeded":
        return ApiErrorKind.CONTEXT_TOO_LONG
    if code in ("model_not_found",) or status == 404:
        return ApiErrorKind.MODEL_NOT_FOUND
    if status == 429 or code == "rate_limit_exceeded":
        return ApiErrorKind.RATE_LIMITED
    if status == 401 or code == "invalid_api_key":
        return ApiErrorKind.BAD_KEY
    if status == 403:
        # OpenAI refuses models (image models above all) to unverified organizations with a bare 403:
        # no code, type invalid_request_error. Other 403s, such as an unsupported region, carry a code.
        return ApiErrorKind.ORGANIZATION_NOT_VERIFIED if code is None else ApiErrorKind.FORBIDDEN
    if status is None or status in RETRYABLE_STATUSES or status >= 500:
        return ApiErrorKind.SERVER_ERROR
    return ApiErrorKind.BAD_REQUEST


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait, from retry-after-ms or Retry-After (seconds)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value) / scale, 0.0)
        except ValueError:
            continue  # an HTTP date; rare from these APIs, back off instead
    return None
