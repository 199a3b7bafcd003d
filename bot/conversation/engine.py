"""The conversation engine: a channel's turns in order, the window, the streamed answer, what is stored of it.

It knows nothing of cogs and talks to Discord only through a ReplySurface. Cogs decide whether a message
is addressed to the bot, `admit` it (the gate and prompt moderation), and hand it to `answer` in the place
it took when it arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from bot.access import Admission, Gate
from bot.api import OpenAIClient
from bot.config import Settings
from bot.conversation.answer import Answer
from bot.conversation.history import History
from bot.conversation.order import Place, TurnOrder
from bot.conversation.turns import Interrupted, Question, question_turn
from bot.identity import Identity
from bot.models import model_matches
from bot.moderation import Moderator
from bot.records import Records
from bot.store import ChannelRecord, Store, Turn, utc_now
from bot.streaming import EditThrottle, ReplySurface
from bot.tokens import TokenCounter

log = logging.getLogger(__name__)


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
        self.settings = settings
        self.identity = identity
        self.store = store
        self.records = records
        self.gate = gate
        self.api = api
        self.moderator = moderator
        self.tokens = tokens
        self.order = TurnOrder()
        self.history = History(store, tokens, keep_tokens=settings.context_token_budget, name_of=identity.message_name)
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
        admission = await self.gate.admit(
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
            await self.moderator.check_prompt(
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
            stored, notes = await self._store_question(question)
            pictures = [picture.data for picture in stored.pictures]
            named = replace(stored, pictures=tuple(replace(picture, data=b"") for picture in stored.pictures))
            return await Answer(self, named, question, surface, notes=notes, pictures=pictures).run()

    def sees_pictures(self, model: str) -> bool:
        """Whether a chat model takes pictures (VISION_MODELS)."""
        return model_matches(model, self.settings.vision_models)

    async def model_for(self, question: Question) -> str:
        """The chat model that answers a question: the one it asks for, else the channel's."""
        return question.model or await self.gate.model_for(
            "chat", question.guild_id, question.channel_id, parent_id=question.parent_id
        )

    async def interrupted(self, since: datetime, before: datetime) -> list[Interrupted]:
        """The questions stored between `since` and `before` (when this process started: later ones are being
        answered now) that a crash left without a whole answer, oldest first."""
        in_flight = [turn for turn in await self.store.turns_in_flight(since) if turn.created_at < before]
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
                await self.store.abandon_answer(question.id, answer_id=interrupted.cut_answer.id)
                self.history.remove(question.channel_id, interrupted.cut_answer.id)
            return await Answer(self, question, asked, surface).run()

    async def system_prompt(self, channel_id: int, parent_id: int | None) -> str:
        """The channel's own prompt, else (for a thread people opened) its parent's, else the bot's default.

        The bot's own threads copied their channel's prompt when they opened, so later changes there
        do not reach into conversations already under way.
        """
        record = await self.records.channel(channel_id)
        if record.system_prompt:
            return record.system_prompt
        parent_id = parent_id if parent_id is not None else record.parent_id
        if parent_id is not None and not record.is_conversation:
            parent = await self.records.channel(parent_id)
            if parent.system_prompt:
                return parent.system_prompt
        return self.settings.system_prompt

    async def channel(self, channel_id: int) -> ChannelRecord:
        """What the bot keeps about a channel (from the cache its own writes keep true)."""
        return await self.records.channel(channel_id)

    async def forget_channels(self, channel_ids: list[int]) -> int:
        """Forget deleted channels or threads (and a deleted channel's threads); how many turns went."""
        forgotten = await self.store.forget_channels(channel_ids)
        for channel_id in channel_ids:
            self.history.forget(channel_id)
        self.records.forget_channels(channel_ids)
        return forgotten

    async def forget_guild(self, guild_id: int, channel_ids: list[int]) -> int:
        """Forget a server the bot left (`channel_ids`: its channels and threads this process knew)."""
        forgotten = await self.store.forget_guild(guild_id)
        for channel_id in channel_ids:
            self.history.forget(channel_id)
        self.records.forget_guild(guild_id)
        return forgotten

    async def forget_history_before(self, before: datetime) -> int:
        """Drop every turn older than `before` (HISTORY_RETENTION_DAYS), a batch at a time so no turn waits long."""
        forgotten = 0
        while dropped := await self.store.prune(utc_now(), turns_before=before):
            forgotten += dropped
            await asyncio.sleep(0)  # let turns in between
        self.history.forget_older(before)
        return forgotten

    async def reset(self, channel_id: int) -> int:
        """Forget a channel's history, after any answer under way there; return how many turns were forgotten."""
        async with self.arrive(channel_id):
            forgotten = await self.store.clear_turns(channel_id)
            self.history.forget(channel_id)
        return forgotten

    async def _store_question(self, question: Question) -> tuple[Turn, list[str]]:
        """Store the question's turn (its shared pictures with their data in the returned turn); notes for the
        person on what it leaves out."""
        # Read (the first time) before the new turn is stored, which then joins it: it is not there twice.
        history = await self.history.load(question.channel_id)
        share = (self.settings.context_token_budget - self.settings.max_answer_tokens) // 2
        turn, notes = question_turn(
            question, history.turns, self.tokens, share_tokens=share, max_pictures=self.settings.max_pictures_per_turn
        )
        stored = await self.store.add_turn(question.channel_id, turn, guild_id=question.guild_id)
        self.history.append(question.channel_id, stored)
        return replace(stored, pictures=turn.pictures), notes
