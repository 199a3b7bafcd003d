"""Transcription: /transcribe, the Transcribe message command, and voice messages as transcripts or chat turns."""

from __future__ import annotations

import contextlib
import io
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import Admission, parent_id_of, role_ids_of
from bot.audio import Progress, ProgressCallback, Transcriber, Transcript
from bot.bot import Bot
from bot.conversation import Place, Question
from bot.errors import GENERIC_FAILURE, UserError
from bot.replies import (
    ChannelSurface,
    answer_late,
    describe_error,
    reply_with_refusal,
    token_expiring,
    typing_in,
)
from bot.transcripts import (
    AUTO_TRANSCRIBE_SETTING,
    VOICE_MESSAGE_FILENAME,
    TranscriptView,
    VoiceRoute,
    check_language,
    check_media,
    describe_subject,
    media_attachment,
    render_progress,
    render_transcript,
)

log = logging.getLogger(__name__)


class Transcription(commands.Cog):
    """Audio and video to text, and voice messages in conversations."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.transcriber = Transcriber(bot.api, bot.jobs)
        # Context menus cannot be declared inside a cog class: made here, added to the tree in cog_load.
        self.transcribe_menu = app_commands.ContextMenu(name="Transcribe", callback=self.transcribe_message)

    async def cog_load(self) -> None:
        """Put the context menu on the tree with the cog."""
        self.bot.tree.add_command(self.transcribe_menu)

    async def cog_unload(self) -> None:
        """Take the context menu off the tree with the cog (audio work still running stops with the bot's jobs)."""
        self.bot.tree.remove_command(self.transcribe_menu.name, type=self.transcribe_menu.type)

    @app_commands.command(name="transcribe", description="Get the transcript of an audio or video file.")
    @app_commands.describe(
        file="The recording: audio or video",
        language="The spoken language as a two-letter code such as en or de (default: detected)",
        prompt="Names, terms or context that help with spelling",
    )
    async def transcribe(
        self,
        interaction: discord.Interaction[Bot],
        file: discord.Attachment,
        language: app_commands.Range[str, 2, 2] | None = None,
        prompt: app_commands.Range[str, 1, 500] | None = None,
    ) -> None:
        """Transcribe an uploaded file and post the transcript."""
        code = check_language(language)
        await self._answer_with_transcript(interaction, file, language=code, prompt=prompt)

    async def transcribe_message(self, interaction: discord.Interaction[Bot], message: discord.Message) -> None:
        """Transcribe the voice message, audio or video attached to a message."""
        attachment = media_attachment(message)
        if attachment is None:
            raise UserError("🎞️ That message has no voice message, audio or video file to transcribe.")
        await self._answer_with_transcript(interaction, attachment)

    @app_commands.command(
        name="autotranscribe", description="Show or switch automatic transcription of voice messages in this channel."
    )
    @app_commands.describe(enabled="Transcribe every voice message posted here (leave out to see the setting)")
    @app_commands.guild_only()
    async def autotranscribe(self, interaction: discord.Interaction[Bot], enabled: bool | None = None) -> None:
        """Show, or turn on or off, automatic transcription in this channel or thread."""
        channel = interaction.channel
        if channel is None or interaction.guild_id is None:
            raise UserError("Automatic transcription is set per server channel: use this command in one.")
        where = "thread" if isinstance(channel, discord.Thread) else "channel"
        if enabled is None:
            on = await self.bot.gate.auto_transcribe_here(
                interaction.guild_id, channel.id, parent_id=parent_id_of(channel)
            )
            await interaction.response.send_message(
                f"🎙️ Automatic transcription is **{'on' if on else 'off'}** in this {where}.", ephemeral=True
            )
            return
        # Anyone may see the setting; changing it needs one of these, checked here since Discord does not.
        if not (interaction.permissions.manage_channels or interaction.permissions.manage_guild):
            raise UserError("🔒 Only members with Manage Channels or Manage Server can change this.")
        await self.bot.records.update_channel_settings(
            channel.id, {AUTO_TRANSCRIBE_SETTING: enabled}, guild_id=interaction.guild_id
        )
        log.info("User %s set automatic transcription %s in channel %s", interaction.user.id, enabled, channel.id)
        await interaction.response.send_message(self._autotranscribe_notice(interaction.user, enabled, where))

    def _autotranscribe_notice(self, user: discord.abc.User, enabled: bool, where: str) -> str:
        if not enabled:
            return (
                f"🎙️ {user.mention} turned automatic transcription **off** in this {where}. "
                "The Transcribe app command still works on any message."
            )
        notice = (
            f"🎙️ {user.mention} turned automatic transcription **on** in this {where}: "
            "I'll reply to voice messages with their transcript."
        )
        if not self.bot.settings.discord_message_content:
            notice += (
                "\n-# I run without the Message Content intent, so Discord doesn't show me voice messages; "
                "use the Transcribe app command on them instead."
            )
        return notice

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """A voice message is a chat turn in the bot's conversations, or gets a transcript where that is on."""
        if message.author.bot or not message.flags.voice or message.author.id in self.bot.settings.blocked_user_ids:
            return  # a blocked member gets no word from the bot
        # Without the Message Content intent Discord sends most messages without their attachments.
        attachment = media_attachment(message)
        if attachment is None:
            return
        # Its place in the channel's chat order, taken before the first await as for typed messages: a message
        # sent after this voice message is answered after it. Left at once unless it becomes a chat turn.
        place = self.bot.conversations.arrive(message.channel.id)
        try:
            await self._handle_voice_message(message, attachment, place)
        finally:
            place.leave()

    async def _handle_voice_message(
        self, message: discord.Message, attachment: discord.Attachment, place: Place
    ) -> None:
        route = await self._route_voice_message(message)
        if route != "turn":
            place.leave()  # an automatic transcript never holds up the channel's conversation
        if route is None:
            return
        guild_id = message.guild.id if message.guild else None
        try:
            filename = self._checked_filename(attachment)
            admission = await self._admit(message.author, message.channel, guild_id, attachment)
        except UserError as refusal:
            if route == "turn":  # they spoke to the bot: say why it doesn't answer (once while it holds)
                await reply_with_refusal(message, refusal, refusals=self.bot.refusals)
            else:  # nobody asked; a refusal under every voice message in the channel would be noise
                log.info("Voice message %s not transcribed automatically: %s", message.id, refusal)
            return
        try:
            async with admission, typing_in(message.channel):
                transcript = await self._transcribe_attachment(
                    attachment, filename, message.author.id, guild_id, message.channel, admission
                )
            if route == "turn" and transcript.text.strip():
                await self._take_turn(place, message, transcript.text.strip())
            else:
                await self._reply_with_transcript(message, transcript)
        except Exception as error:
            await self._report_voice_failure(message, error)

    async def _route_voice_message(self, message: discord.Message) -> VoiceRoute | None:
        """What a voice message gets: a chat answer, a transcript, or (None) nothing."""
        if message.guild is None:
            return "turn"  # a DM speaks to the bot; the gate decides whether it answers DMs
        channel_id, parent_id = message.channel.id, parent_id_of(message.channel)
        if not await self.bot.gate.enabled_here(
            "audio", message.guild.id, channel_id, parent_id=parent_id, user_id=message.author.id
        ):
            return None  # transcription is off here: ignored without a word, as the admins asked
        if await self._in_conversation(message):
            return "turn"
        if await self.bot.gate.auto_transcribe_here(message.guild.id, channel_id, parent_id=parent_id):
            return "transcript"
        return None

    async def _in_conversation(self, message: discord.Message) -> bool:
        """Whether a guild voice message was posted in a conversation thread the bot opened, with chat on there."""
        channel = message.channel
        if message.guild is None or not isinstance(channel, discord.Thread):
            return False
        if not await self.bot.gate.enabled_here("chat", message.guild.id, channel.id, parent_id=channel.parent_id):
            return False
        return (await self.bot.records.channel(channel.id)).is_conversation

    async def _take_turn(self, place: Place, message: discord.Message, text: str) -> None:
        """The transcript becomes the speaker's turn, screened like typed text and answered by the engine."""
        engine = self.bot.conversations
        question = Question(
            channel_id=message.channel.id,
            guild_id=message.guild.id if message.guild else None,
            author_id=message.author.id,
            author_name=message.author.display_name,
            text=text,
            parent_id=parent_id_of(message.channel),
            message_id=message.id,
            spoken=True,
        )
        try:
            # The voice message was counted as one request when it was let through for transcription.
            admission = await engine.admit(question, role_ids=role_ids_of(message.author), counts_as_request=False)
        except Exception as error:
            await reply_with_refusal(message, error, refusals=self.bot.refusals)
            return
        answer = await engine.answer(place, question, admission, ChannelSurface(message.channel, reply_to=message))
        await self.bot.speaker.after_answer(
            question, answer, channel=message.channel, author=message.author, reply_to=message
        )

    async def _reply_with_transcript(self, message: discord.Message, transcript: Transcript) -> None:
        subject = describe_subject(VOICE_MESSAGE_FILENAME, voice=True)
        view = render_transcript(transcript, subject, VOICE_MESSAGE_FILENAME)
        first, *rest = view.messages
        file = _text_file(view)
        await message.reply(first, mention_author=False, files=[file] if file else [])
        for chunk in rest:
            await message.channel.send(chunk)

    async def _report_voice_failure(self, message: discord.Message, error: Exception) -> None:
        """Say under the voice message why it got no transcript or answer."""
        text = describe_error(error)
        if text is None:
            log.error(
                "Transcribing voice message %s in channel %s failed", message.id, message.channel.id, exc_info=error
            )
            text = GENERIC_FAILURE
        else:
            log.info("Voice message %s not transcribed: %s", message.id, error)
        try:
            await message.reply(text, mention_author=False)
        except discord.HTTPException:
            log.warning("Could not report a failed transcription in channel %s", message.channel.id, exc_info=True)

    async def _answer_with_transcript(
        self,
        interaction: discord.Interaction[Bot],
        attachment: discord.Attachment,
        *,
        language: str | None = None,
        prompt: str | None = None,
    ) -> None:
        """Check, defer, transcribe with progress, and post the transcript as the interaction's answer."""
        # Checked before deferring, so a refusal is shown only to the member who asked.
        filename = self._checked_filename(attachment)
        async with await self._admit(
            interaction.user, interaction.channel, interaction.guild_id, attachment
        ) as admission:
            await interaction.response.defer(thinking=True)
            transcript = await self._transcribe_attachment(
                attachment,
                filename,
                interaction.user.id,
                interaction.guild_id,
                interaction.channel,
                admission,
                language=language,
                prompt=prompt,
                on_progress=_progress_editor(interaction),
            )
        view = render_transcript(transcript, describe_subject(filename, voice=attachment.is_voice_message()), filename)
        await _deliver(interaction, view)

    def _checked_filename(self, attachment: discord.Attachment) -> str:
        """The name to transcribe the attachment under, once it passed the checks made before downloading."""
        filename = VOICE_MESSAGE_FILENAME if attachment.is_voice_message() else attachment.filename
        check_media(filename, attachment.content_type, attachment.size, self.bot.settings.max_download_bytes)
        return filename

    async def _admit(
        self,
        user: discord.abc.User,
        channel: discord.abc.Snowflake | None,
        guild_id: int | None,
        attachment: discord.Attachment,
    ) -> Admission:
        """Pass the gate: access, rate, and the daily audio budget for the length Discord knows."""
        # Discord knows the length of voice messages only; other files are checked against the budget once
        # their header is read, before any conversion (the before_upload hook in _transcribe_attachment).
        return await self.bot.gate.admit(
            "audio",
            user_id=user.id,
            role_ids=role_ids_of(user),
            guild_id=guild_id,
            channel_id=channel.id if channel else None,
            parent_id=parent_id_of(channel),
            audio_seconds=attachment.duration or 0.0,
        )

    async def _transcribe_attachment(
        self,
        attachment: discord.Attachment,
        filename: str,
        user_id: int,
        guild_id: int | None,
        channel: discord.abc.Snowflake | None,
        admission: Admission,
        *,
        language: str | None = None,
        prompt: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Transcript:
        """Download a checked attachment, transcribe it with the model set for the channel, and count the audio."""
        channel_id = channel.id if channel else None
        model = await self.bot.gate.model_for("audio", guild_id, channel_id, parent_id=parent_id_of(channel))
        try:
            data = await attachment.read()
        except discord.HTTPException as error:
            raise UserError("📥 I couldn't download that file from Discord. Please try again.") from error
        transcript = await self.transcriber.transcribe(
            data,
            filename,
            owner=user_id,
            model=model,
            language=language,
            prompt=prompt,
            on_progress=on_progress,
            before_upload=admission.hold_at_least,
        )
        await admission.spend(model, audio_seconds=transcript.seconds)
        log.debug("Transcript of %s: %s", filename, transcript.text)
        return transcript


def _progress_editor(interaction: discord.Interaction[Bot]) -> ProgressCallback:
    """Show progress in the deferred answer; every step follows a conversion or an upload, so edits stay rare."""

    async def show(progress: Progress) -> None:
        text = render_progress(progress)
        if text is not None:
            with contextlib.suppress(discord.HTTPException):  # progress is a courtesy; the result still comes
                await interaction.edit_original_response(content=text)

    return show


async def _deliver(interaction: discord.Interaction[Bot], view: TranscriptView) -> None:
    """Show the transcript as the command's answer, or in the channel when the answer's token is nearly spent."""
    first, *rest = view.messages
    file = _text_file(view)
    if token_expiring(interaction):
        message = await answer_late(interaction, first, files=[file] if file else [])
        for chunk in rest:
            await message.channel.send(chunk)
        return
    await interaction.edit_original_response(content=first, attachments=[file] if file else [])
    for chunk in rest:
        await interaction.followup.send(chunk)


def _text_file(view: TranscriptView) -> discord.File | None:
    if view.file_name is None or view.file_text is None:
        return None
    return discord.File(io.BytesIO(view.file_text.encode()), filename=view.file_name)


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Transcription(bot))
