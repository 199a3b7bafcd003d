"""The reply surface for a Discord channel: how the conversation engine's answers reach Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import discord

from bot.errors import GENERIC_FAILURE, describe_expected
from bot.refusals import RefusalMemory
from bot.streaming import SentMessage

log = logging.getLogger(__name__)


def describe_error(error: BaseException) -> str | None:
    """The words a user sees for an error the bot expects (Discord's refusals too), or None for a bug."""
    if isinstance(error, discord.Forbidden):
        return "🔒 I lack a Discord permission for that here. A server admin can check my role's permissions."
    return describe_expected(error)


async def reply_with_refusal(message: discord.Message, error: Exception, *, refusals: RefusalMemory) -> None:
    """Tell the author under their message why it is not answered (the gate's or moderation's words), unless
    they were told the same in this channel while it still holds: a flood gets one refusal, not one each."""
    if not refusals.should_say(message.author.id, message.channel.id, error):
        log.debug("Not repeating a refusal to user %s in channel %s: %s", message.author.id, message.channel.id, error)
        return
    words = describe_error(error)
    if words is None:
        log.error("Screening message %s failed", message.id, exc_info=error)
        words = GENERIC_FAILURE
    try:
        await message.reply(words, mention_author=False)
    except discord.HTTPException:
        log.warning("Could not tell user %s why their message was not answered", message.author.id, exc_info=True)


class ChannelSurface:
    """Posts and edits an answer's messages in a channel; the first one replies to `reply_to` when given."""

    def __init__(self, channel: discord.abc.Messageable, *, reply_to: discord.Message | None = None) -> None:
        self._channel = channel
        self._reply_to = reply_to

    async def send(self, text: str, *, first: bool) -> discord.Message:
        """Post a message (the first as a reply to the question, without pinging its author)."""
        if first and self._reply_to is not None:
            reference = self._reply_to.to_reference(fail_if_not_exists=False)
            return await self._channel.send(text, reference=reference, mention_author=False)
        return await self._channel.send(text)

    async def edit(self, message: SentMessage, text: str) -> discord.Message:
        """Replace a posted message's text."""
        assert isinstance(message, discord.Message)  # a surface is only given back the messages it sent
        return await message.edit(content=text)

    async def typing(self) -> None:
        """Show the typing indicator once (Discord keeps it up for about 10 s)."""
        await self._channel.typing()


async def _keep_typing(channel: discord.abc.Messageable) -> None:
    with contextlib.suppress(discord.HTTPException):
        async with channel.typing():
            await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def typing_in(channel: discord.abc.Messageable) -> AsyncIterator[None]:
    """Show the typing indicator while the block runs; a channel that refuses it only loses the indicator."""
    task = asyncio.create_task(_keep_typing(channel))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
