"""One answer, from the request to the stored turn: what is shown is stored first, on every path."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.chat_messages import ChatRequest, ChatResult
from bot.errors import GENERIC_FAILURE, ApiError, ApiErrorKind, describe_expected
from bot.moderation import withheld_note
from bot.render import with_notes
from bot.store import AnswerWrite, NewTurn, Turn, UsageRecord
from bot.streaming import ReplySurface, StreamingReply
from bot.window import ShownPictures, Window, build_window, show_pictures, turn_tokens

if TYPE_CHECKING:
    from bot.conversation.engine import Conversations
    from bot.conversation.turns import Question

log = logging.getLogger(__name__)

NOTE_OMITTED = "Older messages in this conversation were left out to fit the context budget."
NOTE_LENGTH = "The answer was cut off: it reached the length limit."
NOTE_FILTERED = "The provider's content filter stopped this answer."
NOTE_REFUSED = "The model declined to answer."
NOTE_EMPTY = "The model returned no text."
# A reasoning model's thinking counts against max_completion_tokens: it can use all of them before a word shows.
NOTE_THOUGHT_OUT = (
    "The model spent its whole answer budget thinking and wrote nothing to show. "
    "Ask for something smaller, or the bot's owner can raise MAX_ANSWER_TOKENS."
)


def ending_notes(result: ChatResult) -> list[str]:
    """Notes on how an answer ended, known only once it has."""
    notes = []
    if result.refusal:
        notes.append(NOTE_REFUSED)
    if result.finish_reason == "length":
        notes.append(NOTE_LENGTH if result.text or result.refusal else NOTE_THOUGHT_OUT)
    elif result.finish_reason == "content_filter":
        notes.append(NOTE_FILTERED)
    if not (result.text or result.refusal) and result.finish_reason != "length":
        notes.append(NOTE_EMPTY)
    return notes


def request_notes(*, omitted_older: bool, temperature_ignored: bool, model: str) -> list[str]:
    """Notes on how the answer was asked for, known from its first words: shown with them, so that a quick
    answer is never edited just to add them."""
    notes = []
    if omitted_older:
        notes.append(NOTE_OMITTED)
    if temperature_ignored:
        notes.append(f"{model or 'This model'} takes no temperature; it answered at its default.")
    return notes


class Answer:
    """One answer from request to stored turn: what is shown is stored first, on every path."""

    def __init__(
        self,
        engine: Conversations,
        question: Turn,
        asked: Question,
        surface: ReplySurface,
        *,
        notes: Sequence[str] = (),
        pictures: Sequence[bytes] = (),
    ) -> None:
        self._engine = engine
        self._question = question
        self._asked = asked
        self._notes = list(notes)  # about what the question shared: shown under the answer
        self._fresh_pictures = list(pictures)  # the question's own, already in hand
        self._reply = StreamingReply(surface, asked.channel_id, engine.throttle, before_show=self._store_partial)
        self._answer_id: int | None = None
        self._model = asked.model or ""
        self._window: Window | None = None
        self._result = ChatResult()

    async def run(self) -> str | None:
        """Answer, or say where the answer would be why it could not be given; the answer stored, if any."""
        self._reply.start_typing()
        try:
            return await self._answer()
        except Exception as error:
            await self._fail(error)
            return None
        finally:
            await self._reply.close()

    async def _answer(self) -> str | None:
        engine, asked = self._engine, self._asked
        settings = engine.settings
        self._model = asked.model or await engine.gate.model_for(
            "chat", asked.guild_id, asked.channel_id, parent_id=asked.parent_id
        )
        system_prompt = await engine.system_prompt(asked.channel_id, asked.parent_id)
        history = await engine.history.load(asked.channel_id)
        shown = await self._shown_pictures(history.turns)
        budget = settings.context_token_budget - settings.max_answer_tokens
        for attempt in range(2):
            window = build_window(
                history.turns,
                system_prompt,
                budget,
                engine.tokens,
                more_in_store=history.has_older,
                name_of=engine.identity.message_name,
                shown=shown,
                message_of=lambda turn, pictures: engine.history.message(history, turn, pictures),
            )
            self._window = window
            try:
                await self._stream(self._request(window))
                break
            except ApiError as error:
                # The count was an estimate and the model's context is smaller: trim harder, once.
                if error.kind is not ApiErrorKind.CONTEXT_TOO_LONG or attempt == 1 or self._reply.message_ids:
                    raise
                budget //= 2
        return await self._conclude(window)

    async def _shown_pictures(self, turns: Sequence[Turn]) -> dict[int, ShownPictures]:
        """The pictures the model sees this time: those of the asker's last PICTURE_TURNS turns (others' turns
        in between count too), when the model sees pictures at all."""
        engine = self._engine
        if not engine.sees_pictures(self._model):
            return {}
        recent = [turn for turn in turns if turn.role == "user"][-engine.settings.picture_turns :]
        pictured = [turn for turn in recent if turn.pictures]
        if not pictured:
            return {}
        older = [turn.id for turn in pictured if turn.id != self._question.id]
        data = await engine.store.picture_data(older) if older else {}
        data[self._question.id] = self._fresh_pictures
        return {turn.id: show_pictures(turn.pictures, data.get(turn.id, [])) for turn in pictured}

    def _request(self, window: Window) -> ChatRequest:
        return ChatRequest(
            model=self._model,
            messages=window.messages,
            max_completion_tokens=self._engine.settings.max_answer_tokens,
            temperature=self._asked.temperature,
            safety_identifier=self._engine.identity.safety_identifier(self._asked.author_id),
        )

    async def _stream(self, request: ChatRequest) -> None:
        # With MODERATE_ANSWERS nothing is shown before moderation has seen the whole answer.
        show = not self._engine.settings.moderate_answers
        self._result = ChatResult()
        async for _, result in self._engine.api.stream_chat(request):
            self._result = result
            # The stream's last item is the whole answer: stored before it is shown, in _conclude.
            if result.text and show and not result.complete:
                await self._reply.update(with_notes(result.text, self._known_notes(result)))

    async def _conclude(self, window: Window) -> str | None:
        """Moderate the whole answer, store it with its usage, then show it whole."""
        engine, result = self._engine, self._result
        answer = result.text or result.refusal or ""
        usage = self._usage(window)
        verdict = await engine.moderator.check_answer(
            answer,
            feature="chat",
            user_id=self._asked.author_id,
            guild_id=self._asked.guild_id,
            channel_id=self._asked.channel_id,
        )
        if verdict.flagged or not answer:
            # A withheld answer stays out of the history too, so the model never builds on it.
            await self._abandon(usage)
            await self._reply.finish(
                withheld_note(verdict) if verdict.flagged else with_notes("", ending_notes(result))
            )
            return None
        await self._write(answer, usage=usage)
        await self._reply.finish(with_notes(answer, [*ending_notes(result), *self._known_notes(result)]))
        return answer

    def _known_notes(self, result: ChatResult) -> list[str]:
        """The notes known before the answer is whole: what the question shared, how the answer was asked for."""
        omitted = self._window is not None and self._window.omitted_older
        notes = request_notes(omitted_older=omitted, temperature_ignored=result.temperature_ignored, model=self._model)
        return [*self._notes, *notes]

    def _usage(self, window: Window) -> UsageRecord:
        """What the call used: as the API reported it, else estimated from what was sent and received."""
        usage = self._result.usage
        return UsageRecord(
            feature="chat",
            model=self._model,
            user_id=self._asked.author_id,
            guild_id=self._asked.guild_id,
            channel_id=self._asked.channel_id,
            input_tokens=usage.input_tokens if usage else window.input_tokens,
            output_tokens=usage.output_tokens if usage else self._engine.tokens.count(self._result.text),
        )

    async def _store_partial(self, _shown: str) -> None:
        """Before part of the answer is shown: store all of it that has arrived (the shown text carries notes,
        which are not the answer), so a crash cannot lose what someone read."""
        await self._write(self._result.text, usage=None)

    async def _write(self, text: str, *, usage: UsageRecord | None) -> None:
        engine = self._engine
        turn = NewTurn("assistant", None, "assistant", text)
        tokens = turn_tokens(turn, engine.tokens)
        self._answer_id = await engine.store.write_answer(
            AnswerWrite(
                channel_id=self._asked.channel_id,
                guild_id=self._asked.guild_id,
                question_id=self._question.id,
                text=text,
                tokens=tokens,
                reply_ids=self._reply.message_ids,
                answer_id=self._answer_id,
                usage=usage,
            )
        )
        stored = Turn(
            role="assistant",
            author_id=None,
            author_name="assistant",
            content=text,
            tokens=tokens,
            state="done" if usage else "streaming",
            id=self._answer_id,
            channel_id=self._asked.channel_id,
            guild_id=self._asked.guild_id,
            reply_ids=self._reply.message_ids,
        )
        engine.history.replace(self._asked.channel_id, stored)

    async def _abandon(self, usage: UsageRecord | None) -> None:
        """Forget what was stored of the answer; the question is answered (with why not) and the call counted."""
        await self._engine.store.abandon_answer(self._question.id, answer_id=self._answer_id, usage=usage)
        if self._answer_id is not None:
            self._engine.history.remove(self._asked.channel_id, self._answer_id)
            self._answer_id = None

    async def _fail(self, error: Exception) -> None:
        """Say what went wrong where the answer would be, keeping any part already shown; count what was spent."""
        words = describe_expected(error)
        channel_id = self._asked.channel_id
        if words is None:
            log.error("Answering in channel %s failed", channel_id, exc_info=error)
            words = GENERIC_FAILURE
        else:
            log.warning("Answering in channel %s failed: %s", channel_id, error)
        # A stream that broke part way still cost its tokens.
        spent = self._window is not None and bool(self._result.text or self._result.usage)
        try:
            await self._abandon(self._usage(self._window) if spent and self._window else None)
        except Exception:
            log.exception("Could not record the failed answer in channel %s", channel_id)
        # Text that arrived but had not been shown yet goes up with the note, unless it still awaits moderation.
        moderated = self._engine.settings.moderate_answers
        shown = self._reply.text if moderated else self._result.text or self._reply.text
        try:
            await self._reply.finish(with_notes(shown, [words]) if shown.strip() else words)
        except Exception:
            log.warning("Could not show an error in channel %s", channel_id, exc_info=True)
