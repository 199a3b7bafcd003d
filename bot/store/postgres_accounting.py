"""The PostgreSQL store's limits and usage: reservations under advisory locks, the ledger and its roll-ups."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from bot.store.base import HOLD_SECONDS, RATE_WINDOW_SECONDS, Refusal, Reservation, Reserved, UsageRecord, UsageSum
from bot.store.schema import ROLLUP_SUMS, ledger_values, rollup_keys, spend_rows, usage_sums, utc_day

# What one call used: its ledger row, today's roll-ups and the end of its hold, as the data-modifying CTEs of one
# statement (parameters $1-$20, from usage_parameters), so that other writes can join them in one round trip.
USAGE_WRITES = """
ledger AS (
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
), released AS (
    DELETE FROM holds WHERE id = $20
)"""
RECORD_USAGE = f"WITH {USAGE_WRITES} SELECT 1"


class PostgresAccounting:
    """Limits and usage, through the pool."""

    _pool: asyncpg.Pool
    _clock: Callable[[], datetime]

    async def reserve(self, reservation: Reservation) -> Reserved | Refusal:
        """Check and take a request's share of its budgets and rates in one statement (bot_reserve), under the
        member's and the server's advisory locks (always taken in that order, so two reservations never
        deadlock)."""
        keys = dict.fromkeys(f"{cap.scope}:{cap.key}" for cap in (*reservation.budgets, *reservation.rates))
        budgets, rates = reservation.budgets, reservation.rates
        row = await self._pool.fetchrow(
            "SELECT * FROM bot_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            sorted(keys, key=lambda name: not name.startswith("user:")),
            reservation.feature,
            reservation.user_id,
            reservation.guild_id,
            reservation.amount,
            reservation.now.timestamp(),
            utc_day(reservation.now),
            [cap.scope for cap in budgets],
            [cap.key for cap in budgets],
            [cap.limit for cap in budgets],
            [cap.scope for cap in rates],
            [cap.key for cap in rates],
            [cap.limit for cap in rates],
            RATE_WINDOW_SECONDS,
            reservation.hold_id,
            HOLD_SECONDS,
        )
        if row["refused"] is None:
            return Reserved(row["new_hold"])
        retry_after = row["retry_after"] or 0.0
        return Refusal(row["refused"], row["refused_scope"], row["refused_limit"], row["refused_used"], retry_after)

    async def release_hold(self, hold_id: int) -> None:
        """Stop holding what a request would have used."""
        await self._pool.execute("DELETE FROM holds WHERE id = $1", hold_id)

    async def record_usage(self, usage: UsageRecord, *, hold_id: int | None = None) -> None:
        """Add one call to the ledger and today's roll-ups and drop its hold, in one statement."""
        await record_usage_in(self._pool, usage, self._clock(), hold_id)

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
        return [UsageSum(feature=r[0], model=r[1], image_size=r[2] or None, **usage_sums(r[3:])) for r in rows]

    async def usage_by_user(self, guild_id: int, since: datetime) -> list[UsageSum]:
        """Use in a guild from the UTC day of `since` on, per user, feature, model and image size."""
        rows = await self._pool.fetch(
            f"SELECT user_id, feature, model, image_size, {ROLLUP_SUMS} FROM usage_daily"
            " WHERE guild_id = $1 AND day >= $2 AND user_id != 0 GROUP BY user_id, feature, model, image_size"
            " ORDER BY user_id, feature, model, image_size",
            guild_id,
            utc_day(since),
        )
        return [
            UsageSum(user_id=r[0], feature=r[1], model=r[2], image_size=r[3] or None, **usage_sums(r[4:])) for r in rows
        ]

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


async def record_usage_in(connection: Any, usage: UsageRecord, moment: datetime, hold_id: int | None) -> None:
    """The ledger row, the roll-ups and the hold's end in one statement, through a pool or a connection."""
    await connection.execute(RECORD_USAGE, *usage_parameters(usage, moment, hold_id))


def usage_parameters(usage: UsageRecord, moment: datetime, hold_id: int | None) -> tuple[object, ...]:
    """The parameters of USAGE_WRITES."""
    guild_key, user_key, _, _, size_key = rollup_keys(usage)
    spends = spend_rows(usage)
    return (
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
