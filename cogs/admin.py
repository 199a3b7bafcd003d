"""Running the bot for a server: /usage, /status, and /settings for admins (Manage Server)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import fields
from typing import Literal
from urllib.parse import urlsplit

import discord
from discord import app_commands
from discord.ext import commands

from bot import __version__
from bot.access import FEATURE_NAMES, FEATURES, Feature, parent_id_of, start_of_day, start_of_month
from bot.api import MODEL_NAME, OpenAIClient
from bot.bot import Bot
from bot.config import Limits
from bot.errors import ApiError, UserError
from bot.render import MESSAGE_LIMIT, count, truncate
from bot.store import utc_now
from bot.usage import guild_report, own_report

log = logging.getLogger(__name__)

MANAGERS_ONLY = "🔒 Only members with Manage Server can change the bot's settings."
Switch = Literal["on", "off", "default"]
VoiceRepliesState = Literal["spoken", "always", "never", "default"]
VOICE_REPLY_WORDS = {
    "spoken": "when the turn was a voice message",
    "always": "on every answer",
    "never": "never",
}
LIMIT_NAMES = {
    "user_requests_per_minute": "Requests a minute, per member",
    "guild_requests_per_minute": "Requests a minute, whole server",
    "user_daily_chat_tokens": "Chat tokens a day, per member",
    "guild_daily_chat_tokens": "Chat tokens a day, whole server",
    "user_daily_images": "Images a day, per member",
    "guild_daily_images": "Images a day, whole server",
    "user_daily_audio_minutes": "Minutes of audio a day, per member",
    "guild_daily_audio_minutes": "Minutes of audio a day, whole server",
    "user_daily_speech_characters": "Characters of speech a day, per member",
    "guild_daily_speech_characters": "Characters of speech a day, whole server",
}
LIMIT_CHOICES = [app_commands.Choice(name=label, value=name) for name, label in LIMIT_NAMES.items()]
FEATURE_CHOICES = [app_commands.Choice(name=FEATURE_NAMES[feature], value=feature) for feature in FEATURES]


def require_manager(interaction: discord.Interaction[Bot]) -> int:
    """The guild id, when the member may change its settings; UserError otherwise.

    default_permissions only hides the command by default: server admins can re-grant it to anyone,
    so the permission is checked again when the command runs.
    """
    if interaction.guild_id is None:
        raise UserError("Settings belong to a server: use this command in one.")
    if not interaction.permissions.manage_guild:
        raise UserError(MANAGERS_ONLY)
    return interaction.guild_id


def switch_value(state: Switch) -> bool | None:
    """A switch as stored: True, False, or None to remove the override."""
    return None if state == "default" else state == "on"


def duration(seconds: float) -> str:
    """A duration for people: "3 d 4 h", "2 h 5 min", "42 s"."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def describe_limits(limits: Limits) -> str:
    """The limits in force, one per line; 0 shows as "no limit"."""
    lines = []
    for limit in fields(Limits):
        value = getattr(limits, limit.name)
        lines.append(f"- {LIMIT_NAMES[limit.name]}: {f'{value:,}' if value else 'no limit'}")
    return "\n".join(lines)


# The channels whose settings can differ from the server's: a thread follows its channel unless set itself.
# Not forums: discord.py offers them together with media channels, a type Discord's API spec does not list.
SettingsChannel = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.Thread


def api_host(base_url: str) -> str:
    """The API's host for members to see: no path, and never credentials written into the URL."""
    parts = urlsplit(base_url)
    host = parts.hostname or "the API"
    return host if parts.port is None else f"{host}:{parts.port}"


class Admin(commands.Cog):
    """Usage reports, status, and per-server and per-channel settings."""

    settings_group = app_commands.Group(
        name="settings",
        description="Show or change the bot's settings for this server or a channel (Manage Server).",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Your use of the bot today and this month (admins: the server's).")
    async def usage(self, interaction: discord.Interaction[Bot]) -> None:
        """Show the member's own use; members with Manage Server also see the server's totals and cost."""
        # Several sums over the ledger: deferred first, so a busy database cannot outlast Discord's 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        store, now = self.bot.store, utc_now()
        today, month = start_of_day(now), start_of_month(now)
        limits = await self.bot.gate.limits_for(interaction.guild_id)
        user_id = interaction.user.id
        text = own_report(
            await store.usage_by_model(today, user_id=user_id),
            await store.usage_by_model(month, user_id=user_id),
            limits,
        )
        guild_id = interaction.guild_id
        if guild_id is not None and interaction.permissions.manage_guild:
            report = guild_report(
                await store.usage_by_model(today, guild_id=guild_id),
                await store.usage_by_model(month, guild_id=guild_id),
                await store.usage_by_user(guild_id, month),
                limits,
                self.bot.settings.prices,
            )
            text += "\n\n" + report
        await interaction.edit_original_response(content=truncate(text, MESSAGE_LIMIT))

    @app_commands.command(name="status", description="The bot's models, API latency, uptime and version.")
    async def status(self, interaction: discord.Interaction[Bot]) -> None:
        """Show what the bot runs on here and whether the API answers."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        settings = self.bot.settings
        models = await self._models_here(
            interaction.guild_id, interaction.channel_id, parent_id_of(interaction.channel)
        )
        checks = [
            name for name, on in (("prompts", settings.moderate_prompts), ("answers", settings.moderate_answers)) if on
        ]
        moderation = f"`{settings.moderation_model}` on {' and '.join(checks)}" if checks else "off"
        started = time.perf_counter()
        try:
            await self.bot.api.get_json("/models")
            api = f"answered in {(time.perf_counter() - started) * 1000:.0f} ms"
        except ApiError as error:
            api = f"not answering: {error.user_message()}"
        lines = [
            f"**Version** {__version__} · **up** {duration(time.monotonic() - self.bot.started_at)}",
            f"**Models here**: {models}",
            f"**Moderation**: {moderation}",
            f"**API** ({api_host(settings.openai_base_url)}): {api}",
            f"**Discord** ({self._shards_line()})",
        ]
        await interaction.edit_original_response(content="\n".join(lines))

    def _shards_line(self) -> str:
        """Each shard this process runs: its gateway latency and how many servers it serves."""
        servers: dict[int | None, int] = {}
        for guild in self.bot.guilds:
            servers[guild.shard_id] = servers.get(guild.shard_id, 0) + 1
        parts = []
        for shard_id, shard in sorted(self.bot.shards.items()):
            latency = "not connected" if math.isinf(shard.latency) else f"{shard.latency * 1000:.0f} ms"
            parts.append(f"shard {shard_id}: {latency}, {count(servers.get(shard_id, 0), 'server')}")
        return f"{count(self.bot.shard_count or 1, 'shard')} in all" + (f"; {' · '.join(parts)}" if parts else "")

    @settings_group.command(name="show", description="Show the settings in force for this server and a channel.")
    @app_commands.describe(channel="The channel to show (default: this one)")
    async def settings_show(
        self, interaction: discord.Interaction[Bot], channel: SettingsChannel | None = None
    ) -> None:
        """Show the server's effective settings and a channel's, with what is overridden there."""
        guild_id = require_manager(interaction)
        channel_id = channel.id if channel else interaction.channel_id
        parent_id = parent_id_of(channel or interaction.channel)
        sections = []
        for title, where, parent in (("This server", None, None), (f"<#{channel_id}>", channel_id, parent_id)):
            switches = []
            for feature in FEATURES:
                on = await self.bot.gate.enabled_here(feature, guild_id, where, parent_id=parent)
                switches.append(f"{FEATURE_NAMES[feature]} {'on' if on else 'off'}")
            auto = await self.bot.gate.auto_transcribe_here(guild_id, where, parent_id=parent)
            voice_replies = await self.bot.gate.voice_replies_here(guild_id, where, parent_id=parent)
            sections.append(
                f"**{title}**\n- Features: {' · '.join(switches)}\n"
                f"- Models: {await self._models_here(guild_id, where, parent)}\n"
                f"- Automatic transcription of voice messages: {'on' if auto else 'off'}\n"
                f"- Answers also spoken as voice messages: {VOICE_REPLY_WORDS[voice_replies]}"
            )
        limits = describe_limits(await self.bot.gate.limits_for(guild_id))
        sections.append(f"**Limits in this server** (can only be lower than the bot's own)\n{limits}")
        await interaction.response.send_message("\n\n".join(sections), ephemeral=True)

    @settings_group.command(name="feature", description="Turn a feature on or off for this server or one channel.")
    @app_commands.describe(
        feature="Which feature",
        state="on, off, or default (a channel follows the server; the server is on)",
        channel="Only in this channel (default: the whole server)",
    )
    @app_commands.choices(feature=FEATURE_CHOICES)
    async def settings_feature(
        self,
        interaction: discord.Interaction[Bot],
        feature: str,
        state: Switch,
        channel: SettingsChannel | None = None,
    ) -> None:
        """Switch a feature for the server or one channel (and its threads)."""
        name = FEATURE_NAMES[_feature(feature)]
        await self._change(interaction, {"features": {feature: switch_value(state)}}, channel, f"{name}: {state}")

    @settings_group.command(name="model", description="Choose the model a feature uses in this server or one channel.")
    @app_commands.describe(
        feature="Which feature",
        model="Model name (leave out to go back to the default)",
        channel="Only in this channel (default: the whole server)",
    )
    @app_commands.choices(feature=FEATURE_CHOICES)
    async def settings_model(
        self,
        interaction: discord.Interaction[Bot],
        feature: str,
        model: app_commands.Range[str, 1, 100] | None = None,
        channel: SettingsChannel | None = None,
    ) -> None:
        """Set (or reset) the model for a feature, after checking the API offers it."""
        require_manager(interaction)
        name = FEATURE_NAMES[_feature(feature)]
        await interaction.response.defer(ephemeral=True, thinking=True)
        if model is not None:
            await self._require_known_model(model, self.bot.speech_api if feature == "speech" else self.bot.api)
        await self._change(
            interaction, {"models": {feature: model}}, channel, f"{name} model: {f'`{model}`' if model else 'default'}"
        )

    @settings_group.command(name="transcription", description="Transcribe voice messages automatically, or not.")
    @app_commands.describe(
        state="on, off, or default (a channel follows the server; the server follows AUTO_TRANSCRIBE)",
        channel="Only in this channel (default: the whole server)",
    )
    async def settings_transcription(
        self, interaction: discord.Interaction[Bot], state: Switch, channel: SettingsChannel | None = None
    ) -> None:
        """Switch automatic transcription of voice messages for the server or one channel."""
        await self._change(
            interaction, {"auto_transcribe": switch_value(state)}, channel, f"automatic transcription: {state}"
        )

    @settings_group.command(name="voice_replies", description="When answers also come as voice messages.")
    @app_commands.describe(
        state="spoken (when the turn was a voice message), always, never, or default (a channel follows the "
        "server; the server follows VOICE_REPLIES)",
        channel="Only in this channel (default: the whole server)",
    )
    async def settings_voice_replies(
        self, interaction: discord.Interaction[Bot], state: VoiceRepliesState, channel: SettingsChannel | None = None
    ) -> None:
        """Set when answers in the server or one channel (and its threads) are also spoken."""
        value = None if state == "default" else state
        await self._change(interaction, {"voice_replies": value}, channel, f"voice replies: {state}")

    @settings_group.command(name="limit", description="Lower one of the bot's limits for this server.")
    @app_commands.describe(
        limit="Which limit", value="The new limit (leave out to go back to the bot's own; it cannot be raised)"
    )
    @app_commands.choices(limit=LIMIT_CHOICES)
    async def settings_limit(
        self,
        interaction: discord.Interaction[Bot],
        limit: str,
        value: app_commands.Range[int, 1, 1_000_000_000] | None = None,
    ) -> None:
        """Set (or reset) one of this server's limits; the bot-wide value stays the ceiling."""
        guild_id = require_manager(interaction)
        if limit not in LIMIT_NAMES:
            raise UserError("Pick a limit from the list.")
        ceiling = getattr(self.bot.settings.limits, limit)
        if value is not None and ceiling and value > ceiling:
            raise UserError(f"The bot's owner set this limit to {ceiling:,}; a server can only lower it.")
        await self.bot.records.update_guild_settings(guild_id, {"limits": {limit: value}})
        log.info("User %s set %s to %s in guild %s", interaction.user.id, limit, value, guild_id)
        shown = f"{value:,}" if value is not None else "the bot's own"
        await interaction.response.send_message(f"✅ {LIMIT_NAMES[limit]}: {shown}.", ephemeral=True)

    async def _models_here(self, guild_id: int | None, channel_id: int | None, parent_id: int | None) -> str:
        """The model each feature uses in a channel (or, with no channel, the server), on one line."""
        parts = []
        for feature in FEATURES:
            model = await self.bot.gate.model_for(feature, guild_id, channel_id, parent_id=parent_id)
            parts.append(f"{FEATURE_NAMES[feature].lower()} `{model}`")
        return " · ".join(parts)

    async def _change(
        self,
        interaction: discord.Interaction[Bot],
        changes: dict[str, object],
        channel: SettingsChannel | None,
        summary: str,
    ) -> None:
        """Store a change for the guild or a channel and confirm it; it takes effect with the next request."""
        guild_id = require_manager(interaction)
        if channel is not None:
            await self.bot.records.update_channel_settings(channel.id, changes, guild_id=guild_id)
            where = f"in {channel.mention}"
        else:
            await self.bot.records.update_guild_settings(guild_id, changes)
            where = "in this server"
        log.info("User %s changed %s %s (guild %s)", interaction.user.id, changes, where, guild_id)
        message = f"✅ {summary[0].upper()}{summary[1:]} {where}."
        if interaction.response.is_done():
            await interaction.edit_original_response(content=message)
        else:
            await interaction.response.send_message(message, ephemeral=True)

    async def _require_known_model(self, model: str, api: OpenAIClient) -> None:
        """Refuse a model the API (speech models: the speech server) does not list; servers that list none are
        taken at their word."""
        if not MODEL_NAME.match(model):
            raise UserError("That model name has characters model names never have. Try one like `gpt-5-mini`.")
        try:
            listed = await api.get_json("/models")
        except ApiError as error:
            log.warning("Could not list the API's models to check %r: %s", model, error)
            return
        known = {str(entry.get("id")) for entry in listed.get("data") or [] if isinstance(entry, dict)}
        if known and model not in known:
            some = ", ".join(f"`{name}`" for name in sorted(known)[:15])
            raise UserError(f"❓ The API offers no model `{model}`. It offers: {some}.")


def _feature(value: str) -> Feature:
    for feature in FEATURES:
        if feature == value:
            return feature
    raise UserError("Pick a feature from the list.")


async def setup(bot: Bot) -> None:
    """Load the cog."""
    await bot.add_cog(Admin(bot))
