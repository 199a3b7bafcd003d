"""The emulated world as tests see it: the first guild's people and channels, and making or removing guilds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .flags import ChannelType
from .gateway import shard_of
from .models import EmuChannel, EmuGuild, EmuRole, EmuUser
from .world import DEFAULT_CHANNELS

if TYPE_CHECKING:
    from .flags import SnowflakeFactory
    from .world import World

# Discord recommends about one shard per 1000 guilds (GET /gateway/bot).
GUILDS_PER_RECOMMENDED_SHARD = 1000


class WorldBuilding:
    """The DiscordEmulator's view of the world and the changes tests make to it; DiscordEmulator inherits them."""

    world: World
    snowflake: SnowflakeFactory
    recommended_shards: int | None

    # -- the world, for tests ------------------------------------------------------------------

    @property
    def bot_user(self) -> EmuUser:
        """The bot's user (its id is also the application id)."""
        return self.world.bot

    @property
    def admin(self) -> EmuUser:
        """The first guild's owner (and, unless told otherwise, every added guild's)."""
        return self.world.admin

    @property
    def member(self) -> EmuUser:
        """A plain member of the first guild, without Manage Messages."""
        return self.world.member

    @property
    def moderator(self) -> EmuUser:
        """A member of the first guild with its Moderator role (Manage Messages, Manage Threads, Mention Everyone)."""
        return self.world.moderator

    @property
    def guild(self) -> EmuGuild:
        """The first guild."""
        return self.world.guild

    @property
    def guilds(self) -> list[EmuGuild]:
        """Every guild, the first one first (including those the bot was removed from)."""
        return list(self.world.guilds.values())

    @property
    def guild_id(self) -> int:
        """The first guild's id."""
        return self.world.guild_id

    @property
    def application_id(self) -> int:
        """The application id (equal to the bot user's id)."""
        return self.world.application_id

    @property
    def general(self) -> EmuChannel:
        """The first guild's #general text channel."""
        return self.world.general

    @property
    def random(self) -> EmuChannel:
        """The first guild's #random text channel."""
        return self.world.random

    @property
    def moderator_role(self) -> EmuRole:
        """The first guild's Moderator role."""
        return self.world.moderator_role

    @property
    def bot_role(self) -> EmuRole:
        """The bot's managed role in the first guild (send, threads, attach, embed, history)."""
        return self.world.bot_role

    def add_user(self, username: str, *, roles: tuple[EmuRole, ...] = (), guild: EmuGuild | None = None) -> EmuUser:
        """Create a user and make them a member of `guild` (the first guild by default) with the given roles."""
        user = EmuUser(self.snowflake(), username, global_name=username.title())
        self.add_member(user, guild or self.guild, roles=roles)
        return user

    def add_member(self, user: EmuUser, guild: EmuGuild, *, roles: Sequence[EmuRole] = ()) -> None:
        """Make an existing user a member of another guild (users are global; membership is per guild)."""
        self.world.add_member(guild, user, [role.id for role in roles])

    def add_guild(
        self,
        name: str,
        *,
        owner: EmuUser | None = None,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        with_bot: bool = True,
    ) -> EmuGuild:
        """Create a guild (owned by `admin` unless told) with @everyone, the bot's role and text channels.

        Set up before the client connects: the guild then arrives in READY and GUILD_CREATE. To add one
        to a running client, create it with with_bot=False and `await add_bot_to_guild(guild)`.
        """
        return self.world.add_guild(name, owner or self.admin, channels, with_bot=with_bot)

    def add_role(self, guild: EmuGuild, name: str, *, permissions: int = 0) -> EmuRole:
        """Create a role in a guild, placed just above @everyone."""
        return self.world.add_role(guild, name, int(permissions))

    def set_role_permissions(self, role: EmuRole, permissions: int) -> EmuRole:
        """Replace a role's permissions (e.g. take SEND_VOICE_MESSAGES from @everyone); returns the new role."""
        return self.world.set_role_permissions(role, int(permissions))

    def add_channel(self, guild: EmuGuild, name: str) -> EmuChannel:
        """Create a text channel at the end of a guild's list (before the client connects)."""
        channel = EmuChannel(self.snowflake(), ChannelType.GUILD_TEXT, name, guild.id, position=len(guild.channels))
        return self.world.add_channel(channel)

    def dm_channel(self, user: EmuUser) -> EmuChannel:
        """The DM channel between `user` and the bot."""
        return self.world.dm_channel(user)

    def shard_of(self, guild: EmuGuild | int, shard_count: int) -> int:
        """The shard that gets a guild's events: (guild_id >> 22) % shard_count."""
        return shard_of(guild if isinstance(guild, int) else guild.id, shard_count)

    def guilds_of_shard(self, shard_id: int, shard_count: int) -> list[EmuGuild]:
        """The guilds (the bot is in) whose events go to this shard."""
        return [g for g in self.world.bot_guilds() if shard_of(g.id, shard_count) == shard_id]

    @property
    def recommended_shard_count(self) -> int:
        """What GET /gateway/bot recommends: `recommended_shards`, or one per 1000 guilds (at least 1)."""
        if self.recommended_shards is not None:
            return self.recommended_shards
        return max(1, -(-len(self.world.bot_guilds()) // GUILDS_PER_RECOMMENDED_SHARD))

    # -- what people and Discord do to guilds, channels and threads --------------------------------

    async def add_bot_to_guild(self, guild: EmuGuild) -> None:
        """Make the bot a member (with its managed role) and dispatch GUILD_CREATE, as an invite does."""
        if guild.is_member(self.bot_user.id):
            raise ValueError(f"the bot is already in guild {guild.name!r}")
        self.world.add_member(guild, self.bot_user, [guild.bot_role_id])
        await self.dispatch_guild_create(guild)

    async def remove_bot_from_guild(self, guild: EmuGuild) -> None:
        """Kick the bot: GUILD_DELETE without `unavailable`; the guild's REST routes then answer 404."""
        if not guild.is_member(self.bot_user.id):
            raise ValueError(f"the bot is not in guild {guild.name!r}")
        self.world.remove_member(guild, self.bot_user.id)
        await self.dispatch_guild_delete(guild)

    async def delete_thread(self, thread: EmuChannel) -> None:
        """Delete a thread (as a moderator would): THREAD_DELETE; REST on it then answers 404 Unknown Channel."""
        if not thread.is_thread or thread.id not in self.world.channels:
            raise ValueError(f"{thread.id} is not a live thread")
        was_visible = self.world.can_view(self.bot_user.id, thread.id)
        self.world.remove_channel(thread)
        await self.dispatch_thread_delete(thread, was_visible=was_visible)

    async def delete_channel(self, channel: EmuChannel) -> None:
        """Delete a text channel and its threads: CHANNEL_DELETE only, as Discord sends no THREAD_DELETE then."""
        if channel.is_thread or channel.guild_id is None or channel.id not in self.world.channels:
            raise ValueError(f"{channel.id} is not a live guild channel (threads: use delete_thread)")
        was_visible = self.world.can_view(self.bot_user.id, channel.id)
        self.world.remove_channel(channel)
        await self.dispatch_channel_delete(channel, was_visible=was_visible)

    def set_channel_permissions(
        self, channel_id: int, target: EmuUser | EmuRole, *, allow: int = 0, deny: int = 0
    ) -> None:
        """Set a channel overwrite for a member or a role (a guild's @everyone role has the guild's id)."""
        self.world.set_overwrite(channel_id, target.id, int(allow), int(deny))
