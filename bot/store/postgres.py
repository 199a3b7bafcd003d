"""The PostgreSQL store: an asyncpg pool, so several bot processes (shards) can share one database.

What must hold across processes is decided inside the database: a reservation (the bot_reserve function)
takes transaction-level advisory locks on its member and its server before it reads, so two processes
admitting the same member at once are served one after the other; migrations run under a session-level
advisory lock, so processes starting together on an empty database migrate it once. Each write of a turn
is one statement, one round trip: they add up on a database across a network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg

from bot.store.base import RATE_WINDOW_SECONDS, ChannelRecord, utc_now
from bot.store.postgres_accounting import PostgresAccounting
from bot.store.postgres_turns import PostgresTurns
from bot.store.schema import POSTGRES_MIGRATIONS, OutdatedSchema

log = logging.getLogger(__name__)

# Keys of the session-level advisory lock that serialises migrations (any constant unique to this bot).
MIGRATION_LOCK = 0x6F70656E_616962  # "openai b"


async def _init_connection(connection: asyncpg.Connection) -> None:
    # JSONB columns come and go as Python objects.
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _leave_session_as_is(_connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: the store leaves no session state (no SET,
    LISTEN or cursor; the migration lock is released where it is taken; asyncpg still ends any transaction).
    asyncpg's default reset is a round trip on every release, which doubled the cost of each statement."""


class PostgresStore(PostgresTurns, PostgresAccounting):
    """The store for deployments that outgrow one machine, or whose platform wipes the disk at each deploy."""

    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], datetime]) -> None:
        self._pool = pool
        self._clock = clock

    @classmethod
    async def open(
        cls, dsn: str, *, pool_size: int = 10, clock: Callable[[], datetime] = utc_now, migrate: bool = True
    ) -> PostgresStore:
        """Connect to the database at `dsn` (sslmode in it is honoured) and migrate it to the current schema.

        With `migrate=False` (for inspection) a database at another schema version raises OutdatedSchema.
        """
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, init=_init_connection, reset=_leave_session_as_is
        )
        try:
            async with pool.acquire() as connection:
                if migrate:
                    await _migrate(connection)
                else:
                    version = await _schema_version(connection)
                    if version != len(POSTGRES_MIGRATIONS):
                        raise OutdatedSchema(version, len(POSTGRES_MIGRATIONS))
        except BaseException:
            await pool.close()
            raise
        return cls(pool, clock)

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self._pool.close()

    # -- conversations -------------------------------------------------------------------------------

    async def prune(self, now: datetime, *, turns_before: datetime | None = None, batch: int = 1000) -> int:
        """Drop spent rate-limit entries and expired holds, and at most `batch` turns older than `turns_before`."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("DELETE FROM rate_hits WHERE at <= $1", now.timestamp() - RATE_WINDOW_SECONDS)
            await connection.execute("DELETE FROM holds WHERE expires_at <= $1", now.timestamp())
            if turns_before is None:
                return 0
            # By id, oldest first: the rows to go are at the start of the primary key, so each batch is found at once.
            status = await connection.execute(
                "DELETE FROM turns WHERE id IN (SELECT id FROM turns WHERE created_at < $1 ORDER BY id LIMIT $2)",
                turns_before,
                batch,
            )
        return int(status.split()[-1])

    async def get_channel(self, channel_id: int) -> ChannelRecord:
        """The channel's record, or an empty one when the bot has stored nothing about it."""
        row = await self._pool.fetchrow(
            "SELECT guild_id, parent_id, opened_by, is_conversation, system_prompt, settings"
            " FROM channels WHERE channel_id = $1",
            channel_id,
        )
        if row is None:
            return ChannelRecord(channel_id=channel_id)
        return ChannelRecord(channel_id=channel_id, **dict(row))

    async def save_conversation_thread(
        self, thread_id: int, *, guild_id: int | None, parent_id: int, opened_by: int, system_prompt: str | None
    ) -> None:
        """Remember a thread the bot opened as a conversation, and who opened it."""
        await self._pool.execute(
            "INSERT INTO channels (channel_id, guild_id, parent_id, opened_by, is_conversation, system_prompt)"
            " VALUES ($1, $2, $3, $4, TRUE, $5)"
            " ON CONFLICT (channel_id) DO UPDATE SET guild_id = excluded.guild_id, parent_id = excluded.parent_id,"
            " opened_by = excluded.opened_by, is_conversation = TRUE, system_prompt = excluded.system_prompt",
            thread_id,
            guild_id,
            parent_id,
            opened_by,
            system_prompt,
        )

    async def set_system_prompt(self, channel_id: int, prompt: str | None, *, guild_id: int | None) -> None:
        """Set (or with None, clear) a channel's system prompt."""
        await self._pool.execute(
            "INSERT INTO channels (channel_id, guild_id, system_prompt) VALUES ($1, $2, $3)"
            " ON CONFLICT (channel_id) DO UPDATE SET system_prompt = excluded.system_prompt",
            channel_id,
            guild_id,
            prompt,
        )

    async def update_channel_settings(
        self, channel_id: int, changes: dict[str, object], *, guild_id: int | None
    ) -> None:
        """Merge `changes` into a channel's settings in one statement (JSON merge patch: None removes a key)."""
        await self._pool.execute(
            "INSERT INTO channels (channel_id, guild_id, settings) VALUES ($1, $2, bot_merge_patch('{}', $3))"
            " ON CONFLICT (channel_id) DO UPDATE SET settings = bot_merge_patch(channels.settings, $3)",
            channel_id,
            guild_id,
            changes,
        )

    async def get_guild_settings(self, guild_id: int) -> dict[str, object]:
        """A guild's settings as /settings stored them (empty when none were changed)."""
        settings = await self._pool.fetchval("SELECT settings FROM guild_settings WHERE guild_id = $1", guild_id)
        return {} if settings is None else dict(settings)

    async def update_guild_settings(self, guild_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a guild's settings in one statement (JSON merge patch: None removes a key)."""
        await self._pool.execute(
            "INSERT INTO guild_settings (guild_id, settings) VALUES ($1, bot_merge_patch('{}', $2))"
            " ON CONFLICT (guild_id) DO UPDATE SET settings = bot_merge_patch(guild_settings.settings, $2)",
            guild_id,
            changes,
        )

    async def chosen_models(self) -> list[tuple[str, str]]:
        """(feature, model) for every model admins chose for a server or channel with /settings model."""
        rows = await self._pool.fetch(
            "SELECT m.key, m.value FROM guild_settings, jsonb_each_text(settings -> 'models') AS m"
            " UNION SELECT m.key, m.value FROM channels, jsonb_each_text(settings -> 'models') AS m"
            " ORDER BY 1, 2"
        )
        return [(str(row[0]), str(row[1])) for row in rows if row[1]]

    async def get_meta(self, key: str) -> str | None:
        """A value the bot keeps about itself (such as the last command sync)."""
        value = await self._pool.fetchval("SELECT value FROM meta WHERE key = $1", key)
        return None if value is None else str(value)

    async def set_meta(self, key: str, value: str) -> None:
        """Store a value the bot keeps about itself."""
        await self._pool.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    async def swap_meta(self, key: str, value: str) -> str | None:
        """Store a value and return the one it replaced; the row is locked, so swaps in any process queue up."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("INSERT INTO meta (key, value) VALUES ($1, '') ON CONFLICT DO NOTHING", key)
            old = await connection.fetchval("SELECT value FROM meta WHERE key = $1 FOR UPDATE", key)
            await connection.execute("UPDATE meta SET value = $2 WHERE key = $1", key, value)
        return str(old) or None

    async def setdefault_meta(self, key: str, value: str) -> str:
        """The value kept at `key`, storing `value` first if there is none (a racing insert loses quietly)."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING", key, value)
            return str(await connection.fetchval("SELECT value FROM meta WHERE key = $1", key))

    # -- limits and usage ---------------------------------------------------------------------------------


async def _schema_version(connection: asyncpg.Connection) -> int:
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))


async def _migrate(connection: asyncpg.Connection) -> None:
    """Bring the schema to the current version, one transaction per step, under an advisory lock."""
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ"
            " NOT NULL DEFAULT now())"
        )
        version = await _schema_version(connection)
        if version > len(POSTGRES_MIGRATIONS):
            raise RuntimeError(
                f"the database is at schema version {version}, newer than this bot knows "
                f"({len(POSTGRES_MIGRATIONS)}): run a newer version of the bot or point DATABASE_URL at another "
                "database"
            )
        for target in range(version + 1, len(POSTGRES_MIGRATIONS) + 1):
            log.info("Migrating the database to schema version %d", target)
            async with connection.transaction():
                for statement in POSTGRES_MIGRATIONS[target - 1]:
                    await connection.execute(statement)
                await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", target)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
