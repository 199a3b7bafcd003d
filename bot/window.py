"""Choosing which turns go to the model: the newest that fit the token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.api import ChatMessage
from bot.store import NewTurn
from bot.tokens import TokenCounter

# Keep and read at most this many turns per channel, whatever the budget: it bounds memory and the read.
MAX_WINDOW_TURNS = 200


@dataclass(frozen=True)
class Window:
    """The messages for one request, and whether older turns were left out."""

    messages: list[ChatMessage]
    omitted_older: bool
    input_tokens: int


def turn_to_message(turn: NewTurn) -> ChatMessage:
    """A turn as a chat message: user turns say who spoke, in the text and in `name`."""
    if turn.role == "assistant":
        return ChatMessage("assistant", turn.content)
    spoken = " (voice message)" if turn.spoken else ""
    # `name` must match ^[a-zA-Z0-9_-]+$: the id does, and tells apart people with the same display name.
    name = f"user_{turn.author_id}" if turn.author_id else None
    return ChatMessage("user", f"{turn.author_name}{spoken}: {turn.content}", name=name)


def turn_tokens(turn: NewTurn, counter: TokenCounter) -> int:
    """What a turn costs in a request: counted once, when it is stored, and kept with it."""
    return counter.count(turn_to_message(turn).content)


def build_window(
    turns: Sequence[NewTurn], system_prompt: str, budget: int, counter: TokenCounter, *, more_in_store: bool
) -> Window:
    """The system prompt plus the newest turns that fit `budget` tokens (the newest turn always goes)."""
    used = counter.count(system_prompt)
    chosen: list[ChatMessage] = []
    for turn in reversed(turns):
        cost = turn.tokens or turn_tokens(turn, counter)
        if chosen and used + cost > budget:
            break
        chosen.append(turn_to_message(turn))
        used += cost
    omitted = more_in_store or len(chosen) < len(turns)
    return Window([ChatMessage("system", system_prompt), *reversed(chosen)], omitted, used)
