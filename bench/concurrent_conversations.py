"""Memory of the real bot process with 1,000 conversations, one after another and all at once.

What it measures: the real `python -m bot` process (default settings) against the Discord emulator, in
1,000 channels (two servers of 500, Discord's most per server). First 1,000 conversations one after
another: a mention in each channel, answered at once by the fake OpenAI server in one chunk. Then 1,000
conversations at once: a mention in every channel within a moment, each answered by a 2-second stream
(20 pieces, 0.1 s apart), so 1,000 streamed answers are in flight together and each is edited as it grows
(the bot's edit throttle is per channel, so channels do not wait for each other). The floor
(bench/floor_bot.py: one INSERT and one send per message; in the second phase each answer held 2 s) runs
the same in the same run.

How to read it: "idle" is the process's resident memory after start and a warm-up, "after seq" after
the sequential conversations, "peak" its highest (VmHWM, reached while the 1,000 answers stream); the
project's target is under 200 MB. "whole" counts the answers that arrived complete (the final text exactly
what the API streamed); "wall" is from the first question to the last complete answer, and "answer p50/p95"
each answer's time from its question. "API at once" is the most chat requests the fake OpenAI server was
answering at once: with every answer taking 2 s, a wall time well past 2 s with CPU to spare means requests
waited for one another. "CPU s" is the process's CPU time during the 1,000 answers, "fakes CPU s" the
benchmark's own (the emulator and the fake; 2 cores in all); "seq ms" a sequential turn's median time from
question to answer. Real Discord allows a bot about 50 requests a second in all, so 1,000 answers at once
would queue there; the emulator has no such limit. The machine is shared: the wall times vary from run to
run, the memory figures hardly.

Run: python bench/concurrent_conversations.py [--channels N] [--quick]; TEST_POSTGRES_URL adds PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import harness
from harness import AnswerClock, Fakes, Final, Seen, answered, median, p95

from tests.databases import fresh_postgres_database
from tests.fakes.discord_emulator import DiscordEmulator, EmuMessage
from tests.fakes.openai_server import Reply

PER_GUILD = 500  # Discord's limit of channels in one server
STREAM_PIECES = 20
PIECE_CHARS = 8
PIECE_DELAY = 0.1  # 20 pieces, 0.1 s apart: a 2-second answer
STREAMED = ("A streamed answer that takes two seconds to arrive in full, piece by piece, edited as it grows. " * 3)[
    : STREAM_PIECES * PIECE_CHARS
]
TIMEOUT = 300.0
TARGET_MB = 200


@dataclass
class Result:
    """One process's figures."""

    who: str
    idle: int | None = None
    after: int | None = None
    peak: int | None = None
    sequential: list[float] = field(default_factory=list)
    whole: int = 0
    answers: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0  # the process's CPU seconds in the concurrent phase
    own_cpu: float = 0.0  # this process's (the emulator's and the fake's), the same phase
    api_at_once: int = 0  # the most chat requests the fake answered at once
    problems: list[str] = field(default_factory=list)


def builder(channels: int) -> tuple[list[int], Callable[[DiscordEmulator], None]]:
    """The channel ids (filled in when the world is built) and the function that builds it."""
    ids: list[int] = []

    def build(emulator: DiscordEmulator) -> None:
        emulator.add_channel(emulator.guild, "warm-up")
        guilds = [emulator.guild]
        while len(guilds) * PER_GUILD < channels:
            guild = emulator.add_guild(f"server {len(guilds) + 1}", channels=())
            emulator.add_member(emulator.member, guild)
            guilds.append(guild)
        for number in range(channels):
            ids.append(emulator.add_channel(guilds[number // PER_GUILD], f"c{number}").id)

    return ids, build


def answer_to(marker: str, streamed: str | None) -> Final:
    """The final answer to the question holding `marker`: a reply to it, with the streamed text whole (the
    floor's reply as it is)."""

    def final(message: EmuMessage) -> bool:
        asked = message.reply_to
        return asked is not None and marker in asked.content and (streamed is None or message.content == streamed)

    return final


async def ask(
    emulator: DiscordEmulator, clock: AnswerClock, channel_id: int, marker: str, streamed: str | None
) -> tuple[asyncio.Future[Seen], float]:
    """Post a mention holding `marker` as the member; the future of its final answer, and when it was posted."""
    # Expected before it is sent: under load the answer can come before send_message returns.
    expected = clock.expect(channel_id, answer_to(marker, streamed))
    sent = await emulator.send_message(channel_id, emulator.member, f"{emulator.bot_user.mention} {marker} hello")
    return expected, emulator.message(int(sent["id"])).visible_at


async def measure(who: str, channels: int, database: str | None, real: bool) -> Result:
    """Both phases for one process."""
    result = Result(who)
    ids, build = builder(channels)
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as folder_name:
        folder = Path(folder_name)
        database_context: AbstractAsyncContextManager[str] = (
            fresh_postgres_database() if database == "postgres" else nullcontext(f"sqlite:///{folder / 'bot.db'}")
        )
        async with harness.fakes(build=build) as fakes, database_context as url:
            if real:
                process = await harness.launch("bot", harness.LAUNCHER, fakes, harness.bot_env(fakes, url), folder)
            else:
                env = harness.floor_env(fakes, folder / "floor.db", FLOOR_HOLD_SECONDS=str(PIECE_DELAY * STREAM_PIECES))
                process = await harness.launch("floor", harness.FLOOR, fakes, env, folder)
            clock = AnswerClock(fakes.emulator)
            try:
                await harness.wait_connected(fakes.emulator, [process], shards=1, guild_id=fakes.emulator.guild_id)
                await warm_up(fakes, clock)
                result.idle = process.rss()
                await sequential(fakes, clock, ids, result)
                result.after = process.rss()
                cpu, own = process.cpu_seconds(), time.process_time()
                await concurrent(fakes, clock, ids, result, real=real)
                result.cpu, result.own_cpu = process.cpu_seconds() - cpu, time.process_time() - own
                result.peak = process.peak_rss()
            except BaseException:
                print(f"{who} failed; the end of its log:\n{process.tail()}", file=sys.stderr)
                raise
            finally:
                clock.close()
                await process.stop()
                result.problems = process.log_problems()
    return result


async def warm_up(fakes: Fakes, clock: AnswerClock) -> None:
    """A few answered mentions: the process is ready."""
    channel = next(c for c in fakes.emulator.guild.channels.values() if c.name == "warm-up")
    await harness.warm_up(fakes.emulator, clock, channel.id, fakes.emulator.member, 5)


async def sequential(fakes: Fakes, clock: AnswerClock, ids: list[int], result: Result) -> None:
    """One conversation after another, one turn each, answered at once."""
    for number, channel_id in enumerate(ids):
        expected, asked = await ask(fakes.emulator, clock, channel_id, f"[s-{number}]", None)
        seen = await answered(expected, 30, f"the answer in channel {number}")
        result.sequential.append(seen.at - asked)
        fakes.fake.requests.clear()


async def concurrent(fakes: Fakes, clock: AnswerClock, ids: list[int], result: Result, *, real: bool) -> None:
    """A question in every channel at once, each answered by a 2-second stream; count the whole answers."""
    fake = fakes.fake
    fake.stream_chunk_chars, fake.chunk_delay = PIECE_CHARS, PIECE_DELAY
    fake.queue("/chat/completions", *[Reply(STREAMED) for _ in ids])
    fakes.api_clock.peak_in_flight = 0
    started = fakes.emulator.clock()
    pending = []
    for number, channel_id in enumerate(ids):
        marker = f"[hold] [c-{number}]"
        pending.append(await ask(fakes.emulator, clock, channel_id, marker, STREAMED if real else None))
    done, _ = await asyncio.wait([future for future, _ in pending], timeout=TIMEOUT)
    for future, asked in pending:
        if future in done:
            result.whole += 1
            result.answers.append(future.result().at - asked)
    result.api_at_once = fakes.api_clock.peak_in_flight
    result.wall = max((future.result().at for future, _ in pending if future in done), default=started) - started
    fake.requests.clear()


def report(results: list[Result], channels: int) -> str:
    """The table and the target."""
    rows = [
        [
            r.who,
            harness.mb(r.idle),
            harness.mb(r.after),
            harness.mb(r.peak),
            f"{r.whole}/{channels}",
            f"{r.wall:.1f}",
            f"{median(r.answers):.2f}",
            f"{p95(r.answers):.2f}",
            str(r.api_at_once),
            f"{r.cpu:.1f}",
            f"{r.own_cpu:.1f}",
            harness.ms(median(r.sequential)),
        ]
        for r in results
    ]
    header = [
        "process",
        "idle MB",
        "after seq MB",
        "peak MB",
        "whole",
        "wall s",
        "answer p50 s",
        "p95 s",
        "API at once",
        "CPU s",
        "fakes CPU s",
        "seq ms",
    ]
    lines = [
        f"concurrent_conversations: {channels} channels; {harness.machine_note()}",
        "",
        harness.table(header, rows),
        "",
    ]
    for r in results:
        if r.who != "floor" and r.peak is not None:
            verdict = "ok" if r.peak / 1024 < TARGET_MB else "MISSED"
            lines.append(f"{r.who}: peak {r.peak / 1024:.0f} MB (target < {TARGET_MB} MB: {verdict})")
    problems = [f"  {r.who}: {line}" for r in results for line in r.problems]
    if problems:
        lines += ["", "Errors in the process logs:", *problems[:20]]
    return "\n".join(lines)


async def main(channels: int) -> None:
    """The floor, then the bot on SQLite, then on PostgreSQL if there is a server."""
    started = time.monotonic()
    results = [await measure("floor", channels, None, real=False)]
    results.append(await measure("bot SQLite", channels, "sqlite", real=True))
    if harness.postgres_url():
        results.append(await measure("bot PostgreSQL", channels, "postgres", real=True))
    print(report(results, channels))
    if not harness.postgres_url():
        print(harness.skipped_postgres())
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=1000, help="conversations (default 1000)")
    parser.add_argument("--quick", action="store_true", help="20 channels: checks that the benchmark runs")
    options = parser.parse_args()
    asyncio.run(main(20 if options.quick else options.channels))
