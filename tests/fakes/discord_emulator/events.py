"""Storing messages and telling the gateway: what each session receives, in which payload."""

from __future__ import annotations

import asyncio
import mimetypes
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from .flags import ChannelType, Intent
from .models import EmuAttachment, EmuChannel, EmuFile, EmuGuild, EmuMessage, EmuUser, Json, compute_pings

if TYPE_CHECKING:
    from .flags import SnowflakeFactory
    from .gateway import Gateway, Session
    from .world import World

MessageListener = Callable[[str, EmuMessage], None]
MessagePredicate = Callable[[EmuMessage], bool]


class Dispatcher:
    """The DiscordEmulator's methods that store messages and dispatch gateway events; it inherits them."""

    world: World
    snowflake: SnowflakeFactory
    gateway: Gateway
    attachments: dict[int, EmuAttachment]
    privileged_intents: Intent
    port: int
    on_message_change: list[MessageListener]
    _message_waiters: dict[int, list[tuple[MessagePredicate, asyncio.Future[EmuMessage]]]]

    # Provided by DiscordEmulator.
    base_url: str
    bot_user: EmuUser
    admin: EmuUser
    application_id: int
    clock: Callable[[], float]
    notify: Callable[[], None]

    # -- messages --------------------------------------------------------------------------------

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
        message.visible_at = self.clock()
        self.world.store_message(message)
        channel = self.world.channels[message.channel_id]
        channel.last_message_id = message.id
        if channel.is_thread:
            channel.member_ids.add(message.author.id)
        self.message_changed("create", message)
        await self.dispatch_message("MESSAGE_CREATE", message)

    async def delete_message(self, message_id: int) -> None:
        """Delete a stored message (anyone's) and dispatch MESSAGE_DELETE."""
        message = self.world.messages[message_id]
        if message.deleted:
            raise LookupError(f"message {message_id} is already deleted")
        message.deleted = True
        self.message_changed("delete", message)
        await self.dispatch_delete(message)

    def message_changed(self, event: str, message: EmuMessage) -> None:
        """Tell the listeners and waiters that a message was created, updated or deleted, at once."""
        for listener in list(self.on_message_change):
            listener(event, message)
        waiters = self._message_waiters.get(message.channel_id, [])
        for entry in list(waiters):
            predicate, future = entry
            if not future.done() and predicate(message):
                future.set_result(message)
            if future.done():
                waiters.remove(entry)
        self.notify()

    async def dispatch_message(self, event: str, message: EmuMessage) -> None:
        """Dispatch MESSAGE_CREATE/UPDATE to sessions that may see it, blanking content without the intent."""
        if message.ephemeral:
            self.notify()
            return

        def make(intents: Intent) -> Json | None:
            if not self._receives(message.channel_id, intents):
                return None
            return self.world.message_payload(message, gateway=True, visible=lambda m: self.content_visible(m, intents))

        await self.gateway.dispatch(event, make, guild_id=message.guild_id)

    async def dispatch_delete(self, message: EmuMessage) -> None:
        """Dispatch MESSAGE_DELETE for a deleted message."""
        data: Json = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        if message.ephemeral or message.channel_id not in self.world.channels:
            self.notify()
            return
        await self.gateway.dispatch(
            "MESSAGE_DELETE",
            lambda i: data if self._receives(message.channel_id, i) else None,
            guild_id=message.guild_id,
        )

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

    # -- channels, threads, guilds ---------------------------------------------------------------

    async def dispatch_thread_create(self, thread: EmuChannel) -> None:
        """Dispatch THREAD_CREATE to sessions with the GUILDS intent that can see the thread."""
        data = self.world.channel_payload(thread) | {"newly_created": True}
        await self._dispatch_guild_event("THREAD_CREATE", thread, data)

    async def dispatch_thread_delete(self, thread: EmuChannel, *, was_visible: bool) -> None:
        """Dispatch THREAD_DELETE (id, guild_id, parent_id, type) for a thread the bot could see."""
        data = self.world.thread_delete_payload(thread)
        await self._dispatch_guild_event("THREAD_DELETE", thread, data, visible=was_visible)

    async def dispatch_channel_delete(self, channel: EmuChannel, *, was_visible: bool) -> None:
        """Dispatch CHANNEL_DELETE (the channel object) for a channel the bot could see."""
        data = self.world.channel_payload(channel)
        await self._dispatch_guild_event("CHANNEL_DELETE", channel, data, visible=was_visible)

    async def dispatch_guild_create(self, guild: EmuGuild) -> None:
        """Dispatch GUILD_CREATE for a guild the bot joined (to its shard's sessions with GUILDS)."""

        def make(intents: Intent) -> Json | None:
            if not intents & Intent.GUILDS:
                return None
            # A join's GUILD_CREATE has no `unavailable` (discord.py tells on_guild_join from
            # on_guild_available by it); the ones after READY say unavailable: false.
            data = self.guild_create_payload(guild, intents)
            del data["unavailable"]
            return data

        await self.gateway.dispatch("GUILD_CREATE", make, guild_id=guild.id)

    async def dispatch_guild_delete(self, guild: EmuGuild) -> None:
        """Dispatch GUILD_DELETE without `unavailable`: the bot was removed from the guild."""
        data: Json = {"id": str(guild.id)}
        await self.gateway.dispatch("GUILD_DELETE", lambda i: data if i & Intent.GUILDS else None, guild_id=guild.id)

    async def _dispatch_guild_event(
        self, event: str, channel: EmuChannel, data: Json, *, visible: bool | None = None
    ) -> None:
        seen = self.world.can_view(self.bot_user.id, channel.id) if visible is None else visible
        await self.gateway.dispatch(
            event, lambda i: data if seen and i & Intent.GUILDS else None, guild_id=channel.guild_id
        )

    # -- session payloads ------------------------------------------------------------------------

    def ready_payload(self, session: Session, guilds: list[EmuGuild]) -> Json:
        """The READY event for a new session, listing the guilds of its shard as unavailable."""
        data: Json = {
            "v": 10,
            "user": self.bot_user.payload() | {"verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(guild.id), "unavailable": True} for guild in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/resume",
            "application": {"id": str(self.application_id), "flags": self.application_flags()},
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

    def guild_create_payload(self, guild: EmuGuild, intents: Intent) -> Json:
        """The GUILD_CREATE event of a guild."""
        return self.world.guild_payload(guild, all_members=bool(intents & Intent.GUILD_PRESENCES))

    def members_chunk_payload(self, request: Json) -> Json:
        """The GUILD_MEMBERS_CHUNK answering a REQUEST_GUILD_MEMBERS."""
        guild = self.world.guilds[int(request["guild_id"])]
        user_ids = request.get("user_ids")
        wanted = [int(uid) for uid in user_ids] if user_ids else list(guild.member_roles)
        query = (request.get("query") or "").lower()
        found = [
            uid for uid in wanted if guild.is_member(uid) and self.world.users[uid].username.lower().startswith(query)
        ]
        data: Json = {
            "guild_id": str(guild.id),
            "members": [self.world.member_payload(guild, uid) for uid in found],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(uid) for uid in wanted if not guild.is_member(uid)],
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
            "flags": self.application_flags(),
            "owner": self.admin.payload(),
            "team": None,
            "bot": self.bot_user.payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.world.bot_guilds()),
        }

    def application_flags(self) -> int:
        """The application's flags: the *_LIMITED ones an unverified bot with the portal toggles on has."""
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


def _png_size(data: bytes) -> tuple[int | None, int | None]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None, None
