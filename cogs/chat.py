"""Conversations: /chat opens a thread per conversation, mentions and thread messages are turns, history persists."""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from dataclasses import dataclass
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import parent_id_of, role_ids_of
from bot.api import MODEL_NAME, ChatRequest, ChatResult, safety_identifier
from bot.bot import Bot, describe_error, missing_permissions
from bot.errors import GENERIC_FAILURE, ApiError, ApiErrorKind, UserError
from bot.moderation import withheld_note
from bot.render import MESSAGE_LIMIT, thread_name, truncate, with_notes
from bot.store import ChannelRecord, NewTurn, UsageRecord
from bot.streaming import EditThrottle, StreamingReply
from bot.window import MAX_WINDOW_TURNS, build_window

log = logging.getLogger(__name__)

# Threads the bot opens archive after a day without messages; any new message unarchives them.
THREAD_ARCHIVE_MINUTES: Literal[60, 1440, 4320, 10080] = 1440
THREAD_PERMISSIONS = ["send_messages", "create_public_threads", "send_messages_in_threads", "read_message_history"]
IN_THREAD_PERMISSIONS = ["send_messages_in_threads", "read_message_history"]
IN_CHANNEL_PERMISSIONS = ["send_messages", "read_message_history"]

NOTE_OMITTED = "Older messages in this conversation were left out to fit the context budget."
NOTE_LENGTH = "The answer was cut off: it reached the length limit."
NOTE_FILTERED = "The provider's content filter stopped this answer."
NOTE_REFUSED = "The model declined to answer."
NOTE_EMPTY = "The model returned no text."
NOT_ALLOWED = "🚫 Only the member who opened this conversation, or members with Manage Messages here, can do that."


@dataclass(frozen=True)
class UserTurn:
    """One message to answer: where it was said, by whom, and how to answer it."""

    channel: discord.abc.MessageableChannel
    author_id: int
    author_name: str
    text: str
    guild_id: int | None
    reply_to: discord.Message | None = None  # answered as a reply to this message
    model: str | None = None  # None: the model configured for the channel
    temperature: float | None = None
    spoken: bool = False  # transcribed from a voice message


def answer_notes(result: ChatResult, *, omitted_older: bool) -> list[str]:
    """The short notes shown under an answer."""
    notes = []
    if result.refusal:
        notes.append(NOTE_REFUSED)
    if result.finish_reason == "length":
        notes.append(NOTE_LENGTH)
    elif result.finish_reason == "content_filter":
        notes.append(NOTE_FILTERED)
    if not (result.text or result.refusal) and result.finish_reason != "length":
        notes.append(NOTE_EMPTY)
    if omitted_older:
        notes.append(NOTE_OMITTED)
    return notes


def prompt_display(user: discord.abc.User, prompt: str) -> str:
    """The message that shows what was asked (mentions render but ping nobody: the client allows none)."""
    header = f"💬 {user.mention} asked:\n"
    return header + truncate(prompt, MESSAGE_LIMIT - len(header))


class Chat(commands.Cog):
    """Chat with the model in threads, channels and (optionally) DMs."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.throttle = EditThrottle()
        # One lock per channel orders its turns; unused locks vanish with their last waiter.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def channel_lock(self, channel_id: int) -> asyncio.Lock:
        """The lock that orders a channel's turns: hold it from a message's arrival until its answer is stored."""
        lock = self._locks.get(channel_id)
        if lock is None:
            lock = self._locks[channel_id] = asyncio.Lock()
        return lock

    @app_commands.command(name="chat", description="Ask the AI. In a channel this opens a thread for the conversation.")
    @app_commands.describe(
        prompt="What to ask or say",
        model="Chat model for this answer (default: the server's)",
        temperature="Randomness from 0 to 2 (default: the model's)",
    )
    async def chat(
        self,
        interaction: discord.Interaction[Bot],
        prompt: app_commands.Range[str, 1, 4000],
        model: app_commands.Range[str, 1, 100] | None = None,
        temperature: app_commands.Range[float, 0.0, 2.0] | None = None,
    ) -> None:
        """Open a conversation thread in a text channel, or continue the conversation where it is asked."""
        if model is not None and not MODEL_NAME.match(model):
            raise UserError("That model name has characters model names never have. Try one like `gpt-5-mini`.")
        channel = interaction.channel
        if channel is None or (interaction.guild is None and not self.bot.settings.allow_dms):
            raise UserError("I don't chat in direct messages here. Use /chat in a server channel.")
        if not isinstance(channel, discord.abc.Messageable):
            raise UserError("I can't chat in this kind of channel. Try a text channel or a thread.")
        if isinstance(channel, discord.TextChannel):
            needed = THREAD_PERMISSIONS
        else:
            needed = IN_THREAD_PERMISSIONS if isinstance(channel, discord.Thread) else IN_CHANNEL_PERMISSIONS
        if interaction.guild is not None and (missing := missing_permissions(interaction.app_permissions, needed)):
            raise UserError(f"🔒 I need these permissions in this channel: {', '.join(missing)}.")
        await self.bot.gate.admit(
            "chat",
            user_id=interaction.user.id,
            role_ids=role_ids_of(interaction.user),
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            parent_id=parent_id_of(channel),
        )
        await interaction.response.defer(thinking=True)
        # After the defer: moderation is an API call and may outlast Discord's 3 s; before the prompt is shown.
        await self.bot.moderator.check_prompt(
            prompt,
            feature="chat",
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
        )
        shown = await interaction.edit_original_response(content=prompt_display(interaction.user, prompt))
        if isinstance(channel, discord.TextChannel):
            channel = await self._open_thread(channel, shown, interaction.user, prompt)
        await self.answer(
            UserTurn(
                channel,
                interaction.user.id,
                interaction.user.display_name,
                prompt,
                interaction.guild_id,
                model=model,
                temperature=temperature,
            )
        )

    async def _open_thread(
        self, channel: discord.TextChannel, message: discord.Message, opener: discord.abc.User, prompt: str
    ) -> discord.Thread:
        # Through the channel, not message.create_thread: an interaction's message has no guild attached.
        thread = await channel.create_thread(
            name=thread_name(prompt), message=message, auto_archive_duration=THREAD_ARCHIVE_MINUTES
        )
        parent = await self.bot.store.get_channel(channel.id)
        await self.bot.store.save_conversation_thread(
            thread.id,
            guild_id=channel.guild.id,
            parent_id=channel.id,
            opened_by=opener.id,
            system_prompt=parent.system_prompt,
        )
        return thread

    @app_commands.command(name="reset", description="Forget this channel's or thread's conversation history.")
    async def reset(self, interaction: discord.Interaction[Bot]) -> None:
        """Forget the history here; the conversation goes on afresh."""
        channel_id = self._require_channel_id(interaction)
        record = await self.bot.store.get_channel(channel_id)
        self._require_may_change(interaction, record)
        # Deferred first: an answer streaming here holds the lock for longer than Discord's 3 s.
        await interaction.response.defer(thinking=True)
        async with self.channel_lock(channel_id):
            forgotten = await self.bot.store.clear_turns(channel_id)
        log.info("User %s reset channel %s (%d turns)", interaction.user.id, channel_id, forgotten)
        await interaction.edit_original_response(
            content=f"🧹 {interaction.user.mention} cleared this conversation's history. "
            "The next message starts afresh."
        )

    @app_commands.command(name="system", description="Show or set the system prompt for this channel or thread.")
    @app_commands.describe(
        prompt="The new system prompt (leave out to show the current one)",
        restore_default="Go back to the server's default system prompt",
    )
    async def system(
        self,
        interaction: discord.Interaction[Bot],
        prompt: app_commands.Range[str, 1, 4000] | None = None,
        restore_default: bool = False,
    ) -> None:
        """Show the system prompt, or change it for everyone in this channel or thread."""
        channel_id = self._require_channel_id(interaction)
        record = await self.bot.store.get_channel(channel_id)
        if prompt is None and not restore_default:
            current = await self._system_prompt(record, parent_id_of(interaction.channel))
            await interaction.response.send_message(
                f"The system prompt here is:\n>>> {truncate(current, MESSAGE_LIMIT - 40)}", ephemeral=True
            )
            return
        self._require_may_change(interaction, record)
        await self.bot.store.set_system_prompt(
            channel_id, None if restore_default else prompt, guild_id=interaction.guild_id
        )
        where = "thread" if isinstance(interaction.channel, discord.Thread) else "channel"
        what = "back to the default" if restore_default else "changed"
        await interaction.response.send_message(
            f"📝 {interaction.user.mention} set this {where}'s system prompt {what}. It applies from the next message."
        )

    def _require_channel_id(self, interaction: discord.Interaction[Bot]) -> int:
        if interaction.channel_id is None or (interaction.guild is None and not self.bot.settings.allow_dms):
            raise UserError("There is no conversation with me here.")
        return interaction.channel_id

    @staticmethod
    def _require_may_change(interaction: discord.Interaction[Bot], record: ChannelRecord) -> None:
        """/reset and /system change what others share: moderators and the thread's opener only."""
        if interaction.guild is None or interaction.permissions.manage_messages:
            return
        if record.opened_by is not None and record.opened_by == interaction.user.id:
            return
        raise UserError(NOT_ALLOWED)

    async def _system_prompt(self, record: ChannelRecord, parent_id: int | None) -> str:
        """The channel's own prompt, else (for a thread people opened) its parent's, else the bot's default.

        The bot's own threads copied their channel's prompt when they opened, so later changes there
        do not reach into conversations already under way.
        """
        if record.system_prompt:
            return record.system_prompt
        if parent_id is not None and not record.is_conversation:
            parent = await self.bot.store.get_channel(parent_id)
            if parent.system_prompt:
                return parent.system_prompt
        return self.bot.settings.system_prompt

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Answer messages in the bot's conversation threads, messages that mention it, and DMs if allowed."""
        if message.author.bot or message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        if message.flags.voice:
            return  # voice messages are turns too, but the transcription cog turns them into text first
        text = self._strip_own_mention(message.content).strip()
        if not text:
            return  # without the message-content intent, messages not addressed to the bot arrive empty
        # Taken before the first await, so quick messages in one channel keep their order.
        async with self.channel_lock(message.channel.id):
            mentioned = self.bot.user is not None and self.bot.user in message.mentions
            in_conversation = (
                isinstance(message.channel, discord.Thread)
                and (await self.bot.store.get_channel(message.channel.id)).is_conversation
            )
            if message.guild is None:
                if not self.bot.settings.allow_dms:
                    await message.reply("I don't chat in direct messages. Mention me in a server channel instead.")
                    return
            elif not (mentioned or in_conversation):
                return
            guild_id = message.guild.id if message.guild else None
            if not await self.bot.gate.enabled_here(
                "chat", guild_id, message.channel.id, parent_id=parent_id_of(message.channel), user_id=message.author.id
            ):
                return  # chat is off here (or the author is blocked): ignored without a word
            if not await self.screen_message(message, text):
                return
            await self.take_turn(
                UserTurn(
                    message.channel,
                    message.author.id,
                    message.author.display_name,
                    text,
                    guild_id,
                    # In its own threads the bot just answers; elsewhere it replies to the message it answers.
                    reply_to=None if in_conversation else message,
                )
            )

    async def screen_message(self, message: discord.Message, text: str, *, counts_as_request: bool = True) -> bool:
        """Let a message's turn through the gate and moderation; if they stop it (or fail), reply why, return False.

        Call before answer(), so nothing is sent to the model for a refused turn.
        """
        author, channel = message.author, message.channel
        guild_id = message.guild.id if message.guild else None
        try:
            await self.bot.gate.admit(
                "chat",
                user_id=author.id,
                role_ids=role_ids_of(author),
                guild_id=guild_id,
                channel_id=channel.id,
                parent_id=parent_id_of(channel),
                counts_as_request=counts_as_request,
            )
            await self.bot.moderator.check_prompt(
                text, feature="chat", user_id=author.id, guild_id=guild_id, channel_id=channel.id
            )
        except Exception as error:
            words = describe_error(error)
            if words is None:
                log.exception("Screening message %s failed", message.id)
                words = GENERIC_FAILURE
            await message.reply(words, mention_author=False)
            return False
        return True

    def _strip_own_mention(self, content: str) -> str:
        if self.bot.user is None:
            return content
        return re.sub(rf"<@!?{self.bot.user.id}>", "", content)

    async def answer(self, turn: UserTurn) -> None:
        """Take one user turn and stream the model's answer into its channel; turns in a channel run in order.

        The caller has let the turn through the gate and moderation first (screen_message(), or /chat's own checks).
        """
        async with self.channel_lock(turn.channel.id):
            await self.take_turn(turn)

    async def take_turn(self, turn: UserTurn) -> None:
        """answer(), for a caller that already holds the channel's lock (channel_lock)."""
        channel_id = turn.channel.id
        model = turn.model or await self.bot.gate.model_for(
            "chat", turn.guild_id, channel_id, parent_id=parent_id_of(turn.channel)
        )
        await self.bot.store.add_turn(
            channel_id, NewTurn("user", turn.author_id, turn.author_name, turn.text, spoken=turn.spoken)
        )
        reply = StreamingReply(turn.channel, channel_id, self.throttle, reply_to=turn.reply_to)
        reply.start_typing()
        try:
            await self._answer_turn(reply, turn, model)
        except Exception as error:
            message = describe_error(error)
            if message is None:
                log.exception("Answering in channel %s failed", channel_id)
                message = GENERIC_FAILURE
            else:
                log.warning("Answering in channel %s failed: %s", channel_id, error)
            await _show_failure(reply, message)

    async def _answer_turn(self, reply: StreamingReply, turn: UserTurn, model: str) -> None:
        channel_id, guild_id = turn.channel.id, turn.guild_id
        settings = self.bot.settings
        record = await self.bot.store.get_channel(channel_id)
        system_prompt = await self._system_prompt(record, parent_id_of(turn.channel))
        turns = await self.bot.store.recent_turns(channel_id, MAX_WINDOW_TURNS + 1)
        budget = settings.context_token_budget - settings.max_answer_tokens
        for attempt in range(2):
            window = build_window(
                turns[-MAX_WINDOW_TURNS:],
                system_prompt,
                budget,
                self.bot.tokens,
                more_in_store=len(turns) > MAX_WINDOW_TURNS,
            )
            request = ChatRequest(
                model=model,
                messages=window.messages,
                max_completion_tokens=settings.max_answer_tokens,
                temperature=turn.temperature,
                safety_identifier=safety_identifier(turn.author_id),
            )
            try:
                # With MODERATE_ANSWERS nothing is shown before moderation has seen the whole answer.
                result = await self._stream(reply, request, show=not settings.moderate_answers)
                break
            except ApiError as error:
                # The count was an estimate and the model's context is smaller: trim harder, once.
                if error.kind is not ApiErrorKind.CONTEXT_TOO_LONG or attempt == 1 or reply.messages:
                    raise
                budget //= 2
        answer = result.text or result.refusal or ""
        usage = result.usage
        # Recorded before anything else can fail: the tokens are spent whether or not the answer is shown.
        await self.bot.store.record_usage(
            UsageRecord(
                feature="chat",
                model=model,
                user_id=turn.author_id,
                guild_id=guild_id,
                channel_id=channel_id,
                input_tokens=usage.input_tokens if usage else window.input_tokens,
                output_tokens=usage.output_tokens if usage else self.bot.tokens.count(answer),
            )
        )
        verdict = await self.bot.moderator.check_answer(
            answer, feature="chat", user_id=turn.author_id, guild_id=guild_id, channel_id=channel_id
        )
        if verdict.flagged:
            await reply.finish(withheld_note(verdict))
            return  # kept out of the history too, so the model never builds on it
        # Stored before it is finished on screen: an answer someone has seen survives even a kill -9.
        if answer:
            await self.bot.store.add_turn(channel_id, NewTurn("assistant", None, "assistant", answer))
        await reply.finish(with_notes(answer, answer_notes(result, omitted_older=window.omitted_older)))

    async def _stream(self, reply: StreamingReply, request: ChatRequest, *, show: bool) -> ChatResult:
        result = ChatResult()
        async for _, result in self.bot.api.stream_chat(request):
            if result.text and show:
                await reply.update(result.text)
        return result


async def _show_failure(reply: StreamingReply, message: str) -> None:
    """Say what went wrong where the answer would be, keeping any part of the answer already shown."""
    try:
        await reply.finish(with_notes(reply.text, [message]) if reply.text.strip() else message)
    except discord.HTTPException:
        log.warning("Could not show an error in the channel", exc_info=True)


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Chat(bot))
