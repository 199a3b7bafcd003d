"""The PostgreSQL store's conversations: turns, answers as they are written, their pictures, forgetting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from bot.store.base import MAX_PICTURES_PER_CHANNEL, AnswerWrite, NewTurn, Picture, Turn, TurnState, UsageRecord
from bot.store.postgres_accounting import record_usage_in
from bot.store.schema import pictures_of, pictures_text, reply_ids_of, reply_ids_text


class PostgresTurns:
    """Turns and answers, through the pool."""

    _pool: asyncpg.Pool
    _clock: Callable[[], datetime]

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
                await record_usage_in(connection, answer.usage, moment, answer.hold_id)
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
