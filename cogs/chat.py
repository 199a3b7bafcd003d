"""Conversations: /chat opens a thread per conversation, mentions and thread messages are turns, history persists.

A thin adapter: it decides whether a message is addressed to the bot, screens it through the conversation
engine (bot/conversation) and hands the turn over; the engine keeps the order, the history and the answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import Feature, parent_id_of, role_ids_of
from bot.bot import Bot, missing_permissions
from bot.conversation import Place, Question
from bot.errors import UserError
from bot.render import MESSAGE_LIMIT, thread_name, truncate
from bot.replies import ChannelSurface, reply_with_refusal
from bot.store import ChannelRecord

log = logging.getLogger(__name__)

# Threads the bot opens archive after a day without messages; any new message unarchives them.
THREAD_ARCHIVE_MINUTES: Literal[60, 1440, 4320, 10080] = 1440
THREAD_PERMISSIONS = ["send_messages", "create_public_threads", "send_messages_in_threads", "read_message_history"]
IN_THREAD_PERMISSIONS = ["send_messages_in_threads", "read_message_history"]
IN_CHANNEL_PERMISSIONS = ["send_messages", "read_message_history"]
NOT_ALLOWED = "🚫 Only the member who opened this conversation, or members with Manage Messages here, can do that."
NO_DMS = "I don't chat in direct messages. Mention me in a server channel instead."
TURN_MESSAGE_TYPES = (discord.MessageType.default, discord.MessageType.reply)
MAX_CHOICES = 25  # Discord's limit for autocomplete
# What a bare mention is told about, in this order, where the command exists and its feature is on.
GREETING_COMMANDS = ("chat", "image", "transcribe", "speak")
COMMAND_FEATURES: dict[str, Feature] = {"chat": "chat", "image": "images", "transcribe": "audio"}


def prompt_display(user: discord.abc.User, prompt: str) -> str:
    """The message that shows what was asked (mentions render but ping nobody: the client allows none)."""
    header = f"💬 {user.mention} asked:\n"
    return header + truncate(prompt, MESSAGE_LIMIT - len(header))


def greeting(name: str, commands: Sequence[tuple[str, str]]) -> str:
    """What the bot says to a bare mention: how to talk to it, and its commands that work here."""
    lines = [f"👋 Hi! I'm {discord.utils.escape_markdown(name)}. Mention me with a question and I'll answer it."]
    lines += [f"- `/{command}`: {description}" for command, description in commands]
    return "\n".join(lines)


def model_choices(models: Sequence[str], typed: str) -> list[app_commands.Choice[str]]:
    """The models whose names contain what was typed (any case), as autocomplete choices: at most 25."""
    wanted = typed.strip().casefold()
    matching = [model for model in models if wanted in model.casefold()]
    return [app_commands.Choice(name=model, value=model) for model in matching[:MAX_CHOICES]]


def _place_of(channel: object) -> tuple[int | None, int | None]:
    """(channel id, parent id) of an interaction's channel, for the gate's per-channel settings."""
    return (channel.id if isinstance(channel, discord.abc.Snowflake) else None), parent_id_of(channel)


class Chat(commands.Cog):
    """Chat with the model in threads, channels and (optionally) DMs."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.engine = bot.conversations

    @app_commands.command(name="chat", description="Ask the AI. In a channel this opens a thread for the conversation.")
    @app_commands.describe(
        prompt="What to ask or say",
        model="Chat model for this answer (default: the server's)",
        temperature="Randomness from 0 to 2 (default: the model's)",
        image="A picture (or a text file, a PDF) for the model to look at",
    )
    async def chat(
        self,
        interaction: discord.Interaction[Bot],
        prompt: app_commands.Range[str, 1, 4000],
        model: app_commands.Range[str, 1, 100] | None = None,
        temperature: app_commands.Range[float, 0.0, 2.0] | None = None,
        image: discord.Attachment | None = None,
    ) -> None:
        """Open a conversation thread in a text channel, or continue the conversation where it is asked."""
        channel = self._chat_channel(interaction)
        # Its place in the channel's order, before the first await: turns typed meanwhile come after it.
        in_place = not isinstance(channel, discord.TextChannel)
        place = self.engine.arrive(interaction.channel_id or 0) if in_place else None
        try:
            if model is not None:  # only the models members may pick here, checked before anything is spent
                here, parent = _place_of(channel)
                model = await self.bot.gate.check_chat_model(model, interaction.guild_id, here, parent_id=parent)
            question = self._question(interaction, channel, prompt, model, temperature)
            admission = await self.engine.admit(question, role_ids=role_ids_of(interaction.user), moderate=False)
            await interaction.response.defer(thinking=True)
            # After the defer: moderation is an API call and may outlast Discord's 3 s; before the prompt is shown.
            await self.engine.check_prompt(question, admission)
            shown = await interaction.edit_original_response(content=prompt_display(interaction.user, prompt))
            if isinstance(channel, discord.TextChannel):
                channel = await self._open_thread(channel, shown, interaction.user, prompt)
                question = self._question(interaction, channel, prompt, model, temperature)
                place = self.engine.arrive(channel.id)
            if image is not None:
                shared = await self.bot.sharing.gather(
                    [image], model=await self.engine.model_for(question), owner=interaction.user.id
                )
                question = replace(question, shared=shared)
        except BaseException:
            if place is not None:
                place.leave()
            raise
        assert place is not None
        answer = await self.engine.answer(place, question, admission, ChannelSurface(channel))
        await self.bot.speaker.after_answer(question, answer, channel=channel, author=interaction.user)

    @chat.autocomplete("model")
    async def _model_choices(self, interaction: discord.Interaction[Bot], typed: str) -> list[app_commands.Choice[str]]:
        """The models a member may pick here, as they type (Discord shows at most 25)."""
        if interaction.user.id in self.bot.settings.blocked_user_ids:
            return []
        here, parent = _place_of(interaction.channel)
        allowed = await self.bot.gate.chat_models_here(interaction.guild_id, here, parent_id=parent)
        return model_choices(allowed, typed)

    def _chat_channel(self, interaction: discord.Interaction[Bot]) -> discord.abc.Messageable:
        """Where /chat answers, once the bot's permissions there are checked."""
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
        return channel

    @staticmethod
    def _question(
        interaction: discord.Interaction[Bot],
        channel: discord.abc.Messageable,
        prompt: str,
        model: str | None,
        temperature: float | None,
    ) -> Question:
        assert isinstance(channel, discord.abc.Snowflake)
        return Question(
            channel_id=channel.id,
            guild_id=interaction.guild_id,
            author_id=interaction.user.id,
            author_name=interaction.user.display_name,
            text=prompt,
            parent_id=parent_id_of(channel),
            model=model,
            temperature=temperature,
        )

    async def _open_thread(
        self, channel: discord.TextChannel, message: discord.Message, opener: discord.abc.User, prompt: str
    ) -> discord.Thread:
        # Through the channel, not message.create_thread: an interaction's message has no guild attached.
        thread = await channel.create_thread(
            name=thread_name(prompt), message=message, auto_archive_duration=THREAD_ARCHIVE_MINUTES
        )
        parent = await self.bot.records.channel(channel.id)
        await self.bot.records.save_conversation_thread(
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
        record = await self.bot.records.channel(channel_id)
        self._require_may_change(interaction, record)
        # Deferred first: an answer streaming here is finished first, which can outlast Discord's 3 s.
        await interaction.response.defer(thinking=True)
        forgotten = await self.engine.reset(channel_id)
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
        if prompt is None and not restore_default:
            current = await self.engine.system_prompt(channel_id, parent_id_of(interaction.channel))
            await interaction.response.send_message(
                f"The system prompt here is:\n>>> {truncate(current, MESSAGE_LIMIT - 40)}", ephemeral=True
            )
            return
        self._require_may_change(interaction, await self.bot.records.channel(channel_id))
        await self.bot.records.set_system_prompt(
            channel_id, None if restore_default else prompt, guild_id=interaction.guild_id
        )
        where = "thread" if isinstance(interaction.channel, discord.Thread) else "channel"
        done = f"changed this {where}'s system prompt"
        if restore_default:
            done = f"set this {where}'s system prompt back to the default"
        await interaction.response.send_message(
            f"📝 {interaction.user.mention} {done}. It applies from the next message."
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

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Answer messages in the bot's conversation threads, messages that mention it, and DMs if allowed."""
        if message.author.bot or message.type not in TURN_MESSAGE_TYPES or message.flags.voice:
            return  # voice messages are turns too, but the transcription cog turns them into text first
        # Taken before the first await, so quick messages in one channel keep their order; a message that
        # turns out not to be a turn leaves it without waiting for anything.
        place = self.engine.arrive(message.channel.id)
        try:
            in_conversation = await self._addressed_to_bot(message)
            if in_conversation is not None:
                await self._take_turn(place, message, in_conversation=in_conversation)
        finally:
            place.leave()

    async def _addressed_to_bot(self, message: discord.Message) -> bool | None:
        """None when the message is not a turn for the bot; else whether it is in one of the bot's threads."""
        if message.author.id in self.bot.settings.blocked_user_ids:
            return None  # blocked means no word from the bot, here or in DMs
        if message.guild is None:
            return False
        channel = message.channel
        if isinstance(channel, discord.Thread) and (await self.engine.channel(channel.id)).is_conversation:
            return True
        mentioned = self.bot.user is not None and self.bot.user in message.mentions
        return False if mentioned else None

    async def _take_turn(self, place: Place, message: discord.Message, *, in_conversation: bool) -> None:
        if message.guild is None and not self.bot.settings.allow_dms:
            await reply_with_refusal(message, UserError(NO_DMS), refusals=self.bot.refusals)
            return
        text = self._strip_own_mention(message.content).strip()
        if not text and not message.attachments:
            if message.content.strip() and message.reference is None:
                await self._greet(message)  # a bare mention: people ping a bot to see what it does
            return  # without the message-content intent, messages not addressed to the bot arrive empty
        guild_id = message.guild.id if message.guild else None
        if not await self.bot.gate.enabled_here(
            "chat", guild_id, message.channel.id, parent_id=parent_id_of(message.channel), user_id=message.author.id
        ):
            return  # chat is off here: ignored without a word
        question = Question(
            channel_id=message.channel.id,
            guild_id=guild_id,
            author_id=message.author.id,
            author_name=message.author.display_name,
            text=text,
            parent_id=parent_id_of(message.channel),
            message_id=message.id,
        )
        try:
            admission = await self.engine.admit(question, role_ids=role_ids_of(message.author))
        except Exception as error:
            await reply_with_refusal(message, error, refusals=self.bot.refusals)
            return
        question = await self._with_what_it_shares(question, message)
        # In its own threads the bot just answers; elsewhere it replies to the message it answers.
        surface = ChannelSurface(message.channel, reply_to=None if in_conversation else message)
        answer = await self.engine.answer(place, question, admission, surface)
        # The voice message goes where the text did: under it in the bot's threads, else replying to the turn.
        reply_to = None if in_conversation else message
        await self.bot.speaker.after_answer(
            question, answer, channel=message.channel, author=message.author, reply_to=reply_to
        )

    async def _with_what_it_shares(self, question: Question, message: discord.Message) -> Question:
        """The question with its attachments read and the message it replies to (once it is let through)."""
        sharing, model = self.bot.sharing, await self.engine.model_for(question)
        shared = await sharing.gather(message.attachments, model=model, owner=message.author.id)
        replied = await sharing.replied(message, model=model, owner=message.author.id)
        return replace(question, shared=shared, replied=replied)

    async def _greet(self, message: discord.Message) -> None:
        """Answer a message that only mentions the bot with what it can do here; it posts, so it counts."""
        guild_id, channel_id = (message.guild.id if message.guild else None), message.channel.id
        parent_id = parent_id_of(message.channel)
        if not await self.bot.gate.enabled_here("chat", guild_id, channel_id, parent_id=parent_id):
            return
        try:
            admission = await self.bot.gate.admit(
                "chat",
                user_id=message.author.id,
                role_ids=role_ids_of(message.author),
                guild_id=guild_id,
                channel_id=channel_id,
                parent_id=parent_id,
            )
        except UserError as error:
            await reply_with_refusal(message, error, refusals=self.bot.refusals)
            return
        await admission.release()  # the greeting uses no budget, only its slot of the per-minute limit
        offered = await self._commands_here(guild_id, channel_id, parent_id)
        me = self.bot.user.display_name if self.bot.user else "the bot"
        await message.reply(greeting(me, offered), mention_author=False)

    async def _commands_here(
        self, guild_id: int | None, channel_id: int, parent_id: int | None
    ) -> list[tuple[str, str]]:
        """(name, description) of the commands a greeting names: those loaded whose feature is on here."""
        offered = []
        for name in GREETING_COMMANDS:
            command = self.bot.tree.get_command(name)
            feature = COMMAND_FEATURES.get(name)
            if not isinstance(command, app_commands.Command | app_commands.Group):
                continue
            if feature is None or await self.bot.gate.enabled_here(feature, guild_id, channel_id, parent_id=parent_id):
                offered.append((name, command.description))
        return offered

    def _strip_own_mention(self, content: str) -> str:
        if self.bot.user is None:
            return content
        return re.sub(rf"<@!?{self.bot.user.id}>", "", content)


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Chat(bot))
