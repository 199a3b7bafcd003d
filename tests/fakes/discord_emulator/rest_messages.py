"""The REST routes of channels: reading and posting messages, edits, deletions, reactions, typing, threads."""

from __future__ import annotations

from aiohttp import web

from .errors import DiscordHTTPError, field_error, invalid_form, json_response
from .flags import ChannelType, MessageFlag, Perm
from .models import EmuChannel, EmuFile, EmuMessage, Json
from .rest_base import BODY, FILES, SENDABLE_FLAGS, RestBase, require_content
from .voice import VOICE_EDIT

THREAD_NAME_LENGTH = range(1, 101)


class RestMessages(RestBase):
    """Channel, message and thread routes."""

    # -- channels and messages -------------------------------------------------------------------

    async def get_channel(self, request: web.Request) -> web.Response:
        """GET /channels/{id}."""
        return json_response(self.world.channel_payload(self._visible_channel(request)))

    async def get_messages(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages (newest first; limit, before, after, around)."""
        channel = self._visible_channel(request)
        if not self.world.permissions_in(self.emu.bot_user.id, channel.id) & Perm.READ_MESSAGE_HISTORY:
            return json_response([])
        messages = [m for m in self.world.channel_messages(channel.id) if not m.deleted and not m.ephemeral]
        limit = min(int(request.query.get("limit", 50)), 100)
        query = {key: int(request.query[key]) for key in ("before", "after", "around") if key in request.query}
        if "before" in query:
            messages = [m for m in messages if m.id < query["before"]][-limit:]
        elif "after" in query:
            messages = [m for m in messages if m.id > query["after"]][:limit]
        elif "around" in query:
            older = [m for m in messages if m.id < query["around"]]
            older = older[max(len(older) - limit // 2, 0) :] if limit // 2 else []
            messages = older + [m for m in messages if m.id >= query["around"]][: limit - len(older)]
        else:
            messages = messages[-limit:]
        return json_response([self._rest_payload(m) for m in reversed(messages)])

    async def get_message(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages/{id}."""
        channel = self._visible_channel(request)
        self._require(channel, Perm.READ_MESSAGE_HISTORY)
        return json_response(self._rest_payload(self._channel_message(request, channel)))

    async def create_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/messages (JSON or multipart with files)."""
        channel = self._visible_channel(request)
        self._require(channel, self.world.send_permission(channel.id))
        body: Json = request[BODY] or {}
        files: dict[int, EmuFile] = request[FILES]
        voice = bool((body.get("flags") or 0) & MessageFlag.IS_VOICE_MESSAGE)
        # A voice message needs Send Voice Messages instead of Attach Files (discord-api-docs#6082).
        if files and not voice:
            self._require(channel, Perm.ATTACH_FILES)
        self._voice_rules(body, files, body.get("flags") or 0, channel)
        reply_to = self._reference(body.get("message_reference"), channel)
        fields = self._message_fields(body, files, channel.id, existing=[])
        fields["flags"] = fields.get("flags", 0) & SENDABLE_FLAGS & ~MessageFlag.EPHEMERAL
        require_content(fields, sticker=bool(body.get("sticker_ids") or body.get("poll")))
        self._channel_rate(channel.id)
        message = EmuMessage(
            id=self.emu.snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self.emu.bot_user,
            type=19 if reply_to is not None else 0,
            reply_to=reply_to,
            **fields,
        )
        await self.emu.post(message)
        return json_response(self.world.message_payload(message))

    def _reference(self, reference: Json | None, channel: EmuChannel) -> EmuMessage | None:
        if not reference:
            return None
        message = self.world.messages.get(int(reference["message_id"]))
        if message is not None and not message.deleted:
            return message
        if reference.get("fail_if_not_exists", True):
            error = field_error("REPLIES_UNKNOWN_MESSAGE", "Unknown message")
            raise DiscordHTTPError(400, 50035, "Invalid Form Body", {"message_reference": error})
        return None

    async def edit_message(self, request: web.Request) -> web.Response:
        """PATCH /channels/{id}/messages/{id}: only the bot's own messages."""
        channel = self._visible_channel(request)
        message = self._channel_message(request, channel)
        if message.author.id != self.emu.bot_user.id:
            raise DiscordHTTPError(403, 50005, "Cannot edit a message authored by another user")
        if message.is_voice_message:
            raise VOICE_EDIT
        fields = self._message_fields(request[BODY] or {}, request[FILES], channel.id, existing=message.attachments)
        suppress = fields.pop("flags", message.flags) & MessageFlag.SUPPRESS_EMBEDS
        self._channel_rate(channel.id)
        await self._apply_edit(message, fields, flags=(message.flags & ~MessageFlag.SUPPRESS_EMBEDS) | suppress)
        return json_response(self.world.message_payload(message))

    async def delete_message(self, request: web.Request) -> web.Response:
        """DELETE /channels/{id}/messages/{id}: the bot's own, or any with Manage Messages."""
        channel = self._visible_channel(request)
        message = self._channel_message(request, channel)
        if message.author.id != self.emu.bot_user.id:
            self._require(channel, Perm.MANAGE_MESSAGES)
        await self._delete(message)
        return web.Response(status=204)

    async def add_reaction(self, request: web.Request) -> web.Response:
        """PUT a reaction of the bot's."""
        channel = self._visible_channel(request)
        self._require(channel, Perm.READ_MESSAGE_HISTORY | Perm.ADD_REACTIONS)
        message = self._channel_message(request, channel)
        emoji = request.match_info["emoji"]
        if emoji not in message.reactions:
            message.reactions.append(emoji)
        return web.Response(status=204)

    async def remove_reaction(self, request: web.Request) -> web.Response:
        """DELETE a reaction of the bot's."""
        message = self._channel_message(request, self._visible_channel(request))
        emoji = request.match_info["emoji"]
        if emoji in message.reactions:
            message.reactions.remove(emoji)
        return web.Response(status=204)

    async def typing(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/typing."""
        channel = self._visible_channel(request)
        self._require(channel, self.world.send_permission(channel.id))
        return web.Response(status=204)

    # -- threads ---------------------------------------------------------------------------------

    def _thread_parent(self, request: web.Request, permission: Perm) -> EmuChannel:
        channel = self._visible_channel(request)
        if channel.type is not ChannelType.GUILD_TEXT:
            raise DiscordHTTPError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel, permission)
        return channel

    def _thread_name(self, body: Json) -> str:
        name = body.get("name") or ""
        if len(name) not in THREAD_NAME_LENGTH:
            raise invalid_form({"name": field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")})
        return name

    async def thread_from_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/messages/{id}/threads: a public thread whose id is the message's."""
        channel = self._thread_parent(request, Perm.CREATE_PUBLIC_THREADS)
        message = self._channel_message(request, channel)
        body: Json = request[BODY] or {}
        name = self._thread_name(body)
        if message.thread_id is not None:
            raise DiscordHTTPError(400, 160004, "A thread has already been created for this message")
        thread = EmuChannel(
            message.id,
            ChannelType.PUBLIC_THREAD,
            name,
            channel.guild_id,
            parent_id=channel.id,
            owner_id=self.emu.bot_user.id,
            member_ids={self.emu.bot_user.id},
            auto_archive_duration=body.get("auto_archive_duration") or 4320,
        )
        message.thread_id = self.world.add_channel(thread).id
        await self.emu.dispatch_thread_create(thread)
        return json_response(self.world.channel_payload(thread), status=201)

    async def thread_without_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/threads: private unless type 11 is asked for."""
        body: Json = request[BODY] or {}
        kind = ChannelType(body.get("type", ChannelType.PRIVATE_THREAD))
        public = kind is ChannelType.PUBLIC_THREAD
        channel = self._thread_parent(request, Perm.CREATE_PUBLIC_THREADS if public else Perm.CREATE_PRIVATE_THREADS)
        thread = EmuChannel(
            self.emu.snowflake(),
            kind,
            self._thread_name(body),
            channel.guild_id,
            parent_id=channel.id,
            owner_id=self.emu.bot_user.id,
            member_ids={self.emu.bot_user.id},
            auto_archive_duration=body.get("auto_archive_duration") or 4320,
            invitable=body.get("invitable", True),
        )
        self.world.add_channel(thread)
        await self.emu.dispatch_thread_create(thread)
        return json_response(self.world.channel_payload(thread), status=201)

    async def delete_channel(self, request: web.Request) -> web.Response:
        """DELETE /channels/{id}: a thread (Manage Threads) or a channel (Manage Channels); answers the object."""
        channel = self._visible_channel(request)
        if channel.type is ChannelType.DM:
            raise DiscordHTTPError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel, Perm.MANAGE_THREADS if channel.is_thread else Perm.MANAGE_CHANNELS)
        payload = self.world.channel_payload(channel)
        if channel.is_thread:
            await self.emu.delete_thread(channel)
        else:
            await self.emu.delete_channel(channel)
        return json_response(payload)
