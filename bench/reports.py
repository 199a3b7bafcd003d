"""/usage and /settings show on a busy month's ledger (1,000,000 rows), and what they cost a turn elsewhere.

What it measures: the real `python -m bot` process on a database holding a month of busy use in one server:
1,000,000 ledger rows (~2,000 members, a few of them heavy, five models across chat, pictures, transcription
and moderation, 30 days) with the daily roll-ups the store keeps beside the ledger (usage_daily and
spend_daily, summed from the ledger as record_usage would have kept them). An admin runs `/usage` (the
server's totals, top users and cost, from a PRICES table) through the emulator; its time is from the
interaction's dispatch to its final edit. Meanwhile a member in another server sends mention turns one
after another; their overhead (question dispatched to answer shown) is compared with the same turns when
nothing else runs. Then the same for `/settings show`. The floor (bench/floor_bot.py, whose /usage defers
and edits once and whose /settings show answers at once, with no database work) runs the same in the same
run.

How to read it: "alone" is a command's latency with nothing else going on, "under turns" while the member's
turns run; "turn alone" and "turn during" are the member's turn overhead without and with the command running
back to back in the other server. Reports read the daily roll-ups, so their cost should not follow the
ledger's size; a turn elsewhere should not wait for a report. The rows are dated from the 1st of this month
on, so the month query covers all 30 days however early in the month it runs (the end-of-month worst case;
"today" then covers the days from today on, so early in a month the two "today" sums read nearly as many
roll-up rows as the month's: the second table times each store call on its own, to show where the time
goes). The machine is shared: read medians.

Run: python bench/reports.py [--rows N] [--quick]; TEST_POSTGRES_URL adds the PostgreSQL rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import harness
from harness import AnswerClock, Fakes, answered, median, ms, p95

from bot.access import start_of_day, start_of_month
from bot.config import Settings
from bot.store import open_store
from bot.usage import guild_report
from tests.databases import fresh_postgres_database, query
from tests.fakes.discord_emulator import DiscordEmulator, EmuMessage

MEMBERS = 2_000
DAYS = 30
# (feature, model, image size, share of the calls)
MIX = (
    ("chat", "gpt-5-mini", None, 0.70),
    ("chat", "gpt-5", None, 0.12),
    ("images", "gpt-image-2", "1024x1024", 0.05),
    ("audio", "gpt-transcribe", None, 0.05),
    ("moderation", "omni-moderation-latest", None, 0.08),
)
PRICES = {
    "gpt-5-mini": {"input": 0.25, "output": 2.0},
    "gpt-5": {"input": 1.25, "output": 10.0},
    "gpt-image-2": {"image": 0.04},
    "gpt-transcribe": {"audio_minute": 0.006},
}
LEDGER_COLUMNS = (
    "created_at",
    "feature",
    "model",
    "user_id",
    "guild_id",
    "channel_id",
    "input_tokens",
    "output_tokens",
    "images",
    "image_size",
    "audio_seconds",
    "speech_characters",
)
COMMANDS = (("usage", None), ("settings", {"show": {}}))
TIMEOUT = 60.0


# -- the month's ledger ------------------------------------------------------------------------------


def ledger(rows: int, guild_id: int, admin_id: int, *, as_text: bool) -> Iterator[tuple[object, ...]]:
    """`rows` calls over 30 days from the 1st of this month, by ~2,000 members (a few heavy; the admin one)."""
    chooser = random.Random(11)
    members = [admin_id] + [10**15 + number for number in range(1, MEMBERS)]
    weights = [1 / (rank + 1) ** 0.8 for rank in range(MEMBERS)]  # a few members make most of the calls
    start = start_of_month(datetime.now(UTC))
    kinds = [kind[:3] for kind in MIX]
    shares = [kind[3] for kind in MIX]
    for number in range(rows):
        feature, model, size = chooser.choices(kinds, shares)[0]
        user = chooser.choices(members, weights)[0]
        moment = start + timedelta(seconds=number * DAYS * 86_400 / rows)
        chat = feature == "chat"
        yield (
            moment.isoformat() if as_text else moment,
            feature,
            model,
            user,
            guild_id,
            10**17 + user % 40,
            chooser.randrange(500, 12_000) if chat else 0,
            chooser.randrange(20, 800) if chat else 0,
            1 if feature == "images" else 0,
            size,
            chooser.uniform(5, 300) if feature == "audio" else 0.0,
            0,
        )


SPEND = """
SELECT {scope}, {key}, feature, {day}, SUM(CASE feature WHEN 'chat' THEN input_tokens + output_tokens
    WHEN 'images' THEN images ELSE audio_seconds END)
FROM usage WHERE feature IN ('chat', 'images', 'audio') GROUP BY 2, 3, 4"""


def rollups(day: str) -> list[str]:
    """The daily roll-ups summed from the ledger: what record_usage keeps beside it, row by row."""
    return [
        f"""INSERT INTO usage_daily (guild_id, day, user_id, feature, model, image_size, requests, input_tokens,
            output_tokens, images, audio_seconds, speech_characters)
        SELECT COALESCE(guild_id, 0), {day}, COALESCE(user_id, 0), feature, model, COALESCE(image_size, ''),
            COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(images), SUM(audio_seconds), SUM(speech_characters)
        FROM usage GROUP BY 1, 2, 3, 4, 5, 6""",
        "INSERT INTO spend_daily (scope, key, feature, day, used)"
        + SPEND.format(scope="'user'", key="user_id", day=day),
        "INSERT INTO spend_daily (scope, key, feature, day, used)"
        + SPEND.format(scope="'guild'", key="guild_id", day=day),
    ]


def fill_sqlite(path: Path, records: Iterator[tuple[object, ...]]) -> None:
    """The ledger by bulk INSERT, then its roll-ups."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        f"INSERT INTO usage ({', '.join(LEDGER_COLUMNS)}) VALUES ({', '.join('?' * len(LEDGER_COLUMNS))})", records
    )
    for statement in rollups("substr(created_at, 1, 10)"):
        db.execute(statement)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()


async def fill_postgres(url: str, records: Iterator[tuple[object, ...]]) -> None:
    """The ledger by COPY, then its roll-ups."""
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table("usage", records=records, columns=LEDGER_COLUMNS)
        for statement in rollups("(created_at AT TIME ZONE 'UTC')::date"):
            await connection.execute(statement)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def fill(url: str, rows: int, guild_id: int, admin_id: int) -> float:
    """Create the schema and fill the month; the seconds it took."""
    started = time.monotonic()
    store = await open_store(url)
    await store.close()
    if url.startswith("sqlite:///"):
        records = ledger(rows, guild_id, admin_id, as_text=True)
        await asyncio.to_thread(fill_sqlite, Path(url.removeprefix("sqlite:///")), records)
    else:
        await fill_postgres(url, ledger(rows, guild_id, admin_id, as_text=False))
    return time.monotonic() - started


async def breakdown(url: str, guild_id: int, admin_id: int) -> list[list[str]]:
    """The store calls /usage makes for an admin, each timed on its own (median of 5), and the roll-up's size."""
    store = await open_store(url)
    now = datetime.now(UTC)
    today, month = start_of_day(now), start_of_month(now)
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("own today", lambda: store.usage_by_model(today, user_id=admin_id)),
        ("own month", lambda: store.usage_by_model(month, user_id=admin_id)),
        ("server today", lambda: store.usage_by_model(today, guild_id=guild_id)),
        ("server month", lambda: store.usage_by_model(month, guild_id=guild_id)),
        ("server by member, month", lambda: store.usage_by_user(guild_id, month)),
    ]
    rows = []
    try:
        for label, call in calls:
            seconds = []
            for _ in range(5):
                started = time.perf_counter()
                result = await call()
                seconds.append(time.perf_counter() - started)
            rows.append([f"  {label}", ms(median(seconds)), f"{len(result)} rows"])  # type: ignore[arg-type]
        settings = Settings.from_env({"DISCORD_TOKEN": "-", "OPENAI_API_KEY": "-", "PRICES": json.dumps(PRICES)})
        month_rows = await store.usage_by_model(month, guild_id=guild_id)
        by_user = await store.usage_by_user(guild_id, month)
        started = time.perf_counter()
        guild_report(month_rows, month_rows, by_user, settings.limits, settings.prices)
        rows.append(["  rendering the server part", ms(time.perf_counter() - started), ""])
    finally:
        await store.close()
    (count,) = (await query(url, "SELECT COUNT(*) FROM usage_daily"))[0]
    rows.append(["  (daily roll-up rows in all)", "", f"{count:,}"])
    return rows


# -- timing commands and turns -------------------------------------------------------------------------


@dataclass
class Figures:
    """One process's figures for one command."""

    alone: list[float] = field(default_factory=list)
    under_turns: list[float] = field(default_factory=list)
    turns_alone: list[float] = field(default_factory=list)
    turns_during: list[float] = field(default_factory=list)


def build(emulator: DiscordEmulator) -> None:
    """A second server, with a member and a channel for each phase of turns."""
    other = emulator.add_guild("other server", channels=("warm-up", "quiet-usage", "busy-usage", "quiet-settings"))
    emulator.add_channel(other, "busy-settings")
    emulator.add_user("neighbour", guild=other)


def other_channel(emulator: DiscordEmulator, name: str) -> int:
    """A channel of the second server by name."""
    other = emulator.guilds[1]
    return next(channel.id for channel in other.channels.values() if channel.name == name)


def neighbour(emulator: DiscordEmulator) -> object:
    """The member of the second server."""
    return next(user for user in emulator.world.users.values() if user.username == "neighbour")


class Runner:
    """Runs commands as the admin and turns as the neighbour, timing both from the emulator."""

    def __init__(self, fakes: Fakes) -> None:
        self.emulator = fakes.emulator
        self.clock = AnswerClock(fakes.emulator)
        self.turn_number = 0
        self.neighbour = neighbour(fakes.emulator)

    async def command(self, name: str, options: dict[str, object] | None) -> float:
        """Invoke the command in #general; seconds from its dispatch to its final (not "thinking") message."""

        def final(message: EmuMessage) -> bool:
            metadata = message.interaction_metadata or {}
            return metadata.get("name") == name and not message.loading and bool(message.content)

        expected = self.clock.expect(self.emulator.general.id, final)
        interaction = await self.emulator.invoke_slash(self.emulator.admin, self.emulator.general.id, name, options)
        seen = await answered(expected, TIMEOUT, f"/{name}")
        return seen.at - interaction.dispatched_at

    async def turn(self, channel_id: int) -> float:
        """A mention by the neighbour; seconds from its dispatch to the answer."""
        self.turn_number += 1
        marker = f"[n-{self.turn_number}]"
        expected = self.clock.expect(
            channel_id, lambda m: m.reply_to is not None and marker in m.reply_to.content and marker in m.content
        )
        sent = await self.emulator.send_message(
            channel_id, self.neighbour, f"{self.emulator.bot_user.mention} {marker} how is the weather there?"
        )
        seen = await answered(expected, TIMEOUT, f"the answer to {marker}")
        return seen.at - self.emulator.message(int(sent["id"])).visible_at

    async def figures(self, name: str, options: dict[str, object] | None, turns: int, commands: int) -> Figures:
        """The command alone, turns alone, then turns with the command running back to back."""
        figures = Figures()
        for _ in range(commands):
            figures.alone.append(await self.command(name, options))
        quiet, busy = other_channel(self.emulator, f"quiet-{name}"), other_channel(self.emulator, f"busy-{name}")
        for _ in range(turns):
            figures.turns_alone.append(await self.turn(quiet))
        running = asyncio.Event()
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                running.set()
                figures.under_turns.append(await self.command(name, options))

        background = asyncio.create_task(loop())
        await running.wait()
        while len(figures.turns_during) < turns or len(figures.under_turns) < commands:
            figures.turns_during.append(await self.turn(busy))
        stop.set()
        await background
        return figures


async def measure(
    who: str, database: str | None, rows: int, turns: int, commands: int
) -> tuple[dict[str, Figures], float, list[list[str]]]:
    """One process: the floor (database None) or the real bot on a filled SQLite or PostgreSQL database."""
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as folder_name:
        folder = Path(folder_name)
        context: AbstractAsyncContextManager[str] = (
            fresh_postgres_database() if database == "postgres" else nullcontext(f"sqlite:///{folder / 'bot.db'}")
        )
        async with harness.fakes(build=build) as fakes, context as url:
            filled = 0.0
            if database is None:
                process = await harness.launch(
                    "floor", harness.FLOOR, fakes, harness.floor_env(fakes, folder / "f.db"), folder
                )
            else:
                filled = await fill(url, rows, fakes.emulator.guild_id, fakes.emulator.admin.id)
                env = harness.bot_env(fakes, url, PRICES=json.dumps(PRICES))
                process = await harness.launch("bot", harness.LAUNCHER, fakes, env, folder)
            runner = Runner(fakes)
            try:
                await harness.wait_connected(fakes.emulator, [process], shards=1, guild_id=fakes.emulator.guild_id)
                warm_up = other_channel(fakes.emulator, "warm-up")
                await harness.warm_up(fakes.emulator, runner.clock, warm_up, runner.neighbour, 5)
                results = {name: await runner.figures(name, options, turns, commands) for name, options in COMMANDS}
            except BaseException:
                print(f"{who} failed; the end of its log:\n{process.tail()}", file=sys.stderr)
                raise
            finally:
                runner.clock.close()
                await process.stop()
            problems = process.log_problems()
            if problems:
                print(f"{who}: errors in its log:\n  " + "\n  ".join(problems[:10]), file=sys.stderr)
            parts = [] if database is None else await breakdown(url, fakes.emulator.guild_id, fakes.emulator.admin.id)
    return results, filled, parts


def row(label: str, values: list[float]) -> list[str]:
    """Median and p95 in ms, and how many."""
    return [label, ms(median(values)), ms(p95(values)), str(len(values))]


async def main(rows: int, turns: int, commands: int) -> None:
    """The floor, then the bot on SQLite and (with a server) PostgreSQL."""
    targets: list[tuple[str, str | None]] = [("floor", None), ("bot SQLite", "sqlite")]
    if harness.postgres_url():
        targets.append(("bot PostgreSQL", "postgres"))
    table_rows = []
    fills = []
    parts: list[list[str]] = []
    for who, database in targets:
        results, filled, calls = await measure(who, database, rows, turns, commands)
        if database is not None:
            fills.append(f"{who} {filled:.0f} s")
            parts += [[f"{who}: /usage's store calls, one at a time", "", ""], *calls]
        for name, _ in COMMANDS:
            figures = results[name]
            shown = "/settings show" if name == "settings" else "/usage"
            table_rows += [
                row(f"{who} {shown} alone", figures.alone),
                row(f"{who} {shown} under turns", figures.under_turns),
                row(f"{who} turn alone ({shown} test)", figures.turns_alone),
                row(f"{who} turn during {shown}", figures.turns_during),
            ]
    print(f"reports: {rows:,} ledger rows in one server; {harness.machine_note()}")
    print()
    print(harness.table(["what (ms)", "median", "p95", "count"], table_rows))
    print()
    print(harness.table(["where /usage's time goes (ms)", "median", "result"], parts))
    print()
    print(f"Filling the ledger and its roll-ups took: {', '.join(fills)}")
    if not harness.postgres_url():
        print(harness.skipped_postgres())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="ledger rows (default 1,000,000)")
    parser.add_argument("--turns", type=int, default=100, help="turns per phase (default 100)")
    parser.add_argument("--commands", type=int, default=20, help="commands per phase, at least (default 20)")
    parser.add_argument("--quick", action="store_true", help="10,000 rows, a few turns: checks that it runs")
    options = parser.parse_args()
    if options.quick:
        options.rows, options.turns, options.commands = 10_000, 5, 3
    asyncio.run(main(options.rows, options.turns, options.commands))
