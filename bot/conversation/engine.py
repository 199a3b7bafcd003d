"""The conversation engine: a channel's turns in order, the window, the streamed answer, what is stored of it.

It knows nothing of cogs and talks to Discord only through a ReplySurface. Cogs decide whether a message
is addressed to the bot, `admit` it (the gate and prompt moderation), and hand it to `answer` in the place
it took when it arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from bot.access import Admission, Gate
from bot.api import ChatRequest, ChatResult, OpenAIClient
from bot.config import Settings
from bot.conversation.history import History
from bot.conversation.order import Place, TurnOrder
from bot.errors import GENERIC_FAILURE, ApiError, ApiErrorKind, describe_expected
from bot.identity import Identity
from bot.moderation import Moderator, withheld_note
from bot.records import Records
from bot.render import with_notes
from bot.store import AnswerWrite, ChannelRecord, NewTurn, Store, Turn, UsageRecord, utc_now
from bot.streaming import EditThrottle, ReplySurface, StreamingReply
from bot.tokens import TokenCounter
from bot.window import Window, build_window, turn_tokens

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


@dataclass(frozen=True)
class Interrupted:
    """A question a crash left unanswered, and the part of its answer that was being shown, if any."""

    question: Turn
    cut_answer: Turn | None = None


def answer_notes(result: ChatResult, *, omitted_older: bool, model: str = "") -> list[str]:
    """The short notes shown under an answer (`model`: the one asked, named where a note is about it)."""
    notes = []
    if result.refusal:
        notes.append(NOTE_REFUSED)
    if result.finish_reason == "length":
        notes.append(NOTE_LENGTH if result.text or result.refusal else NOTE_THOUGHT_OUT)
    elif result.finish_reason == "content_filter":
        notes.append(NOTE_FILTERED)
    if not (result.text or result.refusal) and result.finish_reason != "length":
        notes.append(NOTE_EMPTY)
    if omitted_older:
        notes.append(NOTE_OMITTED)
    if result.temperature_ignored:
        notes.append(f"{model or 'This model'} takes no temperature; it answered at its default.")
    return notes


class Conversations:
    """The conversation service the Bot holds: one per process, shared by the chat and transcription cogs."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        records: Records,
        gate: Gate,
        api: OpenAIClient,
        moderator: Moderator,
        tokens: TokenCounter,
        identity: Identity,
    ) -> None:
        self._settings = settings
        self._identity = identity
        self._store = store
        self._records = records
        self._gate = gate
        self._api = api
        self._moderator = moderator
        self._tokens = tokens
        self.order = TurnOrder()
        self.history = History(store, tokens, keep_tokens=settings.context_token_budget)
        self.throttle = EditThrottle()

    def arrive(self, channel_id: int) -> Place:
        """Take a message's place in its channel the moment it arrives (before any await)."""
        return self.order.arrive(channel_id)

    async def admit(
        self,
        question: Question,
        *,
        role_ids: Iterable[int],
        counts_as_request: bool = True,
        moderate: bool = True,
    ) -> Admission:
        """Let a question through the gate and (unless `moderate` is False: call check_prompt later) prompt
        moderation, or raise UserError/ApiError saying why not."""
        admission = await self._gate.admit(
            "chat",
            user_id=question.author_id,
            role_ids=role_ids,
            guild_id=question.guild_id,
            channel_id=question.channel_id,
            parent_id=question.parent_id,
            counts_as_request=counts_as_request,
        )
        if moderate:
            await self.check_prompt(question, admission)
        return admission

    async def check_prompt(self, question: Question, admission: Admission) -> None:
        """Prompt moderation (an API call: after an interaction is deferred); a refusal releases the admission."""
        try:
            await self._moderator.check_prompt(
                question.text,
                feature="chat",
                user_id=question.author_id,
                guild_id=question.guild_id,
                channel_id=question.channel_id,
            )
        except BaseException:
            await admission.release()
            raise

    async def answer(self, place: Place, question: Question, admission: Admission, surface: ReplySurface) -> str | None:
        """Store the question and stream its answer through `surface`, after the turns ahead of it; return the
        answer as stored (None when there is none: it failed, was withheld or empty).

        Never raises for a failed answer: what went wrong is said where the answer would be.
        """
        async with place, admission:
            stored = await self._store_question(question)
            return await _Answer(self, stored, question, surface).run()

    async def interrupted(self, since: datetime) -> list[Interrupted]:
        """The questions stored since `since` that a crash left without a whole answer, oldest first."""
        in_flight = await self._store.turns_in_flight(since)
        cut = {turn.channel_id: turn for turn in in_flight if turn.role == "assistant"}
        found = []
        for turn in in_flight:
            if turn.role == "user":
                answer = cut.get(turn.channel_id)
                found.append(Interrupted(turn, answer if answer is not None and answer.id > turn.id else None))
        return found

    async def resume(
        self, interrupted: Interrupted, asked: Question, admission: Admission, surface: ReplySurface
    ) -> str | None:
        """Answer an interrupted question again (what was cut off is dropped from the history first)."""
        question = interrupted.question
        async with self.arrive(question.channel_id), admission:
            if interrupted.cut_answer is not None:
                await self._store.abandon_answer(question.id, answer_id=interrupted.cut_answer.id)
                self.history.remove(question.channel_id, interrupted.cut_answer.id)
            return await _Answer(self, question, asked, surface).run()

    async def system_prompt(self, channel_id: int, parent_id: int | None) -> str:
        """The channel's own prompt, else (for a thread people opened) its parent's, else the bot's default.

        The bot's own threads copied their channel's prompt when they opened, so later changes there
        do not reach into conversations already under way.
        """
        record = await self._records.channel(channel_id)
        if record.system_prompt:
            return record.system_prompt
        parent_id = parent_id if parent_id is not None else record.parent_id
        if parent_id is not None and not record.is_conversation:
            parent = await self._records.channel(parent_id)
            if parent.system_prompt:
                return parent.system_prompt
        return self._settings.system_prompt

    async def channel(self, channel_id: int) -> ChannelRecord:
        """What the bot keeps about a channel (from the cache its own writes keep true)."""
        return await self._records.channel(channel_id)

    async def forget_channels(self, channel_ids: list[int]) -> int:
        """Forget deleted channels or threads (and a deleted channel's threads); how many turns went."""
        forgotten = await self._store.forget_channels(channel_ids)
        for channel_id in channel_ids:
            self.history.forget(channel_id)
        self._records.forget_channels(channel_ids)
        return forgotten

    async def forget_guild(self, guild_id: int, channel_ids: list[int]) -> int:
        """Forget a server the bot left (`channel_ids`: its channels and threads this process knew)."""
        forgotten = await self._store.forget_guild(guild_id)
        for channel_id in channel_ids:
            self.history.forget(channel_id)
        self._records.forget_guild(guild_id)
        return forgotten

    async def forget_history_before(self, before: datetime) -> int:
        """Drop every turn older than `before` (HISTORY_RETENTION_DAYS), a batch at a time so no turn waits long."""
        forgotten = 0
        while dropped := await self._store.prune(utc_now(), turns_before=before):
            forgotten += dropped
            await asyncio.sleep(0)  # let turns in between
        self.history.forget_older(before)
        return forgotten

    async def reset(self, channel_id: int) -> int:
        """Forget a channel's history, after any answer under way there; return how many turns were forgotten."""
        async with self.arrive(channel_id):
            forgotten = await self._store.clear_turns(channel_id)
            self.history.forget(channel_id)
        return forgotten

    async def _store_question(self, question: Question) -> Turn:
        turn = NewTurn(
            "user",
            question.author_id,
            question.author_name,
            question.text,
            spoken=question.spoken,
            message_id=question.message_id,
            state="pending",
        )
        turn = replace(turn, tokens=turn_tokens(turn, self._tokens))
        # Read (the first time) before the new turn is stored, which then joins it: it is not there twice.
        await self.history.load(question.channel_id)
        stored = await self._store.add_turn(question.channel_id, turn, guild_id=question.guild_id)
        self.history.append(question.channel_id, stored)
        return stored


class _Answer:
    """One answer from request to stored turn: what is shown is stored first, on every path."""

    def __init__(self, engine: Conversations, question: Turn, asked: Question, surface: ReplySurface) -> None:
        self._engine = engine
        self._question = question
        self._asked = asked
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
        settings = engine._settings
        self._model = asked.model or await engine._gate.model_for(
            "chat", asked.guild_id, asked.channel_id, parent_id=asked.parent_id
        )
        system_prompt = await engine.system_prompt(asked.channel_id, asked.parent_id)
        history = await engine.history.load(asked.channel_id)
        budget = settings.context_token_budget - settings.max_answer_tokens
        for attempt in range(2):
            window = build_window(
                history.turns,
                system_prompt,
                budget,
                engine._tokens,
                more_in_store=history.has_older,
                name_of=engine._identity.message_name,
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

    def _request(self, window: Window) -> ChatRequest:
        return ChatRequest(
            model=self._model,
            messages=window.messages,
            max_completion_tokens=self._engine._settings.max_answer_tokens,
            temperature=self._asked.temperature,
            safety_identifier=self._engine._identity.safety_identifier(self._asked.author_id),
        )

    async def _stream(self, request: ChatRequest) -> None:
        # With MODERATE_ANSWERS nothing is shown before moderation has seen the whole answer.
        show = not self._engine._settings.moderate_answers
        self._result = ChatResult()
        async for _, result in self._engine._api.stream_chat(request):
            self._result = result
            # The stream's last item is the whole answer: stored before it is shown, in _conclude.
            if result.text and show and not result.complete:
                await self._reply.update(result.text)

    async def _conclude(self, window: Window) -> str | None:
        """Moderate the whole answer, store it with its usage, then show it whole."""
        engine, result = self._engine, self._result
        answer = result.text or result.refusal or ""
        usage = self._usage(window)
        verdict = await engine._moderator.check_answer(
            answer,
            feature="chat",
            user_id=self._asked.author_id,
            guild_id=self._asked.guild_id,
            channel_id=self._asked.channel_id,
        )
        if verdict.flagged or not answer:
            # A withheld answer stays out of the history too, so the model never builds on it.
            await self._abandon(usage)
            shown = (
                withheld_note(verdict)
                if verdict.flagged
                else with_notes("", answer_notes(result, omitted_older=False, model=self._model))
            )
            await self._reply.finish(shown)
            return None
        await self._write(answer, usage=usage)
        await self._reply.finish(
            with_notes(answer, answer_notes(result, omitted_older=window.omitted_older, model=self._model))
        )
        return answer

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
            output_tokens=usage.output_tokens if usage else self._engine._tokens.count(self._result.text),
        )

    async def _store_partial(self, text: str) -> None:
        """Before part of the answer is shown: store that much, so a crash cannot lose what someone read."""
        await self._write(text, usage=None)

    async def _write(self, text: str, *, usage: UsageRecord | None) -> None:
        engine = self._engine
        turn = NewTurn("assistant", None, "assistant", text)
        tokens = turn_tokens(turn, engine._tokens)
        self._answer_id = await engine._store.write_answer(
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
        await self._engine._store.abandon_answer(self._question.id, answer_id=self._answer_id, usage=usage)
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
        moderated = self._engine._settings.moderate_answers
        shown = self._reply.text if moderated else self._result.text or self._reply.text
        try:
            await self._reply.finish(with_notes(shown, [words]) if shown.strip() else words)
        except Exception:
            log.warning("Could not show an error in channel %s", channel_id, exc_info=True)
