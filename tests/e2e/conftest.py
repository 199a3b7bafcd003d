"""Fixtures for end-to-end tests: the Discord emulator, with discord.py pointed at it."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import discord
import pytest
import yarl

from bot.bot import Bot
from bot.config import Settings
from tests.fakes.discord_emulator import DiscordEmulator
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.openapi import SPECS_DIR, OpenApiValidator

DISCORD_SPEC = SPECS_DIR / "discord-openapi.json"


@pytest.fixture(scope="session")
def discord_spec() -> OpenApiValidator | None:
    """The Discord OpenAPI validator, or None (with a visible note) when the spec is absent."""
    if not DISCORD_SPEC.exists():
        warnings.warn(f"{DISCORD_SPEC} is absent: the Discord emulator will not validate request bodies", stacklevel=1)
        return None
    return OpenApiValidator.load(DISCORD_SPEC, integer_snowflakes=True)


@pytest.fixture
async def emulator(
    discord_spec: OpenApiValidator | None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DiscordEmulator]:
    """A running emulator with discord.py's REST base and gateway URL pointed at it (restored afterwards)."""
    emu = DiscordEmulator(validator=discord_spec)
    await emu.start()
    # Route.BASE is read when a Route is built; the gateway URL when a websocket opens (resumes use READY's URL).
    monkeypatch.setattr(discord.http.Route, "BASE", emu.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(emu.gateway_url))
    try:
        yield emu
    finally:
        await emu.stop()
    problems = [f"invalid request: {v}" for v in emu.violations] + [f"emulator fault: {e}" for e in emu.errors]
    if problems:
        pytest.fail("the Discord emulator saw problems:\n" + "\n".join(problems), pytrace=False)


BotRunner = Callable[..., AbstractAsyncContextManager[Bot]]


@pytest.fixture
def bot_env(emulator: DiscordEmulator, fake_openai: FakeOpenAI, database_url: str) -> dict[str, str]:
    """The environment of a bot wired to the emulator, the fake OpenAI server and a fresh database (each
    end-to-end test runs once on SQLite and once on PostgreSQL)."""
    return {
        "DISCORD_TOKEN": emulator.token,
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "DATABASE_URL": database_url,
        "DISCORD_GUILD_ID": str(emulator.guild_id),
        "OPENAI_TIMEOUT": "2",
    }


@pytest.fixture
def run_bot(emulator: DiscordEmulator, bot_env: dict[str, str]) -> BotRunner:
    """Start the real Bot (settings from bot_env plus overrides) until the block ends; call again to restart it."""

    @asynccontextmanager
    async def run(**overrides: str) -> AsyncIterator[Bot]:
        bot = Bot(Settings.from_env({**bot_env, **overrides}))
        async with emulator.run_client(bot):
            yield bot

    return run
