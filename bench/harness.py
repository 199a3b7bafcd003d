"""What the benchmarks share: the fakes without validation, bot processes, answer clocks, figures and tables.

Not a benchmark itself. Every script in bench/ starts the Discord emulator and the fake OpenAI server in its
own event loop (their spec validation off, so their own checking is not counted), launches bot processes
against them the way tests/e2e does (tests/e2e/bot_process.py for the real bot, bench/floor_bot.py for the
floor), and times answers from the emulator's side: from the moment it dispatches a message to the moment
the answer's final text is visible there (EmuMessage.visible_at, taken in an on_message_change callback).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.discord_emulator import DiscordEmulator, EmuMessage, EmuUser  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

LAUNCHER = ROOT / "tests" / "e2e" / "bot_process.py"
FLOOR = ROOT / "bench" / "floor_bot.py"
POSTGRES_VARIABLE = "TEST_POSTGRES_URL"
# One content chunk per answer: the whole echo fits in it.
ONE_CHUNK = 1_000_000
# Limits that never refuse a benchmark's turns: per-minute limits off (0), daily chat budgets out of reach.
# The budget checks still run on every turn; the per-minute ones would refuse one member's 2,000 quick turns.
UNLIMITED = {
    "USER_REQUESTS_PER_MINUTE": "0",
    "GUILD_REQUESTS_PER_MINUTE": "0",
    "USER_DAILY_CHAT_TOKENS": str(10**12),
    "GUILD_DAILY_CHAT_TOKENS": str(10**12),
}
API_KEY = "sk-test-key"  # the key the fake OpenAI server accepts
PROBE_SECONDS = 3.0
PROBES = 10


# -- figures ---------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else math.nan


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank, or NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)]


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def mb(kib: int | None) -> str:
    """KiB (as /proc reports them) as MB for a table."""
    return "-" if kib is None else f"{kib / 1024:.1f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    lines = [list(header), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        cells = [
            line[0].ljust(widths[0]),
            *(cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)),
        ]
        out.append("  ".join(cells).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def routes_per_turn(calls: Counter[tuple[str, str]], turns: int) -> str:
    """REST calls per turn by route, e.g. "POST /channels/{channel_id}/messages 1.00"."""
    if not turns:
        return "-"
    return "; ".join(f"{method} {route} {count / turns:.2f}" for (method, route), count in calls.most_common())


def machine_note() -> str:
    """The load on the machine, which shares its cores with others."""
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"


# -- the fakes -------------------------------------------------------------------------------------------


class ApiClock:
    """How long the fake OpenAI server spent answering, summed over its requests."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests the fake was answering at once
        # The fake registers its handler when it starts: wrapped before, every request passes through here.
        handle = fake._handle

        async def timed(request: Any) -> Any:
            started = time.perf_counter()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                return await handle(request)
            finally:
                self.in_flight -= 1
                self.seconds += time.perf_counter() - started
                self.calls += 1

        fake._handle = timed  # type: ignore[method-assign]


@dataclass
class Fakes:
    """A running emulator and fake OpenAI server, and the clock of the fake's own time."""

    emulator: DiscordEmulator
    fake: FakeOpenAI
    api_clock: ApiClock


@contextlib.asynccontextmanager
async def fakes(*, build: Callable[[DiscordEmulator], None] | None = None) -> AsyncIterator[Fakes]:
    """The emulator (its world made by `build` before anyone connects) and the fake, both without validation."""
    emulator = DiscordEmulator(validator=None)
    if build is not None:
        build(emulator)
    fake = FakeOpenAI(validator=None)
    fake.stream_chunk_chars = ONE_CHUNK
    clock = ApiClock(fake)
    await emulator.start()
    await fake.start()
    try:
        yield Fakes(emulator, fake, clock)
    finally:
        await fake.close()
        await emulator.stop()


# -- processes -------------------------------------------------------------------------------------------


@dataclass
class Process:
    """A bot process (the real one or the floor) and the file its stderr goes to."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def status(self, key: str) -> int | None:
        """A figure from /proc/<pid>/status in KiB (VmRSS, VmHWM), or None once the process is gone."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return None

    def rss(self) -> int | None:
        """Resident memory now, KiB."""
        return self.status("VmRSS")

    def peak_rss(self) -> int | None:
        """The most resident memory the process has had, KiB."""
        return self.status("VmHWM")

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the process has used so far, or NaN once it is gone."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        # utime and stime are the 14th and 15th fields of the line; fields here start at its 3rd.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, characters: int = 4000) -> str:
        """The end of the process's log."""
        return self.log_path.read_text(errors="replace")[-characters:] if self.log_path.exists() else ""

    def log_problems(self) -> list[str]:
        """Lines of the log that report an error or a traceback."""
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return [line for line in lines if " ERROR " in line or line.startswith("Traceback")]

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not stopped within 10 s; the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode


def bot_env(fakes: Fakes, database_url: str, **extra: str) -> dict[str, str]:
    """The real bot's environment: default settings, wired to the fakes, with UNLIMITED limits."""
    return {
        "DISCORD_TOKEN": fakes.emulator.token,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": fakes.fake.base_url,
        "DATABASE_URL": database_url,
        "DISCORD_GUILD_ID": str(fakes.emulator.guild_id),
        **UNLIMITED,
        **extra,
    }


def floor_env(fakes: Fakes, database_path: Path, **extra: str) -> dict[str, str]:
    """The floor bot's environment."""
    return {
        "DISCORD_TOKEN": fakes.emulator.token,
        "FLOOR_DATABASE": str(database_path),
        "FLOOR_GUILD_ID": str(fakes.emulator.guild_id),
        **extra,
    }


async def launch(name: str, script: Path, fakes: Fakes, env: dict[str, str], folder: Path) -> Process:
    """Start `script API_BASE GATEWAY_URL` in `folder` (never the project's, whose .env the bot would read)."""
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            fakes.emulator.api_base,
            fakes.emulator.gateway_url,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            cwd=folder,
            stdout=log,
            stderr=log,
        )
    return Process(name, process, log_path)


async def wait_connected(
    emulator: DiscordEmulator, processes: Sequence[Process], *, shards: int, guild_id: int | None, within: float = 60
) -> None:
    """Wait until `shards` more sessions identified and commands are registered (then `warm_up` each shard)."""
    before = len(emulator.identifies)
    deadline = time.monotonic() + within
    while len(emulator.identifies) < before + shards or not emulator.commands(guild_id):
        for process in processes:
            if process.process.returncode is not None:
                tail = process.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{process.name} exited with {process.process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bot processes did not connect within {within:.0f} s\n{emulator.describe()}")
        await asyncio.sleep(0.05)


# -- answer clocks ---------------------------------------------------------------------------------------


Final = Callable[[EmuMessage], bool]


@dataclass(frozen=True)
class Seen:
    """When (emulator clock) a bot message reached the expected state, and which message it is."""

    at: float
    message_id: int
    edits: int = 0  # how many times the message was edited before it read this way


@dataclass
class _Expectation:
    final: Final
    future: asyncio.Future[Seen]


@dataclass
class AnswerClock:
    """Resolves, at the very change that shows it, the emulator time an expected bot message became final."""

    emulator: DiscordEmulator
    _waiting: dict[int, list[_Expectation]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.emulator.on_message_change.append(self._changed)

    def close(self) -> None:
        """Stop listening."""
        with contextlib.suppress(ValueError):
            self.emulator.on_message_change.remove(self._changed)

    def expect(self, channel_id: int, final: Final) -> asyncio.Future[Seen]:
        """A future for the first bot message in the channel for which `final` holds, at the change that did it."""
        future: asyncio.Future[Seen] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel_id, []).append(_Expectation(final, future))
        return future

    def _changed(self, event: str, message: EmuMessage) -> None:
        if event == "delete" or message.author.id != self.emulator.bot_user.id:
            return
        waiting = self._waiting.get(message.channel_id)
        if not waiting:
            return
        for expectation in list(waiting):
            if not expectation.future.done() and expectation.final(message):
                # visible_at now: the message object changes again with later edits.
                expectation.future.set_result(Seen(message.visible_at, message.id, len(message.history)))
                waiting.remove(expectation)


def replies_to(question_id: int) -> Final:
    """The answer is the bot's reply to this message, in whatever text it first shows."""
    return lambda message: message.reply_to is not None and message.reply_to.id == question_id


async def answered(future: asyncio.Future[Seen], within: float, what: str) -> Seen:
    """What the future saw, or a RuntimeError naming what never came within `within` seconds."""
    try:
        return await asyncio.wait_for(future, within)
    except TimeoutError:
        raise RuntimeError(f"no answer within {within:.0f} s: {what}") from None


async def warm_up(emulator: DiscordEmulator, clock: AnswerClock, channel_id: int, author: EmuUser, turns: int) -> None:
    """`turns` answered mentions in a channel, the first sent again until one is answered: the process is ready.

    discord.py holds READY back for 2 s after the last GUILD_CREATE; asking until answered waits no longer
    than needed, whether or not the process answers before READY.
    """
    for number in range(turns):
        for attempt in range(PROBES):
            marker = f"[warm-up {number}.{attempt}]"
            expected = clock.expect(
                channel_id, lambda m, marker=marker: marker in (m.reply_to.content if m.reply_to else "")
            )
            await emulator.send_message(channel_id, author, f"{emulator.bot_user.mention} {marker} hello")
            try:
                await asyncio.wait_for(asyncio.shield(expected), PROBE_SECONDS)
                break
            except TimeoutError:
                if number:  # only the first may come too early
                    raise RuntimeError(f"warm-up turn {number} was not answered") from None
        else:
            raise RuntimeError(f"no answer to {PROBES} warm-up mentions in {PROBE_SECONDS * PROBES:.0f} s")


def postgres_url() -> str | None:
    """The PostgreSQL server for the PostgreSQL parts (TEST_POSTGRES_URL), or None."""
    return os.environ.get(POSTGRES_VARIABLE) or None


def skipped_postgres() -> str:
    """Why the PostgreSQL parts did not run."""
    return (
        f"PostgreSQL: skipped ({POSTGRES_VARIABLE} is not set; `bash .ci/postgres` starts a server and prints its URL)"
    )
