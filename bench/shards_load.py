"""Sustained turns across 1,000 servers: two bot processes of two shards each on one PostgreSQL database.

What it measures: 1,000 emulated servers, each with a member and a channel, served by two real
`python -m bot` processes (SHARD_COUNT=4; SHARD_IDS=0,1 and 2,3; commands synced globally, DISCORD_GUILD_ID
unset) sharing one PostgreSQL database, the fake OpenAI server answering at once in one chunk. Members post
mentions spread round-robin over all servers, with several in flight at once (--concurrency); each turn's
overhead is from the question's dispatch to its answer being visible. The emulator lets all four shards
identify at once (max_concurrency 16). The floor (two bench/floor_bot.py processes with the same shards, on
one SQLite file) runs the same load in the same run.

How to read it: "turns/s" is turns answered per second of wall time over the whole load; "p50"/"p95" each
turn's overhead (with this many in flight, mostly queueing for the two cores: compare with the floor);
"errors" counts questions not answered within the time limit, answered twice, or answered in the wrong
place (there must be none), and "log errors" lines logged at ERROR; peak RSS and CPU seconds are each
process's. The load generator (this process: the emulator and the fake) shares the 2 cores with the bots,
so turns/s is a property of the whole machine, and the ratio to the floor is the figure to read.

Run: python bench/shards_load.py [--turns N] [--concurrency C] [--quick]; needs TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import AnswerClock, Fakes, Process, median, p95

from tests.databases import fresh_postgres_database
from tests.fakes.discord_emulator import DiscordEmulator, EmuChannel, EmuUser

GUILDS = 1_000
SHARD_COUNT = 4
PROCESS_SHARDS = ("0,1", "2,3")
TURN_TIMEOUT = 60.0
SETTLE_SECONDS = 2.0  # after the load, for answers posted twice to show


@dataclass
class Result:
    """One set of processes' figures."""

    who: str
    overheads: list[float] = field(default_factory=list)
    wall: float = 0.0
    unanswered: int = 0
    twice: int = 0
    log_errors: int = 0
    peaks: list[int | None] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def builder(guilds: int) -> tuple[list[tuple[EmuChannel, EmuUser]], Callable[[DiscordEmulator], None]]:
    """Where the turns go (a channel and its member per server, filled in as the world is built), and the build."""
    places: list[tuple[EmuChannel, EmuUser]] = []

    def build(emulator: DiscordEmulator) -> None:
        emulator.max_concurrency = 16
        places.append((emulator.general, emulator.member))
        for number in range(1, guilds):
            guild = emulator.add_guild(f"server {number}", channels=("general",))
            member = emulator.add_user(f"member{number}", guild=guild)
            channel = next(iter(guild.channels.values()))
            places.append((channel, member))

    return places, build


async def start(who: str, fakes: Fakes, folder: Path, url: str | None) -> list[Process]:
    """The two processes: the real bot on the database at `url`, or the floor on one SQLite file."""
    processes = []
    for number, shard_ids in enumerate(PROCESS_SHARDS):
        shards = {"SHARD_COUNT": str(SHARD_COUNT), "SHARD_IDS": shard_ids}
        if url is None:
            env = harness.floor_env(fakes, folder / "floor.db", **shards)
            del env["FLOOR_GUILD_ID"]  # global commands, synced by the process with shard 0
            processes.append(await harness.launch(f"floor{number}", harness.FLOOR, fakes, env, folder))
        else:
            env = harness.bot_env(fakes, url, **shards)
            del env["DISCORD_GUILD_ID"]  # global commands: one of the processes syncs them
            processes.append(await harness.launch(f"bot{number}", harness.LAUNCHER, fakes, env, folder))
    await harness.wait_connected(fakes.emulator, processes, shards=SHARD_COUNT, guild_id=None, within=120)
    return processes


async def load(
    fakes: Fakes, places: list[tuple[EmuChannel, EmuUser]], turns: int, concurrency: int, result: Result
) -> list[int]:
    """`turns` mentions round-robin over the servers, `concurrency` at a time; the questions' ids."""
    emulator = fakes.emulator
    clock = AnswerClock(emulator)
    asked: list[int] = []
    counter = iter(range(turns))

    async def worker() -> None:
        for number in counter:
            channel, member = places[number % len(places)]
            marker = f"[l-{number}]"
            expected = clock.expect(
                channel.id, lambda m, marker=marker: m.reply_to is not None and marker in m.reply_to.content
            )
            sent = await emulator.send_message(channel.id, member, f"{emulator.bot_user.mention} {marker} hello there")
            question = emulator.message(int(sent["id"]))
            asked.append(question.id)
            try:
                seen = await asyncio.wait_for(expected, TURN_TIMEOUT)
            except TimeoutError:
                result.unanswered += 1
                continue
            result.overheads.append(seen.at - question.visible_at)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall = time.monotonic() - started
    clock.close()
    fakes.fake.requests.clear()
    return asked


def count_twice(emulator: DiscordEmulator, asked: list[int]) -> int:
    """Questions the bot answered more than once (or in another channel than asked)."""
    answers: dict[int, int] = {}
    for message in emulator.world.messages.values():
        if message.author.id == emulator.bot_user.id and message.reply_to is not None and not message.deleted:
            wrong_place = message.channel_id != message.reply_to.channel_id
            answers[message.reply_to.id] = answers.get(message.reply_to.id, 0) + (2 if wrong_place else 1)
    return sum(1 for question in asked if answers.get(question, 0) > 1)


async def warm_up(fakes: Fakes, places: list[tuple[EmuChannel, EmuUser]]) -> None:
    """A turn in a server of each shard, so every shard is ready before the load."""
    by_shard: dict[int, tuple[EmuChannel, EmuUser]] = {}
    for place in places:
        by_shard.setdefault(fakes.emulator.shard_of(place[0].guild_id or 0, SHARD_COUNT), place)
    clock = AnswerClock(fakes.emulator)
    try:
        await asyncio.gather(
            *(harness.warm_up(fakes.emulator, clock, channel.id, member, 1) for channel, member in by_shard.values())
        )
    finally:
        clock.close()


async def measure(who: str, real: bool, turns: int, concurrency: int) -> Result:
    """Start the processes, warm up, run the load, count what went wrong."""
    result = Result(who)
    places, build = builder(GUILDS)
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as folder_name:
        folder = Path(folder_name)
        async with harness.fakes(build=build) as fakes, contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(fresh_postgres_database()) if real else None
            processes: list[Process] = []
            try:
                processes = await start(who, fakes, folder, url)
                await warm_up(fakes, places)
                cpu = [process.cpu_seconds() for process in processes]
                asked = await load(fakes, places, turns, concurrency, result)
                result.cpu = [process.cpu_seconds() - before for process, before in zip(processes, cpu, strict=True)]
                await asyncio.sleep(SETTLE_SECONDS)
                result.twice = count_twice(fakes.emulator, asked)
                result.peaks = [process.peak_rss() for process in processes]
            except BaseException:
                for process in processes:
                    print(f"{process.name}'s log ends:\n{process.tail()}", file=sys.stderr)
                raise
            finally:
                for process in processes:
                    await process.stop()
                result.log_errors = sum(len(process.log_problems()) for process in processes)
    return result


def report(results: list[Result], turns: int, concurrency: int) -> str:
    """The table and the ratio to the floor."""
    header = ["processes", "turns/s", "p50 ms", "p95 ms", "errors", "log errors", "peak MB each", "CPU s each"]
    rows = [
        [
            r.who,
            f"{len(r.overheads) / r.wall:.0f}",
            harness.ms(median(r.overheads)),
            harness.ms(p95(r.overheads)),
            f"{r.unanswered + r.twice} ({r.unanswered} unanswered, {r.twice} twice)",
            str(r.log_errors),
            " / ".join(harness.mb(peak) for peak in r.peaks),
            " / ".join(f"{cpu:.1f}" for cpu in r.cpu),
        ]
        for r in results
    ]
    lines = [
        f"shards_load: {GUILDS} servers, 2 processes x 2 shards, {turns} turns, {concurrency} in flight; "
        f"{harness.machine_note()}",
        "",
        harness.table(header, rows),
    ]
    if len(results) == 2 and results[0].wall and results[1].wall:
        floor, bot = (len(r.overheads) / r.wall for r in results)
        lines += ["", f"bot turns/s: {bot / floor:.2f}x the floor's"]
    return "\n".join(lines)


async def main(turns: int, concurrency: int) -> None:
    """The floor, then the bot on PostgreSQL."""
    if not harness.postgres_url():
        print("shards_load: " + harness.skipped_postgres() + "; the shards share one PostgreSQL database")
        return
    started = time.monotonic()
    results = [await measure("floor (SQLite)", False, turns, concurrency)]
    results.append(await measure("bot (PostgreSQL)", True, turns, concurrency))
    print(report(results, turns, concurrency))
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3000, help="turns in all (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="turns in flight at once (default 16)")
    parser.add_argument("--quick", action="store_true", help="40 turns: checks that it runs")
    options = parser.parse_args()
    if options.quick:
        options.turns = 40
    asyncio.run(main(options.turns, options.concurrency))
