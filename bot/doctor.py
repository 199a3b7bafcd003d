"""`python -m bot doctor`: checks the settings, the API and Discord, and prints each problem with its fix."""

from __future__ import annotations

import asyncio
import difflib
import sqlite3
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import aiohttp
import asyncpg
import discord
from discord.http import HTTPClient

from bot.access import FEATURES, Feature, Gate
from bot.api import OpenAIClient
from bot.bot import PERMISSION_NAMES, Bot
from bot.config import DEVELOPER_PORTAL, TOKEN_FIX, Settings
from bot.errors import ApiError, ApiErrorKind, ConfigError
from bot.render import count
from bot.store import OutdatedSchema, PostgresStore, SqliteStore, Store, is_postgres_url
from bot.urls import public_url, url_host

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
# Doctor waits less than the bot would: a check that hangs is a finding in itself.
API_TIMEOUT_SECONDS = 30.0
DISCORD_TIMEOUT_SECONDS = 60.0
GUILD_TIMEOUT_SECONDS = 20.0
DATABASE_TIMEOUT_SECONDS = 20.0
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


class Report:
    """Prints findings as they come and counts the problems; never prints a key or a token."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.problems = 0

    def _print(self, text: str) -> None:
        # Flushed line by line: the checks wait on the network, and output held in a pipe's buffer
        # (docker compose run, a CI log) would make the doctor look stuck.
        print(text, file=self._out, flush=True)

    def section(self, title: str) -> None:
        """Start a group of findings."""
        self._print(f"\n{title}")

    def ok(self, text: str) -> None:
        """Something that is as it should be."""
        self._print(f"  ✓ {text}")

    def waiting(self, text: str) -> None:
        """What is being checked, said before a wait that may be long."""
        self._print(f"  … {text}")

    def line(self, text: str) -> None:
        """A line of its own, such as the invite link."""
        self._print(text)

    def note(self, text: str) -> None:
        """Worth knowing, but not a problem."""
        self._print(f"  • {text}")

    def problem(self, text: str, fix: str) -> None:
        """Something to fix, with how."""
        self.problems += 1
        self._print(f"  ✗ {text}\n    Fix: {fix}")


def main(env: Mapping[str, str], out: TextIO = sys.stdout) -> int:
    """Run every check against the settings in `env`; return the exit code (0 only when all is well)."""
    report = Report(out)
    report.section("Configuration")
    try:
        settings = Settings.from_env(env)
    except ConfigError as error:
        for problem in error.problems:
            report.problem(problem, "set it in the environment or .env, then run the doctor again.")
        return EXIT_CONFIG
    report.ok("Every setting is present and valid.")
    check_configuration(settings, report)
    return asyncio.run(diagnose(settings, report))


def check_configuration(settings: Settings, report: Report) -> None:
    """Notes on settings that are valid but may not do what the owner expects."""
    moderating = settings.moderate_prompts or settings.moderate_answers
    if settings.moderation_log_channel_id is not None and not moderating:
        report.note("MODERATION_LOG_CHANNEL_ID is set, but MODERATE_PROMPTS and MODERATE_ANSWERS are both off.")
    if not settings.prices:
        report.note("PRICES is empty: /usage cannot estimate what use costs.")


async def diagnose(settings: Settings, report: Report) -> int:
    """Check the API and Discord; print the invite link; return the exit code."""
    store = await _open_store(settings, report)
    try:
        async with aiohttp.ClientSession() as session:
            await check_api(settings, store, session, report)
            if speech_server_apart(settings):
                await check_speech_api(settings, store, session, report)
        application_id = await check_discord(settings, Gate(store, settings), report)
    finally:
        await store.close()
    if application_id is not None:
        report.line(f"\nInvite link: {Bot.invite_url(application_id)}")
    if report.problems:
        report.line(f"\n{count(report.problems, 'problem')} found.")
        return EXIT_PROBLEMS
    report.line("\nAll is well.")
    return EXIT_OK


async def _open_store(settings: Settings, report: Report) -> Store:
    """The bot's database, read-only, for the per-server settings; else an empty one in memory (said why)."""
    if is_postgres_url(settings.database_url):
        store = await _open_postgres(settings, report)
    else:
        store = await _open_sqlite(settings, report)
    return store if store is not None else await SqliteStore.open(":memory:")


async def _open_sqlite(settings: Settings, report: Report) -> Store | None:
    path = settings.database_path
    report.section(f"Database ({path})")
    if not path.exists():
        report.note("It does not exist yet: the bot creates it at its first start.")
        return None
    try:
        store = await SqliteStore.open_read_only(path)
    except OutdatedSchema as error:
        _report_schema(error, report)
    except (sqlite3.Error, OSError) as error:
        report.problem(
            f"It cannot be read as a database ({error}).",
            "Restore it from a backup, or point DATABASE_URL at a new file (the history in it is lost).",
        )
    else:
        report.ok("Readable, with the current schema.")
        return store
    return None


async def _open_postgres(settings: Settings, report: Report) -> Store | None:
    report.section(f"Database ({settings.database_display})")
    report.waiting(
        f"Connecting to PostgreSQL at {url_host(settings.database_url)} (up to {DATABASE_TIMEOUT_SECONDS:.0f} s)"
    )
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
            store = await PostgresStore.open(settings.database_url, pool_size=1, migrate=False)
    except OutdatedSchema as error:
        _report_schema(error, report)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        detail = str(error).replace(settings.database_url, settings.database_display) or type(error).__name__
        report.problem(
            f"The database cannot be reached or read ({detail}).",
            "check DATABASE_URL (host, port, user, password, database name, sslmode) and that the server is up.",
        )
    else:
        report.ok("Reachable and readable, with the current schema.")
        return store
    return None


def _report_schema(error: OutdatedSchema, report: Report) -> None:
    if error.found < error.expected:
        report.note(f"It has {error}: the bot migrates it at its next start.")
    else:
        report.problem(
            f"It has {error}, written by a newer version of the bot.",
            "Run the newer version, or point DATABASE_URL at another database.",
        )


async def check_api(settings: Settings, store: Store, session: aiohttp.ClientSession, report: Report) -> None:
    """Reach the API, list its models, and check every model the bot is configured to use, here or by admins."""
    report.section(f"API ({public_url(settings.openai_base_url)})")
    known = await _list_models(settings.openai_base_url, settings.openai_api_key, settings, session, report, "OPENAI")
    if known is None:
        return
    configured = [
        ("CHAT_MODEL", settings.chat_model),
        *(("CHAT_MODELS", model) for model in settings.chat_models if model != settings.chat_model),
        ("IMAGE_MODEL", settings.image_model),
        ("TRANSCRIBE_MODEL", settings.transcribe_model),
    ]
    if not speech_server_apart(settings):
        configured.append(("TTS_MODEL", settings.tts_model))
    if settings.moderate_prompts or settings.moderate_answers:
        configured.append(("MODERATION_MODEL", settings.moderation_model))
    chosen = list(await store.chosen_models())
    if speech_server_apart(settings):
        chosen = [(feature, model) for feature, model in chosen if feature != "speech"]
    _check_models(configured, chosen, known, report)


def speech_server_apart(settings: Settings) -> bool:
    """Whether speech comes from a server of its own (TTS_BASE_URL), whose models are listed there."""
    return settings.speech_base_url != settings.openai_base_url


async def check_speech_api(settings: Settings, store: Store, session: aiohttp.ClientSession, report: Report) -> None:
    """Reach the speech server (TTS_BASE_URL) and check the speech models the bot uses there."""
    report.section(f"Speech API ({public_url(settings.speech_base_url)})")
    known = await _list_models(settings.speech_base_url, settings.speech_api_key, settings, session, report, "TTS")
    if known is None:
        return
    chosen = [(feature, model) for feature, model in await store.chosen_models() if feature == "speech"]
    _check_models([("TTS_MODEL", settings.tts_model)], chosen, known, report)


async def _list_models(
    base_url: str, api_key: str, settings: Settings, session: aiohttp.ClientSession, report: Report, prefix: str
) -> set[str] | None:
    """The models an API lists, or None when it cannot be asked or lists none (which is said); `prefix` names its
    settings (OPENAI_BASE_URL and OPENAI_API_KEY, or TTS_…) in the fixes."""
    timeout = min(settings.api_timeout_seconds, API_TIMEOUT_SECONDS)
    client = OpenAIClient(session, base_url=base_url, api_key=api_key, timeout_seconds=timeout, max_retries=0)
    report.waiting(f"Asking the API at {url_host(base_url)} for its models (up to {timeout:.0f} s)…")
    started = time.perf_counter()
    try:
        listed = await client.get_json("/models")
    except ApiError as error:
        text, fix = _api_failure(error, prefix)
        report.problem(text, fix)
        return None
    known = {str(entry.get("id")) for entry in listed.get("data") or [] if isinstance(entry, dict)}
    elapsed_ms = (time.perf_counter() - started) * 1000
    report.ok(f"GET /models answered in {elapsed_ms:.0f} ms, listing {count(len(known), 'model')}.")
    if not known:
        report.note("The API lists no models, so the configured ones cannot be checked; some servers list none.")
        return None
    return known


def _check_models(
    configured: list[tuple[str, str]], chosen: list[tuple[str, str]], known: set[str], report: Report
) -> None:
    """Each configured model (setting, name) and each chosen with /settings model (feature, name) must be known."""
    for name, model in configured:
        if model in known:
            report.ok(f"{name} {model} is offered.")
        else:
            report.problem(
                f"{name} {model} is not offered by the API.",
                f"set {name} to a model it offers, such as {_offered_like(model, known)}.",
            )
    for feature, model in chosen:
        if model not in known:
            report.problem(
                f"The {feature} model {model}, chosen for a server or channel with /settings model, is not offered.",
                f"choose another with /settings model (such as {_offered_like(model, known)}), or leave model "
                "out there to go back to the default.",
            )


def _offered_like(model: str, known: set[str]) -> str:
    """Offered models with names close to `model`, else the first few offered."""
    return ", ".join(difflib.get_close_matches(model, sorted(known), n=3, cutoff=0.5) or sorted(known)[:5])


def _api_failure(error: ApiError, prefix: str = "OPENAI") -> tuple[str, str]:
    """What a failed GET /models means, and how to fix it (`prefix`: whose settings, OPENAI or TTS)."""
    key, url = f"{prefix}_API_KEY", f"{prefix}_BASE_URL"
    if error.kind is ApiErrorKind.BAD_KEY:
        return (
            f"The API rejected {key}.",
            f"create a key (for OpenAI: https://platform.openai.com/api-keys) and put it in {key}.",
        )
    if error.kind in (ApiErrorKind.UNREACHABLE, ApiErrorKind.TIMEOUT):
        return f"The API did not answer ({error.detail}).", f"check {url} and this machine's network."
    if error.status == 404:
        return (
            f"The API has no GET /models at {url}.",
            f"check {url}: it usually ends in /v1 (such as https://api.openai.com/v1).",
        )
    return f"GET /models failed: {error.detail}", error.user_message()


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
