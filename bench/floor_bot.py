"""The floor: the least a discord.py bot can do per message, to measure the real bot beside it.

Usage: python bench/floor_bot.py API_BASE GATEWAY_URL, with DISCORD_TOKEN and FLOOR_DATABASE (an SQLite file)
in the environment; FLOOR_GUILD_ID syncs its two commands there (unset: globally); SHARD_COUNT and SHARD_IDS
as the real bot reads them; a message containing "[hold]" is answered FLOOR_HOLD_SECONDS (default 2) later,
so that many answers are in flight at once.

It connects as the real bot does (commands.AutoShardedBot, the same intents, no mentions allowed) and on each
message from a person stores it (one INSERT into an SQLite file in WAL mode with synchronous=NORMAL, on a
worker thread, as bot/store/sqlite.py does) and answers with one `channel.send` (a reply when it was
mentioned). `/usage` defers and edits its answer once; `/settings show` answers at once: the floor of the
real bot's two report commands.

With FLOOR_OPENAI_URL (and OPENAI_API_KEY) set, the answer is what a bare bot calling the API would send:
the streamed chat completion of that message alone, read with aiohttp (discord.py's own HTTP client), so
the cost of the call itself can be told apart from the real bot's work around it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The store's own connection, so the pragmas are the same (WAL, synchronous=NORMAL, busy timeout).
from bot.store.sqlite_connection import connect

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, channel_id INTEGER, author_id INTEGER, content TEXT)"
)

HOLD = "[hold]"
FLOOR_MODEL = "gpt-4o-mini"


class Floor(commands.AutoShardedBot):
    """Stores each message and answers it with one send."""

    def __init__(self, database: str, guild_id: int | None, hold_seconds: float) -> None:
        shards: dict[str, object] = {}
        if os.environ.get("SHARD_COUNT"):
            shards["shard_count"] = int(os.environ["SHARD_COUNT"])
        if os.environ.get("SHARD_IDS"):
            shards["shard_ids"] = [int(part) for part in os.environ["SHARD_IDS"].split(",")]
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **shards,  # type: ignore[arg-type]
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floor-sqlite")
        self._database_path = database
        self._db: sqlite3.Connection | None = None
        self._guild_id = guild_id
        self._hold_seconds = hold_seconds
        self._api_url = os.environ.get("FLOOR_OPENAI_URL")
        self._http: aiohttp.ClientSession | None = None

    async def setup_hook(self) -> None:
        """Open the database on its thread and register the two commands."""
        loop = asyncio.get_running_loop()
        self._db = await loop.run_in_executor(self._executor, connect, self._database_path)
        if self._api_url:
            self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"})
        await loop.run_in_executor(self._executor, self._db.execute, SCHEMA)
        self.tree.add_command(usage)
        self.tree.add_command(settings)
        if self._guild_id is not None:
            guild = discord.Object(id=self._guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        elif os.environ.get("SHARD_IDS", "0").split(",")[0] == "0":
            await self.tree.sync()

    async def on_message(self, message: discord.Message, /) -> None:
        """Store the message, then answer it."""
        if message.author.bot:
            return
        assert self._db is not None
        row = (message.id, message.channel.id, message.author.id, message.content)
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._db.execute, "INSERT INTO messages VALUES (?, ?, ?, ?)", row
        )
        if HOLD in message.content:
            await asyncio.sleep(self._hold_seconds)
        text = f"Echo: {message.author.display_name}: {message.content}"[:2000]
        if self._http is not None:
            text = (await self._ask(message.content))[:2000]
        if self.user is not None and self.user in message.mentions:
            await message.channel.send(text, reference=message.to_reference(fail_if_not_exists=False))
        else:
            await message.channel.send(text)

    async def _ask(self, content: str) -> str:
        """The streamed chat completion of `content` alone: its text, read from the Server-Sent Events."""
        assert self._http is not None and self._api_url is not None
        body = {
            "model": FLOOR_MODEL,
            "messages": [{"role": "user", "content": content}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        text = ""
        async with self._http.post(f"{self._api_url}/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if line.startswith(b"data: {"):
                    text += "".join(choice["delta"].get("content") or "" for choice in json.loads(line[6:])["choices"])
        return text

    async def close(self) -> None:
        """Log out, then close the database and the API session."""
        await super().close()
        if self._http is not None:
            await self._http.close()
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown()


@app_commands.command(name="usage", description="The floor of /usage: defer, then one edit.")
async def usage(interaction: discord.Interaction) -> None:
    """Defer privately, then answer with a fixed text."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    await interaction.edit_original_response(content="**Your use today**: nothing measured (floor).")


settings = app_commands.Group(name="settings", description="The floor of /settings.")


@settings.command(name="show", description="The floor of /settings show: one answer.")
async def settings_show(interaction: discord.Interaction) -> None:
    """Answer privately at once."""
    await interaction.response.send_message("**This server**: nothing set (floor).", ephemeral=True)


def main() -> None:
    """Point discord.py at the emulator, as tests/e2e/bot_process.py does, and run until SIGTERM."""
    api_base, gateway_url = sys.argv[1:3]
    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    guild = os.environ.get("FLOOR_GUILD_ID")
    bot = Floor(
        os.environ["FLOOR_DATABASE"], int(guild) if guild else None, float(os.environ.get("FLOOR_HOLD_SECONDS", "2"))
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        runner = asyncio.create_task(bot.start(os.environ["DISCORD_TOKEN"]))
        await asyncio.wait({runner, asyncio.create_task(stopping.wait())}, return_when=asyncio.FIRST_COMPLETED)
        await bot.close()
        if runner.done():
            runner.result()

    asyncio.run(run())


if __name__ == "__main__":
    main()
