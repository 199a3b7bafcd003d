"""Per-turn overhead of the real `python -m bot` process, beside the floor of what discord.py alone costs.

What it measures: the real bot process (started through tests/e2e/bot_process.py, as deployed, with default
settings: a 16,000-token window) against the Discord emulator over its gateway and the fake OpenAI server
answering at once in one chunk (an echo of the question). For N sequential turns in one conversation thread
(opened with /chat first) and N in a mention chain in a channel (each message mentions the bot and replies
to its previous answer; answers are replies), each turn's overhead is the time from the emulator
dispatching MESSAGE_CREATE to the moment the answer's final text is visible in the emulator (taken in its
on_message_change callback, not by polling). The same figures for the floor (bench/floor_bot.py: one
INSERT into SQLite on a worker thread and one channel.send per message) are measured in the same run, each
in a fresh emulator, and the ratio printed. Beside it, "floor + API" is the same bare bot asking the fake
for each answer (the message alone, streamed): what the API call costs by itself, a reference for how much
of the real bot's time is the call and how much its own work around it.

How to read it: "median"/"p95" are per-turn overheads; "first-20"/"last-20" the medians of the first and
last 20 turns (a growing history must not slow turns down); "fake API" is what the fake OpenAI server spent
per turn (its handler, from request to end of stream: also the bot writing the request and reading the
stream, as the two overlap), and "minus API" the overhead without it. "REST/turn" counts the Discord calls
per turn (a one-chunk answer should cost one); "CPU/turn" the process's own CPU time per turn, all of its
work, including what happens after the answer shows (the end of the stream, its usage written). RSS is the
bot process's: idle after start and a warm-up,
and its peak (VmHWM). Limits: per-minute limits are off and daily chat budgets out of reach (one member's
2,000 quick turns would be refused); the budget checks still run. The emulator enforces no per-channel
rate limit here (Discord's ~5 writes per 5 s per channel would slow such quick turns). tiktoken cannot
fetch its vocabulary offline, so tokens are estimated. The machine is shared: read medians and ratios,
rerun with --rounds for steadier figures.

Run: python bench/chat_process.py [--turns N] [--rounds R] [--quick]; TEST_POSTGRES_URL adds a PostgreSQL row.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import AnswerClock, Fakes, Seen, answered, median, ms, p95

from bot.conversation import NOTE_OMITTED
from tests.databases import fresh_postgres_database
from tests.fakes.discord_emulator import DiscordEmulator, EmuMessage

WARMUP_TURNS = 5
FLOOR = "floor"
FLOOR_ASKING = "floor + API"
EDGE = 20  # the first and last turns compared
ANSWER_TIMEOUT = 30.0
# About what people type in a chat turn (~60 tokens); the echo answer is as long, so the window fills.
FILLER = (
    "Could you explain how this works in a little more detail, with an example or two, and say what I "
    "should watch out for when I try it myself on a larger project next week?"
)


@dataclass
class Series:
    """One series of turns: overheads, the fake API's share, REST calls, the process's CPU time."""

    overheads: list[float] = field(default_factory=list)
    api: list[float] = field(default_factory=list)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    edited: list[bool] = field(default_factory=list)  # whether the answer was edited before it was final
    cpu: float = 0.0  # seconds of CPU the process used for the series (its own, not the fakes')


@dataclass
class Result:
    """One process's run: its series and memory."""

    who: str
    series: dict[str, Series] = field(default_factory=dict)
    idle_rss: int | None = None
    peak_rss: int | None = None
    problems: list[str] = field(default_factory=list)


def build(emulator: DiscordEmulator) -> None:
    """A channel of its own for the warm-up turns."""
    emulator.add_channel(emulator.guild, "warm-up")


def question(series: str, number: int) -> tuple[str, str]:
    """The marker that identifies a turn in its answer, and the turn's text."""
    marker = f"[{series}-{number}]"
    return marker, f"{marker} {FILLER}"


class Turns:
    """Sends turns and times their answers."""

    def __init__(self, fakes: Fakes, *, real: bool) -> None:
        self.fakes = fakes
        self.emulator = fakes.emulator
        self.real = real
        self.clock = AnswerClock(fakes.emulator)
        self.first_marker = ""

    def omitted(self) -> bool:
        """Whether the newest chat request left the conversation's first turn out (the answer then says so)."""
        chats = self.fakes.fake.requests_to("/chat/completions")
        if not chats:
            return False
        messages = chats[-1].json["messages"]
        # The first turn's answer echoes its marker too: the first turn is the user's.
        return len(messages) < 2 or messages[1]["role"] != "user" or self.first_marker not in messages[1]["content"]

    def final(self, marker: str) -> Callable[[EmuMessage], bool]:
        """The answer as it finally reads: the real bot adds a note when older turns were left out."""
        if not self.real:
            return lambda message: marker in message.content
        return lambda message: marker in message.content and message.content.endswith(NOTE_OMITTED) == self.omitted()

    async def turn(self, channel_id: int, text: str, marker: str, *, reply_to: int | None = None) -> tuple[float, Seen]:
        """Post a turn as the member; the overhead until its final answer shows, and that answer."""
        expected = self.clock.expect(channel_id, self.final(marker))
        await self.emulator.send_message(channel_id, self.emulator.member, text, reply_to=reply_to)
        sent = self.emulator.last_message(channel_id, author=self.emulator.member)
        assert sent is not None
        try:
            seen = await answered(expected, ANSWER_TIMEOUT, f"the answer to {marker}")
        except RuntimeError:
            shown = self.emulator.last_message(channel_id, author=self.emulator.bot_user)
            revisions = shown.revisions if shown else None
            print(f"last answer shown: {revisions!r}; omitted: {self.omitted()}", file=sys.stderr)
            raise
        self.fakes.fake.requests.clear()  # what omitted() read is no longer needed; long runs keep memory flat
        return seen.at - sent.visible_at, seen

    async def series(self, name: str, channel_id: int, turns: int, *, chain: bool) -> Series:
        """`turns` timed turns after an untimed first one, which every later answer's window starts with (in a
        /chat thread the first turn is the /chat prompt, already answered)."""
        mention = f"{self.emulator.bot_user.mention} " if chain else ""
        self.first_marker, text = question(name, 0)
        previous = None
        if chain or not self.real:
            _, first = await self.turn(channel_id, mention + text, self.first_marker)
            previous = first.message_id
        result = Series()
        mark = self.emulator.mark()
        for number in range(1, turns + 1):
            marker, text = question(name, number)
            spent = self.fakes.api_clock.seconds
            overhead, answer = await self.turn(channel_id, mention + text, marker, reply_to=previous if chain else None)
            result.overheads.append(overhead)
            result.api.append(self.fakes.api_clock.seconds - spent)
            result.edited.append(answer.edits > 0)
            previous = answer.message_id
        result.calls = self.emulator.rest_calls_by_route(mark)
        return result

    async def warm_up(self) -> None:
        """A few answered mentions in a channel of their own: the process is ready and its caches warm."""
        channel = next(c for c in self.emulator.guild.channels.values() if c.name == "warm-up")
        await harness.warm_up(self.emulator, self.clock, channel.id, self.emulator.member, WARMUP_TURNS)

    async def thread(self) -> int:
        """A conversation thread: opened with /chat by the real bot; by the member for the floor."""
        general = self.emulator.general.id
        if not self.real:
            thread = await self.emulator.create_thread(general, self.emulator.member, "Floor conversation")
            return thread.id
        before = len(self.emulator.threads(general))
        _, prompt = question("t", 0)
        await self.emulator.invoke_slash(self.emulator.member, general, "chat", {"prompt": prompt})
        opened = await self.emulator.wait_for(
            lambda: self.emulator.threads(general)[before] if len(self.emulator.threads(general)) > before else None,
            timeout=ANSWER_TIMEOUT,
            what="the thread /chat opens",
        )
        await self.emulator.wait_for(
            lambda: any(m.author.id == self.emulator.bot_user.id for m in self.emulator.messages(opened.id)),
            timeout=ANSWER_TIMEOUT,
            what="the answer to /chat",
        )
        return opened.id


async def measure(
    who: str, turns: int, database: Callable[[Path], AbstractAsyncContextManager[str]] | None, *, api: bool = False
) -> Result:
    """Run one process (the real bot on `database`, or the floor when it is None, asking the API with `api`)
    through both series."""
    result = Result(who)
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as folder_name:
        folder = Path(folder_name)
        async with harness.fakes(build=build) as fakes, database(folder) if database else nullcontext("") as url:
            if database is None:
                asking = {"FLOOR_OPENAI_URL": fakes.fake.base_url, "OPENAI_API_KEY": harness.API_KEY} if api else {}
                env = harness.floor_env(fakes, folder / "floor.db", **asking)
                process = await harness.launch("floor", harness.FLOOR, fakes, env, folder)
            else:
                process = await harness.launch("bot", harness.LAUNCHER, fakes, harness.bot_env(fakes, url), folder)
            runner = Turns(fakes, real=database is not None)
            try:
                await harness.wait_connected(fakes.emulator, [process], shards=1, guild_id=fakes.emulator.guild_id)
                await runner.warm_up()
                result.idle_rss = process.rss()
                thread = await runner.thread()
                result.series["thread"] = await timed(process, runner.series("t", thread, turns, chain=False))
                mentions = runner.series("m", fakes.emulator.random.id, turns, chain=True)
                result.series["mentions"] = await timed(process, mentions)
                result.peak_rss = process.peak_rss()
            except BaseException:
                print(f"{who} failed; the end of its log:\n{process.tail()}", file=sys.stderr)
                raise
            finally:
                await process.stop()
                result.problems = process.log_problems()
                runner.clock.close()
    return result


async def timed(process: harness.Process, running: Coroutine[Any, Any, Series]) -> Series:
    """A series with the CPU time the process used while it ran."""
    before = process.cpu_seconds()
    series = await running
    series.cpu = process.cpu_seconds() - before
    return series


def sqlite_database(folder: Path) -> AbstractAsyncContextManager[str]:
    """A fresh SQLite file in the run's folder."""

    @asynccontextmanager
    async def database():  # type: ignore[no-untyped-def]
        yield f"sqlite:///{folder / 'bot.db'}"

    return database()


def postgres_database(_folder: Path) -> AbstractAsyncContextManager[str]:
    """A fresh database on the TEST_POSTGRES_URL server, dropped afterwards."""
    return fresh_postgres_database()


def drift(first: float, last: float) -> str:
    """How the last turns compare with the first, and whether that is within 25 % or 1 ms."""
    change = (last - first) / first * 100 if first else math.nan
    within = abs(last - first) <= max(0.25 * first, 0.001)
    return f"{change:+.0f}% {'ok' if within else 'MISSED'}"


def report(results: list[Result], turns: int, rounds: int) -> str:
    """The table, the ratios against the floor, and the REST calls per turn."""
    pooled: dict[str, dict[str, Series]] = {}
    memory: dict[str, tuple[list[int], list[int]]] = {}
    for result in results:
        for name, series in result.series.items():
            into = pooled.setdefault(result.who, {}).setdefault(name, Series())
            into.overheads += series.overheads
            into.api += series.api
            into.calls += series.calls
            into.edited += series.edited
            into.cpu += series.cpu
        idle, peak = memory.setdefault(result.who, ([], []))
        idle += [result.idle_rss] if result.idle_rss else []
        peak += [result.peak_rss] if result.peak_rss else []
    rows = []
    for who, by_series in pooled.items():
        idle, peak = memory[who]
        for name, series in by_series.items():
            firsts = _per_round(results, who, name, 0)
            lasts = _per_round(results, who, name, 1)
            minus = [overhead - api for overhead, api in zip(series.overheads, series.api, strict=True)]
            rows.append(
                [
                    f"{who} {name}",
                    ms(median(series.overheads)),
                    ms(p95(series.overheads)),
                    ms(median(firsts)),
                    ms(median(lasts)),
                    drift(median(firsts), median(lasts)),
                    ms(median(series.api)),
                    ms(median(minus)),
                    f"{sum(series.calls.values()) / len(series.overheads):.2f}",
                    ms(series.cpu / len(series.overheads)),
                    harness.mb(max(idle) if idle else None),
                    harness.mb(max(peak) if peak else None),
                ]
            )
    header = [
        "process / series (ms)",
        "median",
        "p95",
        "first-20",
        "last-20",
        "last vs first",
        "fake API",
        "minus API",
        "REST/turn",
        "CPU/turn",
        "idle MB",
        "peak MB",
    ]
    lines = [
        f"chat_process: {turns} turns per series, {rounds} round(s); {harness.machine_note()}",
        "",
        harness.table(header, rows),
        "",
    ]
    lines += _ratios(pooled)
    lines.append("")
    lines.append("REST calls per turn by route (target: a one-chunk answer costs 1):")
    for who, by_series in pooled.items():
        for name, series in by_series.items():
            lines.append(f"  {who} {name}: {harness.routes_per_turn(series.calls, len(series.overheads))}")
    lines += ["", "Answers shown in one message vs first shown, then edited to add the note on older turns left out:"]
    for who, by_series in pooled.items():
        for name, series in by_series.items():
            one = [o for o, edited in zip(series.overheads, series.edited, strict=True) if not edited]
            twice = [o for o, edited in zip(series.overheads, series.edited, strict=True) if edited]
            lines.append(
                f"  {who} {name}: {len(one)} shown once, median {ms(median(one))} ms; "
                f"{len(twice)} edited, median {ms(median(twice))} ms"
            )
    problems = [f"  {result.who}: {line}" for result in results for line in result.problems]
    if problems:
        lines += ["", "Errors in the process logs:", *problems[:20]]
    return "\n".join(lines)


def _ratios(pooled: dict[str, dict[str, Series]]) -> list[str]:
    """Each real bot's median against the floor (the target) and against the floor that asks the API."""
    floor, asking = pooled.get(FLOOR, {}), pooled.get(FLOOR_ASKING, {})
    lines = []
    for who, by_series in pooled.items():
        if who in (FLOOR, FLOOR_ASKING):
            continue
        for name, series in by_series.items():
            bot = median(series.overheads)
            if name in floor:
                ratio = bot / median(floor[name].overheads)
                verdict = "ok" if ratio <= 1.25 else "MISSED"
                line = f"{who} {name}: median {ratio:.2f}x the floor (target <= 1.25x: {verdict})"
                if name in asking:
                    line += f"; {bot / median(asking[name].overheads):.2f}x the {FLOOR_ASKING}"
                lines.append(line)
    return lines


def _per_round(results: list[Result], who: str, name: str, edge: int) -> list[float]:
    """The first (edge 0) or last (edge 1) EDGE overheads of each round, pooled."""
    picked: list[float] = []
    for result in results:
        if result.who == who and name in result.series:
            overheads = result.series[name].overheads
            picked += overheads[:EDGE] if edge == 0 else overheads[-EDGE:]
    return picked


async def main(turns: int, rounds: int) -> None:
    """Alternate the floor and the bot (SQLite, then PostgreSQL if there is a server) for each round."""
    targets: list[tuple[str, Callable[[Path], AbstractAsyncContextManager[str]] | None]] = [
        (FLOOR, None),
        (FLOOR_ASKING, None),
        ("bot SQLite", sqlite_database),
    ]
    if harness.postgres_url():
        targets.append(("bot PostgreSQL", postgres_database))
    results = []
    started = time.monotonic()
    for _ in range(rounds):
        for who, database in targets:
            results.append(await measure(who, turns, database, api=who == FLOOR_ASKING))
    print(report(results, turns, rounds))
    if not harness.postgres_url():
        print(harness.skipped_postgres())
    print(f"({time.monotonic() - started:.0f} s)")


def arguments(argv: list[str]) -> argparse.Namespace:
    """--turns, --rounds, --quick."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="timed turns per series (default 200)")
    parser.add_argument("--rounds", type=int, default=1, help="floor/bot alternations (default 1)")
    parser.add_argument("--quick", action="store_true", help="a few turns: checks that the benchmark runs")
    options = parser.parse_args(argv)
    if options.quick:
        options.turns, options.rounds = 3, 1
    return options


if __name__ == "__main__":
    options = arguments(sys.argv[1:])
    asyncio.run(main(options.turns, options.rounds))
