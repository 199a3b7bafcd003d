"""SQLite connections that each live on a thread of their own, and the transactions run on them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

R = TypeVar("R")
BUSY_TIMEOUT_MS = 5000
# Work between two checkpoints of a connection that runs quick transactions (it turns SQLite's own off): a few
# pages each, so about the 1,000 pages after which SQLite would checkpoint by itself.
CHECKPOINT_EVERY = 200


class Connection:
    """One sqlite3 connection, used by one thread at a time: its own, or the event loop's for `run_quick`."""

    def __init__(self, name: str, *, quick: bool = False) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.db: sqlite3.Connection | None = None
        self._quick = quick
        # The newest work handed to the thread: once it is done, so is all before it (one worker, in order).
        self._newest: Future[Any] | None = None
        self._since_checkpoint = 0

    async def run(self, work: Callable[[sqlite3.Connection], R]) -> R:
        """Run `work(connection)` on the connection's thread."""
        self._count_work()
        return await asyncio.wrap_future(self._on_thread(work))

    async def run_quick(self, work: Callable[[sqlite3.Connection], R]) -> R:
        """Run a small transaction (`transaction(...)`, a few rows) on the event loop if the connection's thread
        is idle, else on the thread after what it is doing.

        Handing a transaction of a few rows to the thread and back costs about eight times the transaction
        itself, and a chat turn writes three. On the loop it never waits: not for a lock (another process
        holding the database sends it, not yet begun, to the thread, which waits there), nor for the disk (the
        connection's checkpoints, which sync it, run on the thread).
        """
        if not self._quick or self.db is None or not self._thread_idle():
            return await self.run(work)
        result = _without_waiting(self.db, work)
        if isinstance(result, Locked):
            return await self.run(work)
        self._count_work()
        return result

    def _thread_idle(self) -> bool:
        return self._newest is None or self._newest.done()

    def _on_thread(self, work: Callable[[sqlite3.Connection], R]) -> Future[R]:
        self._newest = self._executor.submit(self._call, work)
        return self._newest

    def _count_work(self) -> None:
        """Checkpoint on the thread (nobody waits for it) after every CHECKPOINT_EVERY pieces of work."""
        if not self._quick:
            return
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            self._on_thread(lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)"))

    def _call(self, work: Callable[[sqlite3.Connection], R]) -> R:
        assert self.db is not None, "the store is closed"
        return work(self.db)

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Open the connection on its own thread."""

        def opened() -> sqlite3.Connection:
            db = connect()
            if self._quick:
                db.execute("PRAGMA wal_autocheckpoint=0")  # a commit on the loop must not sync the disk
            return db

        self.db = await asyncio.get_running_loop().run_in_executor(self._executor, opened)

    async def close(self) -> None:
        """Close the connection and end its thread."""
        if self.db is not None:
            await self.run(lambda db: db.close())
            self.db = None
        self._executor.shutdown(wait=True)


class Locked:
    """Another connection held the database, so a quick transaction did not begin."""


def _without_waiting(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], R]) -> R | Locked:
    """`work(db)` with no wait for a lock: Locked, having kept nothing, when the database is locked."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        return work(db)
    except sqlite3.OperationalError as error:
        # In WAL mode BUSY comes at BEGIN IMMEDIATE, before anything is written; a transaction that met it
        # later was rolled back by `transaction`.
        if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise
        return Locked()
    finally:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def transaction(work: Callable[[sqlite3.Connection], R]) -> Callable[[sqlite3.Connection], R]:
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


def connect(target: str, *, uri: bool = False, journal: bool = True) -> sqlite3.Connection:
    # isolation_level=None: autocommit, so every statement commits on its own unless a transaction is begun.
    db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys=ON")  # a turn's pictures go with it
    if journal:
        db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL may lose the last commits on power loss, never on a killed process.
        db.execute("PRAGMA synchronous=NORMAL")
    return db
