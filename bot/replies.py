"""The reply surface for a Discord channel: how the conversation engine's answers reach Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import discord

from bot.errors import GENERIC_FAILURE, UserError, describe_expected
from bot.refusals import RefusalMemory
from bot.render import MESSAGE_LIMIT, with_notes
from bot.streaming import SentMessage

log = logging.getLogger(__name__)

# An interaction's token lasts 15 minutes from its creation; an answer ready later than this goes to the channel
# as a message instead (the last minute is a margin for the upload itself).
INTERACTION_ANSWER_SECONDS = 14 * 60.0
LATE_NOTE = "This took longer than Discord lets me answer a command, so here it is as a message."


def token_expiring(interaction: discord.Interaction[Any]) -> bool:
    """Whether the interaction's token (15 minutes from its creation) is too near its end to answer through."""
    return (discord.utils.utcnow() - interaction.created_at).total_seconds() > INTERACTION_ANSWER_SECONDS


async def answer_late(
    interaction: discord.Interaction[Any], content: str, *, files: Sequence[discord.File] = ()
) -> discord.Message:
    """Post a command's answer in its channel, as a message mentioning the member (who asked long ago),
    with a note saying why: for when the interaction's token is spent."""
    channel = interaction.channel
    if not isinstance(channel, discord.abc.Messageable):
        raise UserError("I can't post in this kind of channel.")
    ping = discord.AllowedMentions(users=[interaction.user])  # meant: they have waited a long time
    text = with_notes(f"{interaction.user.mention}\n{content}", [LATE_NOTE])
    if len(text) <= MESSAGE_LIMIT:
        return await channel.send(text, files=list(files), allowed_mentions=ping)
    await channel.send(with_notes(interaction.user.mention, [LATE_NOTE]), allowed_mentions=ping)
    return await channel.send(content, files=list(files))


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

    def __init__(
        self, channel: discord.abc.Messageable, *, reply_to: discord.Message | discord.PartialMessage | None = None
    ) -> None:
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
