"""The PostgreSQL store's conversations: turns, answers as they are written, their pictures, forgetting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from bot.store.base import MAX_PICTURES_PER_CHANNEL, AnswerWrite, NewTurn, Picture, Turn, TurnState, UsageRecord
from bot.store.postgres_accounting import USAGE_WRITES, record_usage_in, usage_parameters
from bot.store.schema import pictures_of, pictures_text, reply_ids_of, reply_ids_text

TURN_COLUMNS_WRITTEN = (
    "channel_id, guild_id, role, author_id, author_name, content, spoken, tokens, message_id, reply_ids, state,"
    " created_at, pictures"
)
TURN_INSERTED = (
    f"INSERT INTO turns ({TURN_COLUMNS_WRITTEN})"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id"
)
ANSWER_UPDATED = "UPDATE turns SET content = $1, tokens = $2, reply_ids = $3, state = 'streaming' WHERE id = $4"
# An answer made whole, its question marked answered and the call's usage, as one statement: the usage's
# parameters ($1-$20), the question's id ($21), then the answer's row (inserted) or its text and id (updated).
_ANSWERED = f"WITH {USAGE_WRITES}, answered AS (UPDATE turns SET state = 'done' WHERE id = $21)"
WHOLE_ANSWER_INSERTED = (
    f"{_ANSWERED}, answer AS (INSERT INTO turns ({TURN_COLUMNS_WRITTEN})"
    " VALUES ($22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34) RETURNING id) SELECT id FROM answer"
)
WHOLE_ANSWER_UPDATED = (
    f"{_ANSWERED} UPDATE turns SET content = $22, tokens = $23, reply_ids = $24, state = 'done' WHERE id = $25"
)


class PostgresTurns:
    """Turns and answers, through the pool."""

    _pool: asyncpg.Pool
    _clock: Callable[[], datetime]

    async def add_turn(self, channel_id: int, turn: NewTurn, *, guild_id: int | None = None) -> Turn:
        """Append a turn to a channel's conversation (one statement, unless it brings pictures)."""
        created_at = self._clock()
        if turn.pictures:
            async with self._pool.acquire() as connection, connection.transaction():
                turn_id = await _insert_turn(connection, channel_id, guild_id, turn, (), created_at)
        else:
            turn_id = await _insert_turn(self._pool, channel_id, guild_id, turn, (), created_at)
        named = tuple(Picture(p.filename, p.mime_type, p.tokens) for p in turn.pictures)  # the data stays stored
        return Turn(
            **{**vars(turn), "pictures": named},
            id=turn_id,
            created_at=created_at,
            channel_id=channel_id,
            guild_id=guild_id,
        )

    async def write_answer(self, answer: AnswerWrite) -> int:
        """Store (or update) an answer, and once it is whole its question's state and usage: one statement."""
        moment = self._clock()
        reply_ids = reply_ids_text(answer.reply_ids)
        state: TurnState = "streaming" if answer.usage is None else "done"
        if answer.answer_id is None:
            turn = NewTurn("assistant", None, "assistant", answer.text, tokens=answer.tokens, state=state)
            row = _turn_row(answer.channel_id, answer.guild_id, turn, answer.reply_ids, moment)
            if answer.usage is None:
                return int(await self._pool.fetchval(TURN_INSERTED, *row))
            whole = (*usage_parameters(answer.usage, moment, answer.hold_id), answer.question_id)
            return int(await self._pool.fetchval(WHOLE_ANSWER_INSERTED, *whole, *row))
        changed = (answer.text, answer.tokens, reply_ids, answer.answer_id)
        if answer.usage is None:
            await self._pool.execute(ANSWER_UPDATED, *changed)
        else:
            whole = (*usage_parameters(answer.usage, moment, answer.hold_id), answer.question_id)
            await self._pool.execute(WHOLE_ANSWER_UPDATED, *whole, *changed)
        return answer.answer_id

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
                await record_usage_in(connection, usage, moment, hold_id)
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

    async def clear_turns(self, channel_id: int) -> int:
        """Forget a channel's turns; return how many were forgotten."""
        status = await self._pool.execute("DELETE FROM turns WHERE channel_id = $1", channel_id)
        return int(status.split()[-1])

    # -- channels, guilds, meta ------------------------------------------------------------------------


TURN_COLUMNS = (
    "id, channel_id, guild_id, role, author_id, author_name, content, spoken, tokens, message_id, reply_ids, state,"
    " created_at, pictures"
)


def _turn(row: Any) -> Turn:
    return Turn(**{**dict(row), "reply_ids": reply_ids_of(row["reply_ids"]), "pictures": pictures_of(row["pictures"])})


def _turn_row(
    channel_id: int, guild_id: int | None, turn: NewTurn, reply_ids: tuple[int, ...], created_at: datetime
) -> tuple[object, ...]:
    """A turn's columns, in TURN_INSERTED's order."""
    return (
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


async def _insert_turn(
    connection: Any,
    channel_id: int,
    guild_id: int | None,
    turn: NewTurn,
    reply_ids: tuple[int, ...],
    created_at: datetime,
) -> int:
    """Insert a turn through a pool or a connection (inside a transaction when it has pictures); its id."""
    row = _turn_row(channel_id, guild_id, turn, reply_ids, created_at)
    turn_id = await connection.fetchval(TURN_INSERTED, *row)
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
