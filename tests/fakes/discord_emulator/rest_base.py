"""What every REST handler shares: the parsed request, channel access, and Discord's rules for message bodies."""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import (
    MISSING_ACCESS,
    MISSING_PERMISSIONS,
    DiscordHTTPError,
    RateLimited,
    field_error,
    invalid_form,
    unknown,
)
from .flags import Intent, MessageFlag, Perm, now_iso
from .models import EmuChannel, EmuFile, EmuMessage, EmuRevision, Json
from .voice import VOICE_FORBIDDEN, check_voice_message

if TYPE_CHECKING:
    from .emulator import DiscordEmulator
    from .world import World

JSON_TYPE = "application/json"
MAX_CONTENT = 2000
MAX_FILES = 10
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_EMBED_DESCRIPTION = 4096
SENDABLE_FLAGS = (
    MessageFlag.SUPPRESS_EMBEDS
    | MessageFlag.EPHEMERAL
    | MessageFlag.SUPPRESS_NOTIFICATIONS
    | MessageFlag.IS_VOICE_MESSAGE
    | MessageFlag.IS_COMPONENTS_V2
)
ATTACHMENT_FIELDS = ("description", "duration_secs", "waveform")
BODY: web.RequestKey[Any] = web.RequestKey("body", object)
FILES = web.RequestKey("files", dict[int, EmuFile])


class RestBase:
    """Shared state and checks of the REST handler classes (Rest inherits them all)."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self.emu = emulator
        self.world: World = emulator.world
        self.channel_hits: dict[int, deque[float]] = {}

    # -- channels and their messages -------------------------------------------------------------

    def _visible_channel(self, request: web.Request) -> EmuChannel:
        channel = self.world.channel(request_id(request, "channel_id"))
        if channel is None:
            raise unknown("Channel", 10003)
        if not self.world.can_view(self.emu.bot_user.id, channel.id):
            raise MISSING_ACCESS
        return channel

    def _require(self, channel: EmuChannel, permission: int) -> None:
        if self.world.permissions_in(self.emu.bot_user.id, channel.id) & permission != permission:
            raise MISSING_PERMISSIONS

    def _channel_message(self, request: web.Request, channel: EmuChannel) -> EmuMessage:
        message = self.world.messages.get(request_id(request, "message_id"))
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise unknown("Message", 10008)
        return message

    def _rest_payload(self, message: EmuMessage) -> Json:
        # The Message Content restriction covers REST reads too, following the portal's toggle.
        intents = Intent(self.emu.privileged_intents)
        return self.world.message_payload(message, visible=lambda m: self.emu.content_visible(m, intents))

    # -- message bodies --------------------------------------------------------------------------

    def _message_fields(self, body: Json, files: dict[int, EmuFile], channel_id: int, *, existing: list[Any]) -> Json:
        """The message fields a create/edit body sets, after Discord's checks on lengths, counts and sizes."""
        fields: Json = {}
        errors: Json = {}
        if "content" in body:
            fields["content"] = body["content"] or ""
            if len(fields["content"]) > MAX_CONTENT:
                errors["content"] = field_error("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        if "embeds" in body:
            fields["embeds"] = body["embeds"] or []
            errors |= _embed_errors(fields["embeds"])
        for key in ("components", "allowed_mentions", "flags", "tts"):
            if key in body and body[key] is not None:
                fields[key] = body[key]
        if len(files) > MAX_FILES:
            errors["files"] = field_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
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
                extra = {key: item[key] for key in ATTACHMENT_FIELDS if item.get(key) is not None}
                result.append(self.emu.new_attachment(channel_id, dataclasses.replace(files[attachment_id], **extra)))
                used.add(attachment_id)
            else:
                error = field_error("ATTACHMENT_NOT_FOUND", f"no attachment {attachment_id}")
                raise invalid_form({"attachments": error})
        result += [self.emu.new_attachment(channel_id, f) for i, f in files.items() if i not in used]
        if items is None:
            return list(existing) + result
        return result

    def _voice_rules(self, body: Json, files: dict[int, EmuFile], flags: int, channel: EmuChannel) -> None:
        """Discord's checks on a message created with IS_VOICE_MESSAGE (none for other messages)."""
        if not flags & MessageFlag.IS_VOICE_MESSAGE:
            return
        check_voice_message(body, files)
        if not self.world.permissions_in(self.emu.bot_user.id, channel.id) & Perm.SEND_VOICE_MESSAGES:
            raise VOICE_FORBIDDEN

    async def _apply_edit(self, message: EmuMessage, fields: Json, *, flags: int | None = None) -> None:
        """Edit a message, keeping its previous state in `history`, and dispatch MESSAGE_UPDATE."""
        now = self.emu.clock()
        attachment_ids = [a.id for a in message.attachments]
        revision = EmuRevision(message.content, message.embeds, attachment_ids, message.flags, now, message.visible_at)
        after = {
            "content": fields.get("content", message.content),
            "embeds": fields.get("embeds", message.embeds),
            "attachments": fields.get("attachments", message.attachments),
            "components": fields.get("components", message.components),
        }
        require_content(after)
        message.history.append(revision)
        for key, value in after.items():
            setattr(message, key, value)
        if "allowed_mentions" in fields:
            message.allowed_mentions = fields["allowed_mentions"]
        if flags is not None:
            message.flags = flags
        message.edited_at = now_iso()
        message.visible_at = now
        self.emu.message_changed("update", message)
        await self.emu.dispatch_message("MESSAGE_UPDATE", message)

    async def _delete(self, message: EmuMessage) -> None:
        await self.emu.delete_message(message.id)

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


def require_content(fields: Json, *, sticker: bool = False) -> None:
    """Refuse a message with nothing to show (50006)."""
    if not (sticker or any(fields.get(key) for key in ("content", "embeds", "attachments", "components"))):
        raise DiscordHTTPError(400, 50006, "Cannot send an empty message", violation=True)


def _embed_errors(embeds: list[Json]) -> Json:
    if len(embeds) > MAX_EMBEDS:
        return {"embeds": field_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")}
    errors: Json = {}
    total = 0
    for index, embed in enumerate(embeds):
        description = embed.get("description") or ""
        if len(description) > MAX_EMBED_DESCRIPTION:
            errors[str(index)] = {"description": field_error("BASE_TYPE_MAX_LENGTH", "Must be 4096 or fewer.")}
        total += len(embed.get("title") or "") + len(description)
        total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
        total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in embed.get("fields") or [])
    if total > MAX_EMBED_TOTAL:
        errors["_errors"] = [{"code": "MAX_EMBED_SIZE_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}]
    return {"embeds": errors} if errors else {}


async def read_body(request: web.Request) -> tuple[Any, dict[int, EmuFile]]:
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


def request_id(request: web.Request, key: str) -> int:
    """A snowflake from the route, refused as Discord does when it is not one."""
    value = request.match_info[key]
    if not value.isdigit():
        raise invalid_form({key: field_error("NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')})
    return int(value)
