"""Speech: /speak says a text in a voice message, the Speak message command reads any message aloud.

A thin adapter over the speech service (bot/spoken_replies.py), which also speaks answers in conversations.
Voice messages sent as interaction responses lose their waveform, so the recording is always posted as a message
of its own in the channel; the interaction's answer says who asked for it.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.bot import Bot, missing_permissions
from bot.config import VOICE_NAME
from bot.errors import UserError
from bot.render import MESSAGE_LIMIT, truncate
from bot.spoken_replies import NO_WAY_TO_POST, Asker, voice_suggestions
from bot.voice_message import Delivery

log = logging.getLogger(__name__)

# Discord's string options take up to 6000 characters; past 4000 a spoken text is a file's work.
MAX_TEXT_CHARS = 4000
NO_CHANNEL = "I can't post a voice message in this kind of channel. Try a text channel or a thread."


def speak_caption(user: discord.abc.User, text: str) -> str:
    """The answer to /speak, above the voice message: who asked the bot to say what (mentions ping nobody)."""
    header = f"🔊 {user.mention} asked me to say:\n>>> "
    return header + truncate(text, MESSAGE_LIMIT - len(header))


def read_aloud_note(delivery: Delivery) -> str:
    """The private answer to the Speak command: where the recording is."""
    if delivery.as_voice_message:
        return f"🔊 Read aloud: {delivery.message.jump_url}"
    return f"🔊 Read aloud, posted as a file (I can't send voice messages there): {delivery.message.jump_url}"


def check_voice(voice: str | None) -> str | None:
    """A voice name as the member typed it, once it looks like one."""
    if voice is None:
        return None
    voice = voice.strip()
    if not VOICE_NAME.match(voice):
        raise UserError("🗣️ That is not a voice name. Pick one of the suggestions, such as `alloy` or `coral`.")
    return voice


class Speech(commands.Cog):
    """Text to voice messages with the configured speech model."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.speaker = bot.speaker
        # Context menus cannot be declared inside a cog class: made here, added to the tree in cog_load.
        self.speak_menu = app_commands.ContextMenu(name="Speak", callback=self.speak_message)

    async def cog_load(self) -> None:
        """Put the context menu on the tree with the cog."""
        self.bot.tree.add_command(self.speak_menu)

    async def cog_unload(self) -> None:
        """Take the context menu off the tree with the cog."""
        self.bot.tree.remove_command(self.speak_menu.name, type=self.speak_menu.type)

    @app_commands.command(name="speak", description="Say something in a voice message.")
    @app_commands.describe(text="What to say", voice="The voice to say it in (default: the bot's)")
    async def speak(
        self,
        interaction: discord.Interaction[Bot],
        text: app_commands.Range[str, 1, MAX_TEXT_CHARS],
        voice: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        """Say the text in a voice message under a caption naming who asked."""
        chosen = check_voice(voice)
        channel, can_voice = self._channel(interaction)
        asker = Asker.of(interaction.user, channel, interaction.guild_id)
        async with await self.speaker.admit(text, asker) as admission:
            await interaction.response.defer(thinking=True)
            await self.bot.moderator.check_prompt(
                text,
                feature="speech",
                user_id=interaction.user.id,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
            )
            spoken = await self.speaker.synthesize(text, admission, asker, voice=chosen)
        caption = await interaction.edit_original_response(content=speak_caption(interaction.user, text))
        reference = caption if _can_reply(interaction) else None
        await self.speaker.deliver(channel, spoken, can_send_voice=can_voice, reference=reference)

    @speak.autocomplete("voice")
    async def voice_choices(
        self, interaction: discord.Interaction[Bot], current: str
    ) -> list[app_commands.Choice[str]]:
        """The bot's voice and OpenAI's, as the member types (any other name the speech server knows works too)."""
        voices = voice_suggestions(self.bot.settings.tts_voice, current)
        return [app_commands.Choice(name=name, value=name) for name in voices]

    async def speak_message(self, interaction: discord.Interaction[Bot], message: discord.Message) -> None:
        """Read a message aloud: the voice message replies to it; the member is told privately where it is."""
        channel, can_voice = self._channel(interaction)
        asker = Asker.of(interaction.user, channel, interaction.guild_id)
        # The target's content comes with the interaction, with or without the Message Content intent.
        async with await self.speaker.admit(message.content, asker) as admission:
            await interaction.response.defer(ephemeral=True, thinking=True)
            spoken = await self.speaker.synthesize(message.content, admission, asker)
        reference = message if _can_reply(interaction) else None
        delivery = await self.speaker.deliver(channel, spoken, can_send_voice=can_voice, reference=reference)
        await interaction.edit_original_response(content=read_aloud_note(delivery))

    @staticmethod
    def _channel(interaction: discord.Interaction[Bot]) -> tuple[discord.abc.Messageable, bool]:
        """Where the recording goes, and whether as a voice message, once the bot's permissions there allow it."""
        channel = interaction.channel
        if channel is None or not isinstance(channel, discord.abc.Messageable):
            raise UserError(NO_CHANNEL)
        if interaction.guild is None:
            return channel, True
        granted = interaction.app_permissions
        send = "send_messages_in_threads" if isinstance(channel, discord.Thread) else "send_messages"
        if missing := missing_permissions(granted, ["view_channel", send]):
            raise UserError(f"🔒 I need these permissions in this channel: {', '.join(missing)}.")
        if not (granted.send_voice_messages or granted.attach_files):
            raise UserError(NO_WAY_TO_POST)
        return channel, granted.send_voice_messages


def _can_reply(interaction: discord.Interaction[Bot]) -> bool:
    """Replying to a message takes Read Message History in a server."""
    return interaction.guild is None or interaction.app_permissions.read_message_history


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Speech(bot))
