"""The SQLite store's conversations: turns, answers as they are written, their pictures, forgetting."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.store.base import MAX_PICTURES_PER_CHANNEL, AnswerWrite, NewTurn, Picture, Turn, TurnState, UsageRecord
from bot.store.schema import pictures_of, pictures_text, reply_ids_of, reply_ids_text, timestamp
from bot.store.sqlite_accounting import record_usage_in
from bot.store.sqlite_connection import Connection, transaction


class SqliteTurns:
    """Turns and answers, stored through the writer connection."""

    _writer: Connection
    _clock: Callable[[], datetime]

    async def add_turn(self, channel_id: int, turn: NewTurn, *, guild_id: int | None = None) -> Turn:
        """Append a turn to a channel's conversation."""
        created_at = self._clock()
        insert = transaction(lambda db: _insert_turn(db, channel_id, guild_id, turn, (), created_at))
        # A turn with pictures writes their data too: too much for the event loop.
        turn_id = await (self._writer.run(insert) if turn.pictures else self._writer.run_quick(insert))
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
                record_usage_in(db, answer.usage, moment, answer.hold_id)
            return answer_id

        return await self._writer.run_quick(transaction(write))

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
                record_usage_in(db, usage, moment, hold_id)
            elif hold_id is not None:
                db.execute("DELETE FROM holds WHERE id = ?", (hold_id,))

        await self._writer.run_quick(transaction(abandon))

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

        return await self._writer.run(transaction(forget)) if channel_ids else 0

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

        return await self._writer.run(transaction(forget))

    async def clear_turns(self, channel_id: int) -> int:
        """Forget a channel's turns; return how many were forgotten."""
        return await self._writer.run(
            lambda db: db.execute("DELETE FROM turns WHERE channel_id = ?", (channel_id,)).rowcount
        )

    # -- channels, guilds, meta ------------------------------------------------------------------------


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
