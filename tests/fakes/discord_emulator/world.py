"""The emulated world: guilds with their channels, roles, members and permissions; users, DMs and messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .flags import ChannelType, Perm, SnowflakeFactory, now_iso
from .models import EmuChannel, EmuGuild, EmuMessage, EmuRole, EmuUser, Overwrite
from .payloads import Payloads

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
# A bot's managed role holds what its invite asked for; Send Voice Messages comes from @everyone, as for real bots.
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
    | Perm.SEND_VOICE_MESSAGES
)
# Without Send Messages, Discord also takes away these (docs: "Implicit Permissions").
NEEDS_SEND = Perm.MENTION_EVERYONE | Perm.SEND_TTS_MESSAGES | Perm.ATTACH_FILES | Perm.EMBED_LINKS
DEFAULT_CHANNELS = ("general", "random")


class World(Payloads):
    """Every guild, user, channel (live or deleted) and message; the first guild is the tests' default."""

    def __init__(self, snowflake: SnowflakeFactory) -> None:
        self.snowflake = snowflake
        # Applications made since 2016 share their id with their bot user.
        self.application_id = snowflake()
        self.bot = EmuUser(self.application_id, "emulated-bot", bot=True)
        self.admin = EmuUser(snowflake(), "admin", global_name="Admin")
        self.member = EmuUser(snowflake(), "member", global_name="Member")
        self.moderator = EmuUser(snowflake(), "moderator", global_name="Moderator")
        self.users: dict[int, EmuUser] = {}
        self.guilds: dict[int, EmuGuild] = {}
        self.channels: dict[int, EmuChannel] = {}
        self.deleted_channels: dict[int, EmuChannel] = {}
        self.dm_channels: dict[int, int] = {}
        self.messages: dict[int, EmuMessage] = {}
        self._channel_messages: dict[int, list[EmuMessage]] = {}
        self.guild = self.add_guild("Emulated Guild", self.admin)
        # Kept as objects, so that they still name the channel after a test deleted it.
        self.general, self.random = self.guild.general, self.guild.random
        self.moderator_role = self.add_role(self.guild, "Moderator", int(MODERATOR_PERMISSIONS))
        self.add_member(self.guild, self.member, [])
        self.add_member(self.guild, self.moderator, [self.moderator_role.id])

    # -- the first guild, as the single-guild API knew it ----------------------------------------

    @property
    def guild_id(self) -> int:
        """The first guild's id."""
        return self.guild.id

    @property
    def bot_role(self) -> EmuRole:
        """The bot's role in the first guild."""
        return self.guild.bot_role

    # -- building the world ----------------------------------------------------------------------

    def add_guild(
        self, name: str, owner: EmuUser, channel_names: Sequence[str] = DEFAULT_CHANNELS, *, with_bot: bool = True
    ) -> EmuGuild:
        """Create a guild with @everyone, the bot's managed role, `owner` and text channels named as given."""
        guild_id = self.snowflake.guild()
        bot_role = EmuRole(self.snowflake(), self.bot.username, int(BOT_PERMISSIONS), 1, True, self.bot.id)
        guild = EmuGuild(guild_id, name, owner.id, bot_role.id)
        guild.roles[guild_id] = EmuRole(guild_id, "@everyone", int(EVERYONE_PERMISSIONS), 0)
        guild.roles[bot_role.id] = bot_role
        self.guilds[guild_id] = guild
        if with_bot:
            self.add_member(guild, self.bot, [bot_role.id])
        self.add_member(guild, owner, [])
        for position, channel_name in enumerate(channel_names):
            self.add_channel(
                EmuChannel(self.snowflake(), ChannelType.GUILD_TEXT, channel_name, guild_id, position=position)
            )
        return guild

    def add_role(self, guild: EmuGuild, name: str, permissions: int) -> EmuRole:
        """Create a role just above @everyone, as Discord places new roles; the others move up one."""
        for role_id, role in list(guild.roles.items()):
            if role_id != guild.id:
                guild.roles[role_id] = dataclasses.replace(role, position=role.position + 1)
        role = EmuRole(self.snowflake(), name, int(permissions), 1)
        guild.roles[role.id] = role
        return role

    def set_role_permissions(self, role: EmuRole, permissions: int) -> EmuRole:
        """Replace a role's permissions; returns the updated role."""
        guild = self.role_guild(role.id)
        guild.roles[role.id] = updated = dataclasses.replace(role, permissions=int(permissions))
        return updated

    def role_guild(self, role_id: int) -> EmuGuild:
        """The guild a role belongs to."""
        found = next((g for g in self.guilds.values() if role_id in g.roles), None)
        if found is None:
            raise LookupError(f"no guild has role {role_id}")
        return found

    def add_member(self, guild: EmuGuild, user: EmuUser, role_ids: list[int]) -> None:
        """Make `user` a member of `guild` with the given roles (replacing them if already a member)."""
        unknown = [role_id for role_id in role_ids if role_id not in guild.roles]
        if unknown:
            raise LookupError(f"roles {unknown} are not roles of guild {guild.name!r}")
        self.users[user.id] = user
        guild.member_roles[user.id] = list(role_ids)
        guild.joined_at.setdefault(user.id, now_iso())

    def remove_member(self, guild: EmuGuild, user_id: int) -> None:
        """Take the user out of the guild."""
        guild.member_roles.pop(user_id, None)
        guild.joined_at.pop(user_id, None)

    def add_channel(self, channel: EmuChannel) -> EmuChannel:
        """Store a channel (or thread) in its guild and return it."""
        self.channels[channel.id] = channel
        self._channel_messages.setdefault(channel.id, [])
        guild = self.guild_of(channel)
        if guild is not None:
            (guild.threads if channel.is_thread else guild.channels)[channel.id] = channel
        return channel

    def remove_channel(self, channel: EmuChannel) -> list[EmuChannel]:
        """Delete a channel or thread (a channel takes its threads along); returns the threads deleted with it."""
        guild = self.guild_of(channel)
        threads = [] if channel.is_thread else self.threads_of(channel.id)
        for gone in [channel, *threads]:
            self.channels.pop(gone.id, None)
            self.deleted_channels[gone.id] = gone
            if guild is not None:
                guild.threads.pop(gone.id, None)
                guild.channels.pop(gone.id, None)
        return threads

    def dm_channel(self, user: EmuUser) -> EmuChannel:
        """Return the DM channel between `user` and the bot, opening it on first use."""
        if user.id not in self.dm_channels:
            channel = self.add_channel(EmuChannel(self.snowflake(), ChannelType.DM, None, None, recipient=user))
            self.dm_channels[user.id] = channel.id
            self.users.setdefault(user.id, user)
        return self.channels[self.dm_channels[user.id]]

    def store_message(self, message: EmuMessage) -> None:
        """Keep a new message, indexed by id and by channel."""
        self.messages[message.id] = message
        self._channel_messages.setdefault(message.channel_id, []).append(message)

    # -- lookups ---------------------------------------------------------------------------------

    def channel(self, channel_id: int) -> EmuChannel | None:
        """Return the live channel with this id, if there is one."""
        return self.channels.get(channel_id)

    def guild_of(self, channel: EmuChannel) -> EmuGuild | None:
        """The guild a channel belongs to (None for DMs)."""
        return self.guilds.get(channel.guild_id) if channel.guild_id is not None else None

    def bot_guilds(self) -> list[EmuGuild]:
        """The guilds the bot is in, by id."""
        return [guild for guild in self.guilds.values() if guild.is_member(self.bot.id)]

    def threads_of(self, parent_id: int) -> list[EmuChannel]:
        """The live threads of a channel, oldest first."""
        parent = self.channels.get(parent_id) or self.deleted_channels.get(parent_id)
        guild = self.guild_of(parent) if parent is not None else None
        return [t for t in guild.threads.values() if t.parent_id == parent_id] if guild is not None else []

    def channel_messages(self, channel_id: int) -> list[EmuMessage]:
        """Every message ever posted in the channel, oldest first (the stored list: do not change it)."""
        return self._channel_messages.get(channel_id, [])

    def is_member(self, user_id: int, guild_id: int | None) -> bool:
        """Whether the user belongs to the guild."""
        guild = self.guilds.get(guild_id) if guild_id is not None else None
        return guild is not None and guild.is_member(user_id)

    # -- permissions -----------------------------------------------------------------------------

    def base_permissions(self, guild: EmuGuild, user_id: int) -> int:
        """The member's guild-wide permissions from @everyone and their roles."""
        if user_id == guild.owner_id:
            return int(Perm.ALL)
        permissions = guild.everyone_role.permissions
        for role_id in guild.member_roles.get(user_id, []):
            permissions |= guild.roles[role_id].permissions
        return int(Perm.ALL) if permissions & Perm.ADMINISTRATOR else permissions

    def permissions_in(self, user_id: int, channel_id: int) -> int:
        """The member's permissions in a channel, following Discord's overwrite algorithm."""
        channel = self.channels[channel_id]
        if channel.type is ChannelType.DM:
            return int(DM_PERMISSIONS) if channel.recipient and user_id in (channel.recipient.id, self.bot.id) else 0
        guild = self.guilds[channel.guild_id or 0]
        if not guild.is_member(user_id):
            return 0
        target = self.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
        permissions = self.base_permissions(guild, user_id)
        if permissions == Perm.ALL:
            return permissions
        permissions = _apply(permissions, target.overwrites.get(guild.id))
        allow = deny = 0
        for role_id in guild.member_roles[user_id]:
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
        channel = self.channels[channel_id]
        guild = self.guild_of(channel)
        if guild is None:
            raise ValueError("DM channels have no permission overwrites")
        kind = 0 if target_id in guild.roles else 1
        channel.overwrites[target_id] = Overwrite(kind, allow, deny)


def _apply(permissions: int, overwrite: Overwrite | None) -> int:
    if overwrite is None:
        return permissions
    return (permissions & ~overwrite.deny) | overwrite.allow
