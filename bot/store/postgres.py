"""The PostgreSQL store: an asyncpg pool, so several bot processes (shards) can share one database.

What must hold across processes is decided inside the database: a reservation takes transaction-level
advisory locks on its member and its server before it reads, so two processes admitting the same member
at once are served one after the other; migrations run under a session-level advisory lock, so
processes starting together on an empty database migrate it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

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
    POSTGRES_MIGRATIONS,
    OutdatedSchema,
    ledger_values,
    pictures_of,
    pictures_text,
    reply_ids_of,
    reply_ids_text,
    rollup_keys,
    spend_rows,
    utc_day,
)

log = logging.getLogger(__name__)

# Keys of the session-level advisory lock that serialises migrations (any constant unique to this bot).
MIGRATION_LOCK = 0x6F70656E_616962  # "openai b"
ROLLUP_SUMS = (
    "SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(images), SUM(audio_seconds), SUM(speech_characters)"
)
RECORD_USAGE = """
WITH ledger AS (
    INSERT INTO usage (created_at, feature, model, user_id, guild_id, channel_id, input_tokens, output_tokens,
        images, image_size, audio_seconds, speech_characters)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
), rollup AS (
    INSERT INTO usage_daily (day, guild_id, user_id, feature, model, image_size, requests, input_tokens,
        output_tokens, images, audio_seconds, speech_characters)
    VALUES ($13, $14, $15, $2, $3, $16, 1, $7, $8, $9, $11, $12)
    ON CONFLICT (guild_id, day, user_id, feature, model, image_size) DO UPDATE SET
        requests = usage_daily.requests + 1,
        input_tokens = usage_daily.input_tokens + excluded.input_tokens,
        output_tokens = usage_daily.output_tokens + excluded.output_tokens,
        images = usage_daily.images + excluded.images,
        audio_seconds = usage_daily.audio_seconds + excluded.audio_seconds,
        speech_characters = usage_daily.speech_characters + excluded.speech_characters
), spent AS (
    INSERT INTO spend_daily (scope, key, feature, day, used)
    SELECT scope, key, $2, $13, amount FROM unnest($17::text[], $18::bigint[], $19::float8[]) AS s(scope, key, amount)
    ON CONFLICT (scope, key, feature, day) DO UPDATE SET used = spend_daily.used + excluded.used
)
DELETE FROM holds WHERE id = $20
"""


async def _init_connection(connection: asyncpg.Connection) -> None:
    # JSONB columns come and go as Python objects.
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PostgresStore:
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
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, init=_init_connection)
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

    async def add_turn(self, channel_id: int, turn: NewTurn, *, guild_id: int | None = None) -> Turn:
        """Append a turn to a channel's conversation."""
        created_at = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            turn_id = await _insert_turn(connection, channel_id, guild_id, turn, (), created_at)
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
        state: TurnState = "done" if answer.usage is not None else "streaming"
        async with self._pool.acquire() as connection, connection.transaction():
            if answer.answer_id is not None:
                await connection.execute(
                    "UPDATE turns SET content = $2, tokens = $3, reply_ids = $4, state = $5 WHERE id = $1",
                    answer.answer_id,
                    answer.text,
                    answer.tokens,
                    reply_ids_text(answer.reply_ids),
                    state,
                )
                answer_id = answer.answer_id
            else:
                turn = NewTurn("assistant", None, "assistant", answer.text, tokens=answer.tokens, state=state)
                answer_id = await _insert_turn(
                    connection, answer.channel_id, answer.guild_id, turn, answer.reply_ids, moment
                )
            if answer.usage is not None:
                await connection.execute("UPDATE turns SET state = 'done' WHERE id = $1", answer.question_id)
                await _record_usage(connection, answer.usage, moment, answer.hold_id)
        return answer_id

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
        async with self._pool.acquire() as connection, connection.transaction():
            if answer_id is not None:
                await connection.execute("DELETE FROM turns WHERE id = $1", answer_id)
            await connection.execute("UPDATE turns SET state = 'done' WHERE id = $1", question_id)
            if usage is not None:
                await _record_usage(connection, usage, moment, hold_id)
            elif hold_id is not None:
                await connection.execute("DELETE FROM holds WHERE id = $1", hold_id)

    async def turns_in_flight(self, since: datetime) -> list[Turn]:
        """Pending questions and streaming answers since `since`, oldest first (a partial index keeps it small)."""
        rows = await self._pool.fetch(
            f"SELECT {TURN_COLUMNS} FROM turns WHERE state != 'done' AND created_at >= $1 ORDER BY id", since
        )
        return [_turn(row) for row in rows]

    async def picture_data(self, turn_ids: list[int]) -> dict[int, list[bytes]]:
        """The data of these turns' pictures, each turn's in order."""
        rows = await self._pool.fetch(
            "SELECT turn_id, data FROM turn_pictures WHERE turn_id = ANY($1::bigint[]) ORDER BY turn_id, position",
            turn_ids,
        )
        found: dict[int, list[bytes]] = {}
        for row in rows:
            found.setdefault(row["turn_id"], []).append(bytes(row["data"]))
        return found

    async def recent_turns(self, channel_id: int, limit: int) -> list[Turn]:
        """The newest `limit` turns of a channel, oldest first (an index range scan: flat in history size)."""
        rows = await self._pool.fetch(
            f"SELECT {TURN_COLUMNS} FROM turns WHERE channel_id = $1 ORDER BY id DESC LIMIT $2", channel_id, limit
        )
        return [_turn(row) for row in reversed(rows)]

    async def forget_channels(self, channel_ids: list[int]) -> int:
        """Forget deleted channels or threads: their turns and records, in one transaction."""
        async with self._pool.acquire() as connection, connection.transaction():
            # A deleted channel takes its threads with it: those the bot knows are found by their parent.
            status = await connection.execute(
                "DELETE FROM turns WHERE channel_id = ANY($1::bigint[])"
                " OR channel_id IN (SELECT channel_id FROM channels WHERE parent_id = ANY($1::bigint[]))",
                channel_ids,
            )
            await connection.execute(
                "DELETE FROM channels WHERE channel_id = ANY($1::bigint[]) OR parent_id = ANY($1::bigint[])",
                channel_ids,
            )
        return int(status.split()[-1])

    async def forget_guild(self, guild_id: int) -> int:
        """Forget a server the bot left: its turns, channel records and settings, in one transaction."""
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                "DELETE FROM turns WHERE guild_id = $1"
                # Turns stored before they carried their guild are found through the channels the bot knew.
                " OR channel_id IN (SELECT channel_id FROM channels WHERE guild_id = $1)",
                guild_id,
            )
            await connection.execute("DELETE FROM channels WHERE guild_id = $1", guild_id)
            await connection.execute("DELETE FROM guild_settings WHERE guild_id = $1", guild_id)
        return int(status.split()[-1])

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

    async def clear_turns(self, channel_id: int) -> int:
        """Forget a channel's turns; return how many were forgotten."""
        status = await self._pool.execute("DELETE FROM turns WHERE channel_id = $1", channel_id)
        return int(status.split()[-1])

    # -- channels, guilds, meta ------------------------------------------------------------------------

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

    async def reserve(self, reservation: Reservation) -> Reserved | Refusal:
        """Check and take a request's share of its budgets and rates in one transaction, under the member's and
        the server's advisory locks (always taken in that order, so two reservations never deadlock)."""
        keys = dict.fromkeys(f"{cap.scope}:{cap.key}" for cap in (*reservation.budgets, *reservation.rates))
        async with self._pool.acquire() as connection, connection.transaction():
            for key in sorted(keys, key=lambda name: not name.startswith("user:")):
                await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)
            return await _reserve(connection, reservation)

    async def release_hold(self, hold_id: int) -> None:
        """Stop holding what a request would have used."""
        await self._pool.execute("DELETE FROM holds WHERE id = $1", hold_id)

    async def record_usage(self, usage: UsageRecord, *, hold_id: int | None = None) -> None:
        """Add one call to the ledger and today's roll-ups and drop its hold, in one statement."""
        await _record_usage(self._pool, usage, self._clock(), hold_id)

    async def usage_by_model(
        self, since: datetime, *, user_id: int | None = None, guild_id: int | None = None
    ) -> list[UsageSum]:
        """Use from the UTC day of `since` on, per feature, model and image size, from the daily roll-up."""
        clauses: list[str] = ["day >= $1"]
        values: list[object] = [utc_day(since)]
        for column, value in (("user_id", user_id), ("guild_id", guild_id)):
            if value is not None:
                values.append(value)
                clauses.append(f"{column} = ${len(values)}")
        rows = await self._pool.fetch(
            f"SELECT feature, model, image_size, {ROLLUP_SUMS} FROM usage_daily WHERE {' AND '.join(clauses)}"
            " GROUP BY feature, model, image_size ORDER BY feature, model, image_size",
            *values,
        )
        return [UsageSum(feature=r[0], model=r[1], image_size=r[2] or None, **_sums(r[3:])) for r in rows]

    async def usage_by_user(self, guild_id: int, since: datetime) -> list[UsageSum]:
        """Use in a guild from the UTC day of `since` on, per user, feature, model and image size."""
        rows = await self._pool.fetch(
            f"SELECT user_id, feature, model, image_size, {ROLLUP_SUMS} FROM usage_daily"
            " WHERE guild_id = $1 AND day >= $2 AND user_id != 0 GROUP BY user_id, feature, model, image_size"
            " ORDER BY user_id, feature, model, image_size",
            guild_id,
            utc_day(since),
        )
        return [UsageSum(user_id=r[0], feature=r[1], model=r[2], image_size=r[3] or None, **_sums(r[4:])) for r in rows]

    async def claim_identify_slot(self, bucket: int, interval: float) -> float:
        """Take a bucket's identify slot if free (0), else the seconds until it is; the database's clock orders
        the processes, so machines whose clocks differ still keep Discord's spacing."""
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"identify:{bucket}")
            wait = await connection.fetchval(
                "SELECT EXTRACT(EPOCH FROM next_at - clock_timestamp()) FROM identify_slots WHERE bucket = $1", bucket
            )
            if wait is not None and wait > 0:
                return float(wait)
            await connection.execute(
                "INSERT INTO identify_slots (bucket, next_at)"
                " VALUES ($1, clock_timestamp() + make_interval(secs => $2))"
                " ON CONFLICT (bucket) DO UPDATE SET next_at = excluded.next_at",
                bucket,
                interval,
            )
            return 0.0


TURN_COLUMNS = (
    "id, channel_id, guild_id, role, author_id, author_name, content, spoken, tokens, message_id, reply_ids, state,"
    " created_at, pictures"
)


def _turn(row: Any) -> Turn:
    return Turn(**{**dict(row), "reply_ids": reply_ids_of(row["reply_ids"]), "pictures": pictures_of(row["pictures"])})


async def _insert_turn(
    connection: Any,
    channel_id: int,
    guild_id: int | None,
    turn: NewTurn,
    reply_ids: tuple[int, ...],
    created_at: datetime,
) -> int:
    """Insert a turn through a pool or a connection (inside a transaction); its id."""
    turn_id = await connection.fetchval(
        "INSERT INTO turns (channel_id, guild_id, role, author_id, author_name, content, spoken, tokens, message_id,"
        " reply_ids, state, created_at, pictures) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " RETURNING id",
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
        created_at,
        pictures_text(turn.pictures),
    )
    if turn.pictures:
        await connection.executemany(
            "INSERT INTO turn_pictures (turn_id, channel_id, position, data) VALUES ($1, $2, $3, $4)",
            [(turn_id, channel_id, position, picture.data) for position, picture in enumerate(turn.pictures)],
        )
        await connection.execute(
            "DELETE FROM turn_pictures WHERE channel_id = $1 AND id <= (SELECT id FROM turn_pictures"
            " WHERE channel_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            channel_id,
            MAX_PICTURES_PER_CHANNEL,
        )
    return int(turn_id)


async def _record_usage(connection: Any, usage: UsageRecord, moment: datetime, hold_id: int | None) -> None:
    """The ledger row, the roll-ups and the hold's end in one statement, through a pool or a connection."""
    guild_key, user_key, _, _, size_key = rollup_keys(usage)
    spends = spend_rows(usage)
    await connection.execute(
        RECORD_USAGE,
        moment,
        *ledger_values(usage),
        utc_day(moment),
        guild_key,
        user_key,
        size_key,
        [scope for scope, _, _ in spends],
        [key for _, key, _ in spends],
        [amount for _, _, amount in spends],
        hold_id,
    )


async def _reserve(connection: asyncpg.Connection, reservation: Reservation) -> Reserved | Refusal:
    """Budgets first, then rates; only a request that passes both is counted and held."""
    now = reservation.now.timestamp()
    day = utc_day(reservation.now)
    for cap in reservation.budgets:
        holder = "user_id" if cap.scope == "user" else "guild_id"
        # One statement, so what is spent and what is held are read in one snapshot.
        used = await connection.fetchval(
            "SELECT COALESCE((SELECT used FROM spend_daily WHERE scope = $1 AND key = $2 AND feature = $3"
            " AND day = $4), 0)"
            f" + COALESCE((SELECT SUM(amount) FROM holds WHERE {holder} = $2 AND feature = $3 AND expires_at > $5), 0)",
            cap.scope,
            cap.key,
            reservation.feature,
            day,
            now,
        )
        if not (used < cap.limit and used + reservation.amount <= cap.limit):
            return Refusal("budget", cap.scope, cap.limit, float(used))
    window_start = now - RATE_WINDOW_SECONDS
    for cap in reservation.rates:
        await connection.execute(
            "DELETE FROM rate_hits WHERE scope = $1 AND key = $2 AND at <= $3", cap.scope, cap.key, window_start
        )
        oldest_counted = await connection.fetchval(
            "SELECT at FROM rate_hits WHERE scope = $1 AND key = $2 ORDER BY at DESC LIMIT 1 OFFSET $3",
            cap.scope,
            cap.key,
            int(cap.limit) - 1,
        )
        if oldest_counted is not None:
            wait = max(oldest_counted + RATE_WINDOW_SECONDS - now, 0.0)
            return Refusal("rate", cap.scope, cap.limit, cap.limit, retry_after=wait)
    if reservation.rates:
        await connection.executemany(
            "INSERT INTO rate_hits (scope, key, at) VALUES ($1, $2, $3)",
            [(cap.scope, cap.key, now) for cap in reservation.rates],
        )
    if reservation.hold_id is not None:
        await connection.execute(
            "UPDATE holds SET amount = amount + $2 WHERE id = $1", reservation.hold_id, reservation.amount
        )
        return Reserved(reservation.hold_id)
    if reservation.amount <= 0:
        return Reserved(None)
    hold_id = await connection.fetchval(
        "INSERT INTO holds (user_id, guild_id, feature, amount, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        reservation.user_id,
        reservation.guild_id,
        reservation.feature,
        reservation.amount,
        now + HOLD_SECONDS,
    )
    return Reserved(int(hold_id))


def _sums(row: Any) -> dict[str, Any]:
    return {
        "requests": int(row[0]),
        "input_tokens": int(row[1]),
        "output_tokens": int(row[2]),
        "images": int(row[3]),
        "audio_seconds": float(row[4]),
        "speech_characters": int(row[5]),
    }


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
