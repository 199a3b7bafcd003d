"""Bot-side cost of one chat turn, at 10, 1,000 and 100,000 stored turns in the channel.

The API answers with zero latency (a canned stream) and Discord is an in-memory channel, so what is
timed is the bot's own work: storing the user's turn, reading and fitting the window, streaming the
answer into messages, storing the answer and its usage. Run: python bench/chat_turn.py
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from bot.api import ChatRequest, ChatResult, Usage
from bot.bot import Bot
from bot.config import Settings
from bot.store import open_store
from cogs.chat import Chat, UserTurn

HISTORY_SIZES = (10, 1_000, 100_000)
TURNS_MEASURED = 200
CHANNEL_ID = 1
ANSWER = "Here is a short answer of a few sentences, about the size of a typical reply. " * 4


class ZeroLatencyApi:
    """Streams a canned answer in 8 pieces without any I/O."""

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[tuple[str, ChatResult]]:
        result = ChatResult(model=request.model)
        piece = len(ANSWER) // 8 + 1
        for start in range(0, len(ANSWER), piece):
            result.text += ANSWER[start : start + piece]
            yield ANSWER[start : start + piece], result
        result.finish_reason = "stop"
        result.usage = Usage(100, 50)
        yield "", result


class MemoryMessage:
    """A sent message that can be edited."""

    def __init__(self, content: str) -> None:
        self.content = content

    async def edit(self, *, content: str) -> MemoryMessage:
        self.content = content
        return self


class MemoryChannel:
    """A channel that keeps what is sent to it in memory."""

    id = CHANNEL_ID

    def __init__(self) -> None:
        self.sent: list[MemoryMessage] = []

    async def send(self, content: str, **_: Any) -> MemoryMessage:
        self.sent.append(MemoryMessage(content))
        return self.sent[-1]

    @contextlib.asynccontextmanager
    async def typing(self) -> AsyncIterator[None]:
        yield


def seed(path: Path, turns: int) -> None:
    """Fill the channel's history (and another channel's, so the index matters) with plain SQL."""
    with sqlite3.connect(path) as db:
        rows = [
            (channel, "user" if i % 2 == 0 else "assistant", 7, "Ann", f"turn {i} " + "words " * 30, "2026-01-01")
            for i in range(turns)
            for channel in (CHANNEL_ID, 2)
        ]
        db.executemany(
            "INSERT INTO turns (channel_id, role, author_id, author_name, content, created_at) VALUES (?,?,?,?,?,?)",
            rows,
        )


async def measure(history: int) -> list[float]:
    """Time TURNS_MEASURED turns in a channel holding `history` turns; milliseconds each."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        store = await open_store(url)  # creates the schema
        await store.close()
        seed(Path(folder) / "bench.db", history)
        bot = Bot(Settings.from_env({"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", "DATABASE_URL": url}))
        await bot.open_services()
        bot.api = ZeroLatencyApi()  # type: ignore[assignment]
        chat = Chat(bot)
        chat.throttle.interval = 0  # measure the edits too, not the throttle skipping them
        channel = MemoryChannel()
        timings = []
        for i in range(TURNS_MEASURED):
            start = time.perf_counter()
            await chat.answer(UserTurn(channel, 7, "Ann", f"question {i}", None))  # type: ignore[arg-type]
            timings.append((time.perf_counter() - start) * 1000)
        assert channel.sent[-1].content.startswith(ANSWER[:50]), "the answer did not arrive"
        await bot.close()
        return timings


async def main() -> None:
    print(f"{'stored turns':>12}  {'median ms':>9}  {'p95 ms':>7}")
    for history in HISTORY_SIZES:
        timings = sorted(await measure(history))
        p95 = timings[int(len(timings) * 0.95) - 1]
        print(f"{history:>12,}  {statistics.median(timings):>9.2f}  {p95:>7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
