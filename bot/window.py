"""Choosing which turns go to the model: the newest that fit the token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.api import ChatMessage
from bot.store import NewTurn
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


def turn_to_message(turn: NewTurn, name_of: NameOf | None = None) -> ChatMessage:
    """A turn as a chat message: user turns say who spoke, in the text and (with `name_of`) in `name`."""
    if turn.role == "assistant":
        return ChatMessage("assistant", turn.content)
    spoken = " (voice message)" if turn.spoken else ""
    # `name` tells apart people with the same display name; Identity.message_name makes one the API takes
    # (^[a-zA-Z0-9_-]+$) without giving away the Discord id.
    name = name_of(turn.author_id) if turn.author_id and name_of else None
    return ChatMessage("user", f"{turn.author_name}{spoken}: {turn.content}", name=name)


def turn_tokens(turn: NewTurn, counter: TokenCounter) -> int:
    """What a turn costs in a request: counted once, when it is stored, and kept with it."""
    return counter.count(turn_to_message(turn).content)


def build_window(
    turns: Sequence[NewTurn],
    system_prompt: str,
    budget: int,
    counter: TokenCounter,
    *,
    more_in_store: bool,
    name_of: NameOf | None = None,
) -> Window:
    """The system prompt plus the newest turns that fit `budget` tokens (the newest turn always goes)."""
    used = counter.count(system_prompt)
    chosen: list[ChatMessage] = []
    for turn in reversed(turns):
        cost = turn.tokens or turn_tokens(turn, counter)
        if chosen and used + cost > budget:
            break
        chosen.append(turn_to_message(turn, name_of))
        used += cost
    omitted = more_in_store or len(chosen) < len(turns)
    return Window([ChatMessage("system", system_prompt), *reversed(chosen)], omitted, used)
