"""The REST routes of interactions: callbacks, followups, and the original response and followups by webhook."""

from __future__ import annotations

from aiohttp import web

from .errors import DiscordHTTPError, field_error, invalid_form, json_response, unknown
from .flags import MessageFlag
from .models import EmuChannel, EmuFile, EmuInteraction, EmuMessage, Json
from .rest_base import BODY, FILES, SENDABLE_FLAGS, RestBase, request_id, require_content
from .voice import VOICE_EDIT

MAX_CHOICES = 25
# Interaction type -> the callback types Discord accepts for it.
VALID_CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
MESSAGE_TYPE_FOR_COMMAND = {1: 20, 2: 23, 3: 23}
# A deferral keeps only these flags; Discord added the voice flag in 2024 (discord-api-docs#7158).
DEFERRABLE_FLAGS = MessageFlag.EPHEMERAL | MessageFlag.IS_VOICE_MESSAGE


class RestInteractions(RestBase):
    """Interaction callbacks and the interaction webhook routes."""

    # -- interactions ----------------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.Response:
        """POST /interactions/{id}/{token}/callback (discord.py asks ?with_response=1 and reads the JSON)."""
        interaction = next((i for i in self.emu.interactions if i.id == request_id(request, "interaction_id")), None)
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
                {"type": field_error("INTERACTION_RESPONSE_TYPE_INVALID", f"{kind} for {interaction.type}")}
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
        return json_response(result)

    async def _answer(
        self, interaction: EmuInteraction, kind: int, data: Json, files: dict[int, EmuFile], elapsed: float
    ) -> EmuMessage | None:
        if kind in (4, 5):
            if kind == 4:
                self._voice_rules(data, files, data.get("flags") or 0, self._interaction_channel(interaction))
            fields = self._message_fields(data, files, interaction.channel_id, existing=[])
            flags = fields.pop("flags", 0) & SENDABLE_FLAGS
            if kind == 5:
                fields, flags = {}, (flags & DEFERRABLE_FLAGS) | MessageFlag.LOADING
            else:
                require_content(fields)
            interaction.original = await self._interaction_message(interaction, fields, flags)
            interaction.ephemeral = interaction.original.ephemeral
            if kind == 5:
                interaction.deferred_at = elapsed
            else:
                interaction.responded_at = elapsed
            return interaction.original
        if kind in (6, 7):
            if "message" not in interaction.payload:
                raise invalid_form({"type": field_error("INTERACTION_RESPONSE_TYPE_INVALID", "no message to update")})
            interaction.original = self.world.messages[int(interaction.payload["message"]["id"])]
            if kind == 6:
                interaction.deferred_at = elapsed
                return None
            if interaction.original.is_voice_message:
                raise VOICE_EDIT
            interaction.responded_at = elapsed
            fields = self._message_fields(
                data, files, interaction.channel_id, existing=interaction.original.attachments
            )
            await self._apply_edit(interaction.original, fields)
            return interaction.original
        if kind == 8:
            choices = data.get("choices") or []
            if len(choices) > MAX_CHOICES:
                raise invalid_form({"choices": field_error("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")})
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

    def _interaction_channel(self, interaction: EmuInteraction) -> EmuChannel:
        channel = self.world.channel(interaction.channel_id)
        if channel is None:
            raise unknown("Channel", 10003)
        return channel

    def _webhook_interaction(self, request: web.Request) -> EmuInteraction:
        token = request.match_info["token"]
        interaction = next((i for i in self.emu.interactions if i.token == token), None)
        if request_id(request, "app_id") != self.emu.application_id or interaction is None:
            raise unknown("Webhook", 10015)
        if interaction.callback_type is None:
            raise unknown("Webhook", 10015)
        if self.emu.clock() - interaction.dispatched_at > self.emu.interaction_token_lifetime:
            raise DiscordHTTPError(401, 50027, "Invalid Webhook Token")
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
        body: Json = request[BODY] or {}
        original = interaction.original
        replaces = original is not None and original.loading
        voice = (body.get("flags") or 0) | (original.flags if replaces and original else 0)
        self._voice_rules(body, request[FILES], voice, self._interaction_channel(interaction))
        fields = self._message_fields(body, request[FILES], interaction.channel_id, existing=[])
        flags = fields.pop("flags", 0) & SENDABLE_FLAGS
        require_content(fields)
        if replaces and original is not None:
            # Discord turns the "thinking" message into this one; it keeps the defer's ephemerality.
            kept = (original.flags & ~MessageFlag.LOADING) | (flags & MessageFlag.IS_VOICE_MESSAGE)
            await self._apply_edit(original, fields, flags=kept)
            message = original
        else:
            message = await self._interaction_message(interaction, fields, flags)
            interaction.followups.append(message)
        if interaction.responded_at is None:
            interaction.responded_at = self.emu.clock() - interaction.dispatched_at
        if request.query.get("wait") in ("true", "1", "True"):
            return json_response(self.world.message_payload(message))
        return web.Response(status=204)

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        """GET an interaction's original response or followup."""
        _, message = self._webhook_message(request)
        return json_response(self.world.message_payload(message))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        """PATCH an interaction's original response or followup (an edit clears "thinking")."""
        interaction, message = self._webhook_message(request)
        body: Json = request[BODY] or {}
        if message.is_voice_message and not message.loading:
            raise VOICE_EDIT
        if message.loading:
            # Editing the "thinking" message is the response itself: a voice deferral becomes the voice message.
            self._voice_rules(body, request[FILES], message.flags, self._interaction_channel(interaction))
        fields = self._message_fields(body, request[FILES], message.channel_id, existing=message.attachments)
        flags = (message.flags & ~(MessageFlag.LOADING | MessageFlag.SUPPRESS_EMBEDS)) | (
            fields.pop("flags", message.flags) & MessageFlag.SUPPRESS_EMBEDS
        )
        if not message.ephemeral:
            self._channel_rate(message.channel_id)
        await self._apply_edit(message, fields, flags=flags)
        if interaction.responded_at is None:
            interaction.responded_at = self.emu.clock() - interaction.dispatched_at
        return json_response(self.world.message_payload(message))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        """DELETE an interaction's original response or followup."""
        _, message = self._webhook_message(request)
        await self._delete(message)
        return web.Response(status=204)
