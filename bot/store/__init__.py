"""Where conversations, channel settings, limits and usage are kept: a small interface and its backends.

Cogs talk only to `Store`; SQLite is the embedded default, PostgreSQL serves several processes at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.store.base import (
    RATE_WINDOW_SECONDS,
    AnswerWrite,
    Cap,
    ChannelRecord,
    NewTurn,
    Picture,
    Refusal,
    Reservation,
    Reserved,
    Scope,
    Store,
    Turn,
    TurnState,
    UsageFeature,
    UsageRecord,
    UsageSum,
    UsageTotals,
    utc_now,
)
from bot.store.postgres import PostgresStore
from bot.store.schema import OutdatedSchema
from bot.store.sqlite import SqliteStore

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(database_url: str) -> bool:
    """Whether DATABASE_URL names a PostgreSQL database."""
    return database_url.startswith(POSTGRES_SCHEMES)


async def open_store(database_url: str, *, pool_size: int = 10, clock: Callable[[], datetime] = utc_now) -> Store:
    """Open the backend named by DATABASE_URL, migrated to the current schema."""
    if database_url.startswith(SQLITE_PREFIX):
        return await SqliteStore.open(database_url.removeprefix(SQLITE_PREFIX), clock=clock)
    if is_postgres_url(database_url):
        return await PostgresStore.open(database_url, pool_size=pool_size, clock=clock)
    raise ValueError(f"unsupported DATABASE_URL scheme: {database_url.split(':', 1)[0]}")


__all__ = [
    "RATE_WINDOW_SECONDS",
    "AnswerWrite",
    "Cap",
    "ChannelRecord",
    "NewTurn",
    "OutdatedSchema",
    "Picture",
    "PostgresStore",
    "Refusal",
    "Reservation",
    "Reserved",
    "Scope",
    "SqliteStore",
    "Store",
    "Turn",
    "TurnState",
    "UsageFeature",
    "UsageRecord",
    "UsageSum",
    "UsageTotals",
    "is_postgres_url",
    "open_store",
    "utc_now",
]
