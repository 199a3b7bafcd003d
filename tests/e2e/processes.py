"""The bot as a separate process (`python -m bot` through the launcher) against the emulator and the fake API."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.fakes.discord_emulator import DiscordEmulator
from tests.fakes.openai_server import FakeOpenAI

LAUNCHER = Path(__file__).with_name("bot_process.py")


async def run_to_exit(*arguments: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run the launcher in `cwd` until it exits by itself; its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(LAUNCHER), *arguments, env={**os.environ, **env}, cwd=cwd, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


class BotProcess:
    """A `python -m bot` process talking to the emulator and the fake OpenAI server."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def stop(self, signum: int) -> tuple[int, str]:
        """Send a signal; return the exit code and what the process wrote to stderr."""
        self.process.send_signal(signum)
        assert self.process.stderr is not None
        stderr = await asyncio.wait_for(self.process.stderr.read(), 10)
        return await asyncio.wait_for(self.process.wait(), 10), stderr.decode()


@asynccontextmanager
async def bot_process(
    emulator: DiscordEmulator, env: dict[str, str], cwd: Path, *, shards: int = 1
) -> AsyncIterator[BotProcess]:
    """Start the process in `cwd` and wait until its `shards` have connected and its commands are synced
    (to DISCORD_GUILD_ID, or globally when it is unset)."""
    identifies = len(emulator.identifies)
    guild_id = int(env["DISCORD_GUILD_ID"]) if env.get("DISCORD_GUILD_ID") else None
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LAUNCHER),
        emulator.api_base,
        emulator.gateway_url,
        env={**os.environ, **env},
        cwd=cwd,  # never the project folder, whose .env (a developer's own) the entry point would read
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await emulator.wait_for(
            lambda: len(emulator.identifies) >= identifies + shards and emulator.commands(guild_id),
            timeout=20 + 5 * shards,  # shards of one bucket connect 5 s apart
            what="the bot process to connect and sync its commands",
        )
        await asyncio.sleep(2.5)  # discord.py holds READY back for 2 s after the last GUILD_CREATE
        yield BotProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def process_env(emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": emulator.token,
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "DISCORD_GUILD_ID": str(emulator.guild_id),
        "PYTHONUNBUFFERED": "1",
    }
