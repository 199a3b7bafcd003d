"""After a crash or restart: questions left unanswered are answered, and a cut-off answer says it was interrupted.

What the engine stored tells what a crash interrupted (a question still pending, an answer still streaming);
this cog finds their channels and messages in Discord once the bot is ready, and hands them back to the
engine. Only questions asked within ANSWER_AFTER_RESTART_MINUTES are taken up: older ones are left alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import timedelta

import discord
from discord.ext import commands

from bot.access import parent_id_of
from bot.bot import Bot
from bot.conversation import Interrupted, Question
from bot.render import MESSAGE_LIMIT, split_message, with_notes
from bot.replies import ChannelSurface, reply_with_refusal
from bot.store import Turn, utc_now

log = logging.getLogger(__name__)

NOTE_INTERRUPTED = "✂️ This answer was interrupted: I restarted before it was finished, so I answer again below."
AnsweredChannel = discord.TextChannel | discord.Thread | discord.DMChannel | discord.VoiceChannel


class Recovery(commands.Cog):
    """Takes up, once the bot is ready, the turns a crash or restart interrupted."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._done = False
        # Turns stored since this process started are its own, answered as they come: never taken up again.
        self._started = utc_now()

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        """Once per start (on_ready comes again after reconnects): answer what was interrupted, channel by channel."""
        minutes = self.bot.settings.answer_after_restart_minutes
        if self._done or minutes <= 0:
            return
        self._done = True
        since = self._started - timedelta(minutes=minutes)
        found = await self.bot.conversations.interrupted(since, before=self._started)
        by_channel: defaultdict[int, list[Interrupted]] = defaultdict(list)
        for interrupted in found:
            by_channel[interrupted.question.channel_id].append(interrupted)
        # Channels at once, each channel's questions in the order they were asked.
        await asyncio.gather(*(self._resume_channel(items) for items in by_channel.values()))

    async def _resume_channel(self, items: list[Interrupted]) -> None:
        channel = await self._channel_of(items[0].question)
        if channel is None:
            return  # another process (shard) serves it, or it is gone
        for interrupted in items:
            try:
                await self._resume(channel, interrupted)
            except Exception:
                log.exception("Could not take up the interrupted turn %s", interrupted.question.id)

    async def _resume(self, channel: AnsweredChannel, interrupted: Interrupted) -> None:
        turn = interrupted.question
        if interrupted.cut_answer is not None:
            await self._mark_cut_off(channel, interrupted.cut_answer)
        record = await self.bot.records.channel(channel.id)
        reply_to = None
        if not record.is_conversation and turn.message_id is not None:
            reply_to = channel.get_partial_message(turn.message_id)
        question = Question(
            channel_id=channel.id,
            guild_id=turn.guild_id,
            author_id=turn.author_id or 0,
            author_name=turn.author_name,
            text=turn.content,
            parent_id=parent_id_of(channel),
            message_id=turn.message_id,
            spoken=turn.spoken,
        )
        engine = self.bot.conversations
        try:
            # Counted and moderated when it was first asked: this is the same request, taken up again.
            admission = await engine.admit(
                question, role_ids=await self._role_ids(channel, turn), counts_as_request=False, moderate=False
            )
        except Exception as error:
            if reply_to is not None:
                await reply_with_refusal(await channel.fetch_message(reply_to.id), error, refusals=self.bot.refusals)
            return
        log.info("Answering again the question %s that a restart interrupted in channel %s", turn.id, channel.id)
        await engine.resume(interrupted, question, admission, ChannelSurface(channel, reply_to=reply_to))

    async def _mark_cut_off(self, channel: AnsweredChannel, cut: Turn) -> None:
        """Say on the cut-off answer's last message that it was interrupted (or under it, when no room is left)."""
        if not cut.reply_ids:
            return  # it never reached Discord
        chunks = split_message(cut.content) or [""]
        shown = chunks[min(len(cut.reply_ids), len(chunks)) - 1]
        last = channel.get_partial_message(cut.reply_ids[-1])
        marked = with_notes(shown, [NOTE_INTERRUPTED])
        try:
            if len(marked) <= MESSAGE_LIMIT:
                await last.edit(content=marked)
            else:
                await channel.send(with_notes("", [NOTE_INTERRUPTED]), reference=last)
        except discord.HTTPException:
            log.warning("Could not mark the interrupted answer in channel %s", channel.id, exc_info=True)

    async def _channel_of(self, turn: Turn) -> AnsweredChannel | None:
        """The channel of a stored turn, if this process serves it (its guild's shard; DMs on shard 0)."""
        try:
            if turn.guild_id is None:
                if self.bot.shard_ids is not None and 0 not in self.bot.shard_ids:
                    return None
                channel = await self.bot.fetch_channel(turn.channel_id)
            else:
                guild = self.bot.get_guild(turn.guild_id)
                if guild is None:
                    return None
                channel = guild.get_channel_or_thread(turn.channel_id) or await guild.fetch_channel(turn.channel_id)
        except discord.HTTPException:
            return None
        return channel if isinstance(channel, AnsweredChannel) else None

    async def _role_ids(self, channel: AnsweredChannel, turn: Turn) -> list[int]:
        guild = getattr(channel, "guild", None)
        if not isinstance(guild, discord.Guild) or turn.author_id is None:
            return []
        try:
            member = guild.get_member(turn.author_id) or await guild.fetch_member(turn.author_id)
        except discord.HTTPException:
            return []
        return [role.id for role in member.roles]


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Recovery(bot))
