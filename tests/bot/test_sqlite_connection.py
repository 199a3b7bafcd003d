"""The SQLite connection's quick transactions: on the event loop while its thread is idle, never waiting there
for a lock or the disk, and never ahead of work already handed to the thread."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.store import sqlite_connection
from bot.store.sqlite_connection import Connection, connect, transaction

SCHEMA = "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT, thread INTEGER)"


async def opened(path: Path) -> Connection:
    connection = Connection("test-writer", quick=True)
    await connection.open(lambda: connect(str(path)))
    await connection.run(lambda db: db.execute(SCHEMA))
    return connection


def insert(text: str) -> Callable[[sqlite3.Connection], int | None]:
    """A transaction that adds a note saying which thread wrote it."""
    return transaction(
        lambda db: db.execute("INSERT INTO notes (text, thread) VALUES (?, ?)", (text, threading.get_ident())).lastrowid
    )


def notes(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT text, thread FROM notes ORDER BY id").fetchall()


async def test_a_quick_transaction_runs_on_the_event_loop_while_the_thread_is_idle(tmp_path: Path) -> None:
    connection = await opened(tmp_path / "bot.db")
    try:
        await connection.run_quick(insert("quick"))
        await connection.run(insert("on the thread"))
    finally:
        await connection.close()
    (quick, quick_thread), (slow, slow_thread) = notes(tmp_path / "bot.db")
    assert (quick, slow) == ("quick", "on the thread")
    assert quick_thread == threading.get_ident()
    assert slow_thread != threading.get_ident()


async def test_a_locked_database_sends_it_to_the_thread_and_the_loop_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    connection = await opened(path)
    other = sqlite3.connect(path, isolation_level=None)  # another process's connection, as far as locks go
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        writing = asyncio.create_task(connection.run_quick(insert("waited")))
        ticks = 0
        while time.monotonic() - started < 0.3:  # the loop keeps running while the write waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not writing.done()
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
    finally:
        other.close()
        await connection.close()
    assert ticks >= 10
    [(text, thread)] = notes(path)
    assert text == "waited" and thread != threading.get_ident()


async def test_a_quick_transaction_never_goes_ahead_of_work_on_the_thread(tmp_path: Path) -> None:
    connection = await opened(tmp_path / "bot.db")

    def slow(db: sqlite3.Connection) -> None:
        time.sleep(0.1)
        insert("first")(db)

    try:
        first = asyncio.create_task(connection.run(slow))
        await asyncio.sleep(0)  # handed to the thread
        await connection.run_quick(insert("second"))
        await first
    finally:
        await connection.close()
    assert [text for text, _ in notes(tmp_path / "bot.db")] == ["first", "second"]


def notes_in_the_file_alone(path: Path, copy: Path) -> int:
    """How many notes the database file holds by itself, without its write-ahead log."""
    shutil.copy(path, copy)
    try:
        return len(notes(copy))
    except sqlite3.OperationalError:  # not even the table has reached it
        return 0
    finally:
        copy.unlink()


async def test_quick_writes_reach_the_database_file_by_checkpoints_on_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connection, "CHECKPOINT_EVERY", 10)
    path, copy = tmp_path / "bot.db", tmp_path / "alone.db"
    connection = await opened(path)  # the schema: the first piece of work
    try:
        for number in range(3):
            await connection.run_quick(insert(f"note {number}"))
        assert notes_in_the_file_alone(path, copy) == 0  # SQLite's own checkpoints are off on this connection
        for number in range(3, 9):
            await connection.run_quick(insert(f"note {number}"))
        await connection.run(lambda db: None)  # after the checkpoint the tenth piece of work handed to the thread
        assert notes_in_the_file_alone(path, copy) == 9
        assert await connection.run(lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 0
    finally:
        await connection.close()
