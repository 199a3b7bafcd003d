"""The Bot: owns the settings, the store and the API client; loads the cogs and syncs commands."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import sqlite3
import time
from typing import Any

import aiohttp
import asyncpg
import discord
from discord import app_commands
from discord.ext import commands

from bot.access import Gate
from bot.api import OpenAIClient
from bot.config import Settings
from bot.conversation import Conversations
from bot.errors import GENERIC_FAILURE, StartupError
from bot.identity import Identity
from bot.jobs import JobRunner
from bot.moderation import Moderator
from bot.records import Records
from bot.refusals import RefusalMemory
from bot.replies import answer_late, describe_error, token_expiring
from bot.sharing import Sharing
from bot.spoken_replies import Speaker
from bot.store import Store, is_postgres_url, open_store
from bot.tokens import TokenCounter
from bot.urls import url_host

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.chat",
    "cogs.images",
    "cogs.admin",
    "cogs.transcribe",
    "cogs.speech",
    "cogs.recovery",
    "cogs.lifecycle",
)
COMMAND_SYNC_KEY = "command_sync_hash"
# Answers streaming at once (each holds a connection to the API for its whole length).
MAX_API_CONNECTIONS = 1_000
# Discord lets one identify through per max_concurrency bucket every 5 seconds.
IDENTIFY_INTERVAL_SECONDS = 5.0

# What the bot needs in a server: reading and answering, threads for conversations, files for
# pictures and transcripts, voice messages for spoken answers.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
    attach_files=True,
    send_voice_messages=True,
)
# Names as the Discord client shows them, for telling people what to grant.
PERMISSION_NAMES = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "send_messages_in_threads": "Send Messages in Threads",
    "create_public_threads": "Create Public Threads",
    "read_message_history": "Read Message History",
    "attach_files": "Attach Files",
    "send_voice_messages": "Send Voice Messages",
    "manage_messages": "Manage Messages",
    "manage_guild": "Manage Server",
}


def build_intents(settings: Settings) -> discord.Intents:
    """Guilds and messages always; the privileged message-content intent when the owner enabled it."""
    intents = discord.Intents.default()
    intents.message_content = settings.discord_message_content
    return intents


def _shard_options(settings: Settings) -> dict[str, Any]:
    """SHARD_COUNT and SHARD_IDS as AutoShardedBot takes them; none given: discord.py's recommended count."""
    options: dict[str, Any] = {}
    if settings.shard_count is not None:
        options["shard_count"] = settings.shard_count
    if settings.shard_ids is not None:
        options["shard_ids"] = list(settings.shard_ids)
    return options


def missing_permissions(granted: discord.Permissions, needed: list[str]) -> list[str]:
    """Display names of the permissions in `needed` that `granted` lacks."""
    return [PERMISSION_NAMES.get(name, name) for name in needed if not getattr(granted, name)]


class Bot(commands.AutoShardedBot):
    """The bot process: one store, one HTTP session, one API client, shared by all cogs.

    It runs the shards SHARD_IDS of SHARD_COUNT (unset: all of discord.py's recommended count). A guild
    belongs to one shard and so to one process: what the bot keeps per guild or channel in memory (locks,
    caches) is never shared; what is kept per member across guilds lives in the database.
    """

    store: Store
    api: OpenAIClient
    speech_api: OpenAIClient
    http_session: aiohttp.ClientSession
    records: Records
    gate: Gate
    identity: Identity
    moderator: Moderator
    conversations: Conversations
    sharing: Sharing
    jobs: JobRunner
    speaker: Speaker

    def __init__(self, settings: Settings) -> None:
        # The bot never joins a voice channel (voice messages are plain attachments), yet discord.py warns
        # at every start that PyNaCl and davey are missing, which owners read as broken voice messages.
        # Client.__init__ logs those warnings only while these class flags are set.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,  # no prefix commands; slash commands only
            intents=build_intents(settings),
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=ErrorReportingTree,
            help_command=None,
            **_shard_options(settings),
        )
        self.settings = settings
        self._identify_buckets: int | None = None
        self.tokens = TokenCounter()
        self.refusals = RefusalMemory()
        self._vocabulary: asyncio.Task[None] | None = None
        self.started_at = time.monotonic()

    async def setup_hook(self) -> None:
        """Open the services, load the cogs, sync commands, log the invite link."""
        await self.open_services()
        # tiktoken may download its vocabulary, for minutes behind some firewalls: start-up never waits for it.
        self._vocabulary = asyncio.create_task(self.tokens.load_in_background(), name="tiktoken-vocabulary")
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        try:
            await self.sync_commands()
        except discord.Forbidden:
            raise StartupError(
                f"Discord refused to register commands in DISCORD_GUILD_ID={self.settings.discord_guild_id}: "
                "invite the bot to that server with the link below (it needs the applications.commands scope), "
                "or unset DISCORD_GUILD_ID. Invite link: " + self.invite_url(self.application_id or 0)
            ) from None
        assert self.application_id is not None  # set by login, before setup_hook
        log.info("Invite link: %s", self.invite_url(self.application_id))

    async def open_services(self) -> None:
        """Open the store, the HTTP session and what is built on them (API client, gate, moderation); start the jobs."""
        try:
            self.store = await open_store(self.settings.database_url, pool_size=self.settings.database_pool_size)
        except (OSError, sqlite3.Error, RuntimeError, asyncpg.PostgresError) as error:
            raise StartupError(database_failure(self.settings, error)) from None
        # aiohttp's default of 100 connections would queue the 101st answer streaming at once behind the others.
        self.http_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_API_CONNECTIONS))
        self.api = OpenAIClient(
            self.http_session,
            base_url=self.settings.openai_base_url,
            api_key=self.settings.openai_api_key,
            timeout_seconds=self.settings.api_timeout_seconds,
            max_retries=self.settings.api_max_retries,
            reasoning_models=self.settings.reasoning_models,
        )
        self.identity = await Identity.load(self.store)
        self.records = Records(self.store)
        self.gate = Gate(self.store, self.settings, records=self.records)
        self.moderator = Moderator(self.api, self.store, self.settings, notify=self.report_to_moderators)
        self.conversations = Conversations(
            settings=self.settings,
            store=self.store,
            records=self.records,
            gate=self.gate,
            api=self.api,
            moderator=self.moderator,
            tokens=self.tokens,
            identity=self.identity,
        )
        self.jobs = JobRunner()
        self.jobs.start()
        self.sharing = Sharing(self.settings, self.jobs)
        self.speech_api = self._speech_client()
        self.speaker = Speaker(settings=self.settings, gate=self.gate, api=self.speech_api, jobs=self.jobs)

    def _speech_client(self) -> OpenAIClient:
        """The API client for speech: the chat one, or a second on the same session for a speech server of its own."""
        settings = self.settings
        if (settings.speech_base_url, settings.speech_api_key) == (settings.openai_base_url, settings.openai_api_key):
            return self.api
        log.info("Speech comes from %s", url_host(settings.speech_base_url))
        return OpenAIClient(
            self.http_session,
            base_url=settings.speech_base_url,
            api_key=settings.speech_api_key,
            timeout_seconds=settings.api_timeout_seconds,
            max_retries=settings.api_max_retries,
        )

    async def on_message(self, message: discord.Message, /) -> None:
        """Parse no prefix commands: the bot has slash commands only, and mentions are chat (cogs/chat.py)."""

    @staticmethod
    def invite_url(application_id: int) -> str:
        """The OAuth2 link that adds the bot to a server with the scopes and permissions it needs."""
        return discord.utils.oauth_url(
            application_id, permissions=REQUIRED_PERMISSIONS, scopes=("bot", "applications.commands")
        )

    async def report_to_moderators(self, text: str) -> None:
        """Post a note in the moderators' channel (MODERATION_LOG_CHANNEL_ID), if one is set."""
        channel_id = self.settings.moderation_log_channel_id
        if channel_id is None:
            return
        channel = self.get_channel(channel_id) or await self.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            log.warning("MODERATION_LOG_CHANNEL_ID %s is not a channel the bot can post in", channel_id)
            return
        await channel.send(text)

    async def sync_commands(self) -> None:
        """Sync to DISCORD_GUILD_ID at once, or globally only when the definitions changed since the last sync."""
        if self.settings.discord_guild_id is not None:
            guild = discord.Object(id=self.settings.discord_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("Synced %d commands to guild %s", len(synced), guild.id)
            return
        definitions = [command.to_dict(self.tree) for command in self.tree.get_commands()]
        digest = hashlib.sha256(json.dumps(definitions, sort_keys=True).encode()).hexdigest()
        # Swapped in before syncing: of several processes (shards) starting together, one syncs.
        previous = await self.store.swap_meta(COMMAND_SYNC_KEY, digest)
        if previous == digest:
            log.info("Global commands unchanged since the last sync; not syncing")
            return
        try:
            synced = await self.tree.sync()
        except BaseException:
            await self.store.set_meta(COMMAND_SYNC_KEY, previous or "")  # the next start tries again
            raise
        log.info("Synced %d global commands (Discord may take a while to show changes)", len(synced))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for this shard's identify slot, shared through the database with every process of the bot.

        Discord allows one identify per max_concurrency bucket every 5 s. discord.py only spaces the shards of
        one process, and after Discord refuses an identify it calls this again: it always waits for a slot.
        """
        if self._identify_buckets is None:
            _, _, limits = await self.http.get_bot_gateway()
            self._identify_buckets = max(1, int(limits.get("max_concurrency") or 1))
        bucket = (shard_id or 0) % self._identify_buckets
        while (wait := await self.store.claim_identify_slot(bucket, IDENTIFY_INTERVAL_SECONDS)) > 0:
            log.info("Shard %s waits %.1f s for its turn to connect (Discord's identify limit)", shard_id, wait)
            await asyncio.sleep(wait)

    async def close(self) -> None:
        """Drop unfinished CPU work, log out, then close the HTTP session and the database."""
        if hasattr(self, "jobs"):
            self.jobs.stop()  # first: its callers hear why while Discord can still be told
        if self._vocabulary is not None:
            self._vocabulary.cancel()  # only the wait: the loading thread is a daemon, and exit does not wait
        try:
            await super().close()
        finally:
            if hasattr(self, "http_session"):
                await self.http_session.close()
            if hasattr(self, "store"):
                await self.store.close()


def database_failure(settings: Settings, error: BaseException) -> str:
    """Why the database could not be opened and what to check, without its password."""
    detail = str(error).replace(settings.database_url, settings.database_display)
    if is_postgres_url(settings.database_url):
        return (
            f"Could not open the database {settings.database_display}: {detail or type(error).__name__}. "
            "Check DATABASE_URL (host, port, user, password, database name, sslmode) and that the server is up."
        )
    return (
        f"Could not open the database {settings.database_path}: {detail}. "
        "Check DATABASE_URL and that the folder is writable."
    )


class ErrorReportingTree(app_commands.CommandTree["Bot"]):
    """Answers every failed interaction with a short message; logs the detail of anything unexpected."""

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        """Map the error to words for the user and send them where the user is looking."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        message = describe_command_error(interaction, cause)
        if message is None:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error(
                "Command /%s failed (user %s, guild %s, channel %s)",
                command,
                interaction.user.id,
                interaction.guild_id,
                interaction.channel_id,
                exc_info=cause,
            )
            message = GENERIC_FAILURE
        else:
            log.info("Command failed for the user: %s", cause)
        await send_error(interaction, message)


def describe_command_error(interaction: discord.Interaction[Any], error: BaseException) -> str | None:
    """The words for a failed command: the bot's own errors, Discord's refusals, failed checks and option values
    Discord let through that the bot cannot use; None for a bug."""
    if isinstance(error, app_commands.TransformerError):
        return _unusable_value(interaction, error)
    if isinstance(error, app_commands.CheckFailure):
        return describe_check_failure(error)
    return describe_error(error)


def describe_check_failure(error: app_commands.CheckFailure) -> str:
    """Why a command's check refused it, in words that say what would let it run."""
    if isinstance(error, app_commands.NoPrivateMessage):
        return "💬 This command works only in a server."
    if isinstance(error, app_commands.MissingPermissions):
        return f"🔒 You need these permissions for that: {', '.join(permission_names(error.missing_permissions))}."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"🔒 I need these permissions here for that: {', '.join(permission_names(error.missing_permissions))}."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"⏳ That command is cooling down. Try again in {max(math.ceil(error.retry_after), 1)} s."
    if isinstance(error, app_commands.MissingRole):
        return f"🔒 That command needs the role {_role(error.missing_role)}."
    if isinstance(error, app_commands.MissingAnyRole):
        return f"🔒 That command needs one of these roles: {', '.join(map(_role, error.missing_roles))}."
    return "🚫 You can't use this command here."


def permission_names(names: list[str]) -> list[str]:
    """Permissions as the Discord client names them ("manage_guild" → "Manage Server")."""
    return [PERMISSION_NAMES.get(name) or name.replace("guild", "server").replace("_", " ").title() for name in names]


def _role(role: int | str) -> str:
    return f"<@&{role}>" if isinstance(role, int) else f"**{discord.utils.escape_markdown(role)}**"


def _unusable_value(interaction: discord.Interaction[Any], error: app_commands.TransformerError) -> str:
    """A value Discord let through that the bot cannot use, such as a channel it cannot see: which option, why."""
    command = interaction.command
    parameters = command.parameters if isinstance(command, app_commands.Command) else []
    namespace = interaction.namespace
    named = next((p for p in parameters if getattr(namespace, p.name, None) is error.value), None)
    named = named or next((p for p in parameters if p.type is error.type), None)
    option = f"`{named.display_name}`" if named else "an option"
    if error.type is discord.AppCommandOptionType.channel:
        why = "I can't see that channel (it may be archived, or private to me), or it is not a kind I can use"
    else:
        why = f"it is not a {error.type.name} I can use"
    return f"⚠️ I couldn't use that value for {option}: {why}. Pick another."


async def send_error(interaction: discord.Interaction[Any], message: str) -> None:
    """Show an error: ephemeral before any answer, replacing the "thinking" state after a defer, and as a
    message in the channel once the interaction's token is too near its end."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(message, ephemeral=True)
        elif token_expiring(interaction):
            # Only public answers (transcriptions) run this long, so the channel may see why one failed.
            await answer_late(interaction, message)
        else:
            await interaction.edit_original_response(content=message, attachments=[], embeds=[])
    except discord.HTTPException:
        log.warning("Could not tell user %s about an error", interaction.user.id, exc_info=True)
