"""The conversation engine: per-channel order, the window, streamed answers and what is stored of them."""

from bot.conversation.answer import (
    NOTE_EMPTY,
    NOTE_FILTERED,
    NOTE_LENGTH,
    NOTE_OMITTED,
    NOTE_REFUSED,
    NOTE_THOUGHT_OUT,
    ending_notes,
    request_notes,
)
from bot.conversation.engine import Conversations
from bot.conversation.order import Place, TurnOrder
from bot.conversation.turns import Interrupted, Question, Replied, Shared

__all__ = [
    "NOTE_EMPTY",
    "NOTE_FILTERED",
    "NOTE_LENGTH",
    "NOTE_OMITTED",
    "NOTE_REFUSED",
    "NOTE_THOUGHT_OUT",
    "Conversations",
    "Interrupted",
    "Place",
    "Question",
    "Replied",
    "Shared",
    "TurnOrder",
    "ending_notes",
    "request_notes",
]
