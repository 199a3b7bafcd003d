"""The SQLite store: a writer connection and a reader connection in WAL mode, each in a thread of its own.

Every method runs as one function on its connection's thread, so the statements of a transaction never
interleave with another coroutine's. The few small transactions of each turn (the gate's reservation, the
question, the answer with its usage) run on the event loop instead while the writer's thread is idle: the
hop to the thread would cost more than they do (Connection.run_quick), and they never wait there for a lock
or the disk. Reports run on the reader connection: a long one never holds up the turns and gate checks on
the writer.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bot.store.base import RATE_WINDOW_SECONDS, ChannelRecord, utc_now
from bot.store.schema import SQLITE_MIGRATIONS, OutdatedSchema, timestamp
from bot.store.sqlite_accounting import SqliteAccounting
from bot.store.sqlite_connection import Connection, connect, transaction
from bot.store.sqlite_turns import SqliteTurns

log = logging.getLogger(__name__)


class SqliteStore(SqliteTurns, SqliteAccounting):
    """The embedded default store. Each write is one statement or one transaction, so it is atomic."""

    def __init__(self, writer: Connection, reader: Connection, clock: Callable[[], datetime]) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], datetime] = utc_now) -> SqliteStore:
        """Open (creating folders and file as needed) and migrate the database at `path`; `clock` dates the rows."""
        in_memory = str(path) == ":memory:"
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = Connection("sqlite-writer", quick=True)
        try:
            await writer.open(lambda: connect(str(path)))
            await writer.run(_migrate)
            # An in-memory database exists only on its own connection: there it is its own reader.
            reader = writer if in_memory else Connection("sqlite-reader")
            if reader is not writer:
                await reader.open(lambda: connect(str(path)))
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, clock)

    @classmethod
    async def open_read_only(cls, path: str | Path) -> SqliteStore:
        """Open an existing database without changing it (no migration, no writes), for inspection.

        Raises sqlite3.Error for a file that is not a readable database, and OutdatedSchema when its schema
        is not the one this bot writes (the bot migrates it when it starts).
        """
        connection = Connection("sqlite-inspect")
        try:
            await connection.open(lambda: connect(_inspection_uri(Path(path)), uri=True, journal=False))
            version = await connection.run(lambda db: int(db.execute("PRAGMA user_version").fetchone()[0]))
            if version != len(SQLITE_MIGRATIONS):
                raise OutdatedSchema(version, len(SQLITE_MIGRATIONS))
        except BaseException:
            await connection.close()
            raise
        return cls(connection, connection, utc_now)

    async def close(self) -> None:
        """Close both connections; WAL content is checkpointed by SQLite on the last close."""
        if self._reader is not self._writer:
            await self._reader.close()
        await self._writer.close()

    # -- conversations -------------------------------------------------------------------------------

    async def prune(self, now: datetime, *, turns_before: datetime | None = None, batch: int = 1000) -> int:
        """Drop spent rate-limit entries and expired holds, and at most `batch` turns older than `turns_before`."""

        def prune(db: sqlite3.Connection) -> int:
            db.execute("DELETE FROM rate_hits WHERE at <= ?", (now.timestamp() - RATE_WINDOW_SECONDS,))
            db.execute("DELETE FROM holds WHERE expires_at <= ?", (now.timestamp(),))
            if turns_before is None:
                return 0
            # By id, oldest first: the rows to go are at the start of the table, so each batch is found at once.
            return db.execute(
                "DELETE FROM turns WHERE id IN (SELECT id FROM turns WHERE created_at < ? ORDER BY id LIMIT ?)",
                (timestamp(turns_before), batch),
            ).rowcount

        return await self._writer.run(transaction(prune))

    async def get_channel(self, channel_id: int) -> ChannelRecord:
        """The channel's record, or an empty one when the bot has stored nothing about it."""
        row = await self._writer.run(
            lambda db: db.execute(
                "SELECT guild_id, parent_id, opened_by, is_conversation, system_prompt, settings"
                " FROM channels WHERE channel_id = ?",
                (channel_id,),
            ).fetchone()
        )
        if row is None:
            return ChannelRecord(channel_id=channel_id)
        return ChannelRecord(
            channel_id=channel_id,
            guild_id=row[0],
            parent_id=row[1],
            opened_by=row[2],
            is_conversation=bool(row[3]),
            system_prompt=row[4],
            settings=json.loads(row[5]),
        )

    async def save_conversation_thread(
        self, thread_id: int, *, guild_id: int | None, parent_id: int, opened_by: int, system_prompt: str | None
    ) -> None:
        """Remember a thread the bot opened as a conversation, and who opened it."""
        await self._execute(
            "INSERT INTO channels (channel_id, guild_id, parent_id, opened_by, is_conversation, system_prompt)"
            " VALUES (?, ?, ?, ?, 1, ?)"
            " ON CONFLICT (channel_id) DO UPDATE SET guild_id = excluded.guild_id, parent_id = excluded.parent_id,"
            " opened_by = excluded.opened_by, is_conversation = 1, system_prompt = excluded.system_prompt",
            (thread_id, guild_id, parent_id, opened_by, system_prompt),
        )

    async def set_system_prompt(self, channel_id: int, prompt: str | None, *, guild_id: int | None) -> None:
        """Set (or with None, clear) a channel's system prompt."""
        await self._execute(
            "INSERT INTO channels (channel_id, guild_id, system_prompt) VALUES (?, ?, ?)"
            " ON CONFLICT (channel_id) DO UPDATE SET system_prompt = excluded.system_prompt",
            (channel_id, guild_id, prompt),
        )

    async def update_channel_settings(
        self, channel_id: int, changes: dict[str, object], *, guild_id: int | None
    ) -> None:
        """Merge `changes` into a channel's settings in one statement (no read-modify-write race; None removes)."""
        await self._execute(
            # The patch itself (not excluded.settings, already stripped of nulls) so that None removes a key.
            "INSERT INTO channels (channel_id, guild_id, settings) VALUES (:id, :guild, json_patch('{}', :patch))"
            " ON CONFLICT (channel_id) DO UPDATE SET settings = json_patch(settings, :patch)",
            {"id": channel_id, "guild": guild_id, "patch": json.dumps(changes)},
        )

    async def get_guild_settings(self, guild_id: int) -> dict[str, object]:
        """A guild's settings as /settings stored them (empty when none were changed)."""
        row = await self._writer.run(
            lambda db: db.execute("SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)).fetchone()
        )
        return {} if row is None else dict(json.loads(row[0]))

    async def update_guild_settings(self, guild_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a guild's settings in one statement (JSON merge patch: None removes a key)."""
        await self._execute(
            "INSERT INTO guild_settings (guild_id, settings) VALUES (:id, json_patch('{}', :patch))"
            " ON CONFLICT (guild_id) DO UPDATE SET settings = json_patch(settings, :patch)",
            {"id": guild_id, "patch": json.dumps(changes)},
        )

    async def chosen_models(self) -> list[tuple[str, str]]:
        """(feature, model) for every model admins chose for a server or channel with /settings model."""
        rows = await self._reader.run(
            lambda db: db.execute(
                "SELECT m.key, m.value FROM guild_settings, json_each(guild_settings.settings, '$.models') AS m"
                " UNION SELECT m.key, m.value FROM channels, json_each(channels.settings, '$.models') AS m"
                " ORDER BY 1, 2"
            ).fetchall()
        )
        return [(str(feature), str(model)) for feature, model in rows if model]

    async def get_meta(self, key: str) -> str | None:
        """A value the bot keeps about itself (such as the last command sync)."""
        row = await self._writer.run(lambda db: db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone())
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        """Store a value the bot keeps about itself."""
        await self._writer.run(lambda db: _set_meta(db, key, value))

    async def swap_meta(self, key: str, value: str) -> str | None:
        """Store a value and return the one it replaced, in one transaction."""

        def swap(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            _set_meta(db, key, value)
            return None if row is None else str(row[0])

        return await self._writer.run(transaction(swap))

    async def setdefault_meta(self, key: str, value: str) -> str:
        """The value kept at `key`, storing `value` first if there is none, in one transaction."""

        def setdefault(db: sqlite3.Connection) -> str:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
            return str(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

        return await self._writer.run(transaction(setdefault))

    # -- limits and usage ---------------------------------------------------------------------------------

    async def _execute(self, sql: str, parameters: Any = ()) -> None:
        await self._writer.run(lambda db: db.execute(sql, parameters))


def _inspection_uri(path: Path) -> str:
    """How to open a database for reading without changing it."""
    if Path(f"{path}-wal").exists():
        # A bot is running (or was killed): read it as a live WAL reader sees it, last commits included.
        return f"file:{quote(path.as_posix())}?mode=ro"
    # Nothing beyond the main file: immutable creates no -wal and -shm files, which another user (the doctor
    # run with sudo, say) would leave behind unreadable to the bot.
    return f"file:{quote(path.as_posix())}?mode=ro&immutable=1"


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to the current version, one transaction per step, under the write lock: two processes
    starting at once on a new file migrate it once."""
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(SQLITE_MIGRATIONS):
                raise RuntimeError(
                    f"the database is at schema version {version}, newer than this bot knows "
                    f"({len(SQLITE_MIGRATIONS)}): run a newer version of the bot or point DATABASE_URL at another file"
                )
            if version == len(SQLITE_MIGRATIONS):
                db.execute("COMMIT")
                return
            log.info("Migrating the database to schema version %d", version + 1)
            for statement in SQLITE_MIGRATIONS[version]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
