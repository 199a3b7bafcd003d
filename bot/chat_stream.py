"""Reading a streamed chat answer: Server-Sent Events in batches of what arrived together, folded into a result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bot.chat_messages import ChatResult, Usage
from bot.reasoning import ThinkFilter

# A chat chunk is a few hundred bytes; an event past this is a broken or hostile stream, not an answer.
MAX_EVENT_BYTES = 1024 * 1024


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), int(reasoning or 0))


def apply_chunk(result: ChatResult, chunk: dict[str, Any], think: ThinkFilter) -> str:
    """Fold one chat.completion.chunk into the result; return the visible text it added."""
    if chunk.get("usage"):
        result.usage = parse_usage(chunk["usage"])
    result.model = chunk.get("model") or result.model
    added = ""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        added += think.feed(delta.get("content") or "")
        # DeepSeek, vLLM and others stream reasoning in `reasoning_content`, OpenRouter in `reasoning`.
        if delta.get("reasoning_content") or delta.get("reasoning"):
            result.saw_reasoning = True
        if delta.get("refusal"):
            result.refusal = (result.refusal or "") + delta["refusal"]
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
    result.saw_reasoning = result.saw_reasoning or think.saw_reasoning
    result.text += added
    return added


class EventTooLong(ValueError):
    """A Server-Sent Event longer than any chat chunk is: the stream is broken (or hostile)."""


async def event_batches(stream: aiohttp.StreamReader, idle_timeout: float) -> AsyncIterator[list[str]]:
    """The `data:` payloads of a Server-Sent Events stream, in batches of what has arrived together.

    Waits at most `idle_timeout` for more data; raises EventTooLong for an event over MAX_EVENT_BYTES.
    """
    pending = b""
    data_lines: list[str] = []
    while True:
        received = await asyncio.wait_for(stream.readany(), idle_timeout)
        if not received:
            return
        pending += received + stream.read_nowait()  # and whatever else is already buffered
        *lines, pending = pending.split(b"\n")
        if max(len(pending), *(len(raw) for raw in lines)) > MAX_EVENT_BYTES:
            raise EventTooLong(f"an event of over {MAX_EVENT_BYTES} bytes")
        batch: list[str] = []
        for raw in lines:
            line = raw.decode().rstrip("\r")
            if not line:
                if data_lines:
                    batch.append("\n".join(data_lines))
                    data_lines = []
            elif line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
        if batch:
            yield batch
