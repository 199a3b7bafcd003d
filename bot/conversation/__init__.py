"""The conversation engine: per-channel order, the window, streamed answers and what is stored of them."""

from bot.conversation.engine import (
    NOTE_EMPTY,
    NOTE_FILTERED,
    NOTE_LENGTH,
    NOTE_OMITTED,
    NOTE_REFUSED,
    Conversations,
    Interrupted,
    Question,
    answer_notes,
)
from bot.conversation.order import Place, TurnOrder

__all__ = [
    "NOTE_EMPTY",
    "NOTE_FILTERED",
    "NOTE_LENGTH",
    "NOTE_OMITTED",
    "NOTE_REFUSED",
    "Conversations",
    "Interrupted",
    "Place",
    "Question",
    "TurnOrder",
    "answer_notes",
]
