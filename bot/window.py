"""Choosing which turns go to the model: the newest that fit the token budget."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.chat_messages import ChatMessage, ImagePart, TextPart
from bot.store import NewTurn, Picture, Turn
from bot.tokens import TokenCounter

# Keep and read at most this many turns per channel, whatever the budget: it bounds memory and the read.
MAX_WINDOW_TURNS = 200
# How a user turn's author is named in `name`: Identity.message_name.
NameOf = Callable[[int], str]


@dataclass(frozen=True)
class Window:
    """The messages for one request, and whether older turns were left out."""

    messages: list[ChatMessage]
    omitted_older: bool
    input_tokens: int


@dataclass(frozen=True)
class ShownPictures:
    """A turn's pictures as the model is to see them this time, and what they cost."""

    parts: tuple[ImagePart, ...]
    tokens: int


def show_pictures(pictures: Sequence[Picture], data: Sequence[bytes]) -> ShownPictures:
    """Pictures with their data as image parts (`data:` URLs: the API fetches no link, Discord's links expire)."""
    shown = list(zip(pictures, data, strict=False))  # a picture past the channel's bound is gone: fewer data
    parts = tuple(
        ImagePart(f"data:{picture.mime_type};base64,{base64.b64encode(blob).decode('ascii')}", detail="high")
        for picture, blob in shown
    )
    return ShownPictures(parts, sum(picture.tokens for picture, _ in shown))


def picture_placeholder(turn: NewTurn) -> str:
    """How a turn names its pictures once they are no longer shown: [picture: whiteboard.png]."""
    return " ".join(f"[picture: {picture.filename}]" for picture in turn.pictures)


def turn_to_message(turn: NewTurn, name_of: NameOf | None = None, shown: ShownPictures | None = None) -> ChatMessage:
    """A turn as a chat message: user turns say who spoke, in the text and (with `name_of`) in `name`; its
    pictures are shown (`shown`) or named."""
    if turn.role == "assistant":
        return ChatMessage("assistant", turn.content)
    spoken = " (voice message)" if turn.spoken else ""
    # `name` tells apart people with the same display name; Identity.message_name makes one the API takes
    # (^[a-zA-Z0-9_-]+$) without giving away the Discord id.
    name = name_of(turn.author_id) if turn.author_id and name_of else None
    text = f"{turn.author_name}{spoken}: {turn.content}"
    if shown is not None and shown.parts:
        return ChatMessage.with_parts("user", [TextPart(text), *shown.parts], name=name)
    if turn.pictures:
        text = f"{text}\n{picture_placeholder(turn)}"
    return ChatMessage("user", text, name=name)


MessageOf = Callable[[Turn, ShownPictures | None], ChatMessage]


def turn_tokens(turn: NewTurn, counter: TokenCounter) -> int:
    """What a turn costs in a request: counted once, when it is stored, and kept with it."""
    return counter.count(turn_to_message(turn).content)


def build_window(
    turns: Sequence[Turn],
    system_prompt: str,
    budget: int,
    counter: TokenCounter,
    *,
    more_in_store: bool,
    name_of: NameOf | None = None,
    shown: Mapping[int, ShownPictures] | None = None,
    message_of: MessageOf | None = None,
) -> Window:
    """The system prompt plus the newest turns that fit `budget` tokens (the newest turn always goes).

    `shown`: the pictures to show, by turn id; other turns' pictures are named, and their names counted.
    `message_of` makes a turn's message (History.message keeps them); by default, turn_to_message.
    """
    shown = shown or {}
    if message_of is None:

        def message_of(turn: Turn, pictures: ShownPictures | None) -> ChatMessage:
            return turn_to_message(turn, name_of, pictures)

    used = counter.count(system_prompt)
    chosen: list[ChatMessage] = []
    for turn in reversed(turns):
        pictures = shown.get(turn.id)
        cost = turn.tokens or turn_tokens(turn, counter)
        if pictures is not None:
            cost += pictures.tokens
        elif turn.pictures:
            cost += counter.count(picture_placeholder(turn))
        if chosen and used + cost > budget:
            break
        chosen.append(message_of(turn, pictures))
        used += cost
    omitted = more_in_store or len(chosen) < len(turns)
    return Window([ChatMessage("system", system_prompt), *reversed(chosen)], omitted, used)
