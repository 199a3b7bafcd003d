"""What the emulator's people do: post messages, open threads, run commands, press buttons, submit forms."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from .flags import ChannelType, MessageFlag
from .models import EmuChannel, EmuFile, EmuInteraction, EmuMessage, EmuRole, EmuUser, Json

if TYPE_CHECKING:
    from .flags import SnowflakeFactory
    from .gateway import Gateway
    from .world import World

INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5
COMMAND_CHAT_INPUT = 1
COMMAND_USER = 2
COMMAND_MESSAGE = 3
OPTION_SUBCOMMAND_TYPES = (1, 2)


class UserActions:
    """The DiscordEmulator's methods that act as people; DiscordEmulator inherits them."""

    world: World
    snowflake: SnowflakeFactory
    gateway: Gateway
    interactions: list[EmuInteraction]
    global_commands: list[Json]
    guild_commands: dict[int, list[Json]]
    filesize_limit: int

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
        reply = self.world.messages.get(reply_to) if reply_to is not None else None
        if reply_to is not None and (reply is None or reply.deleted):
            # Discord refuses a reply to a missing message unless fail_if_not_exists is false.
            raise LookupError(f"cannot reply to message {reply_to}: it does not exist or was deleted")
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

    # -- internals -------------------------------------------------------------------------------

    def _channel(self, channel_id: int) -> EmuChannel:
        channel = self.world.channel(channel_id)
        if channel is None:
            raise LookupError(f"no channel {channel_id}")
        return channel

    def _find_command(self, name: str, kind: int, user: EmuUser, channel: EmuChannel) -> tuple[Json, int | None]:
        if channel.guild_id is not None and not self.world.is_member(self.bot_user.id, channel.guild_id):
            raise LookupError(f"the bot is not in the guild of channel {channel.id}: nobody there can run /{name}")
        if not self.world.can_view(user.id, channel.id):
            raise PermissionError(f"{user.username} cannot see channel {channel.name or channel.id}")
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
        guild = self.world.guild_of(channel)
        if guild is not None and guild.is_member(target.id):
            permissions = self.world.permissions_in(target.id, channel.id)
            member = self.world.member_payload(guild, target.id, with_user=False, permissions=permissions)
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
        if not self.gateway.connected(channel.guild_id):
            where = f"guild {channel.guild_id}" if channel.guild_id is not None else "DMs (shard 0)"
            raise RuntimeError(
                f"no connected gateway session receives {where}: start the client first (emu.run_client)"
            )
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
        guild = self.world.guild_of(channel)
        if guild is not None:
            permissions = self.world.permissions_in(user.id, channel.id)
            payload |= {
                "guild_id": str(channel.guild_id),
                "guild": {"id": str(channel.guild_id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": self.world.member_payload(guild, user.id, permissions=permissions),
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
        await self.gateway.dispatch("INTERACTION_CREATE", lambda _intents: payload, guild_id=channel.guild_id)
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
