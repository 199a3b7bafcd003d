"""SQLite connections that each live on a thread of their own, and the transactions run on them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")
BUSY_TIMEOUT_MS = 5000


class Connection:
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
