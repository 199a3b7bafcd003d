"""The emulated guild: channels, roles, members, permissions, stored messages and their payloads."""

from __future__ import annotations

from collections.abc import Callable

from .models import (
    ChannelType,
    EmuChannel,
    EmuMessage,
    EmuRole,
    EmuUser,
    Json,
    Overwrite,
    Perm,
    SnowflakeFactory,
    now_iso,
)

EVERYONE_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE
    | Perm.ADD_REACTIONS
    | Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CHANGE_NICKNAME
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.CREATE_PUBLIC_THREADS
    | Perm.CREATE_PRIVATE_THREADS
    | Perm.SEND_MESSAGES_IN_THREADS
    | Perm.SEND_VOICE_MESSAGES
    | Perm.USE_EXTERNAL_APPS
)
MODERATOR_PERMISSIONS = Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS | Perm.MENTION_EVERYONE
BOT_PERMISSIONS = (
    Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.SEND_MESSAGES_IN_THREADS
    | Perm.CREATE_PUBLIC_THREADS
    | Perm.CREATE_PRIVATE_THREADS
    | Perm.ATTACH_FILES
    | Perm.EMBED_LINKS
    | Perm.READ_MESSAGE_HISTORY
    | Perm.ADD_REACTIONS
    | Perm.USE_EXTERNAL_EMOJIS
)
DM_PERMISSIONS = (
    Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.ADD_REACTIONS
    | Perm.USE_EXTERNAL_EMOJIS
)
# Without Send Messages, Discord also takes away these (docs: "Implicit Permissions").
NEEDS_SEND = Perm.MENTION_EVERYONE | Perm.SEND_TTS_MESSAGES | Perm.ATTACH_FILES | Perm.EMBED_LINKS


class World:
    """The guild with #general and #random, its roles and members, DM channels and all messages."""

    def __init__(self, snowflake: SnowflakeFactory) -> None:
        self.snowflake = snowflake
        # Applications made since 2016 share their id with their bot user.
        self.application_id = snowflake()
        self.bot = EmuUser(self.application_id, "emulated-bot", bot=True)
        self.admin = EmuUser(snowflake(), "admin", global_name="Admin")
        self.member = EmuUser(snowflake(), "member", global_name="Member")
        self.moderator = EmuUser(snowflake(), "moderator", global_name="Moderator")
        self.guild_id = snowflake()
        self.owner_id = self.admin.id
        self.everyone_role = EmuRole(self.guild_id, "@everyone", int(EVERYONE_PERMISSIONS), 0)
        self.moderator_role = EmuRole(snowflake(), "Moderator", int(MODERATOR_PERMISSIONS), 1)
        self.bot_role = EmuRole(snowflake(), self.bot.username, int(BOT_PERMISSIONS), 2, True, self.bot.id)
        self.roles = {role.id: role for role in (self.everyone_role, self.moderator_role, self.bot_role)}
        self.users: dict[int, EmuUser] = {}
        self.member_roles: dict[int, list[int]] = {}
        self.joined_at: dict[int, str] = {}
        for user, roles in (
            (self.bot, [self.bot_role.id]),
            (self.admin, []),
            (self.member, []),
            (self.moderator, [self.moderator_role.id]),
        ):
            self.add_member(user, roles)
        self.channels: dict[int, EmuChannel] = {}
        self.general = self.add_channel(EmuChannel(snowflake(), ChannelType.GUILD_TEXT, "general", self.guild_id))
        self.random = self.add_channel(
            EmuChannel(snowflake(), ChannelType.GUILD_TEXT, "random", self.guild_id, position=1)
        )
        self.dm_channels: dict[int, int] = {}
        self.messages: dict[int, EmuMessage] = {}

    def add_member(self, user: EmuUser, role_ids: list[int]) -> None:
        """Make `user` a member of the guild with the given roles."""
        self.users[user.id] = user
        self.member_roles[user.id] = list(role_ids)
        self.joined_at[user.id] = now_iso()

    def add_channel(self, channel: EmuChannel) -> EmuChannel:
        """Store a channel (or thread) and return it."""
        self.channels[channel.id] = channel
        return channel

    def channel(self, channel_id: int) -> EmuChannel | None:
        """Return the channel with this id, if there is one."""
        return self.channels.get(channel_id)

    def dm_channel(self, user: EmuUser) -> EmuChannel:
        """Return the DM channel between `user` and the bot, opening it on first use."""
        if user.id not in self.dm_channels:
            channel = self.add_channel(EmuChannel(self.snowflake(), ChannelType.DM, None, None, recipient=user))
            self.dm_channels[user.id] = channel.id
            self.users.setdefault(user.id, user)
        return self.channels[self.dm_channels[user.id]]

    def is_member(self, user_id: int) -> bool:
        """Whether the user belongs to the guild."""
        return user_id in self.member_roles

    def base_permissions(self, user_id: int) -> int:
        """The member's guild-wide permissions from @everyone and their roles."""
        if user_id == self.owner_id:
            return int(Perm.ALL)
        permissions = self.everyone_role.permissions
        for role_id in self.member_roles.get(user_id, []):
            permissions |= self.roles[role_id].permissions
        return int(Perm.ALL) if permissions & Perm.ADMINISTRATOR else permissions

    def permissions_in(self, user_id: int, channel_id: int) -> int:
        """The member's permissions in a channel, following Discord's overwrite algorithm."""
        channel = self.channels[channel_id]
        if channel.type is ChannelType.DM:
            return int(DM_PERMISSIONS) if channel.recipient and user_id in (channel.recipient.id, self.bot.id) else 0
        if not self.is_member(user_id):
            return 0
        target = self.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
        permissions = self.base_permissions(user_id)
        if permissions == Perm.ALL:
            return permissions
        permissions = _apply(permissions, target.overwrites.get(self.guild_id))
        allow = deny = 0
        for role_id in self.member_roles[user_id]:
            overwrite = target.overwrites.get(role_id)
            if overwrite is not None:
                allow, deny = allow | overwrite.allow, deny | overwrite.deny
        permissions = (permissions & ~deny) | allow
        permissions = _apply(permissions, target.overwrites.get(user_id))
        if not permissions & Perm.VIEW_CHANNEL:
            return 0
        private = channel.type is ChannelType.PRIVATE_THREAD
        if private and user_id not in channel.member_ids and not permissions & Perm.MANAGE_THREADS:
            return 0
        if not permissions & Perm.SEND_MESSAGES:
            permissions &= ~NEEDS_SEND
        return permissions

    def can_view(self, user_id: int, channel_id: int) -> bool:
        """Whether the user sees the channel at all."""
        return bool(self.permissions_in(user_id, channel_id) & Perm.VIEW_CHANNEL)

    def send_permission(self, channel_id: int) -> Perm:
        """The permission needed to post in this channel."""
        channel = self.channels[channel_id]
        return Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES

    def set_overwrite(self, channel_id: int, target_id: int, allow: int, deny: int) -> None:
        """Set the overwrite of a role (or @everyone, by the guild id) or a member on a channel."""
        kind = 0 if target_id in self.roles else 1
        self.channels[channel_id].overwrites[target_id] = Overwrite(kind, allow, deny)

    def channel_messages(self, channel_id: int) -> list[EmuMessage]:
        """Every message ever posted in the channel, oldest first."""
        return [message for message in self.messages.values() if message.channel_id == channel_id]

    def user_payload(self, user_id: int) -> Json:
        """The user object of a known user."""
        return self.users[user_id].payload()

    def member_payload(self, user_id: int, *, with_user: bool = True, permissions: int | None = None) -> Json:
        """The guild member object; `permissions` is added for interactions."""
        data: Json = {
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [str(role_id) for role_id in self.member_roles[user_id]],
            "joined_at": self.joined_at[user_id],
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
            data["guild_id"] = str(self.guild_id)
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

    def _thread_fields(self, thread: EmuChannel) -> Json:
        messages = [m for m in self.channel_messages(thread.id) if not m.deleted]
        data: Json = {
            "owner_id": str(thread.owner_id),
            "message_count": len(messages),
            "total_message_sent": len(messages),
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

    def guild_payload(self, *, all_members: bool) -> Json:
        """The GUILD_CREATE payload; without the presences intent Discord sends only the bot's member."""
        member_ids = list(self.member_roles) if all_members else [self.bot.id]
        text_channels = [c for c in self.channels.values() if c.type is ChannelType.GUILD_TEXT]
        threads = [
            c for c in self.channels.values() if c.is_thread and not c.archived and self.can_view(self.bot.id, c.id)
        ]
        return {
            "id": str(self.guild_id),
            "name": "Emulated Guild",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
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
            "roles": [role.payload() for role in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "system_channel_id": str(self.general.id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "application_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "joined_at": self.joined_at[self.bot.id],
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(self.member_roles),
            "members": [self.member_payload(uid) for uid in member_ids],
            "channels": [self.channel_payload(c, with_guild_id=False) for c in text_channels],
            "threads": [self.channel_payload(t) for t in threads],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "activity_instances": [],
        }

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
            "mentions": [self._mentioned_user(uid, gateway) for uid in sorted(pings.users) if uid in self.users],
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
            reply_to = message.reply_to
            data["message_reference"] = {
                "type": 0,
                "message_id": str(reply_to.id),
                "channel_id": str(reply_to.channel_id),
            }
            if reply_to.guild_id is not None:
                data["message_reference"]["guild_id"] = str(reply_to.guild_id)
            if with_reference:
                referenced = self.message_payload(reply_to, gateway=gateway, visible=visible, with_reference=False)
                data["referenced_message"] = None if reply_to.deleted else referenced
        if message.thread_id is not None:
            data["thread"] = self.channel_payload(self.channels[message.thread_id])
        if message.reactions:
            data["reactions"] = [
                {"emoji": {"id": None, "name": emoji}, "count": 1, "me": True} for emoji in message.reactions
            ]
        if gateway and message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            if message.webhook_id is None and self.is_member(message.author.id):
                data["member"] = self.member_payload(message.author.id, with_user=False)
        return data

    def _mentioned_user(self, user_id: int, gateway: bool) -> Json:
        data = self.user_payload(user_id)
        if gateway and self.is_member(user_id):
            data["member"] = self.member_payload(user_id, with_user=False)
        return data


def _apply(permissions: int, overwrite: Overwrite | None) -> int:
    if overwrite is None:
        return permissions
    return (permissions & ~overwrite.deny) | overwrite.allow


def _maybe_str(value: int | None) -> str | None:
    return None if value is None else str(value)
