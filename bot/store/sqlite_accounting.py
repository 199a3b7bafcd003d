"""The SQLite store's limits and usage: reservations, holds, the ledger and its daily roll-ups, identify slots."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import datetime

from bot.store.base import HOLD_SECONDS, RATE_WINDOW_SECONDS, Refusal, Reservation, Reserved, UsageRecord, UsageSum
from bot.store.schema import ROLLUP_SUMS, day_key, ledger_values, rollup_keys, spend_rows, timestamp, usage_sums
from bot.store.sqlite_connection import Connection, transaction


class SqliteAccounting:
    """Limits and usage: reservations through the writer connection, reports through the reader."""

    _writer: Connection
    _reader: Connection
    _clock: Callable[[], datetime]

    async def reserve(self, reservation: Reservation) -> Reserved | Refusal:
        """Check and take a request's share of its budgets and rates in one write transaction."""
        return await self._writer.run_quick(transaction(lambda db: _reserve(db, reservation)))

    async def release_hold(self, hold_id: int) -> None:
        """Stop holding what a request would have used."""
        await self._writer.run_quick(lambda db: db.execute("DELETE FROM holds WHERE id = ?", (hold_id,)))

    async def record_usage(self, usage: UsageRecord, *, hold_id: int | None = None) -> None:
        """Add one call to the ledger and today's roll-ups and drop its hold, in one transaction."""
        moment = self._clock()
        await self._writer.run_quick(transaction(lambda db: record_usage_in(db, usage, moment, hold_id)))

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
        return [UsageSum(feature=r[0], model=r[1], image_size=r[2] or None, **usage_sums(r[3:])) for r in rows]

    async def usage_by_user(self, guild_id: int, since: datetime) -> list[UsageSum]:
        """Use in a guild from the UTC day of `since` on, per user, feature, model and image size."""
        query = (
            f"SELECT user_id, feature, model, image_size, {ROLLUP_SUMS} FROM usage_daily"
            " WHERE guild_id = ? AND day >= ? AND user_id != 0 GROUP BY user_id, feature, model, image_size"
            " ORDER BY user_id, feature, model, image_size"
        )
        rows = await self._reader.run(lambda db: db.execute(query, (guild_id, day_key(since))).fetchall())
        return [
            UsageSum(user_id=r[0], feature=r[1], model=r[2], image_size=r[3] or None, **usage_sums(r[4:])) for r in rows
        ]

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

        return await self._writer.run(transaction(claim))


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


def record_usage_in(db: sqlite3.Connection, usage: UsageRecord, moment: datetime, hold_id: int | None) -> None:
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
