"""Where conversations, channel settings and usage are kept: a small interface and its backends.

Cogs talk only to `Store`; SQLite is the embedded default, and another backend (PostgreSQL) can
satisfy the same protocol without touching them.
"""

from __future__ import annotations

from bot.store.base import ChannelRecord, NewTurn, Store, Turn, UsageRecord, UsageSum, UsageTotals
from bot.store.sqlite import OutdatedSchema, SqliteStore


async def open_store(database_url: str) -> Store:
    """Open the backend named by DATABASE_URL (only sqlite:/// for now), migrated to the current schema."""
    if database_url.startswith("sqlite:///"):
        return await SqliteStore.open(database_url.removeprefix("sqlite:///"))
    raise ValueError(f"unsupported DATABASE_URL scheme: {database_url.split(':', 1)[0]}")


__all__ = [
    "ChannelRecord",
    "NewTurn",
    "OutdatedSchema",
    "SqliteStore",
    "Store",
    "Turn",
    "UsageRecord",
    "UsageSum",
    "UsageTotals",
    "open_store",
]
