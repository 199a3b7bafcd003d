"""Fixtures for end-to-end tests: the Discord emulator, with discord.py pointed at it."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator

import discord
import pytest
import yarl

from tests.fakes.discord_emulator import DiscordEmulator
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
