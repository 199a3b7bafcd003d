"""The doctor's look at the bot's database: read-only, whichever backend."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg

from bot.config import Settings
from bot.doctor.report import Report
from bot.store import OutdatedSchema, PostgresStore, SqliteStore, Store, is_postgres_url
from bot.urls import url_host

DATABASE_TIMEOUT_SECONDS = 20.0


async def open_inspection_store(settings: Settings, report: Report) -> Store:
    """The bot's database, read-only, for the per-server settings; else an empty one in memory (said why)."""
    if is_postgres_url(settings.database_url):
        store = await _open_postgres(settings, report)
    else:
        store = await _open_sqlite(settings, report)
    return store if store is not None else await SqliteStore.open(":memory:")


async def _open_sqlite(settings: Settings, report: Report) -> Store | None:
    path = settings.database_path
    report.section(f"Database ({path})")
    if not path.exists():
        report.note("It does not exist yet: the bot creates it at its first start.")
        return None
    try:
        store = await SqliteStore.open_read_only(path)
    except OutdatedSchema as error:
        _report_schema(error, report)
    except (sqlite3.Error, OSError) as error:
        report.problem(
            f"It cannot be read as a database ({error}).",
            "Restore it from a backup, or point DATABASE_URL at a new file (the history in it is lost).",
        )
    else:
        report.ok("Readable, with the current schema.")
        return store
    return None


async def _open_postgres(settings: Settings, report: Report) -> Store | None:
    report.section(f"Database ({settings.database_display})")
    report.waiting(
        f"Connecting to PostgreSQL at {url_host(settings.database_url)} (up to {DATABASE_TIMEOUT_SECONDS:.0f} s)"
    )
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
            store = await PostgresStore.open(settings.database_url, pool_size=1, migrate=False)
    except OutdatedSchema as error:
        _report_schema(error, report)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        detail = str(error).replace(settings.database_url, settings.database_display) or type(error).__name__
        report.problem(
            f"The database cannot be reached or read ({detail}).",
            "check DATABASE_URL (host, port, user, password, database name, sslmode) and that the server is up.",
        )
    else:
        report.ok("Reachable and readable, with the current schema.")
        return store
    return None


def _report_schema(error: OutdatedSchema, report: Report) -> None:
    if error.found < error.expected:
        report.note(f"It has {error}: the bot migrates it at its next start.")
    else:
        report.problem(
            f"It has {error}, written by a newer version of the bot.",
            "Run the newer version, or point DATABASE_URL at another database.",
        )
