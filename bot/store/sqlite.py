"""The SQLite store: one aiosqlite connection in WAL mode, schema versioned with PRAGMA user_version."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite

from bot.store.base import ChannelRecord, NewTurn, Turn, UsageRecord, UsageSum, UsageTotals

log = logging.getLogger(__name__)

# Each entry moves the schema from version N to N+1; append, never edit, so existing databases migrate.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE channels (
        channel_id INTEGER PRIMARY KEY,
        guild_id INTEGER,
        parent_id INTEGER,
        opened_by INTEGER,
        is_conversation INTEGER NOT NULL DEFAULT 0,
        system_prompt TEXT,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        author_id INTEGER,
        author_name TEXT NOT NULL,
        content TEXT NOT NULL,
        spoken INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE INDEX turns_by_channel ON turns (channel_id, id);
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        feature TEXT NOT NULL,
        model TEXT NOT NULL,
        user_id INTEGER,
        guild_id INTEGER,
        channel_id INTEGER,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        images INTEGER NOT NULL DEFAULT 0,
        image_size TEXT,
        audio_seconds REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_by_guild ON usage (guild_id, created_at);
    CREATE INDEX usage_by_user ON usage (user_id, created_at);
    """,
    """
    CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    -- Every admitted request sums one feature's use today by its user and its guild: with the feature
    -- in the index that is a range scan over just those rows, however busy the guild.
    CREATE INDEX usage_by_user_feature ON usage (user_id, feature, created_at);
    CREATE INDEX usage_by_guild_feature ON usage (guild_id, feature, created_at);
    """,
)
USAGE_SUMS = (
    "COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), COALESCE(SUM(images), 0),"
    " COALESCE(SUM(audio_seconds), 0)"
)


class OutdatedSchema(RuntimeError):
    """The database's schema is not the one this bot writes."""

    def __init__(self, found: int, expected: int) -> None:
        super().__init__(f"schema version {found}; this bot writes version {expected}")
        self.found = found
        self.expected = expected


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SqliteStore:
    """The embedded default store. Each write is one statement in its own transaction, so it is atomic."""

    def __init__(self, connection: aiosqlite.Connection, clock: Callable[[], datetime] = _utc_now) -> None:
        self._db = connection
        self._clock = clock

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], datetime] = _utc_now) -> SqliteStore:
        """Open (creating folders and file as needed) and migrate the database at `path`; `clock` dates the rows."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, so every statement commits (or rolls back) on its own.
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL may lose the last commits on power loss, never on a killed process.
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA busy_timeout=5000")
            await _migrate(connection)
        except BaseException:
            await connection.close()
            raise
        return cls(connection, clock)

    @classmethod
    async def open_read_only(cls, path: str | Path) -> SqliteStore:
        """Open an existing database without changing it (no journal mode, no migration), for inspection.

        Raises sqlite3.Error for a file that is not a readable database, and OutdatedSchema when its schema
        is not the one this bot writes (the bot migrates it when it starts).
        """
        # immutable: even a read-only reader of a WAL database creates -wal and -shm files, which another user
        # (the doctor run with sudo, say) would leave behind unreadable to the bot. It may miss the last
        # writes of a bot running meanwhile, which does not matter for inspection.
        uri = f"file:{quote(Path(path).as_posix())}?mode=ro&immutable=1"
        connection = await aiosqlite.connect(uri, uri=True)
        try:
            cursor = await connection.execute("PRAGMA user_version")
            row = await cursor.fetchone()
            version = int(row[0]) if row else 0
            if version != len(MIGRATIONS):
                raise OutdatedSchema(version, len(MIGRATIONS))
        except BaseException:
            await connection.close()
            raise
        return cls(connection)

    async def close(self) -> None:
        """Close the connection; WAL content is checkpointed by SQLite on the last close."""
        await self._db.close()

    async def add_turn(self, channel_id: int, turn: NewTurn) -> Turn:
        """Append a turn to a channel's conversation."""
        created_at = _timestamp(self._clock())
        cursor = await self._db.execute(
            "INSERT INTO turns (channel_id, role, author_id, author_name, content, spoken, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (channel_id, turn.role, turn.author_id, turn.author_name, turn.content, int(turn.spoken), created_at),
        )
        assert cursor.lastrowid is not None  # an INSERT into a rowid table always sets it
        return Turn(
            role=turn.role,
            author_id=turn.author_id,
            author_name=turn.author_name,
            content=turn.content,
            spoken=turn.spoken,
            id=cursor.lastrowid,
            created_at=datetime.fromisoformat(created_at),
        )

    async def recent_turns(self, channel_id: int, limit: int) -> list[Turn]:
        """The newest `limit` turns of a channel, oldest first (an index range scan: flat in history size)."""
        cursor = await self._db.execute(
            "SELECT id, role, author_id, author_name, content, spoken, created_at FROM turns"
            " WHERE channel_id = ? ORDER BY id DESC LIMIT ?",
            (channel_id, limit),
        )
        rows = await cursor.fetchall()
        return [
            Turn(
                id=row[0],
                role=row[1],
                author_id=row[2],
                author_name=row[3],
                content=row[4],
                spoken=bool(row[5]),
                created_at=datetime.fromisoformat(row[6]),
            )
            for row in reversed(list(rows))
        ]

    async def clear_turns(self, channel_id: int) -> int:
        """Forget a channel's turns; return how many were forgotten."""
        cursor = await self._db.execute("DELETE FROM turns WHERE channel_id = ?", (channel_id,))
        return cursor.rowcount

    async def get_channel(self, channel_id: int) -> ChannelRecord:
        """The channel's record, or an empty one when the bot has stored nothing about it."""
        cursor = await self._db.execute(
            "SELECT guild_id, parent_id, opened_by, is_conversation, system_prompt, settings"
            " FROM channels WHERE channel_id = ?",
            (channel_id,),
        )
        row = await cursor.fetchone()
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
        await self._db.execute(
            "INSERT INTO channels (channel_id, guild_id, parent_id, opened_by, is_conversation, system_prompt)"
            " VALUES (?, ?, ?, ?, 1, ?)"
            " ON CONFLICT (channel_id) DO UPDATE SET guild_id = excluded.guild_id, parent_id = excluded.parent_id,"
            " opened_by = excluded.opened_by, is_conversation = 1, system_prompt = excluded.system_prompt",
            (thread_id, guild_id, parent_id, opened_by, system_prompt),
        )

    async def set_system_prompt(self, channel_id: int, prompt: str | None, *, guild_id: int | None) -> None:
        """Set (or with None, clear) a channel's system prompt."""
        await self._db.execute(
            "INSERT INTO channels (channel_id, guild_id, system_prompt) VALUES (?, ?, ?)"
            " ON CONFLICT (channel_id) DO UPDATE SET system_prompt = excluded.system_prompt",
            (channel_id, guild_id, prompt),
        )

    async def update_channel_settings(
        self, channel_id: int, changes: dict[str, object], *, guild_id: int | None
    ) -> None:
        """Merge `changes` into a channel's settings in one statement (no read-modify-write race; None removes)."""
        await self._db.execute(
            # The patch itself (not excluded.settings, already stripped of nulls) so that None removes a key.
            "INSERT INTO channels (channel_id, guild_id, settings) VALUES (:id, :guild, json_patch('{}', :patch))"
            " ON CONFLICT (channel_id) DO UPDATE SET settings = json_patch(settings, :patch)",
            {"id": channel_id, "guild": guild_id, "patch": json.dumps(changes)},
        )

    async def get_meta(self, key: str) -> str | None:
        """A value the bot keeps about itself (such as the last command sync)."""
        cursor = await self._db.execute("SELECT value FROM meta WHERE key = ?", (key,))
        row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        """Store a value the bot keeps about itself."""
        await self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def record_usage(self, usage: UsageRecord) -> None:
        """Add one API call to the usage ledger."""
        await self._db.execute(
            "INSERT INTO usage (created_at, feature, model, user_id, guild_id, channel_id, input_tokens,"
            " output_tokens, images, image_size, audio_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _timestamp(self._clock()),
                usage.feature,
                usage.model,
                usage.user_id,
                usage.guild_id,
                usage.channel_id,
                usage.input_tokens,
                usage.output_tokens,
                usage.images,
                usage.image_size,
                usage.audio_seconds,
            ),
        )

    async def usage_total(
        self, feature: str, since: datetime, *, user_id: int | None = None, guild_id: int | None = None
    ) -> UsageTotals:
        """One feature's use since `since`, by a user and/or in a guild (neither: the whole bot)."""
        where, values = _usage_filter(since, user_id, guild_id)
        cursor = await self._db.execute(
            f"SELECT {USAGE_SUMS} FROM usage WHERE feature = ? AND {where}", (feature, *values)
        )
        row = await cursor.fetchone()
        assert row is not None  # an aggregate without GROUP BY always returns one row
        return UsageTotals(**_totals(row))

    async def usage_by_model(
        self, since: datetime, *, user_id: int | None = None, guild_id: int | None = None
    ) -> list[UsageSum]:
        """Use since `since` per feature, model and image size, by a user and/or in a guild."""
        where, values = _usage_filter(since, user_id, guild_id)
        cursor = await self._db.execute(
            f"SELECT feature, model, image_size, {USAGE_SUMS} FROM usage WHERE {where}"
            " GROUP BY feature, model, image_size ORDER BY feature, model, image_size",
            values,
        )
        return [
            UsageSum(feature=row[0], model=row[1], image_size=row[2], **_totals(row[3:]))
            for row in await cursor.fetchall()
        ]

    async def usage_by_user(self, guild_id: int, since: datetime) -> list[UsageSum]:
        """Use in a guild since `since` per user, feature, model and image size."""
        where, values = _usage_filter(since, None, guild_id)
        cursor = await self._db.execute(
            f"SELECT user_id, feature, model, image_size, {USAGE_SUMS} FROM usage WHERE {where}"
            " AND user_id IS NOT NULL GROUP BY user_id, feature, model, image_size"
            " ORDER BY user_id, feature, model, image_size",
            values,
        )
        return [
            UsageSum(user_id=row[0], feature=row[1], model=row[2], image_size=row[3], **_totals(row[4:]))
            for row in await cursor.fetchall()
        ]

    async def chosen_models(self) -> list[tuple[str, str]]:
        """(feature, model) for every model admins chose for a server or channel with /settings model."""
        cursor = await self._db.execute(
            "SELECT m.key, m.value FROM guild_settings, json_each(guild_settings.settings, '$.models') AS m"
            " UNION SELECT m.key, m.value FROM channels, json_each(channels.settings, '$.models') AS m"
            " ORDER BY 1, 2"
        )
        return [(str(feature), str(model)) for feature, model in await cursor.fetchall() if model]

    async def get_guild_settings(self, guild_id: int) -> dict[str, object]:
        """A guild's settings as /settings stored them (empty when none were changed)."""
        cursor = await self._db.execute("SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,))
        row = await cursor.fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    async def update_guild_settings(self, guild_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a guild's settings in one statement (JSON merge patch: None removes a key)."""
        await self._db.execute(
            "INSERT INTO guild_settings (guild_id, settings) VALUES (:id, json_patch('{}', :patch))"
            " ON CONFLICT (guild_id) DO UPDATE SET settings = json_patch(settings, :patch)",
            {"id": guild_id, "patch": json.dumps(changes)},
        )


def _usage_filter(since: datetime, user_id: int | None, guild_id: int | None) -> tuple[str, list[object]]:
    """The WHERE clause (fixed text, values as parameters) selecting usage since a time by user and/or guild."""
    clauses = ["created_at >= ?"]
    values: list[object] = [_timestamp(since)]
    if user_id is not None:
        clauses.append("user_id = ?")
        values.append(user_id)
    if guild_id is not None:
        clauses.append("guild_id = ?")
        values.append(guild_id)
    return " AND ".join(clauses), values


def _timestamp(moment: datetime) -> str:
    """A time as stored in created_at (UTC ISO 8601), so text comparison orders it correctly."""
    if moment.tzinfo is None:
        raise ValueError("usage times must be timezone-aware")
    return moment.astimezone(UTC).isoformat()


def _totals(row: Any) -> dict[str, Any]:
    return {
        "requests": int(row[0]),
        "input_tokens": int(row[1]),
        "output_tokens": int(row[2]),
        "images": int(row[3]),
        "audio_seconds": float(row[4]),
    }


async def _migrate(connection: aiosqlite.Connection) -> None:
    cursor = await connection.execute("PRAGMA user_version")
    row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this bot knows ({len(MIGRATIONS)}): "
            "run a newer version of the bot or point DATABASE_URL at another file"
        )
    for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
        log.info("Migrating the database to schema version %d", target)
        # One transaction per step: a crash mid-migration leaves the previous version intact.
        await connection.executescript(f"BEGIN; {script}; PRAGMA user_version = {target}; COMMIT;")
