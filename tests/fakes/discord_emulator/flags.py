"""Discord's numbers: permission, intent, message flag and channel type bits; snowflakes and timestamps."""

from __future__ import annotations

import datetime as dt
import enum
import time

DISCORD_EPOCH_MS = 1_420_070_400_000
GUILD_ID_PAST_MS = 100_000_000
GUILD_ID_ALIGNMENT = 720_720


class Perm(enum.IntFlag):
    """Discord permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    SEND_VOICE_MESSAGES = 1 << 46
    USE_EXTERNAL_APPS = 1 << 50
    ALL = (1 << 53) - 1


class Intent(enum.IntFlag):
    """Gateway intent bits the emulator acts on."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class MessageFlag(enum.IntFlag):
    """Message flag bits the emulator sets or reads."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_VOICE_MESSAGE = 1 << 13
    IS_COMPONENTS_V2 = 1 << 15


class ChannelType(enum.IntEnum):
    """Discord channel types the emulator models."""

    GUILD_TEXT = 0
    DM = 1
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12


class SnowflakeFactory:
    """Makes unique, increasing snowflakes whose timestamps are now, and guild ids that shard predictably."""

    def __init__(self) -> None:
        self._last = 0
        # Guild ids get one millisecond each, counted from a past instant divisible by every shard count
        # up to 16 (720720 = lcm(1..16)): the k-th guild made (the first is 0) is on shard k % shard_count.
        # Ids made in one millisecond would all land on one shard, as (guild_id >> 22) is their time.
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._guild_ms = (now_ms - GUILD_ID_PAST_MS) // GUILD_ID_ALIGNMENT * GUILD_ID_ALIGNMENT

    def __call__(self) -> int:
        """Return the next snowflake."""
        value = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(value, self._last + 1)
        return self._last

    def guild(self) -> int:
        """Return the next guild id: a day in the past, in a millisecond of its own."""
        value = self._guild_ms << 22
        self._guild_ms += 1
        return value


def snowflake_time(snowflake: int) -> str:
    """Return the ISO-8601 timestamp Discord derives from a snowflake."""
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def now_iso() -> str:
    """Return the current time as Discord formats timestamps."""
    return dt.datetime.now(dt.UTC).isoformat()
