"""The doctor's checks of Discord: the token, the intent, the shards, each server's permissions, named ids."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import discord
from discord.http import HTTPClient

from bot.access import FEATURES, Feature, Gate
from bot.bot import PERMISSION_NAMES
from bot.config import DEVELOPER_PORTAL, TOKEN_FIX, Settings
from bot.doctor.report import Report
from bot.render import count

# Doctor waits less than the bot would: a check that hangs is a finding in itself.
DISCORD_TIMEOUT_SECONDS = 60.0
GUILD_TIMEOUT_SECONDS = 20.0
MAX_GUILDS_PER_SHARD = 2_500
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
# Text and announcement channels: where members talk to the bot.
MESSAGE_CHANNEL_TYPES = frozenset({0, 5})
GUILDS_PAGE = 200
# What each feature needs in a channel where it is on.
FEATURE_PERMISSIONS: dict[Feature, tuple[str, ...]] = {
    "chat": (
        "view_channel",
        "send_messages",
        "read_message_history",
        "create_public_threads",
        "send_messages_in_threads",
    ),
    "images": ("view_channel", "attach_files"),
    "audio": ("view_channel", "send_messages", "read_message_history", "attach_files"),
    # Spoken answers and /speak: voice messages, and Attach Files for the .ogg file when those are refused.
    "speech": ("view_channel", "send_messages", "send_voice_messages", "attach_files"),
}
ROLE_SETTINGS = ("CHAT_ROLE_IDS", "IMAGES_ROLE_IDS", "AUDIO_ROLE_IDS", "SPEECH_ROLE_IDS")

Json = dict[str, Any]


async def check_discord(settings: Settings, gate: Gate, report: Report) -> int | None:
    """Log in over REST, check the application's intents and each server's permissions; return the app id."""
    report.section("Discord")
    http = HTTPClient(asyncio.get_running_loop())
    application_id: int | None = None
    report.waiting(f"Connecting to Discord (up to {DISCORD_TIMEOUT_SECONDS:.0f} s)…")
    try:
        async with asyncio.timeout(DISCORD_TIMEOUT_SECONDS):
            me: Json = dict(await http.static_login(settings.discord_token))
            report.ok(f"Logged in as {me.get('username')} (id {me['id']}).")
            application: Json = dict(await http.application_info())
            application_id = int(application["id"])
            _check_intent(settings, int(application.get("flags") or 0), application_id, report)
            guilds = await _all_guilds(http)
            recommended, _, _ = await http.get_bot_gateway()
        _check_shards(settings, [int(guild["id"]) for guild in guilds], int(recommended), report)
        # Each server has a time limit of its own, so a bot in hundreds of servers is checked to the end.
        await _check_guilds(settings, gate, http, guilds, int(me["id"]), report)
    except discord.LoginFailure:
        report.problem(
            "Discord rejected DISCORD_TOKEN.",
            f"{TOKEN_FIX} into DISCORD_TOKEN.",
        )
    except discord.HTTPException as error:
        report.problem(
            f"Discord refused a request ({error.status}: {error.text or 'no reason given'}).",
            "check that DISCORD_TOKEN is this application's bot token; if it is, Discord may be having trouble "
            "(https://discordstatus.com).",
        )
    except (aiohttp.ClientError, TimeoutError) as error:
        report.problem(f"Could not reach Discord ({type(error).__name__}).", "check this machine's network.")
    finally:
        await http.close()
    return application_id


def _check_shards(settings: Settings, guild_ids: list[int], recommended: int, report: Report) -> None:
    """The shards this process would run and the servers each would serve (Discord: at most 2,500 a shard)."""
    report.section("Shards")
    total = settings.shard_count or recommended
    mine = settings.shard_ids if settings.shard_ids is not None else tuple(range(total))
    if settings.shard_count is None:
        report.ok(f"SHARD_COUNT is unset: this process runs all {total} of Discord's recommended shards.")
    elif settings.shard_count < recommended:
        report.problem(
            f"SHARD_COUNT={settings.shard_count}, but Discord recommends {recommended} shards for this bot's servers.",
            f"set SHARD_COUNT={recommended} (and spread SHARD_IDS over the processes), or unset it.",
        )
    per_shard = {shard: 0 for shard in mine}
    for guild_id in guild_ids:
        shard = (guild_id >> 22) % total
        if shard in per_shard:
            per_shard[shard] += 1
    for shard, servers in per_shard.items():
        line = f"Shard {shard} of {total}: {count(servers, 'server')}."
        if servers > MAX_GUILDS_PER_SHARD:
            report.problem(line, f"Discord allows {MAX_GUILDS_PER_SHARD:,} servers a shard: raise SHARD_COUNT.")
        else:
            report.ok(line)
    if total > 1 and 0 in per_shard:
        report.note("Direct messages arrive on shard 0 only: this process answers them.")


async def _check_guilds(
    settings: Settings, gate: Gate, http: HTTPClient, guilds: list[Json], bot_id: int, report: Report
) -> None:
    if not guilds:
        report.problem("The bot is in no server yet.", "invite it with the link below.")
    role_ids: set[int] = set()
    channels: dict[int, discord.Permissions] = {}
    for guild in guilds:
        guild_id = int(guild["id"])
        report.section(f"Server {guild.get('name')!r} (id {guild_id})")
        if settings.allowed_guild_ids and guild_id not in settings.allowed_guild_ids:
            report.note("ALLOWED_GUILD_IDS leaves this server out: the bot ignores it.")
            continue
        try:
            async with asyncio.timeout(GUILD_TIMEOUT_SECONDS):
                roles, permissions = await _check_guild(gate, http, guild, bot_id, report)
        except discord.Forbidden as error:
            report.problem(
                f"The bot may not read this server's roles or channels ({error.text or error.status}).",
                "re-invite the bot with the link below.",
            )
            continue
        except TimeoutError:
            report.problem(
                f"Discord did not answer about this server within {GUILD_TIMEOUT_SECONDS:.0f} s.",
                "run the doctor again; if it keeps happening, Discord may be having trouble "
                "(https://discordstatus.com).",
            )
            continue
        role_ids |= roles
        channels |= permissions
    report.section("Servers, roles and channels named in the settings")
    _check_named_ids(settings, {int(guild["id"]) for guild in guilds}, role_ids, channels, report)


def _check_intent(settings: Settings, flags: int, application_id: int, report: Report) -> None:
    has_intent = bool(flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED))
    if not settings.discord_message_content:
        report.ok("DISCORD_MESSAGE_CONTENT=false: the bot does not ask for the Message Content intent.")
    elif has_intent:
        report.ok("The Message Content intent is on for the application.")
    else:
        report.problem(
            "DISCORD_MESSAGE_CONTENT=true, but the application's Message Content intent is off "
            "(Discord would refuse the bot's connection with close code 4014).",
            f"turn on 'Message Content Intent' at {DEVELOPER_PORTAL}/{application_id}/bot, "
            "or set DISCORD_MESSAGE_CONTENT=false (the bot then answers only messages that mention it).",
        )


async def _all_guilds(http: HTTPClient) -> list[Json]:
    guilds: list[Json] = []
    while True:
        page = [dict(guild) for guild in await http.get_guilds(GUILDS_PAGE, after=guilds[-1]["id"] if guilds else None)]
        guilds += page
        if len(page) < GUILDS_PAGE:
            return guilds


async def _check_guild(
    gate: Gate, http: HTTPClient, guild: Json, bot_id: int, report: Report
) -> tuple[set[int], dict[int, discord.Permissions]]:
    """Report what the bot lacks in a server's channels; return its role ids and each channel's permissions."""
    guild_id = int(guild["id"])
    member: Json = dict(await http.get_member(guild_id, bot_id))
    roles: list[Json] = [dict(role) for role in await http.get_roles(guild_id)]
    channels: list[Json] = [dict(channel) for channel in await http.get_all_guild_channels(guild_id)]
    member_roles = {int(role_id) for role_id in member.get("roles") or []}
    base = base_permissions(guild_id, roles, member_roles, is_owner=guild.get("owner") is True)
    permissions: dict[int, discord.Permissions] = {}
    lacking: dict[tuple[str, ...], list[str]] = {}
    hidden = []
    for channel in channels:
        if channel.get("type") not in MESSAGE_CHANNEL_TYPES:
            continue
        channel_id = int(channel["id"])
        granted = channel_permissions(base, guild_id, member_roles, bot_id, channel.get("permission_overwrites") or [])
        permissions[channel_id] = granted
        if not granted.view_channel:
            hidden.append(f"#{channel.get('name')}")
            continue
        needed: set[str] = set()
        for feature in FEATURES:
            if await gate.enabled_here(feature, guild_id, channel_id):
                needed.update(FEATURE_PERMISSIONS[feature])
        missing = tuple(PERMISSION_NAMES[name] for name in sorted(needed) if not getattr(granted, name))
        if missing:
            lacking.setdefault(missing, []).append(f"#{channel.get('name')}")
    visible = len(permissions) - len(hidden)
    if permissions and not visible:
        report.problem(
            "The bot can see none of this server's text channels.",
            "give the bot's role View Channel (Server Settings → Roles), or add it to the channels it should serve.",
        )
    elif hidden:
        report.note(f"The bot cannot see {', '.join(hidden)} (fine if that is on purpose).")
    for missing, names in lacking.items():
        report.problem(
            f"In {', '.join(names)} the bot lacks {', '.join(missing)}.",
            "grant them to the bot's role (Server Settings → Roles), or allow them in those channels' "
            "permissions (Edit Channel → Permissions).",
        )
    if visible and not lacking:
        report.ok(f"The bot has every permission it needs in the {count(visible, 'text channel')} it can see.")
    return {int(role["id"]) for role in roles}, permissions


def base_permissions(
    guild_id: int, roles: list[Json], member_roles: set[int], *, is_owner: bool
) -> discord.Permissions:
    """A member's server-wide permissions: @everyone's and its roles' together; everything for owners and admins."""
    value = 0
    for role in roles:
        role_id = int(role["id"])
        if role_id == guild_id or role_id in member_roles:
            value |= int(role.get("permissions") or 0)
    permissions = discord.Permissions(value)
    return discord.Permissions.all() if is_owner or permissions.administrator else permissions


def channel_permissions(
    base: discord.Permissions, guild_id: int, member_roles: set[int], member_id: int, overwrites: list[Any]
) -> discord.Permissions:
    """Permissions in a channel, applying its overwrites in Discord's order: @everyone, the roles, the member."""
    if base.administrator:
        return discord.Permissions.all()
    value = base.value
    role_allow = role_deny = 0
    everyone: tuple[int, int] | None = None
    member: tuple[int, int] | None = None
    for overwrite in overwrites:
        target = int(overwrite["id"])
        allow, deny = int(overwrite.get("allow") or 0), int(overwrite.get("deny") or 0)
        if int(overwrite.get("type", 0)) == 0 and target == guild_id:
            everyone = (allow, deny)
        elif int(overwrite.get("type", 0)) == 0 and target in member_roles:
            role_allow, role_deny = role_allow | allow, role_deny | deny
        elif int(overwrite.get("type", 0)) == 1 and target == member_id:
            member = (allow, deny)
    for allow, deny in (everyone or (0, 0), (role_allow, role_deny), member or (0, 0)):
        value = (value & ~deny) | allow
    return discord.Permissions(value)


def _check_named_ids(
    settings: Settings,
    guild_ids: set[int],
    role_ids: set[int],
    channels: dict[int, discord.Permissions],
    report: Report,
) -> None:
    """Every server, role and channel id in the settings must be one the bot can reach."""
    findings = report.problems
    if settings.discord_guild_id is not None and settings.discord_guild_id not in guild_ids:
        report.problem(
            f"DISCORD_GUILD_ID {settings.discord_guild_id} is not a server the bot is in (command sync would fail).",
            "invite the bot there with the link below, or correct DISCORD_GUILD_ID.",
        )
    for guild_id in sorted(settings.allowed_guild_ids - guild_ids):
        report.problem(
            f"ALLOWED_GUILD_IDS lists {guild_id}, a server the bot is not in.",
            "invite the bot there with the link below, or remove the id.",
        )
    for name in ROLE_SETTINGS:
        for role_id in sorted(getattr(settings, name.lower()) - role_ids):
            report.problem(
                f"{name} lists {role_id}, which is no role in the bot's servers.",
                "copy the role's id (Server Settings → Roles → ⋯ → Copy Role ID) into the setting.",
            )
    log_channel = settings.moderation_log_channel_id
    if log_channel is not None:
        granted = channels.get(log_channel)
        if granted is None:
            report.problem(
                f"MODERATION_LOG_CHANNEL_ID {log_channel} is no text channel in the bot's servers.",
                "right-click the moderators' channel → Copy Channel ID, and put it in MODERATION_LOG_CHANNEL_ID.",
            )
        elif not (granted.view_channel and granted.send_messages):
            report.problem(
                f"The bot cannot post in the moderators' channel <#{log_channel}>.",
                "allow the bot's role View Channel and Send Messages in that channel.",
            )
    if report.problems == findings:
        report.ok("Every server, role and channel named in the settings is one the bot can reach.")
