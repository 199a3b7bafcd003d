"""The SQLite store: a writer connection and a reader connection in WAL mode, each in a thread of its own.

Every method runs as one function on its connection's thread, so the statements of a transaction never
interleave with another coroutine's, and the event loop never waits on the disk. Reports run on the reader
connection: a long one never holds up the turns and gate checks on the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from bot.store.base import (
    HOLD_SECONDS,
    MAX_PICTURES_PER_CHANNEL,
    RATE_WINDOW_SECONDS,
    AnswerWrite,
    ChannelRecord,
    NewTurn,
    Picture,
    Refusal,
    Reservation,
    Reserved,
    Turn,
    TurnState,
    UsageRecord,
    UsageSum,
    utc_now,
)
from bot.store.schema import (
    SQLITE_MIGRATIONS,
    OutdatedSchema,
    day_key,
    ledger_values,
    pictures_of,
    pictures_text,
    reply_ids_of,
    reply_ids_text,
    rollup_keys,
    spend_rows,
    timestamp,
)

log = logging.getLogger(__name__)

R = TypeVar("R")
BUSY_TIMEOUT_MS = 5000
ROLLUP_SUMS = (
    "SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(images), SUM(audio_seconds), SUM(speech_characters)"
)


class _Connection:
    """One sqlite3 connection, used only from its own thread."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.db: sqlite3.Connection | None = None

    async def run(self, work: Callable[[sqlite3.Connection], R]) -> R:
        """Run `work(connection)` on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], R]) -> R:
        assert self.db is not None, "the store is closed"
        return work(self.db)

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Open the connection on its own thread."""

        def opened() -> sqlite3.Connection:
            return connect()

        self.db = await asyncio.get_running_loop().run_in_executor(self._executor, opened)

    async def close(self) -> None:
        """Close the connection and end its thread."""
        if self.db is not None:
            await self.run(lambda db: db.close())
            self.db = None
        self._executor.shutdown(wait=True)


def _transaction(work: Callable[[sqlite3.Connection], R]) -> Callable[[sqlite3.Connection], R]:
    """`work` inside BEGIN IMMEDIATE … COMMIT: it holds the write lock from its first read, across processes."""

    def run(db: sqlite3.Connection) -> R:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    return run


class SqliteStore:
    """The embedded default store. Each write is one statement or one transaction, so it is atomic."""

    def __init__(self, writer: _Connection, reader: _Connection, clock: Callable[[], datetime]) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], datetime] = utc_now) -> SqliteStore:
        """Open (creating folders and file as needed) and migrate the database at `path`; `clock` dates the rows."""
        in_memory = str(path) == ":memory:"
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer = _Connection("sqlite-writer")
        try:
            await writer.open(lambda: _connect(str(path)))
            await writer.run(_migrate)
            # An in-memory database exists only on its own connection: there it is its own reader.
            reader = writer if in_memory else _Connection("sqlite-reader")
            if reader is not writer:
                await reader.open(lambda: _connect(str(path)))
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
        connection = _Connection("sqlite-inspect")
        try:
            await connection.open(lambda: _connect(_inspection_uri(Path(path)), uri=True, journal=False))
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

    async def add_turn(self, channel_id: int, turn: NewTurn, *, guild_id: int | None = None) -> Turn:
        """Append a turn to a channel's conversation."""
        created_at = self._clock()
        turn_id = await self._writer.run(
            _transaction(lambda db: _insert_turn(db, channel_id, guild_id, turn, (), created_at))
        )
        named = tuple(Picture(p.filename, p.mime_type, p.tokens) for p in turn.pictures)  # the data stays stored
        return Turn(
            **{**vars(turn), "pictures": named},
            id=turn_id,
            created_at=created_at,
            channel_id=channel_id,
            guild_id=guild_id,
        )

    async def write_answer(self, answer: AnswerWrite) -> int:
        """Store (or update) an answer, and once it is whole its question's state and usage, in one transaction."""
        moment = self._clock()

        def write(db: sqlite3.Connection) -> int:
            state: TurnState = "done" if answer.usage is not None else "streaming"
            if answer.answer_id is not None:
                db.execute(
                    "UPDATE turns SET content = ?, tokens = ?, reply_ids = ?, state = ? WHERE id = ?",
                    (answer.text, answer.tokens, reply_ids_text(answer.reply_ids), state, answer.answer_id),
                )
                answer_id = answer.answer_id
            else:
                turn = NewTurn("assistant", None, "assistant", answer.text, tokens=answer.tokens, state=state)
                answer_id = _insert_turn(db, answer.channel_id, answer.guild_id, turn, answer.reply_ids, moment)
            if answer.usage is not None:
                db.execute("UPDATE turns SET state = 'done' WHERE id = ?", (answer.question_id,))
                _record_usage(db, answer.usage, moment, answer.hold_id)
            return answer_id

        return await self._writer.run(_transaction(write))

    async def abandon_answer(
        self,
        question_id: int,
        *,
        answer_id: int | None = None,
        usage: UsageRecord | None = None,
        hold_id: int | None = None,
    ) -> None:
        """Forget a failed answer, mark its question answered and record its usage, in one transaction."""
        moment = self._clock()

        def abandon(db: sqlite3.Connection) -> None:
            if answer_id is not None:
                db.execute("DELETE FROM turns WHERE id = ?", (answer_id,))
            db.execute("UPDATE turns SET state = 'done' WHERE id = ?", (question_id,))
            if usage is not None:
                _record_usage(db, usage, moment, hold_id)
            elif hold_id is not None:
                db.execute("DELETE FROM holds WHERE id = ?", (hold_id,))

        await self._writer.run(_transaction(abandon))

    async def turns_in_flight(self, since: datetime) -> list[Turn]:
        """Pending questions and streaming answers since `since`, oldest first (a partial index keeps it small)."""
        rows = await self._writer.run(
            lambda db: db.execute(
                f"SELECT {TURN_COLUMNS} FROM turns WHERE state != 'done' AND created_at >= ? ORDER BY id",
                (timestamp(since),),
            ).fetchall()
        )
        return [_turn(row) for row in rows]

    async def picture_data(self, turn_ids: list[int]) -> dict[int, list[bytes]]:
        """The data of these turns' pictures, each turn's in order."""
        if not turn_ids:
            return {}
        marks = ", ".join("?" * len(turn_ids))
        rows = await self._writer.run(
            lambda db: db.execute(
                f"SELECT turn_id, data FROM turn_pictures WHERE turn_id IN ({marks}) ORDER BY turn_id, position",
                turn_ids,
            ).fetchall()
        )
        found: dict[int, list[bytes]] = {}
        for turn_id, data in rows:
            found.setdefault(turn_id, []).append(bytes(data))
        return found

    async def recent_turns(self, channel_id: int, limit: int) -> list[Turn]:
        """The newest `limit` turns of a channel, oldest first (an index range scan: flat in history size)."""
        rows = await self._writer.run(
            lambda db: db.execute(
                f"SELECT {TURN_COLUMNS} FROM turns WHERE channel_id = ? ORDER BY id DESC LIMIT ?", (channel_id, limit)
            ).fetchall()
        )
        return [_turn(row) for row in reversed(rows)]

    async def forget_channels(self, channel_ids: list[int]) -> int:
        """Forget deleted channels or threads: their turns and records, in one transaction."""

        def forget(db: sqlite3.Connection) -> int:
            marks = ", ".join("?" * len(channel_ids))
            # A deleted channel takes its threads with it: those the bot knows are found by their parent.
            threads = f"SELECT channel_id FROM channels WHERE parent_id IN ({marks})"
            forgotten = db.execute(
                f"DELETE FROM turns WHERE channel_id IN ({marks}) OR channel_id IN ({threads})", channel_ids * 2
            ).rowcount
            db.execute(f"DELETE FROM channels WHERE channel_id IN ({marks}) OR parent_id IN ({marks})", channel_ids * 2)
            return forgotten

        return await self._writer.run(_transaction(forget)) if channel_ids else 0

    async def forget_guild(self, guild_id: int) -> int:
        """Forget a server the bot left: its turns, channel records and settings, in one transaction."""

        def forget(db: sqlite3.Connection) -> int:
            known = [row[0] for row in db.execute("SELECT channel_id FROM channels WHERE guild_id = ?", (guild_id,))]
            forgotten = db.execute("DELETE FROM turns WHERE guild_id = ?", (guild_id,)).rowcount
            # Turns stored before they carried their guild are found through the channels the bot knew.
            marks = ", ".join("?" * len(known))
            if known:
                forgotten += db.execute(f"DELETE FROM turns WHERE channel_id IN ({marks})", known).rowcount
            db.execute("DELETE FROM channels WHERE guild_id = ?", (guild_id,))
            db.execute("DELETE FROM guild_settings WHERE guild_id = ?", (guild_id,))
            return forgotten

        return await self._writer.run(_transaction(forget))

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

        return await self._writer.run(_transaction(prune))

    async def clear_turns(self, channel_id: int) -> int:
        """Forget a channel's turns; return how many were forgotten."""
        return await self._writer.run(
            lambda db: db.execute("DELETE FROM turns WHERE channel_id = ?", (channel_id,)).rowcount
        )

    # -- channels, guilds, meta ------------------------------------------------------------------------

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

        return await self._writer.run(_transaction(swap))

    async def setdefault_meta(self, key: str, value: str) -> str:
        """The value kept at `key`, storing `value` first if there is none, in one transaction."""

        def setdefault(db: sqlite3.Connection) -> str:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
            return str(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

        return await self._writer.run(_transaction(setdefault))

    # -- limits and usage ---------------------------------------------------------------------------------

    async def reserve(self, reservation: Reservation) -> Reserved | Refusal:
        """Check and take a request's share of its budgets and rates in one write transaction."""
        return await self._writer.run(_transaction(lambda db: _reserve(db, reservation)))

    async def release_hold(self, hold_id: int) -> None:
        """Stop holding what a request would have used."""
        await self._execute("DELETE FROM holds WHERE id = ?", (hold_id,))

    async def record_usage(self, usage: UsageRecord, *, hold_id: int | None = None) -> None:
        """Add one call to the ledger and today's roll-ups and drop its hold, in one transaction."""
        moment = self._clock()
        await self._writer.run(_transaction(lambda db: _record_usage(db, usage, moment, hold_id)))

    async def usage_by_model(
        self, since: datetime, *, user_id: int | None = None, guild_id: int | None = None
    ) -> list[UsageSum]:
        """Use from the UTC day of `since` on, per feature, model and image size, from the daily roll-up."""
        clauses: list[str] = ["day >= ?"]
        values: list[object] = [day_key(since)]
        if user_id is not None:
            clauses.append("user_id = ?")
            values.append(user_id)
        if guild_id is not None:
            clauses.append("guild_id = ?")
            values.append(guild_id)
        query = (
            f"SELECT feature, model, image_size, {ROLLUP_SUMS} FROM usage_daily WHERE {' AND '.join(clauses)}"
            " GROUP BY feature, model, image_size ORDER BY feature, model, image_size"
        )
        rows = await self._reader.run(lambda db: db.execute(query, values).fetchall())
        return [UsageSum(feature=r[0], model=r[1], image_size=r[2] or None, **_sums(r[3:])) for r in rows]

    async def usage_by_user(self, guild_id: int, since: datetime) -> list[UsageSum]:
        """Use in a guild from the UTC day of `since` on, per user, feature, model and image size."""
        query = (
            f"SELECT user_id, feature, model, image_size, {ROLLUP_SUMS} FROM usage_daily"
            " WHERE guild_id = ? AND day >= ? AND user_id != 0 GROUP BY user_id, feature, model, image_size"
            " ORDER BY user_id, feature, model, image_size"
        )
        rows = await self._reader.run(lambda db: db.execute(query, (guild_id, day_key(since))).fetchall())
        return [UsageSum(user_id=r[0], feature=r[1], model=r[2], image_size=r[3] or None, **_sums(r[4:])) for r in rows]

    async def claim_identify_slot(self, bucket: int, interval: float) -> float:
        """Take a bucket's identify slot if free (0), else the seconds until it is; SQLite shares one machine's
        clock, so the wall clock orders the processes."""

        def claim(db: sqlite3.Connection) -> float:
            now = time.time()
            row = db.execute("SELECT next_at FROM identify_slots WHERE bucket = ?", (bucket,)).fetchone()
            if row is not None and row[0] > now:
                return float(row[0]) - now
            db.execute(
                "INSERT INTO identify_slots (bucket, next_at) VALUES (?, ?)"
                " ON CONFLICT (bucket) DO UPDATE SET next_at = excluded.next_at",
                (bucket, now + interval),
            )
            return 0.0

        return await self._writer.run(_transaction(claim))

    async def _execute(self, sql: str, parameters: Any = ()) -> None:
        await self._writer.run(lambda db: db.execute(sql, parameters))


def _connect(target: str, *, uri: bool = False, journal: bool = True) -> sqlite3.Connection:
    # isolation_level=None: autocommit, so every statement commits on its own unless a transaction is begun.
    db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys=ON")  # a turn's pictures go with it
    if journal:
        db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL may lose the last commits on power loss, never on a killed process.
        db.execute("PRAGMA synchronous=NORMAL")
    return db


TURN_COLUMNS = (
    "id, channel_id, guild_id, role, author_id, author_name, content, spoken, tokens, message_id, reply_ids, state,"
    " created_at, pictures"
)


def _turn(row: Any) -> Turn:
    return Turn(
        id=row[0],
        channel_id=row[1],
        guild_id=row[2],
        role=row[3],
        author_id=row[4],
        author_name=row[5],
        content=row[6],
        spoken=bool(row[7]),
        tokens=row[8],
        message_id=row[9],
        reply_ids=reply_ids_of(row[10]),
        state=row[11],
        created_at=datetime.fromisoformat(row[12]),
        pictures=pictures_of(row[13]),
    )


def _insert_turn(
    db: sqlite3.Connection,
    channel_id: int,
    guild_id: int | None,
    turn: NewTurn,
    reply_ids: tuple[int, ...],
    created_at: datetime,
) -> int:
    cursor = db.execute(
        "INSERT INTO turns (channel_id, guild_id, role, author_id, author_name, content, spoken, tokens, message_id,"
        " reply_ids, state, created_at, pictures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            channel_id,
            guild_id,
            turn.role,
            turn.author_id,
            turn.author_name,
            turn.content,
            turn.spoken,
            turn.tokens,
            turn.message_id,
            reply_ids_text(reply_ids),
            turn.state,
            timestamp(created_at),
            pictures_text(turn.pictures),
        ),
    )
    turn_id = cursor.lastrowid
    assert turn_id is not None  # an INSERT into a rowid table always sets it
    if turn.pictures:
        db.executemany(
            "INSERT INTO turn_pictures (turn_id, channel_id, position, data) VALUES (?, ?, ?, ?)",
            [(turn_id, channel_id, position, picture.data) for position, picture in enumerate(turn.pictures)],
        )
        db.execute(
            "DELETE FROM turn_pictures WHERE channel_id = ? AND id <= (SELECT id FROM turn_pictures"
            " WHERE channel_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (channel_id, channel_id, MAX_PICTURES_PER_CHANNEL),
        )
    return turn_id


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


def _reserve(db: sqlite3.Connection, reservation: Reservation) -> Reserved | Refusal:
    """Budgets first, then rates; only a request that passes both is counted and held."""
    now = reservation.now.timestamp()
    day = day_key(reservation.now)
    for cap in reservation.budgets:
        holder = "user_id" if cap.scope == "user" else "guild_id"
        # One statement, so what is spent and what is held are read together.
        (used,) = db.execute(
            "SELECT COALESCE((SELECT used FROM spend_daily WHERE scope = ? AND key = ? AND feature = ? AND day = ?), 0)"
            f" + COALESCE((SELECT SUM(amount) FROM holds WHERE {holder} = ? AND feature = ? AND expires_at > ?), 0)",
            (cap.scope, cap.key, reservation.feature, day, cap.key, reservation.feature, now),
        ).fetchone()
        if not (used < cap.limit and used + reservation.amount <= cap.limit):
            return Refusal("budget", cap.scope, cap.limit, float(used))
    window_start = now - RATE_WINDOW_SECONDS
    for cap in reservation.rates:
        db.execute("DELETE FROM rate_hits WHERE scope = ? AND key = ? AND at <= ?", (cap.scope, cap.key, window_start))
        oldest_counted = db.execute(
            "SELECT at FROM rate_hits WHERE scope = ? AND key = ? ORDER BY at DESC LIMIT 1 OFFSET ?",
            (cap.scope, cap.key, int(cap.limit) - 1),
        ).fetchone()
        if oldest_counted is not None:
            wait = max(oldest_counted[0] + RATE_WINDOW_SECONDS - now, 0.0)
            return Refusal("rate", cap.scope, cap.limit, cap.limit, retry_after=wait)
    db.executemany(
        "INSERT INTO rate_hits (scope, key, at) VALUES (?, ?, ?)",
        [(cap.scope, cap.key, now) for cap in reservation.rates],
    )
    if reservation.hold_id is not None:
        db.execute("UPDATE holds SET amount = amount + ? WHERE id = ?", (reservation.amount, reservation.hold_id))
        return Reserved(reservation.hold_id)
    if reservation.amount <= 0:
        return Reserved(None)
    cursor = db.execute(
        "INSERT INTO holds (user_id, guild_id, feature, amount, expires_at) VALUES (?, ?, ?, ?, ?)",
        (reservation.user_id, reservation.guild_id, reservation.feature, reservation.amount, now + HOLD_SECONDS),
    )
    return Reserved(cursor.lastrowid)


def _record_usage(db: sqlite3.Connection, usage: UsageRecord, moment: datetime, hold_id: int | None) -> None:
    db.execute(
        "INSERT INTO usage (created_at, feature, model, user_id, guild_id, channel_id, input_tokens, output_tokens,"
        " images, image_size, audio_seconds, speech_characters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (timestamp(moment), *ledger_values(usage)),
    )
    day = day_key(moment)
    db.execute(
        "INSERT INTO usage_daily (day, guild_id, user_id, feature, model, image_size, requests, input_tokens,"
        " output_tokens, images, audio_seconds, speech_characters) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)"
        " ON CONFLICT (guild_id, day, user_id, feature, model, image_size) DO UPDATE SET requests = requests + 1,"
        " input_tokens = input_tokens + excluded.input_tokens,"
        " output_tokens = output_tokens + excluded.output_tokens, images = images + excluded.images,"
        " audio_seconds = audio_seconds + excluded.audio_seconds,"
        " speech_characters = speech_characters + excluded.speech_characters",
        (
            day,
            *rollup_keys(usage),
            usage.input_tokens,
            usage.output_tokens,
            usage.images,
            usage.audio_seconds,
            usage.speech_characters,
        ),
    )
    for scope, key, amount in spend_rows(usage):
        db.execute(
            "INSERT INTO spend_daily (scope, key, feature, day, used) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (scope, key, feature, day) DO UPDATE SET used = used + excluded.used",
            (scope, key, usage.feature, day, amount),
        )
    if hold_id is not None:
        db.execute("DELETE FROM holds WHERE id = ?", (hold_id,))


def _sums(row: Any) -> dict[str, Any]:
    return {
        "requests": int(row[0]),
        "input_tokens": int(row[1]),
        "output_tokens": int(row[2]),
        "images": int(row[3]),
        "audio_seconds": float(row[4]),
        "speech_characters": int(row[5]),
    }


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
