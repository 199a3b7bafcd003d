"""What the bot forgets: deleted threads and channels, servers it leaves, and history past its retention.

The usage ledger stays (it holds no content), so budgets and /usage still add up.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import discord
from discord.ext import commands, tasks

from bot.bot import Bot
from bot.store import utc_now

log = logging.getLogger(__name__)

# How often the retention sweep runs; it also drops spent rate-limit entries and expired holds.
SWEEP_MINUTES = 60


class Lifecycle(commands.Cog):
    """Forgets what was deleted in Discord, and what is older than HISTORY_RETENTION_DAYS."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        """Start the hourly sweep."""
        self.sweep.start()

    async def cog_unload(self) -> None:
        """Stop the sweep with the bot."""
        self.sweep.cancel()

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        """A thread was deleted: its conversation goes with it."""
        forgotten = await self.bot.conversations.forget_channels([payload.thread_id])
        log.info("Thread %s was deleted: forgot %d turns", payload.thread_id, forgotten)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        """A channel was deleted: its conversations go with it, its threads' too."""
        threads = [thread.id for thread in getattr(channel, "threads", [])]
        forgotten = await self.bot.conversations.forget_channels([channel.id, *threads])
        log.info("Channel %s was deleted: forgot %d turns", channel.id, forgotten)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """The bot left a server (or was removed): everything it kept of it goes."""
        channel_ids = [channel.id for channel in guild.channels] + [thread.id for thread in guild.threads]
        forgotten = await self.bot.conversations.forget_guild(guild.id, channel_ids)
        log.info("Left server %s: forgot %d turns and its settings", guild.id, forgotten)

    @tasks.loop(minutes=SWEEP_MINUTES)
    async def sweep(self) -> None:
        """Forget turns past HISTORY_RETENTION_DAYS, a batch at a time (never holding up a turn for long)."""
        days = self.bot.settings.history_retention_days
        try:
            if days:
                forgotten = await self.bot.conversations.forget_history_before(utc_now() - timedelta(days=days))
                if forgotten:
                    log.info("Forgot %d turns older than %d days (HISTORY_RETENTION_DAYS)", forgotten, days)
            else:
                await self.bot.store.prune(utc_now())
        except Exception:
            log.exception("The history sweep failed; it runs again in %d minutes", SWEEP_MINUTES)

    @sweep.before_loop
    async def _before_sweep(self) -> None:
        await self.bot.wait_until_ready()


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Lifecycle(bot))
