"""What the bot knows of guilds and channels (settings, system prompts, its threads), read through a cache.

A guild, its channels and threads belong to one shard and so to one process: every write to their records
comes through this process, so a cache that its own writes invalidate stays true without asking the
database each time. (Direct messages arrive on shard 0 only, so the same holds for DM channels.) Nothing
keyed by member across servers is cached here: budgets and rates live in the database.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from bot.store import ChannelRecord, Store

K = TypeVar("K")
V = TypeVar("V")
# Records are small (a few hundred bytes); this many cover every active channel of a busy shard.
MAX_CACHED = 20_000


class _Lru(Generic[K, V]):
    """A mapping that forgets the least recently used entry past `size`."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class Records:
    """Channel records and guild settings, cached; every change to them goes through here."""

    def __init__(self, store: Store, *, size: int = MAX_CACHED) -> None:
        self._store = store
        self._channels: _Lru[int, ChannelRecord] = _Lru(size)
        self._guilds: _Lru[int, dict[str, object]] = _Lru(size)
        # Bumped by every write: a read that started before a write must not cache what it read.
        self._writes = 0

    async def channel(self, channel_id: int) -> ChannelRecord:
        """The channel's record (an empty one when the bot has stored nothing about it)."""
        cached = self._channels.get(channel_id)
        if cached is not None:
            return cached
        writes = self._writes
        record = await self._store.get_channel(channel_id)
        if writes == self._writes:
            self._channels.put(channel_id, record)
        return record

    async def guild_settings(self, guild_id: int) -> dict[str, object]:
        """A guild's settings as /settings stored them (empty when none were changed). Do not modify it."""
        cached = self._guilds.get(guild_id)
        if cached is not None:
            return cached
        writes = self._writes
        settings = await self._store.get_guild_settings(guild_id)
        if writes == self._writes:
            self._guilds.put(guild_id, settings)
        return settings

    async def save_conversation_thread(
        self, thread_id: int, *, guild_id: int | None, parent_id: int, opened_by: int, system_prompt: str | None
    ) -> None:
        """Remember a thread the bot opened as a conversation, and who opened it."""
        self._forget_channel(thread_id)
        await self._store.save_conversation_thread(
            thread_id, guild_id=guild_id, parent_id=parent_id, opened_by=opened_by, system_prompt=system_prompt
        )
        self._forget_channel(thread_id)

    async def set_system_prompt(self, channel_id: int, prompt: str | None, *, guild_id: int | None) -> None:
        """Set (or with None, clear) a channel's system prompt."""
        self._forget_channel(channel_id)
        await self._store.set_system_prompt(channel_id, prompt, guild_id=guild_id)
        self._forget_channel(channel_id)

    async def update_channel_settings(
        self, channel_id: int, changes: dict[str, object], *, guild_id: int | None
    ) -> None:
        """Merge `changes` into a channel's settings (JSON merge patch: None removes a key)."""
        self._forget_channel(channel_id)
        await self._store.update_channel_settings(channel_id, changes, guild_id=guild_id)
        self._forget_channel(channel_id)

    async def update_guild_settings(self, guild_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a guild's settings (JSON merge patch: None removes a key)."""
        self._forget_guild(guild_id)
        await self._store.update_guild_settings(guild_id, changes)
        self._forget_guild(guild_id)

    def forget_channels(self, channel_ids: list[int]) -> None:
        """Drop deleted channels from the cache (their records are gone from the store)."""
        for channel_id in channel_ids:
            self._forget_channel(channel_id)

    def forget_guild(self, guild_id: int) -> None:
        """Drop a server the bot left, and every channel record (rare: simpler than finding its channels)."""
        self._forget_guild(guild_id)
        self._channels.clear()

    def _forget_channel(self, channel_id: int) -> None:
        # Before the write (so no one reads the old value meanwhile and keeps it) and after (for reads that
        # began during it).
        self._writes += 1
        self._channels.pop(channel_id)

    def _forget_guild(self, guild_id: int) -> None:
        self._writes += 1
        self._guilds.pop(guild_id)
