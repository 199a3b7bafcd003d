"""The emulated REST API under /api/v10, the CDN route, validation, rate limits and Discord's errors."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .models import (
    ChannelType,
    EmuChannel,
    EmuFile,
    EmuInteraction,
    EmuMessage,
    EmuRequest,
    EmuRevision,
    Intent,
    Json,
    MessageFlag,
    Perm,
    now_iso,
)

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

API_PREFIX = "/api/v10"
JSON_TYPE = "application/json"
MAX_CONTENT = 2000
MAX_FILES = 10
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_EMBED_DESCRIPTION = 4096
MAX_CHOICES = 25
THREAD_NAME_LENGTH = range(1, 101)
CHAT_INPUT_NAME = re.compile(r"^[-_'\w]{1,32}$")
SENDABLE_FLAGS = (
    MessageFlag.SUPPRESS_EMBEDS
    | MessageFlag.EPHEMERAL
    | MessageFlag.SUPPRESS_NOTIFICATIONS
    | MessageFlag.IS_VOICE_MESSAGE
    | MessageFlag.IS_COMPONENTS_V2
)
# Interaction type -> the callback types Discord accepts for it.
VALID_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
MESSAGE_TYPE_FOR_COMMAND = {1: 20, 2: 23, 3: 23}
BODY: web.RequestKey[Any] = web.RequestKey("body", object)
FILES = web.RequestKey("files", dict[int, EmuFile])


class DiscordHTTPError(Exception):
    """An error answer in Discord's shape; `violation` marks a request the bot should never have sent."""

    def __init__(
        self, status: int, code: int, message: str, errors: Json | None = None, *, violation: bool = False
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.violation = status, code, message, errors, violation

    def response(self) -> web.Response:
        """The JSON error response."""
        body: Json = {"code": self.code, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return _json(body, status=self.status)


class RateLimited(Exception):
    """A 429 to answer with Discord's headers and body."""

    def __init__(self, retry_after: float, *, is_global: bool = False, scope: str = "user") -> None:
        super().__init__(f"rate limited for {retry_after}s")
        self.retry_after, self.is_global, self.scope = retry_after, is_global, scope

    def response(self) -> web.Response:
        """The 429 response (discord.py treats a 429 without a Via header as a Cloudflare ban)."""
        headers = {
            "Retry-After": str(math.ceil(self.retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
            "X-RateLimit-Scope": self.scope,
            "Via": "1.1 google",
        }
        if self.is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": self.retry_after, "global": self.is_global}
        return _json(body, status=429, headers=headers)


def _field_error(code: str, message: str) -> Json:
    return {"_errors": [{"code": code, "message": message}]}


def invalid_form(errors: Json) -> DiscordHTTPError:
    """Discord's 50035 Invalid Form Body, marked as a violation."""
    return DiscordHTTPError(400, 50035, "Invalid Form Body", errors, violation=True)


def unknown(what: str, code: int) -> DiscordHTTPError:
    """Discord's 404 for an unknown object."""
    return DiscordHTTPError(404, code, f"Unknown {what}")


MISSING_PERMISSIONS = DiscordHTTPError(403, 50013, "Missing Permissions")
MISSING_ACCESS = DiscordHTTPError(403, 50001, "Missing Access")


class Rest:
    """The REST routes; each handler reads the parsed body from request[BODY] and request[FILES]."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self.emu = emulator
        self.world = emulator.world
        self.channel_hits: dict[int, deque[float]] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register every emulated route."""
        a = API_PREFIX
        routes = [
            ("GET", "/users/@me", self.get_me),
            ("GET", "/users/@me/guilds", self.get_my_guilds),
            ("GET", "/users/{user_id}", self.get_user),
            ("POST", "/users/@me/channels", self.open_dm),
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/applications/@me", self.get_application),
            ("GET", "/applications/{app_id}/commands", self.get_commands),
            ("PUT", "/applications/{app_id}/commands", self.put_commands),
            ("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self.get_commands),
            ("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self.put_commands),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback),
            ("POST", "/webhooks/{app_id}/{token}", self.create_followup),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self.get_webhook_message),
            ("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self.edit_webhook_message),
            ("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", self.delete_webhook_message),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("GET", "/channels/{channel_id}/messages", self.get_messages),
            ("POST", "/channels/{channel_id}/messages", self.create_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.add_reaction),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.remove_reaction),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self.thread_from_message),
            ("POST", "/channels/{channel_id}/threads", self.thread_without_message),
            ("POST", "/channels/{channel_id}/typing", self.typing),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            ("GET", "/guilds/{guild_id}/roles", self.get_roles),
            ("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
        ]
        for method, path, handler in routes:
            router.add_route(method, a + path, handler)
        router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn)

    # -- the pipeline every API request goes through ---------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record, rate-limit, authenticate and validate each API request, and map errors to Discord's."""
        if not request.path.startswith("/api/"):
            return await handler(request)
        path = request.path.removeprefix(API_PREFIX)
        body, files = await _read_body(request)
        record = EmuRequest(request.method, path, dict(request.query), body, list(files.values()), self.emu.clock())
        self.emu.requests.append(record)
        request[BODY], request[FILES] = body, files
        try:
            response = await self._serve(request, handler, record)
        except DiscordHTTPError as exc:
            if exc.violation:
                self.emu.violations.append(f"{request.method} {path}: {exc.message} {json.dumps(exc.errors)}")
            response = exc.response()
        except RateLimited as exc:
            response = exc.response()
        except web.HTTPException as exc:
            self.emu.record_error(f"the emulator does not implement {request.method} {path} ({exc.status})")
            response = _json({"code": 0, "message": f"{exc.status}: {exc.reason}"}, status=exc.status)
        except Exception as exc:
            self.emu.record_error(f"{request.method} {path} crashed the emulator:\n{traceback.format_exc()}")
            # A 400, not a 500: discord.py retries 5xx for many seconds before failing.
            response = _json({"code": 0, "message": f"emulator fault: {exc!r}"}, status=400)
        record.status = response.status
        self.emu.notify()
        return response

    async def _serve(self, request: web.Request, handler: Handler, record: EmuRequest) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            raise web.HTTPNotFound()
        for rule in self.emu.rate_limit_rules:
            if rule.method == record.method and rule.path.search(record.path):
                self.emu.rate_limit_rules.remove(rule)
                raise RateLimited(rule.retry_after, is_global=rule.is_global)
        webhook = record.path.startswith(("/webhooks/", "/interactions/"))
        if not webhook and request.headers.get("Authorization") != f"Bot {self.emu.token}":
            raise DiscordHTTPError(401, 0, "401: Unauthorized")
        if self.emu.validator is not None and record.json is not None:
            problems = self.emu.validator.check_json(record.method, record.path, record.json)
            if problems:
                raise invalid_form({"_errors": [{"code": "SPEC_VIOLATION", "message": p} for p in problems]})
        return await handler(request)

    # -- users, gateway, application -------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        """GET /users/@me: the bot user."""
        return _json(self.emu.bot_user.payload() | {"verified": True, "mfa_enabled": False, "email": None})

    async def get_user(self, request: web.Request) -> web.Response:
        """GET /users/{id}."""
        user = self.world.users.get(_id(request, "user_id"))
        if user is None:
            raise unknown("User", 10013)
        return _json(user.payload())

    async def open_dm(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels: the DM channel with a user."""
        user = self.world.users.get(int(request[BODY]["recipient_id"]))
        if user is None:
            raise unknown("User", 10013)
        return _json(self.world.channel_payload(self.world.dm_channel(user)))

    async def get_gateway(self, request: web.Request) -> web.Response:
        """GET /gateway and /gateway/bot."""
        data: Json = {"url": f"ws://127.0.0.1:{self.emu.port}"}
        if request.path.endswith("/bot"):
            limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
            data |= {"shards": 1, "session_start_limit": limit}
        return _json(data)

    async def get_application(self, request: web.Request) -> web.Response:
        """GET /oauth2/applications/@me and /applications/@me."""
        return _json(self.emu.application_info())

    # -- application commands --------------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if _id(request, "app_id") != self.emu.application_id:
            raise unknown("Application", 10002)
        if "guild_id" not in request.match_info:
            return None
        if _id(request, "guild_id") != self.emu.guild_id:
            raise MISSING_ACCESS
        return self.emu.guild_id

    async def get_commands(self, request: web.Request) -> web.Response:
        """GET the global or guild commands."""
        return _json(self.emu.commands(self._command_scope(request)))

    async def put_commands(self, request: web.Request) -> web.Response:
        """PUT (bulk overwrite) the global or guild commands; ids stay stable per name and type."""
        guild_id = self._command_scope(request)
        body: list[Json] = request[BODY]
        keys = [(c["name"], c.get("type", 1)) for c in body]
        problems = [p for c in body for p in _command_problems(c)]
        if len(set(keys)) != len(keys):
            problems.append(f"duplicate command names: {keys}")
        if problems:
            raise invalid_form({"_errors": [{"code": "APPLICATION_COMMAND_INVALID", "message": p} for p in problems]})
        previous = {(c["name"], c["type"]): c["id"] for c in self.emu.commands(guild_id)}
        stored = [self._command(c, guild_id, previous.get((c["name"], c.get("type", 1)))) for c in body]
        if guild_id is None:
            self.emu.global_commands = stored
        else:
            self.emu.guild_commands[guild_id] = stored
        return _json(stored)

    def _command(self, data: Json, guild_id: int | None, command_id: str | None) -> Json:
        command: Json = {
            "id": command_id or str(self.emu.snowflake()),
            "application_id": str(self.emu.application_id),
            "version": str(self.emu.snowflake()),
            "type": data.get("type", 1),
            "name": data["name"],
            "name_localizations": data.get("name_localizations"),
            "description": data.get("description", ""),
            "description_localizations": data.get("description_localizations"),
            "default_member_permissions": data.get("default_member_permissions"),
            "nsfw": data.get("nsfw", False),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types") or [0],
        }
        if data.get("options"):
            command["options"] = data["options"]
        if guild_id is None:
            command["dm_permission"] = data.get("dm_permission", True)
        else:
            command["guild_id"] = str(guild_id)
        return command

    # -- interactions ----------------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.Response:
        """POST /interactions/{id}/{token}/callback (discord.py asks ?with_response=1 and reads the JSON)."""
        interaction = next((i for i in self.emu.interactions if i.id == _id(request, "interaction_id")), None)
        if interaction is None or interaction.token != request.match_info["token"]:
            raise unknown("interaction", 10062)
        elapsed = self.emu.clock() - interaction.dispatched_at
        if interaction.callback_type is not None:
            raise DiscordHTTPError(400, 40060, "Interaction has already been acknowledged.")
        if elapsed > self.emu.interaction_deadline:
            raise unknown("interaction", 10062)
        body: Json = request[BODY]
        kind, data = body["type"], body.get("data") or {}
        if kind not in VALID_CALLBACKS[interaction.type]:
            raise invalid_form(
                {"type": _field_error("INTERACTION_RESPONSE_TYPE_INVALID", f"{kind} for {interaction.type}")}
            )
        message = await self._answer(interaction, kind, data, request[FILES], elapsed)
        interaction.callback_type, interaction.acked_at = kind, elapsed
        result: Json = {"interaction": {"id": str(interaction.id), "type": interaction.type}}
        if message is not None:
            result["interaction"] |= {
                "response_message_id": str(message.id),
                "response_message_loading": message.loading,
                "response_message_ephemeral": message.ephemeral,
            }
            result["resource"] = {"type": kind, "message": self.world.message_payload(message)}
        return _json(result)

    async def _answer(
        self, interaction: EmuInteraction, kind: int, data: Json, files: dict[int, EmuFile], elapsed: float
    ) -> EmuMessage | None:
        if kind in (4, 5):
            fields = self._message_fields(data, files, interaction.channel_id, existing=[])
            flags = fields.pop("flags", 0) & SENDABLE_FLAGS
            if kind == 5:
                fields, flags = {}, (flags & MessageFlag.EPHEMERAL) | MessageFlag.LOADING
            else:
                _require_content(fields)
            interaction.original = await self._interaction_message(interaction, fields, flags)
            interaction.ephemeral = interaction.original.ephemeral
            if kind == 5:
                interaction.deferred_at = elapsed
            else:
                interaction.responded_at = elapsed
            return interaction.original
        if kind in (6, 7):
            if "message" not in interaction.payload:
                raise invalid_form({"type": _field_error("INTERACTION_RESPONSE_TYPE_INVALID", "no message to update")})
            interaction.original = self.world.messages[int(interaction.payload["message"]["id"])]
            if kind == 6:
                interaction.deferred_at = elapsed
                return None
            interaction.responded_at = elapsed
            fields = self._message_fields(
                data, files, interaction.channel_id, existing=interaction.original.attachments
            )
            await self._apply_edit(interaction.original, fields)
            return interaction.original
        if kind == 8:
            choices = data.get("choices") or []
            if len(choices) > MAX_CHOICES:
                raise invalid_form({"choices": _field_error("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")})
            interaction.choices = choices
        else:
            interaction.modal = data
        interaction.responded_at = elapsed
        return None

    async def _interaction_message(self, interaction: EmuInteraction, fields: Json, flags: int) -> EmuMessage:
        data = interaction.payload["data"]
        metadata: Json = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": interaction.user.payload(),
            "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
        }
        message_type = 0
        if interaction.type == 2:
            metadata |= {"name": data["name"], "command_type": data["type"]}
            message_type = MESSAGE_TYPE_FOR_COMMAND[data["type"]]
        message = EmuMessage(
            id=self.emu.snowflake(),
            channel_id=interaction.channel_id,
            guild_id=interaction.guild_id,
            author=self.emu.bot_user,
            type=message_type,
            flags=flags,
            webhook_id=self.emu.application_id,
            interaction_metadata=metadata,
            **fields,
        )
        if not message.ephemeral:
            self._channel_rate(message.channel_id)
        await self.emu.post(message)
        return message

    def _webhook_interaction(self, request: web.Request) -> EmuInteraction:
        token = request.match_info["token"]
        interaction = next((i for i in self.emu.interactions if i.token == token), None)
        if _id(request, "app_id") != self.emu.application_id or interaction is None:
            raise unknown("Webhook", 10015)
        if interaction.callback_type is None:
            raise unknown("Webhook", 10015)
        return interaction

    def _webhook_message(self, request: web.Request) -> tuple[EmuInteraction, EmuMessage]:
        interaction = self._webhook_interaction(request)
        message_id = request.match_info["message_id"]
        if message_id == "@original":
            message = interaction.original
        else:
            message = next((m for m in interaction.messages if str(m.id) == message_id), None)
        if message is None or message.deleted:
            raise unknown("Message", 10008)
        return interaction, message

    async def create_followup(self, request: web.Request) -> web.StreamResponse:
        """POST /webhooks/{app}/{token}: a followup; the first one after a thinking defer replaces it."""
        interaction = self._webhook_interaction(request)
        fields = self._message_fields(request[BODY] or {}, request[FILES], interaction.channel_id, existing=[])
        flags = fields.pop("flags", 0) & SENDABLE_FLAGS
        _require_content(fields)
        original = interaction.original
        if original is not None and original.loading:
            # Discord turns the "thinking" message into this one; it keeps the defer's ephemerality.
            await self._apply_edit(original, fields, flags=original.flags & ~MessageFlag.LOADING)
            message = original
        else:
            message = await self._interaction_message(interaction, fields, flags)
            interaction.followups.append(message)
        if interaction.responded_at is None:
            interaction.responded_at = self.emu.clock() - interaction.dispatched_at
        if request.query.get("wait") in ("true", "1", "True"):
            return _json(self.world.message_payload(message))
        return web.Response(status=204)

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        """GET an interaction's original response or followup."""
        _, message = self._webhook_message(request)
        return _json(self.world.message_payload(message))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        """PATCH an interaction's original response or followup (an edit clears "thinking")."""
        interaction, message = self._webhook_message(request)
        fields = self._message_fields(
            request[BODY] or {}, request[FILES], message.channel_id, existing=message.attachments
        )
        flags = (message.flags & ~(MessageFlag.LOADING | MessageFlag.SUPPRESS_EMBEDS)) | (
            fields.pop("flags", message.flags) & MessageFlag.SUPPRESS_EMBEDS
        )
        if not message.ephemeral:
            self._channel_rate(message.channel_id)
        await self._apply_edit(message, fields, flags=flags)
        if interaction.responded_at is None:
            interaction.responded_at = self.emu.clock() - interaction.dispatched_at
        return _json(self.world.message_payload(message))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        """DELETE an interaction's original response or followup."""
        _, message = self._webhook_message(request)
        await self._delete(message)
        return web.Response(status=204)

    # -- channels and messages -------------------------------------------------------------------

    def _visible_channel(self, request: web.Request) -> EmuChannel:
        channel = self.world.channel(_id(request, "channel_id"))
        if channel is None:
            raise unknown("Channel", 10003)
        if not self.world.can_view(self.emu.bot_user.id, channel.id):
            raise MISSING_ACCESS
        return channel

    def _require(self, channel: EmuChannel, permission: int) -> None:
        if self.world.permissions_in(self.emu.bot_user.id, channel.id) & permission != permission:
            raise MISSING_PERMISSIONS

    def _channel_message(self, request: web.Request, channel: EmuChannel) -> EmuMessage:
        message = self.world.messages.get(_id(request, "message_id"))
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise unknown("Message", 10008)
        return message

    def _rest_payload(self, message: EmuMessage) -> Json:
        # The Message Content restriction covers REST reads too, following the portal's toggle.
        intents = Intent(self.emu.privileged_intents)
        return self.world.message_payload(message, visible=lambda m: self.emu.content_visible(m, intents))

    async def get_channel(self, request: web.Request) -> web.Response:
        """GET /channels/{id}."""
        return _json(self.world.channel_payload(self._visible_channel(request)))

    async def get_messages(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages (newest first; limit, before, after, around)."""
        channel = self._visible_channel(request)
        if not self.world.permissions_in(self.emu.bot_user.id, channel.id) & Perm.READ_MESSAGE_HISTORY:
            return _json([])
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
        return _json([self._rest_payload(m) for m in reversed(messages)])

    async def get_message(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages/{id}."""
        channel = self._visible_channel(request)
        self._require(channel, Perm.READ_MESSAGE_HISTORY)
        return _json(self._rest_payload(self._channel_message(request, channel)))

    async def create_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/messages (JSON or multipart with files)."""
        channel = self._visible_channel(request)
        self._require(channel, self.world.send_permission(channel.id))
        body: Json = request[BODY] or {}
        files: dict[int, EmuFile] = request[FILES]
        if files:
            self._require(channel, Perm.ATTACH_FILES)
        reply_to = self._reference(body.get("message_reference"), channel)
        fields = self._message_fields(body, files, channel.id, existing=[])
        fields["flags"] = fields.get("flags", 0) & SENDABLE_FLAGS & ~MessageFlag.EPHEMERAL
        _require_content(fields, sticker=bool(body.get("sticker_ids") or body.get("poll")))
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
        return _json(self.world.message_payload(message))

    def _reference(self, reference: Json | None, channel: EmuChannel) -> EmuMessage | None:
        if not reference:
            return None
        message = self.world.messages.get(int(reference["message_id"]))
        if message is not None and not message.deleted:
            return message
        if reference.get("fail_if_not_exists", True):
            error = _field_error("REPLIES_UNKNOWN_MESSAGE", "Unknown message")
            raise DiscordHTTPError(400, 50035, "Invalid Form Body", {"message_reference": error})
        return None

    async def edit_message(self, request: web.Request) -> web.Response:
        """PATCH /channels/{id}/messages/{id}: only the bot's own messages."""
        channel = self._visible_channel(request)
        message = self._channel_message(request, channel)
        if message.author.id != self.emu.bot_user.id:
            raise DiscordHTTPError(403, 50005, "Cannot edit a message authored by another user")
        fields = self._message_fields(request[BODY] or {}, request[FILES], channel.id, existing=message.attachments)
        suppress = fields.pop("flags", message.flags) & MessageFlag.SUPPRESS_EMBEDS
        self._channel_rate(channel.id)
        await self._apply_edit(message, fields, flags=(message.flags & ~MessageFlag.SUPPRESS_EMBEDS) | suppress)
        return _json(self.world.message_payload(message))

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
            raise invalid_form({"name": _field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")})
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
        return _json(self.world.channel_payload(thread), status=201)

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
        return _json(self.world.channel_payload(thread), status=201)

    # -- guild members, CDN ----------------------------------------------------------------------

    async def get_member(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/members/{id}."""
        if _id(request, "guild_id") != self.emu.guild_id:
            raise unknown("Guild", 10004)
        user_id = _id(request, "user_id")
        if not self.world.is_member(user_id):
            raise unknown("Member", 10007)
        return _json(self.world.member_payload(user_id))

    async def get_my_guilds(self, request: web.Request) -> web.Response:
        """GET /users/@me/guilds: the one guild, with the bot's permissions there."""
        world = self.world
        guild = {
            "id": str(world.guild_id),
            "name": "Emulated Guild",
            "icon": None,
            "owner": world.owner_id == world.bot.id,
            "permissions": str(world.base_permissions(world.bot.id)),
            "features": [],
        }
        return _json([guild])

    async def get_roles(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/roles."""
        if _id(request, "guild_id") != self.emu.guild_id:
            raise unknown("Guild", 10004)
        return _json([role.payload() for role in self.world.roles.values()])

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/channels: its channels, not threads, with their permission overwrites."""
        if _id(request, "guild_id") != self.emu.guild_id:
            raise unknown("Guild", 10004)
        channels = [c for c in self.world.channels.values() if c.guild_id == self.emu.guild_id and not c.is_thread]
        return _json([self.world.channel_payload(c) for c in channels])

    async def cdn(self, request: web.Request) -> web.Response:
        """GET an attachment's bytes."""
        attachment = self.emu.attachments.get(_id(request, "attachment_id"))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")

    # -- shared message rules --------------------------------------------------------------------

    def _message_fields(self, body: Json, files: dict[int, EmuFile], channel_id: int, *, existing: list[Any]) -> Json:
        """The message fields a create/edit body sets, after Discord's checks on lengths, counts and sizes."""
        fields: Json = {}
        errors: Json = {}
        if "content" in body:
            fields["content"] = body["content"] or ""
            if len(fields["content"]) > MAX_CONTENT:
                errors["content"] = _field_error("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        if "embeds" in body:
            fields["embeds"] = body["embeds"] or []
            errors |= _embed_errors(fields["embeds"])
        for key in ("components", "allowed_mentions", "flags", "tts"):
            if key in body and body[key] is not None:
                fields[key] = body[key]
        if len(files) > MAX_FILES:
            errors["files"] = _field_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        if errors:
            raise invalid_form(errors)
        for file in files.values():
            if len(file.data) > self.emu.filesize_limit:
                raise DiscordHTTPError(413, 40005, "Request entity too large")
        if "attachments" in body or files:
            fields["attachments"] = self._attachments(body.get("attachments"), files, channel_id, existing)
        return fields

    def _attachments(
        self, items: list[Json] | None, files: dict[int, EmuFile], channel_id: int, existing: list[Any]
    ) -> list[Any]:
        kept = {a.id: a for a in existing}
        result, used = [], set()
        for item in items if items is not None else [{"id": index} for index in files]:
            attachment_id = int(item["id"])
            if attachment_id in kept and items is not None:
                result.append(kept[attachment_id])
            elif attachment_id in files:
                file = files[attachment_id]
                extra: dict[str, Any] = {
                    k: item[k] for k in ("description", "duration_secs", "waveform") if item.get(k)
                }
                result.append(self.emu.new_attachment(channel_id, dataclasses.replace(file, **extra)))
                used.add(attachment_id)
            else:
                error = _field_error("ATTACHMENT_NOT_FOUND", f"no attachment {attachment_id}")
                raise invalid_form({"attachments": error})
        result += [self.emu.new_attachment(channel_id, f) for i, f in files.items() if i not in used]
        if items is None:
            return list(existing) + result
        return result

    async def _apply_edit(self, message: EmuMessage, fields: Json, *, flags: int | None = None) -> None:
        """Edit a message, keeping its previous state in `history`, and dispatch MESSAGE_UPDATE."""
        revision = EmuRevision(
            message.content, message.embeds, [a.id for a in message.attachments], message.flags, self.emu.clock()
        )
        after = {
            "content": fields.get("content", message.content),
            "embeds": fields.get("embeds", message.embeds),
            "attachments": fields.get("attachments", message.attachments),
            "components": fields.get("components", message.components),
        }
        _require_content(after)
        message.history.append(revision)
        for key, value in after.items():
            setattr(message, key, value)
        if "allowed_mentions" in fields:
            message.allowed_mentions = fields["allowed_mentions"]
        if flags is not None:
            message.flags = flags
        message.edited_at = now_iso()
        await self.emu.dispatch_message("MESSAGE_UPDATE", message)

    async def _delete(self, message: EmuMessage) -> None:
        message.deleted = True
        await self.emu.dispatch_delete(message)

    def _channel_rate(self, channel_id: int) -> None:
        """Apply the opt-in per-channel limit on creates and edits (Discord allows about 5 per 5 s)."""
        if self.emu.channel_rate_limit is None:
            return
        count, window = self.emu.channel_rate_limit
        now = self.emu.clock()
        hits = self.channel_hits.setdefault(channel_id, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= count:
            raise RateLimited(round(hits[0] + window - now, 3), scope="shared")
        hits.append(now)


def _command_problems(command: Json) -> list[str]:
    """Discord's naming rules for a command and its options, which the spec only states as lengths."""
    name = command.get("name", "")
    if command.get("type", 1) != 1:
        return [] if 1 <= len(name) <= 32 else [f"{name!r}: a context menu name has 1-32 characters"]
    problems: list[str] = []
    pending = [(name, command)]
    while pending:
        where, item = pending.pop()
        if not CHAT_INPUT_NAME.match(item.get("name", "")) or item["name"] != item["name"].lower():
            problems.append(f"{where}: name {item.get('name')!r} must be 1-32 lowercase letters, digits, - or _")
        if not 1 <= len(item.get("description") or "") <= 100:
            problems.append(f"{where}: the description must have 1-100 characters")
        options = item.get("options") or []
        if len(options) > 25 or len(item.get("choices") or []) > MAX_CHOICES:
            problems.append(f"{where}: at most 25 options and 25 choices")
        pending += [(f"{where}.{option.get('name')}", option) for option in options]
    return problems


def _embed_errors(embeds: list[Json]) -> Json:
    if len(embeds) > MAX_EMBEDS:
        return {"embeds": _field_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")}
    errors: Json = {}
    total = 0
    for index, embed in enumerate(embeds):
        description = embed.get("description") or ""
        if len(description) > MAX_EMBED_DESCRIPTION:
            errors[str(index)] = {"description": _field_error("BASE_TYPE_MAX_LENGTH", "Must be 4096 or fewer.")}
        total += len(embed.get("title") or "") + len(description)
        total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
        total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in embed.get("fields") or [])
    if total > MAX_EMBED_TOTAL:
        errors["_errors"] = [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}]
    return {"embeds": errors} if errors else {}


def _require_content(fields: Json, *, sticker: bool = False) -> None:
    if not (sticker or any(fields.get(key) for key in ("content", "embeds", "attachments", "components"))):
        raise DiscordHTTPError(400, 50006, "Cannot send an empty message", violation=True)


async def _read_body(request: web.Request) -> tuple[Any, dict[int, EmuFile]]:
    """The JSON body (or a multipart's payload_json) and the uploaded files by their index."""
    if request.content_type == JSON_TYPE:
        text = await request.text()
        return (json.loads(text) if text else None), {}
    if request.content_type != "multipart/form-data":
        return None, {}
    payload, files = None, {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        name = getattr(part, "name", None) or ""
        if name == "payload_json":
            payload = json.loads(await part.text())  # type: ignore[union-attr]
        elif name.startswith("files["):
            data = bytes(await part.read())  # type: ignore[union-attr]
            content_type = part.headers.get("Content-Type")
            if content_type == "application/octet-stream":
                content_type = None
            files[int(name[6:-1])] = EmuFile(getattr(part, "filename", None) or "file", data, content_type)
    return payload, files


def _id(request: web.Request, key: str) -> int:
    value = request.match_info[key]
    if not value.isdigit():
        raise invalid_form({key: _field_error("NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')})
    return int(value)


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses a body only when Content-Type is exactly application/json (no charset).
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": JSON_TYPE} | (headers or {})
    )
