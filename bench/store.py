"""Store latency at 100 stored turns and at 1,000,000 (10,000 channels x 100 turns), SQLite and PostgreSQL.

What it measures: through the store's own API (`open_store`), on random channels: appending a turn
(`add_turn`), loading a channel's window (`recent_turns(channel, 201)`, what the conversation engine reads
the first time a channel speaks after a start), and writing a whole answer with its usage
(`write_answer`, the turn's other transaction). The history is filled first, quickly, by bulk INSERT (SQLite)
or COPY (PostgreSQL) straight into the `turns` table with the columns the store writes, turns of all
channels interleaved as they arrive in a busy server (so one channel's turns are spread over the file);
then the tables are analyzed, as a running database's are.

How to read it: median and p95 per call in milliseconds; "x small" compares the 1,000,000-turn median with
the 100-turn one (the target: flat, close to 1x). Each window load returns 100 turns at both sizes. The file
was just written, so the operating system's cache holds it (a long-running server is in the same state
for its hot channels). The test PostgreSQL server (.ci/postgres) runs with fsync=off, so its commits are
cheaper than a production server's. The machine is shared: read medians; p95 shows the noise.

Run: python bench/store.py [--calls N] [--quick]; TEST_POSTGRES_URL adds the PostgreSQL rows.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import harness
from harness import median, ms, p95

from bot.store import AnswerWrite, NewTurn, Store, UsageRecord, open_store
from tests.databases import fresh_postgres_database

TURNS_PER_CHANNEL = 100
WINDOW = 201  # MAX_WINDOW_TURNS + 1, as bot/conversation/history.py reads it
GUILDS = 50
CONTENT = (
    "Could you explain how this works in a little more detail, with an example or two, and say what I "
    "should watch out for when I try it myself?"
)
COLUMNS = (
    "channel_id",
    "guild_id",
    "role",
    "author_id",
    "author_name",
    "content",
    "spoken",
    "tokens",
    "message_id",
    "reply_ids",
    "state",
    "created_at",
)
SQLITE_BATCH = 50_000


@dataclass(frozen=True)
class Size:
    """A history: this many channels of TURNS_PER_CHANNEL turns."""

    channels: int

    @property
    def turns(self) -> int:
        """Turns in all."""
        return self.channels * TURNS_PER_CHANNEL


def channel_id(number: int) -> int:
    """A snowflake-sized channel id."""
    return 10**17 + number


def rows(size: Size, *, as_text: bool) -> Iterator[tuple[object, ...]]:
    """The history's turns, all channels interleaved, oldest first; times as SQLite (text) or asyncpg keeps them."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(size.turns):
        number = index % size.channels
        user = index // size.channels % 2 == 0
        created = start + timedelta(seconds=index)
        yield (
            channel_id(number),
            10**16 + number % GUILDS,
            "user" if user else "assistant",
            10**15 + number if user else None,
            "Member" if user else "assistant",
            CONTENT,
            False,
            40,
            10**18 + index if user else None,
            "" if user else str(10**18 + index),
            "done",
            created.isoformat() if as_text else created,
        )


def fill_sqlite(path: Path, size: Size) -> None:
    """Bulk INSERT in a few transactions."""
    db = sqlite3.connect(path, isolation_level=None)
    insert = f"INSERT INTO turns ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    batch: list[tuple[object, ...]] = []
    for row in rows(size, as_text=True):
        batch.append(row)
        if len(batch) == SQLITE_BATCH:
            db.execute("BEGIN")
            db.executemany(insert, batch)
            db.execute("COMMIT")
            batch.clear()
    db.execute("BEGIN")
    db.executemany(insert, batch)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()


async def fill_postgres(url: str, size: Size) -> None:
    """COPY into the table."""
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table("turns", records=rows(size, as_text=False), columns=COLUMNS)
        await connection.execute("ANALYZE turns")
    finally:
        await connection.close()


async def timed(calls: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    """Seconds of each of `calls` calls, each on a random channel."""
    chooser = random.Random(7)
    seconds = []
    for _ in range(calls):
        number = chooser.randrange(1_000_000)
        started = time.perf_counter()
        await call(number)
        seconds.append(time.perf_counter() - started)
    return seconds


async def measure(store: Store, size: Size, calls: int) -> dict[str, list[float]]:
    """Loads, appends and answer writes on random channels of the history."""

    def channel(number: int) -> int:
        return channel_id(number % size.channels)

    async def load(number: int) -> None:
        turns = await store.recent_turns(channel(number), WINDOW)
        assert len(turns) >= TURNS_PER_CHANNEL, "the window read fewer turns than were stored"

    async def append(number: int) -> None:
        await store.add_turn(channel(number), NewTurn("user", 42, "Member", CONTENT, tokens=40), guild_id=10**16)

    async def answer(number: int) -> None:
        usage = UsageRecord("chat", "gpt-5-mini", 42, 10**16, channel(number), input_tokens=4000, output_tokens=40)
        write = AnswerWrite(channel(number), 10**16, question_id=1, text=CONTENT, tokens=40, usage=usage)
        await store.write_answer(write)

    await timed(min(calls, 50), load)  # warm the connections
    return {
        "window load": await timed(calls, load),
        "append": await timed(calls, append),
        "answer write": await timed(calls, answer),
    }


async def run(backend: str, size: Size, calls: int) -> tuple[dict[str, list[float]], float]:
    """Fill a fresh database of `backend` to `size` and measure it; the figures and the fill's seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        path = Path(folder) / "bot.db"
        context: AbstractAsyncContextManager[str] = (
            fresh_postgres_database() if backend == "PostgreSQL" else nullcontext(f"sqlite:///{path}")
        )
        async with context as url:
            store = await open_store(url)  # creates the schema
            await store.close()
            started = time.monotonic()
            if backend == "PostgreSQL":
                await fill_postgres(url, size)
            else:
                await asyncio.to_thread(fill_sqlite, path, size)
            filled = time.monotonic() - started
            store = await open_store(url)
            try:
                return await measure(store, size, calls), filled
            finally:
                await store.close()


async def main(sizes: tuple[Size, Size], calls: int) -> None:
    """Both sizes on each backend, then the table."""
    backends = ["SQLite"] + (["PostgreSQL"] if harness.postgres_url() else [])
    table_rows = []
    fills = []
    for backend in backends:
        small, _ = await run(backend, sizes[0], calls)
        large, filled = await run(backend, sizes[1], calls)
        fills.append(f"{backend} {filled:.0f} s")
        for operation, seconds in small.items():
            ratio = median(large[operation]) / median(seconds)
            table_rows.append(
                [
                    f"{backend} {operation}",
                    ms(median(seconds)),
                    ms(p95(seconds)),
                    ms(median(large[operation])),
                    ms(p95(large[operation])),
                    f"{ratio:.2f}x",
                ]
            )
    small_label, large_label = f"{sizes[0].turns:,} turns", f"{sizes[1].turns:,} turns"
    header = ["store call (ms)", f"{small_label} median", "p95", f"{large_label} median", "p95", "x small"]
    print(f"store: {calls} calls each on random channels; {harness.machine_note()}")
    print()
    print(harness.table(header, table_rows))
    print()
    print(f"Filling {sizes[1].turns:,} turns took: {', '.join(fills)}")
    if not harness.postgres_url():
        print(harness.skipped_postgres())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind (default 1000)")
    parser.add_argument("--quick", action="store_true", help="10,000 turns and 50 calls: checks that it runs")
    options = parser.parse_args()
    if options.quick:
        asyncio.run(main((Size(1), Size(100)), 50))
    else:
        asyncio.run(main((Size(1), Size(10_000)), options.calls))
