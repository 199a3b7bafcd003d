"""What a chat request and its answer are made of: messages (text, or text and pictures), usage, results."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TextPart:
    """Text within a message made of parts."""

    text: str

    def to_json(self) -> dict[str, Any]:
        """The part as the API expects it."""
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class ImagePart:
    """A picture within a user message: always a `data:` URL, never a link the provider would fetch."""

    url: str
    detail: str = "high"  # the bot scales pictures for high detail, so the tokens counted are the ones billed

    def to_json(self) -> dict[str, Any]:
        """The part as the API expects it."""
        return {"type": "image_url", "image_url": {"url": self.url, "detail": self.detail}}


ContentPart = TextPart | ImagePart


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat request.

    `content` is always the message's text, which is what is counted and stored; a message with
    pictures also has `parts` (build it with `with_parts`), and then the parts are what is sent.
    """

    role: str
    content: str
    name: str | None = None
    parts: tuple[ContentPart, ...] = ()

    @classmethod
    def with_parts(cls, role: str, parts: Sequence[ContentPart], name: str | None = None) -> ChatMessage:
        """A message made of parts in order; its `content` is the text of its text parts."""
        text = "\n\n".join(part.text for part in parts if isinstance(part, TextPart))
        return cls(role, text, name, tuple(parts))

    def to_json(self) -> dict[str, Any]:
        """The message as the API expects it: content as a string, or as a list when it has parts."""
        body: dict[str, Any] = {"role": self.role}
        body["content"] = [part.to_json() for part in self.parts] if self.parts else self.content
        if self.name:
            body["name"] = self.name
        return body

    @functools.cached_property
    def encoded(self) -> str:
        """to_json() as JSON text, made once: a conversation's turns go out again with every request."""
        return json.dumps(self.to_json())


@dataclass(frozen=True)
class Usage:
    """Tokens the API says a call used; output tokens include any reasoning tokens."""

    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0


@dataclass
class ChatResult:
    """A finished (or, while streaming, growing) chat answer."""

    text: str = ""  # the visible answer only: reasoning never reaches it
    finish_reason: str | None = None
    refusal: str | None = None
    usage: Usage | None = None
    model: str | None = None
    saw_reasoning: bool = False  # the server sent reasoning (as <think> text or a reasoning field)
    temperature_ignored: bool = False  # a temperature was asked for, but the model takes none (REASONING_MODELS)
    complete: bool = False  # the stream has ended: this is the whole answer


@dataclass(frozen=True)
class ChatRequest:
    """What to ask the chat endpoint."""

    model: str
    messages: list[ChatMessage]
    max_completion_tokens: int
    temperature: float | None = None
    safety_identifier: str | None = None

    def to_json(self, *, stream: bool, temperature: bool = True) -> dict[str, Any]:
        """The request body; temperature only when the user set it (reasoning models accept only the default)."""
        messages = [message.to_json() for message in self.messages]
        return {"model": self.model, "messages": messages, **self._settings(stream=stream, temperature=temperature)}

    def encode(self, *, stream: bool, temperature: bool = True) -> bytes:
        """to_json() as JSON, from each message's JSON made once (the bulk of a long conversation's request)."""
        settings = json.dumps({"model": self.model, **self._settings(stream=stream, temperature=temperature)})
        messages = ",".join(message.encoded for message in self.messages)
        return f'{{"messages": [{messages}], {settings[1:]}'.encode()

    def _settings(self, *, stream: bool, temperature: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"max_completion_tokens": self.max_completion_tokens}
        if self.temperature is not None and temperature:
            body["temperature"] = self.temperature
        if self.safety_identifier:
            body["safety_identifier"] = self.safety_identifier
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body
