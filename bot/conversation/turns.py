"""What a question brings into the conversation, and the user turn stored for it.

A question is its text, what it shares (pictures, the text of files, notes on what could not be used) and
the message it replies to. The stored turn holds what the model is to see of all that, cut to the turn's
share of the window, so later turns see the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.attachments import SharedText
from bot.store import NewTurn, Picture, Turn
from bot.tokens import TokenCounter
from bot.window import turn_tokens

# A bot message is recognised in the history by the start of its text (its notes are not stored).
QUOTE_MATCH_CHARS = 200


@dataclass(frozen=True)
class Shared:
    """What a message's attachments give the model (pictures with their data, files' text) and notes on the rest."""

    pictures: tuple[Picture, ...] = ()
    texts: tuple[SharedText, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Replied:
    """The message a question replies to: brought into the turn unless the history already holds it."""

    message_id: int
    author_name: str
    by_bot: bool
    text: str
    pictures: tuple[Picture, ...] = ()


@dataclass(frozen=True)
class Question:
    """A message to answer: where it was said, by whom, and how to answer it."""

    channel_id: int
    guild_id: int | None
    author_id: int
    author_name: str
    text: str
    parent_id: int | None = None  # the channel a thread belongs to, whose settings it follows
    message_id: int | None = None  # the Discord message it came from
    model: str | None = None  # None: the model configured for the channel
    temperature: float | None = None
    spoken: bool = False  # transcribed from a voice message
    shared: Shared = field(default_factory=Shared)
    replied: Replied | None = None


@dataclass(frozen=True)
class Interrupted:
    """A question a crash left unanswered, and the part of its answer that was being shown, if any."""

    question: Turn
    cut_answer: Turn | None = None


def question_turn(
    question: Question, history: Sequence[Turn], counter: TokenCounter, *, share_tokens: int, max_pictures: int
) -> tuple[NewTurn, list[str]]:
    """The user turn to store for a question, and notes for the person on what it leaves out.

    The replied-to message is quoted unless the history holds it already; the files' text is cut to fit
    `share_tokens` (the turn's share of the window) after the question's own text.
    """
    notes = list(question.shared.notes)
    text = question.text
    pictures = list(question.shared.pictures)
    replied = question.replied
    if replied is not None and not _in_history(replied, history):
        text = f"{_quote(replied)}\n{text}" if text else _quote(replied)
        pictures = [*replied.pictures, *pictures]
    if len(pictures) > max_pictures:
        names = ", ".join(f"`{picture.filename}`" for picture in pictures[max_pictures:])
        notes.append(f"I look at {max_pictures} pictures per message at most, so I left out {names}.")
        pictures = pictures[:max_pictures]
    blocks, room = [], share_tokens - counter.count(text)
    for shared in question.shared.texts:
        fitted = shared.within_tokens(max(room, 0), counter.count)
        if not fitted.text:
            notes.append(f"There was no room left in the conversation for `{shared.filename}`.")
            continue
        blocks.append(fitted.render())
        room -= counter.count(blocks[-1])
        if (note := fitted.note()) is not None:
            notes.append(note)
    turn = NewTurn(
        "user",
        question.author_id,
        question.author_name,
        "\n\n".join([text, *blocks]) if blocks else text,
        spoken=question.spoken,
        message_id=question.message_id,
        state="pending",
        pictures=tuple(pictures),
    )
    return NewTurn(**{**vars(turn), "tokens": turn_tokens(turn, counter)}), notes


def _quote(replied: Replied) -> str:
    said = f': "{replied.text}"' if replied.text else ""
    return f"(replying to {replied.author_name}{said})"


def _in_history(replied: Replied, history: Sequence[Turn]) -> bool:
    """Whether the history already holds the replied-to message: a question by its Discord id, an answer by
    its text (the bot's messages are its answers, split and with notes under them)."""
    if any(turn.message_id == replied.message_id for turn in history):
        return True
    start = replied.text.split("\n\n-# ", 1)[0].strip()[:QUOTE_MATCH_CHARS]
    return (
        replied.by_bot and bool(start) and any(turn.role == "assistant" and start in turn.content for turn in history)
    )
