"""The JSON objects Discord sends for the emulated world: users, members, channels, guilds, messages."""

from __future__ import annotations

from collections.abc import Callable

from .flags import ChannelType
from .models import EmuChannel, EmuGuild, EmuMessage, EmuUser, Json


class Payloads:
    """Builds payloads from the World's state (World inherits this; the attributes below are its)."""

    application_id: int
    bot: EmuUser
    users: dict[int, EmuUser]
    guilds: dict[int, EmuGuild]
    channels: dict[int, EmuChannel]

    def channel_messages(self, channel_id: int) -> list[EmuMessage]:  # pragma: no cover - World's
        raise NotImplementedError

    def can_view(self, user_id: int, channel_id: int) -> bool:  # pragma: no cover - World's
        raise NotImplementedError

    def base_permissions(self, guild: EmuGuild, user_id: int) -> int:  # pragma: no cover - World's
        raise NotImplementedError

    def user_payload(self, user_id: int) -> Json:
        """The user object of a known user."""
        return self.users[user_id].payload()

    def member_payload(
        self, guild: EmuGuild, user_id: int, *, with_user: bool = True, permissions: int | None = None
    ) -> Json:
        """The guild member object; `permissions` is added for interactions."""
        data: Json = {
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [str(role_id) for role_id in guild.member_roles[user_id]],
            "joined_at": guild.joined_at[user_id],
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if with_user:
            data["user"] = self.user_payload(user_id)
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data

    def channel_payload(self, channel: EmuChannel, *, with_guild_id: bool = True) -> Json:
        """The channel (or thread) object."""
        if channel.type is ChannelType.DM:
            assert channel.recipient is not None
            return {
                "id": str(channel.id),
                "type": int(channel.type),
                "last_message_id": _maybe_str(channel.last_message_id),
                "flags": 0,
                "recipients": [channel.recipient.payload()],
            }
        data: Json = {
            "id": str(channel.id),
            "type": int(channel.type),
            "name": channel.name,
            "parent_id": _maybe_str(channel.parent_id),
            "last_message_id": _maybe_str(channel.last_message_id),
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if with_guild_id:
            data["guild_id"] = str(channel.guild_id)
        if channel.is_thread:
            data |= self._thread_fields(channel)
        else:
            data |= {
                "position": channel.position,
                "topic": None,
                "nsfw": False,
                "permission_overwrites": [
                    {"id": str(target), "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                    for target, o in channel.overwrites.items()
                ],
                "default_auto_archive_duration": 4320,
                "default_thread_rate_limit_per_user": 0,
            }
        return data

    def thread_delete_payload(self, thread: EmuChannel) -> Json:
        """THREAD_DELETE's subset of the channel object: id, guild_id, parent_id and type."""
        return {
            "id": str(thread.id),
            "guild_id": str(thread.guild_id),
            "parent_id": _maybe_str(thread.parent_id),
            "type": int(thread.type),
        }

    def _thread_fields(self, thread: EmuChannel) -> Json:
        count = sum(1 for m in self.channel_messages(thread.id) if not m.deleted)
        data: Json = {
            "owner_id": str(thread.owner_id),
            "message_count": count,
            "total_message_sent": count,
            "member_count": len(thread.member_ids),
            "thread_metadata": {
                "archived": thread.archived,
                "auto_archive_duration": thread.auto_archive_duration,
                "archive_timestamp": thread.created_at,
                "locked": thread.locked,
                "create_timestamp": thread.created_at,
            },
        }
        if thread.type is ChannelType.PRIVATE_THREAD:
            data["thread_metadata"]["invitable"] = thread.invitable
        if self.bot.id in thread.member_ids:
            data["member"] = {
                "id": str(thread.id),
                "user_id": str(self.bot.id),
                "join_timestamp": thread.created_at,
                "flags": 1,
            }
        return data

    def guild_fields(self, guild: EmuGuild) -> Json:
        """The guild object's fields shared by GUILD_CREATE and GET /guilds/{id}."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "roles": [role.payload() for role in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "system_channel_id": _maybe_str(next(iter(guild.channels), None)),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
        }

    def guild_payload(self, guild: EmuGuild, *, all_members: bool) -> Json:
        """The GUILD_CREATE payload; without the presences intent Discord sends only the bot's member."""
        member_ids = list(guild.member_roles) if all_members else [self.bot.id]
        threads = [t for t in guild.threads.values() if not t.archived and self.can_view(self.bot.id, t.id)]
        return self.guild_fields(guild) | {
            "joined_at": guild.joined_at[self.bot.id],
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.member_roles),
            "members": [self.member_payload(guild, uid) for uid in member_ids],
            "channels": [self.channel_payload(c, with_guild_id=False) for c in guild.channels.values()],
            "threads": [self.channel_payload(t) for t in threads],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "activity_instances": [],
        }

    def partial_guild_payload(self, guild: EmuGuild, *, with_counts: bool = False) -> Json:
        """An entry of GET /users/@me/guilds, with the bot's guild-wide permissions."""
        data: Json = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "banner": None,
            "owner": guild.owner_id == self.bot.id,
            "permissions": str(self.base_permissions(guild, self.bot.id)),
            "features": [],
        }
        if with_counts:
            data |= {"approximate_member_count": len(guild.member_roles), "approximate_presence_count": 0}
        return data

    def message_payload(
        self,
        message: EmuMessage,
        *,
        gateway: bool = False,
        visible: Callable[[EmuMessage], bool] | None = None,
        with_reference: bool = True,
    ) -> Json:
        """The message object; `gateway` adds guild_id and member, `visible` says whose content to send."""
        hide_content = visible is not None and not visible(message)
        pings = message.mentions
        guild = self.guilds.get(message.guild_id) if message.guild_id is not None else None
        data: Json = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "type": message.type,
            "author": message.author.payload(),
            "content": "" if hide_content else message.content,
            "timestamp": message.created_at,
            "edited_timestamp": message.edited_at,
            "tts": message.tts,
            "mention_everyone": pings.everyone,
            "mentions": [self._mentioned(uid, guild, gateway) for uid in sorted(pings.users) if uid in self.users],
            "mention_roles": [str(role_id) for role_id in sorted(pings.roles)],
            "attachments": [] if hide_content else [a.payload() for a in message.attachments],
            "embeds": [] if hide_content else message.embeds,
            "components": [] if hide_content else message.components,
            "pinned": False,
            "flags": message.flags,
        }
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(self.application_id)
        if message.interaction_metadata is not None:
            data["interaction_metadata"] = message.interaction_metadata
        if message.reply_to is not None:
            data |= self._reference_fields(message.reply_to, gateway, visible, with_reference)
        thread = self.channels.get(message.thread_id) if message.thread_id is not None else None
        if thread is not None:
            data["thread"] = self.channel_payload(thread)
        if message.reactions:
            data["reactions"] = [
                {"emoji": {"id": None, "name": emoji}, "count": 1, "me": True} for emoji in message.reactions
            ]
        if gateway and guild is not None:
            data["guild_id"] = str(guild.id)
            if message.webhook_id is None and guild.is_member(message.author.id):
                data["member"] = self.member_payload(guild, message.author.id, with_user=False)
        return data

    def _reference_fields(
        self, reply_to: EmuMessage, gateway: bool, visible: Callable[[EmuMessage], bool] | None, with_reference: bool
    ) -> Json:
        # A reply keeps its reference after the target is deleted; referenced_message becomes null.
        reference: Json = {"type": 0, "message_id": str(reply_to.id), "channel_id": str(reply_to.channel_id)}
        if reply_to.guild_id is not None:
            reference["guild_id"] = str(reply_to.guild_id)
        data: Json = {"message_reference": reference}
        if with_reference:
            referenced = self.message_payload(reply_to, gateway=gateway, visible=visible, with_reference=False)
            data["referenced_message"] = None if reply_to.deleted else referenced
        return data

    def _mentioned(self, user_id: int, guild: EmuGuild | None, gateway: bool) -> Json:
        data = self.user_payload(user_id)
        if gateway and guild is not None and guild.is_member(user_id):
            data["member"] = self.member_payload(guild, user_id, with_user=False)
        return data


def _maybe_str(value: int | None) -> str | None:
    return None if value is None else str(value)
