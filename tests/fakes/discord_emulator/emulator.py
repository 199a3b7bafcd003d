"""DiscordEmulator: a local Discord (REST, gateway, CDN) that an unmodified discord.py client talks to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import re
import secrets
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import discord
from aiohttp import web

from .gateway import Gateway, Session
from .models import (
    ChannelType,
    EmuAttachment,
    EmuChannel,
    EmuFile,
    EmuInteraction,
    EmuMessage,
    EmuRequest,
    EmuRole,
    EmuUser,
    Intent,
    Json,
    MessageFlag,
    SnowflakeFactory,
    compute_pings,
)
from .rest import Rest
from .world import World

T = TypeVar("T")
MIB = 1024 * 1024
POLL_INTERVAL = 0.02
INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5
COMMAND_CHAT_INPUT = 1
COMMAND_USER = 2
COMMAND_MESSAGE = 3
OPTION_SUBCOMMAND_TYPES = (1, 2)


class ClientDied(AssertionError):
    """The discord.py client task ended while a test was waiting on it; the cause is chained."""


@dataclass
class RateLimitRule:
    """One injected 429: the next request matching method and path gets it."""

    method: str
    path: re.Pattern[str]
    retry_after: float
    is_global: bool


class _ClientErrorLog(logging.Handler):
    """Collects ERROR records from discord.py's loggers (unhandled exceptions in events and commands)."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        super().__init__(logging.ERROR)
        self.emulator = emulator

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's message and exception."""
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        self.emulator.client_errors.append(f"{record.name}: {text}")
        self.emulator.notify()


class DiscordEmulator:
    """A local Discord: REST under /api/v10, a gateway websocket, a CDN, and coroutines that act as users."""

    def __init__(
        self,
        *,
        validator: Any = None,
        privileged_intents: int = Intent.PRIVILEGED,
        token: str = "emulated.bot.token",
    ) -> None:
        self.snowflake = SnowflakeFactory()
        self.world = World(self.snowflake)
        self.gateway = Gateway(self)
        self.rest = Rest(self)
        self.validator = validator
        self.privileged_intents = Intent(privileged_intents)
        self.token = token
        self.interaction_deadline = 3.0
        self.filesize_limit = 10 * MIB
        self.channel_rate_limit: tuple[int, float] | None = None
        self.requests: list[EmuRequest] = []
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.client_errors: list[str] = []
        self.interactions: list[EmuInteraction] = []
        self.attachments: dict[int, EmuAttachment] = {}
        self.global_commands: list[Json] = []
        self.guild_commands: dict[int, list[Json]] = {}
        self.rate_limit_rules: list[RateLimitRule] = []
        self.port = 0
        self._changed = asyncio.Event()
        self._watched: list[tuple[asyncio.Task[None], bool]] = []
        self._runner: web.AppRunner | None = None
        self._t0 = 0.0

    # -- the world, for tests ------------------------------------------------------------------

    @property
    def bot_user(self) -> EmuUser:
        """The bot's user (its id is also the application id)."""
        return self.world.bot

    @property
    def admin(self) -> EmuUser:
        """The guild owner."""
        return self.world.admin

    @property
    def member(self) -> EmuUser:
        """A plain member without Manage Messages."""
        return self.world.member

    @property
    def moderator(self) -> EmuUser:
        """A member with the Moderator role (Manage Messages, Manage Threads, Mention Everyone)."""
        return self.world.moderator

    @property
    def guild_id(self) -> int:
        """The id of the one guild."""
        return self.world.guild_id

    @property
    def application_id(self) -> int:
        """The application id (equal to the bot user's id)."""
        return self.world.application_id

    @property
    def general(self) -> EmuChannel:
        """The #general text channel."""
        return self.world.general

    @property
    def random(self) -> EmuChannel:
        """The #random text channel."""
        return self.world.random

    @property
    def moderator_role(self) -> EmuRole:
        """The Moderator role."""
        return self.world.moderator_role

    @property
    def bot_role(self) -> EmuRole:
        """The bot's managed role (send, threads, attach, embed, history)."""
        return self.world.bot_role

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT (the CDN serves attachments under it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The value for discord.http.Route.BASE."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The value for discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY."""
        return f"ws://127.0.0.1:{self.port}/"

    def add_user(self, username: str, *, roles: tuple[EmuRole, ...] = ()) -> EmuUser:
        """Add a guild member with the given roles."""
        user = EmuUser(self.snowflake(), username, global_name=username.title())
        self.world.add_member(user, [role.id for role in roles])
        return user

    def dm_channel(self, user: EmuUser) -> EmuChannel:
        """The DM channel between `user` and the bot."""
        return self.world.dm_channel(user)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=64 * MIB)
        self.rest.add_routes(app.router)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._t0 = asyncio.get_running_loop().time()

    async def stop(self) -> None:
        """Close every websocket and stop serving."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def clock(self) -> float:
        """Seconds since the emulator started."""
        return asyncio.get_running_loop().time() - self._t0

    # -- waiting and failing loudly --------------------------------------------------------------

    def notify(self) -> None:
        """Wake every waiter: something changed."""
        self._changed.set()

    def record_error(self, text: str) -> None:
        """Record an emulator fault (a bug or an unimplemented route); tests fail on it."""
        self.errors.append(text)
        self.notify()

    def check_health(self) -> None:
        """Raise if the emulator faulted or a watched client died or logged an unhandled error."""
        if self.errors:
            raise AssertionError("the Discord emulator faulted:\n  " + "\n  ".join(self.errors))
        for task, fail_on_errors in self._watched:
            if task.done():
                exc = None if task.cancelled() else task.exception()
                raise ClientDied(f"the discord.py client stopped: {exc!r}\n{self.describe()}") from exc
            if fail_on_errors and self.client_errors:
                raise AssertionError("discord.py logged unhandled errors:\n  " + "\n  ".join(self.client_errors))

    # A timeout parameter, not asyncio.timeout: on expiry this raises an AssertionError describing the state.
    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "") -> T:  # noqa: ASYNC109
        """Wait until `predicate()` is truthy and return it; on timeout raise an AssertionError describing the state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            self.check_health()
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}\n{self.describe()}")
            # Some conditions (such as client.is_ready()) change without telling the emulator: poll too.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, POLL_INTERVAL))

    def describe(self) -> str:
        """A summary of the emulator's state for failure messages."""
        lines = [f"gateway ops received: {self.gateway.ops[-10:]}"]
        lines.append("last requests: " + ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:]))
        for channel in self.world.channels.values():
            messages = [m for m in self.world.channel_messages(channel.id) if not m.deleted]
            if messages:
                shown = "; ".join(f"{m.author.username}: {m.content[:60]!r}" for m in messages[-5:])
                lines.append(f"#{channel.name or channel.id}: {shown}")
        for interaction in self.interactions[-3:]:
            lines.append(
                f"interaction {interaction.name!r}: callback={interaction.callback_type} "
                f"responded_at={interaction.responded_at} followups={len(interaction.followups)}"
            )
        for label, items in (("violations", self.violations), ("client errors", self.client_errors)):
            if items:
                lines.append(f"{label}: {items}")
        return "\n".join(lines)

    @contextlib.asynccontextmanager
    async def run_client(
        self,
        client: discord.Client,
        *,
        token: str | None = None,
        ready_timeout: float = 10.0,
        fail_on_errors: bool = True,
        guild_ready_timeout: float = 0.05,
    ) -> AsyncIterator[asyncio.Task[None]]:
        """Run `client.start()` against the emulator until ready; fail fast if it dies or logs unhandled errors."""
        # discord.py waits guild_ready_timeout (2 s by default) after the last GUILD_CREATE before READY.
        client._connection.guild_ready_timeout = guild_ready_timeout
        errors = _ClientErrorLog(self)
        logging.getLogger("discord").addHandler(errors)
        task = asyncio.create_task(client.start(token or self.token), name="discord-client")
        task.add_done_callback(lambda _: self.notify())
        watch = (task, fail_on_errors)
        self._watched.append(watch)
        try:
            await self.wait_for(client.is_ready, timeout=ready_timeout, what="the client to become ready")
            yield task
            self.check_health()
        finally:
            self._watched.remove(watch)
            logging.getLogger("discord").removeHandler(errors)
            await client.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)

    # -- queries ---------------------------------------------------------------------------------

    def messages(
        self, channel_id: int, *, include_deleted: bool = False, include_ephemeral: bool = False
    ) -> list[EmuMessage]:
        """The channel's messages, oldest first, in their current (edited) state."""
        return [
            message
            for message in self.world.channel_messages(channel_id)
            if (include_deleted or not message.deleted) and (include_ephemeral or not message.ephemeral)
        ]

    def message(self, message_id: int) -> EmuMessage:
        """The stored message with this id."""
        return self.world.messages[message_id]

    def threads(self, parent_id: int) -> list[EmuChannel]:
        """The threads opened in a channel, oldest first."""
        return [c for c in self.world.channels.values() if c.is_thread and c.parent_id == parent_id]

    def commands(self, guild_id: int | None = None) -> list[Json]:
        """The registered application commands: global ones, or those of a guild."""
        return self.global_commands if guild_id is None else self.guild_commands.get(guild_id, [])

    def events(self, name: str | None = None) -> list[Json]:
        """Every gateway dispatch frame ({op, t, s, d}) sent so far, optionally only those named `name`."""
        return self.gateway.events(name)

    # -- failure injection -----------------------------------------------------------------------

    async def drop_gateway(self, *, resumable: bool = True) -> None:
        """Close the gateway websocket; with resumable=False the session is gone and RESUME is refused."""
        await self.gateway.drop(resumable=resumable)

    def rate_limit_next(
        self, method: str, path_regex: str, retry_after: float = 0.2, *, is_global: bool = False
    ) -> None:
        """Answer the next request whose method and path (after /api/v10) match with a 429."""
        self.rate_limit_rules.append(RateLimitRule(method.upper(), re.compile(path_regex), retry_after, is_global))

    def set_channel_permissions(
        self, channel_id: int, target: EmuUser | EmuRole, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Set a channel overwrite for a member or a role (the guild's @everyone role is `emu.guild_id`)."""
        self.world.set_overwrite(channel_id, target.id, int(allow), int(deny))

    async def dispatch_event(self, event: str, data: Json) -> None:
        """Send a raw gateway event to every session, as given."""
        await self.gateway.dispatch(event, lambda _intents: data)

    # -- acting as users -------------------------------------------------------------------------

    async def create_thread(self, parent_id: int, owner: EmuUser, name: str) -> EmuChannel:
        """Open a public thread as `owner` (not the bot) and dispatch THREAD_CREATE."""
        parent = self.world.channels[parent_id]
        thread = EmuChannel(
            self.snowflake(),
            ChannelType.PUBLIC_THREAD,
            name,
            parent.guild_id,
            parent_id=parent.id,
            owner_id=owner.id,
            member_ids={owner.id},
        )
        self.world.add_channel(thread)
        await self.dispatch_thread_create(thread)
        return thread

    async def send_message(
        self,
        channel_id: int,
        author: EmuUser,
        content: str = "",
        *,
        attachments: tuple[EmuFile, ...] | list[EmuFile] = (),
        flags: int = 0,
        reply_to: int | None = None,
    ) -> Json:
        """Post a message as `author` and dispatch MESSAGE_CREATE; returns the full message payload."""
        channel = self._channel(channel_id)
        if channel.type is ChannelType.DM:
            if channel.recipient != author:
                raise ValueError(f"{author.username} is not in this DM channel")
        elif not self.world.permissions_in(author.id, channel_id) & self.world.send_permission(channel_id):
            raise PermissionError(f"{author.username} cannot send messages in {channel.name}")
        if flags & MessageFlag.IS_VOICE_MESSAGE and (
            content or len(attachments) != 1 or attachments[0].duration_secs is None or not attachments[0].waveform
        ):
            raise ValueError("a voice message has no content and one attachment with duration_secs and waveform")
        reply = self.world.messages[reply_to] if reply_to is not None else None
        message = EmuMessage(
            id=self.snowflake(),
            channel_id=channel_id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            type=19 if reply is not None else 0,
            flags=flags,
            attachments=[self.new_attachment(channel_id, file) for file in attachments],
            reply_to=reply,
        )
        await self.post(message)
        return self.world.message_payload(message, gateway=True)

    async def invoke_slash(
        self, user: EmuUser, channel_id: int, name: str, options: Json | None = None, *, locale: str = "en-US"
    ) -> EmuInteraction:
        """Run a registered slash command; options map names to values (a dict for a subcommand or group)."""
        channel = self._channel(channel_id)
        command, guild_id = self._find_command(name, COMMAND_CHAT_INPUT, user, channel)
        resolved: Json = {}
        data: Json = {"id": command["id"], "name": name, "type": COMMAND_CHAT_INPUT}
        built = self._build_options(command.get("options", []), options or {}, resolved, user, channel, name)
        if built:
            data["options"] = built
        return await self._command_interaction(INTERACTION_APPLICATION_COMMAND, user, channel, data, resolved, guild_id)

    async def invoke_autocomplete(
        self, user: EmuUser, channel_id: int, name: str, options: Json, focused: str
    ) -> EmuInteraction:
        """Ask a slash command for autocomplete choices; `focused` names the option being typed."""
        channel = self._channel(channel_id)
        command, guild_id = self._find_command(name, COMMAND_CHAT_INPUT, user, channel)
        data: Json = {"id": command["id"], "name": name, "type": COMMAND_CHAT_INPUT}
        data["options"] = self._autocomplete_options(command.get("options", []), options, focused)
        return await self._command_interaction(INTERACTION_AUTOCOMPLETE, user, channel, data, {}, guild_id)

    async def invoke_message_command(
        self, user: EmuUser, channel_id: int, name: str, target_message_id: int
    ) -> EmuInteraction:
        """Run a message context-menu command on a message (its content is always included)."""
        channel = self._channel(channel_id)
        command, guild_id = self._find_command(name, COMMAND_MESSAGE, user, channel)
        target = self.world.messages[target_message_id]
        resolved = {"messages": {str(target.id): self.world.message_payload(target, gateway=True)}}
        data = {"id": command["id"], "name": name, "type": COMMAND_MESSAGE, "target_id": str(target.id)}
        return await self._command_interaction(INTERACTION_APPLICATION_COMMAND, user, channel, data, resolved, guild_id)

    async def invoke_user_command(self, user: EmuUser, channel_id: int, name: str, target: EmuUser) -> EmuInteraction:
        """Run a user context-menu command on a user."""
        channel = self._channel(channel_id)
        command, guild_id = self._find_command(name, COMMAND_USER, user, channel)
        resolved: Json = {}
        self._resolve_user(target, resolved, channel)
        data = {"id": command["id"], "name": name, "type": COMMAND_USER, "target_id": str(target.id)}
        return await self._command_interaction(INTERACTION_APPLICATION_COMMAND, user, channel, data, resolved, guild_id)

    async def click_component(
        self, user: EmuUser, message_id: int, custom_id: str, *, values: list[str] | None = None
    ) -> EmuInteraction:
        """Press a button (or pick `values` in a string select) on a bot message."""
        message = self.world.messages[message_id]
        component = _find_component(message.components, custom_id)
        if component is None:
            raise LookupError(f"message {message_id} has no component {custom_id!r}")
        data: Json = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        channel = self._channel(message.channel_id)
        payload = self.world.message_payload(message, gateway=True)
        return await self._dispatch_interaction(INTERACTION_COMPONENT, custom_id, user, channel, data, message=payload)

    async def submit_modal(self, interaction: EmuInteraction, values: dict[str, str]) -> EmuInteraction:
        """Submit the modal the bot opened for `interaction`, with text input values by custom_id."""
        if interaction.modal is None:
            raise ValueError(f"interaction {interaction.name!r} opened no modal")
        components = _fill_modal(interaction.modal.get("components", []), values)
        data = {"custom_id": interaction.modal["custom_id"], "components": components}
        channel = self._channel(interaction.channel_id)
        custom_id = interaction.modal["custom_id"]
        return await self._dispatch_interaction(INTERACTION_MODAL_SUBMIT, custom_id, interaction.user, channel, data)

    # -- operations shared with the REST handlers ------------------------------------------------

    def new_attachment(self, channel_id: int, file: EmuFile) -> EmuAttachment:
        """Store a file as an attachment served by the emulator's CDN route."""
        attachment_id = self.snowflake()
        content_type = file.content_type or mimetypes.guess_type(file.filename)[0]
        width, height = _png_size(file.data)
        attachment = EmuAttachment(
            id=attachment_id,
            filename=file.filename,
            data=file.data,
            content_type=content_type,
            url=f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{file.filename}",
            description=file.description,
            duration_secs=file.duration_secs,
            waveform=file.waveform,
            width=width,
            height=height,
        )
        self.attachments[attachment_id] = attachment
        return attachment

    async def post(self, message: EmuMessage) -> None:
        """Store a new message, note whom it pings, and dispatch MESSAGE_CREATE unless it is ephemeral."""
        message.pings = compute_pings(message.content, message.allowed_mentions, message.reply_to)
        self.world.messages[message.id] = message
        channel = self.world.channels[message.channel_id]
        channel.last_message_id = message.id
        if channel.is_thread:
            channel.member_ids.add(message.author.id)
        await self.dispatch_message("MESSAGE_CREATE", message)

    async def dispatch_message(self, event: str, message: EmuMessage) -> None:
        """Dispatch MESSAGE_CREATE/UPDATE to sessions that may see it, blanking content without the intent."""
        if message.ephemeral:
            self.notify()
            return

        def make(intents: Intent) -> Json | None:
            if not self._receives(message.channel_id, intents):
                return None
            return self.world.message_payload(message, gateway=True, visible=lambda m: self.content_visible(m, intents))

        await self.gateway.dispatch(event, make)

    async def dispatch_delete(self, message: EmuMessage) -> None:
        """Dispatch MESSAGE_DELETE for a deleted message."""
        data: Json = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        await self.gateway.dispatch("MESSAGE_DELETE", lambda i: data if self._receives(message.channel_id, i) else None)

    async def dispatch_thread_create(self, thread: EmuChannel) -> None:
        """Dispatch THREAD_CREATE to sessions with the GUILDS intent that can see the thread."""
        data = self.world.channel_payload(thread) | {"newly_created": True}
        visible = self.world.can_view(self.bot_user.id, thread.id)
        await self.gateway.dispatch("THREAD_CREATE", lambda i: data if visible and i & Intent.GUILDS else None)

    def content_visible(self, message: EmuMessage, intents: Intent) -> bool:
        """Whether the bot gets the content: with the intent, in DMs, its own, mentioning it or replying to it."""
        bot_id = self.bot_user.id
        return bool(
            intents & Intent.MESSAGE_CONTENT
            or message.guild_id is None
            or message.author.id == bot_id
            or bot_id in message.user_mentions
            or bot_id in message.mentions.users
            or (message.reply_to is not None and message.reply_to.author.id == bot_id)
        )

    def ready_payload(self, session: Session) -> Json:
        """The READY event for a new session."""
        data: Json = {
            "v": 10,
            "user": self.bot_user.payload() | {"verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/resume",
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["emulated"],
            "user_settings": {},
            "auth": {},
            "_trace": ["emulator"],
        }
        if session.shard is not None:
            data["shard"] = session.shard
        return data

    def guild_create_payload(self, intents: Intent) -> Json:
        """The GUILD_CREATE event of the one guild."""
        return self.world.guild_payload(all_members=bool(intents & Intent.GUILD_PRESENCES))

    def members_chunk_payload(self, request: Json) -> Json:
        """The GUILD_MEMBERS_CHUNK answering a REQUEST_GUILD_MEMBERS."""
        user_ids = request.get("user_ids")
        wanted = [int(uid) for uid in user_ids] if user_ids else list(self.world.member_roles)
        query = (request.get("query") or "").lower()
        found = [
            uid
            for uid in wanted
            if self.world.is_member(uid) and self.world.users[uid].username.lower().startswith(query)
        ]
        data: Json = {
            "guild_id": str(self.guild_id),
            "members": [self.world.member_payload(uid) for uid in found],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(uid) for uid in wanted if not self.world.is_member(uid)],
        }
        if request.get("nonce") is not None:
            data["nonce"] = request["nonce"]
        return data

    def application_info(self) -> Json:
        """The application object for GET /oauth2/applications/@me."""
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": self._application_flags(),
            "owner": self.admin.payload(),
            "team": None,
            "bot": self.bot_user.payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}},
            "approximate_guild_count": 1,
        }

    # -- internals -------------------------------------------------------------------------------

    def _application_flags(self) -> int:
        # The *_LIMITED flags are what an unverified bot with the portal toggles on has.
        flags = 0
        for intent, flag in (
            (Intent.GUILD_PRESENCES, 1 << 13),
            (Intent.GUILD_MEMBERS, 1 << 15),
            (Intent.MESSAGE_CONTENT, 1 << 19),
        ):
            if self.privileged_intents & intent:
                flags |= flag
        return flags

    def _receives(self, channel_id: int, intents: Intent) -> bool:
        channel = self.world.channels[channel_id]
        needed = Intent.DIRECT_MESSAGES if channel.type is ChannelType.DM else Intent.GUILD_MESSAGES
        return bool(intents & needed) and self.world.can_view(self.bot_user.id, channel_id)

    def _channel(self, channel_id: int) -> EmuChannel:
        channel = self.world.channel(channel_id)
        if channel is None:
            raise LookupError(f"no channel {channel_id}")
        return channel

    def _find_command(self, name: str, kind: int, user: EmuUser, channel: EmuChannel) -> tuple[Json, int | None]:
        candidates: list[tuple[Json, int | None]] = []
        if channel.guild_id is not None:
            candidates += [(c, channel.guild_id) for c in self.guild_commands.get(channel.guild_id, [])]
        candidates += [(c, None) for c in self.global_commands]
        found = next(((c, g) for c, g in candidates if c["name"] == name and c.get("type", 1) == kind), None)
        if found is None:
            known = sorted({c["name"] for c, _ in candidates})
            raise LookupError(f"no registered command {name!r} of type {kind} (registered: {known}); sync first")
        command, guild_id = found
        required = command.get("default_member_permissions")
        if channel.guild_id is not None and required is not None:
            have = self.world.permissions_in(user.id, channel.id)
            if have & int(required) != int(required):
                raise PermissionError(f"{user.username} does not see /{name}: it needs permissions {required}")
        if channel.type is ChannelType.DM and 1 not in (command.get("contexts") or [0, 1, 2]):
            raise PermissionError(f"/{name} is not available in DMs")
        return command, guild_id

    def _build_options(
        self, defs: list[Json], values: Json, resolved: Json, user: EmuUser, channel: EmuChannel, path: str
    ) -> list[Json]:
        by_name = {d["name"]: d for d in defs}
        unknown = set(values) - set(by_name)
        if unknown:
            raise ValueError(f"/{path} has no options {sorted(unknown)}; it has {sorted(by_name)}")
        missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
        if missing:
            raise ValueError(f"/{path} needs options {missing}")
        if any(d["type"] in OPTION_SUBCOMMAND_TYPES for d in defs) and len(values) != 1:
            raise ValueError(f"/{path} needs exactly one of its subcommands {sorted(by_name)}")
        options = []
        for name, value in values.items():
            definition = by_name[name]
            kind = definition["type"]
            if kind in OPTION_SUBCOMMAND_TYPES:
                inner = self._build_options(definition.get("options", []), value, resolved, user, channel, path)
                options.append({"type": kind, "name": name, "options": inner})
            else:
                converted = self._option_value(definition, value, resolved, channel)
                options.append({"type": kind, "name": name, "value": converted})
        return options

    def _option_value(self, definition: Json, value: Any, resolved: Json, channel: EmuChannel) -> Any:
        kind = definition["type"]
        choices = [choice["value"] for choice in definition.get("choices") or []]
        if choices and value not in choices:
            raise ValueError(f"option {definition['name']!r} takes one of {choices}, not {value!r}")
        if kind in (6, 9) and isinstance(value, EmuUser):
            return self._resolve_user(value, resolved, channel)
        if kind in (8, 9) and isinstance(value, EmuRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return str(value.id)
        if kind == 7 and isinstance(value, EmuChannel):
            payload = self.world.channel_payload(value)
            payload["permissions"] = str(self.world.permissions_in(self.bot_user.id, value.id))
            resolved.setdefault("channels", {})[str(value.id)] = payload
            return str(value.id)
        if kind == 11 and isinstance(value, EmuFile):
            attachment = self.new_attachment(channel.id, value)
            resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.payload() | {"ephemeral": True}
            return str(attachment.id)
        expected: dict[int, type | tuple[type, ...]] = {3: str, 4: int, 5: bool, 10: (int, float)}
        if kind not in expected or not isinstance(value, expected[kind]) or (kind == 4 and isinstance(value, bool)):
            raise TypeError(f"option {definition['name']!r} (type {kind}) cannot take {value!r}")
        return value

    def _resolve_user(self, target: EmuUser, resolved: Json, channel: EmuChannel) -> str:
        resolved.setdefault("users", {})[str(target.id)] = target.payload()
        if channel.guild_id is not None and self.world.is_member(target.id):
            permissions = self.world.permissions_in(target.id, channel.id)
            member = self.world.member_payload(target.id, with_user=False, permissions=permissions)
            resolved.setdefault("members", {})[str(target.id)] = member
        return str(target.id)

    def _autocomplete_options(self, defs: list[Json], values: Json, focused: str) -> list[Json]:
        by_name = {d["name"]: d for d in defs}
        options = []
        for name, value in values.items():
            definition = by_name[name]
            if definition["type"] in OPTION_SUBCOMMAND_TYPES:
                inner = self._autocomplete_options(definition.get("options", []), value, focused)
                options.append({"type": definition["type"], "name": name, "options": inner})
            else:
                option = {"type": definition["type"], "name": name, "value": value}
                if name == focused:
                    option["focused"] = True
                options.append(option)
        return options

    async def _command_interaction(
        self, kind: int, user: EmuUser, channel: EmuChannel, data: Json, resolved: Json, guild_id: int | None
    ) -> EmuInteraction:
        if resolved:
            data["resolved"] = resolved
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        return await self._dispatch_interaction(kind, data["name"], user, channel, data)

    async def _dispatch_interaction(
        self, kind: int, name: str, user: EmuUser, channel: EmuChannel, data: Json, *, message: Json | None = None
    ) -> EmuInteraction:
        if not any(s.connection is not None for s in self.gateway.sessions.values()):
            raise RuntimeError("no gateway session is connected: start the client first (emu.run_client)")
        interaction_id = self.snowflake()
        payload: Json = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "token": secrets.token_urlsafe(48),
            "version": 1,
            "channel_id": str(channel.id),
            "channel": self.world.channel_payload(channel)
            | {"permissions": str(self.world.permissions_in(user.id, channel.id))},
            "app_permissions": str(self.world.permissions_in(self.bot_user.id, channel.id)),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.filesize_limit,
        }
        if channel.guild_id is not None:
            permissions = self.world.permissions_in(user.id, channel.id)
            payload |= {
                "guild_id": str(channel.guild_id),
                "guild": {"id": str(channel.guild_id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": self.world.member_payload(user.id, permissions=permissions),
                "authorizing_integration_owners": {"0": str(channel.guild_id)},
                "context": 0,
            }
        else:
            payload |= {"user": user.payload(), "authorizing_integration_owners": {"0": "0"}, "context": 1}
        if message is not None:
            payload["message"] = message
        interaction = EmuInteraction(
            id=interaction_id,
            token=payload["token"],
            type=kind,
            name=name,
            user=user,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            payload=payload,
            dispatched_at=self.clock(),
            emulator=self,
        )
        self.interactions.append(interaction)
        await self.gateway.dispatch("INTERACTION_CREATE", lambda _intents: payload)
        return interaction


def _find_component(components: list[Json], custom_id: str) -> Json | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        children = component.get("components") or ([component["component"]] if "component" in component else [])
        found = _find_component(children, custom_id)
        if found is not None:
            return found
    return None


def _fill_modal(components: list[Json], values: dict[str, str]) -> list[Json]:
    """Mirror a modal's layout with the submitted values, as Discord sends a MODAL_SUBMIT."""
    filled = []
    for component in components:
        if "components" in component:
            filled.append({"type": component["type"], "components": _fill_modal(component["components"], values)})
        elif "component" in component:
            filled.append({"type": component["type"], "component": _fill_modal([component["component"]], values)[0]})
        else:
            filled.append({"type": component["type"], "custom_id": component["custom_id"], **_value(component, values)})
    return filled


def _value(component: Json, values: dict[str, str]) -> Json:
    custom_id = component["custom_id"]
    if component["type"] == 4:
        return {"value": values.get(custom_id, component.get("value", ""))}
    return {"values": [values[custom_id]] if custom_id in values else []}


def _png_size(data: bytes) -> tuple[int | None, int | None]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None, None
