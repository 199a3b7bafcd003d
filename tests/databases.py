"""Databases for tests: an SQLite file, or a fresh database on the PostgreSQL server named by TEST_POSTGRES_URL.

`.ci/run` starts a server and sets TEST_POSTGRES_URL. Run locally without one, the PostgreSQL half of the
suite skips with a reason; in CI (CI=true) a missing server fails the run instead, so it cannot pass by
skipping.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bot.store import is_postgres_url

BACKENDS = ("sqlite", "postgres")
SERVER_VARIABLE = "TEST_POSTGRES_URL"


def postgres_server_url() -> str:
    """The test server's URL; skips the test (fails it in CI) when there is none."""
    url = os.environ.get(SERVER_VARIABLE)
    if url:
        return url
    reason = f"{SERVER_VARIABLE} is not set: no PostgreSQL server to test against (.ci/run starts one)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards; yields its URL."""
    server = postgres_server_url()
    name = f"bot_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(server)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def database_url_for(backend: str, folder: Path) -> AsyncIterator[str]:
    """A DATABASE_URL of the given backend for one test: a file in `folder`, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bot.db'}"
        return
    async with fresh_postgres_database() as url:
        yield url


async def query(database_url: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of a read-only query (SQL both backends read alike) straight from the database, as an inspector would."""
    if is_postgres_url(database_url):
        connection = await asyncpg.connect(database_url)
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as database:
        return database.execute(sql).fetchall()
