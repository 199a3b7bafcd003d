"""The emulated REST API under /api/v10: routing, the request pipeline, users, gateway, commands, guilds, CDN."""

from __future__ import annotations

import bisect
import json
import re
import traceback
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import MISSING_ACCESS, DiscordHTTPError, RateLimited, field_error, invalid_form, json_response, unknown
from .models import EmuGuild, EmuRequest, Json
from .rest_base import BODY, FILES, read_body, request_id
from .rest_interactions import MAX_CHOICES, RestInteractions
from .rest_messages import RestMessages

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

API_PREFIX = "/api/v10"
CHAT_INPUT_NAME = re.compile(r"^[-_'\w]{1,32}$")
MY_GUILDS_LIMIT = range(1, 201)
SESSION_STARTS_PER_DAY = 1000
SESSION_RESET_AFTER_MS = 14_400_000


class Rest(RestInteractions, RestMessages):
    """The REST routes; each handler reads the parsed body from request[BODY] and request[FILES]."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        super().__init__(emulator)

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
            ("DELETE", "/channels/{channel_id}", self.delete_channel),
            ("GET", "/guilds/{guild_id}", self.get_guild),
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
        body, files = await read_body(request)
        record = EmuRequest(request.method, path, dict(request.query), body, list(files.values()), self.emu.clock())
        resource = request.match_info.route.resource
        record.route = resource.canonical.removeprefix(API_PREFIX) if resource is not None else path
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
            response = json_response({"code": 0, "message": f"{exc.status}: {exc.reason}"}, status=exc.status)
        except Exception as exc:
            self.emu.record_error(f"{request.method} {path} crashed the emulator:\n{traceback.format_exc()}")
            # A 400, not a 500: discord.py retries 5xx for many seconds before failing.
            response = json_response({"code": 0, "message": f"emulator fault: {exc!r}"}, status=400)
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
        return json_response(self.emu.bot_user.payload() | {"verified": True, "mfa_enabled": False, "email": None})

    async def get_user(self, request: web.Request) -> web.Response:
        """GET /users/{id}."""
        user = self.world.users.get(request_id(request, "user_id"))
        if user is None:
            raise unknown("User", 10013)
        return json_response(user.payload())

    async def open_dm(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels: the DM channel with a user."""
        user = self.world.users.get(int(request[BODY]["recipient_id"]))
        if user is None:
            raise unknown("User", 10013)
        return json_response(self.world.channel_payload(self.world.dm_channel(user)))

    async def get_gateway(self, request: web.Request) -> web.Response:
        """GET /gateway ({url}) and /gateway/bot (also the recommended shards and the session start limit)."""
        data: Json = {"url": f"ws://127.0.0.1:{self.emu.port}"}
        if request.path.endswith("/bot"):
            limit = {
                "total": SESSION_STARTS_PER_DAY,
                "remaining": max(SESSION_STARTS_PER_DAY - len(self.emu.identifies), 0),
                "reset_after": SESSION_RESET_AFTER_MS,
                "max_concurrency": self.emu.max_concurrency,
            }
            data |= {"shards": self.emu.recommended_shard_count, "session_start_limit": limit}
        return json_response(data)

    async def get_application(self, request: web.Request) -> web.Response:
        """GET /oauth2/applications/@me and /applications/@me."""
        return json_response(self.emu.application_info())

    # -- application commands --------------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if request_id(request, "app_id") != self.emu.application_id:
            raise unknown("Application", 10002)
        if "guild_id" not in request.match_info:
            return None
        guild_id = request_id(request, "guild_id")
        if not self.world.is_member(self.emu.bot_user.id, guild_id):
            raise MISSING_ACCESS
        return guild_id

    async def get_commands(self, request: web.Request) -> web.Response:
        """GET the global or guild commands."""
        return json_response(self.emu.commands(self._command_scope(request)))

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
        return json_response(stored)

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

    # -- guilds, CDN ----------------------------------------------------------------------------

    def _bot_guild(self, request: web.Request) -> EmuGuild:
        # Since 2023 Discord answers Unknown Guild both for a guild that does not exist and one the bot is not in.
        guild = self.world.guilds.get(request_id(request, "guild_id"))
        if guild is None or not guild.is_member(self.emu.bot_user.id):
            raise unknown("Guild", 10004)
        return guild

    async def get_guild(self, request: web.Request) -> web.Response:
        """GET /guilds/{id} (with_counts adds approximate counts)."""
        guild = self._bot_guild(request)
        data = self.world.guild_fields(guild)
        if request.query.get("with_counts") in ("true", "True", "1"):
            data |= {"approximate_member_count": len(guild.member_roles), "approximate_presence_count": 0}
        return json_response(data)

    async def get_member(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/members/{id}."""
        guild = self._bot_guild(request)
        user_id = request_id(request, "user_id")
        if not guild.is_member(user_id):
            raise unknown("Member", 10007)
        return json_response(self.world.member_payload(guild, user_id))

    async def get_my_guilds(self, request: web.Request) -> web.Response:
        """GET /users/@me/guilds: the bot's guilds by id, paged with before/after/limit (1-200, default 200)."""
        limit = int(request.query.get("limit", MY_GUILDS_LIMIT[-1]))
        if limit not in MY_GUILDS_LIMIT:
            raise invalid_form({"limit": field_error("NUMBER_TYPE_MAX", "int value should be between 1 and 200.")})
        guilds = sorted(self.world.bot_guilds(), key=lambda g: g.id)
        ids = [guild.id for guild in guilds]
        if "after" in request.query:
            guilds = guilds[bisect.bisect_right(ids, int(request.query["after"])) :][:limit]
        elif "before" in request.query:
            guilds = guilds[: bisect.bisect_left(ids, int(request.query["before"]))][-limit:]
        else:
            guilds = guilds[:limit]
        with_counts = request.query.get("with_counts") in ("true", "True", "1")
        return json_response([self.world.partial_guild_payload(g, with_counts=with_counts) for g in guilds])

    async def get_roles(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/roles."""
        guild = self._bot_guild(request)
        return json_response([role.payload() for role in guild.roles.values()])

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/channels: its channels, not threads, with their permission overwrites."""
        guild = self._bot_guild(request)
        return json_response([self.world.channel_payload(c) for c in guild.channels.values()])

    async def cdn(self, request: web.Request) -> web.Response:
        """GET an attachment's bytes."""
        attachment = self.emu.attachments.get(request_id(request, "attachment_id"))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")


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
