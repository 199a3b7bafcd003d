"""DiscordEmulator: a local Discord (REST, gateway, CDN) that an unmodified discord.py client talks to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import discord
from aiohttp import web

from .actions import UserActions
from .building import WorldBuilding
from .events import Dispatcher, MessageListener, MessagePredicate
from .flags import Intent, SnowflakeFactory
from .gateway import Gateway, IdentifyRecord, IdentifyRefusal
from .models import EmuAttachment, EmuChannel, EmuInteraction, EmuMessage, EmuRequest, EmuUser, Json
from .rest import Rest
from .world import World

T = TypeVar("T")
MIB = 1024 * 1024
POLL_INTERVAL = 0.02
INTERACTION_TOKEN_SECONDS = 15 * 60.0
COMMAND_FINISH_TIMEOUT = 2.0
# Discord: "Each shard can only support a maximum of 2500 guilds".
MAX_GUILDS_PER_SHARD = 2500


class ClientDied(AssertionError):
    """The discord.py client task ended while a test was waiting on it; the cause is chained."""


@dataclass
class RateLimitRule:
    """One injected 429: the next request matching method and path gets it."""

    method: str
    path: re.Pattern[str]
    retry_after: float
    is_global: bool


class _ClientErrorLog(logging.Handler):
    """Collects ERROR records from discord.py's loggers (unhandled exceptions in events and commands)."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        super().__init__(logging.ERROR)
        self.emulator = emulator

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's message and exception."""
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        self.emulator.client_errors.append(f"{record.name}: {text}")
        self.emulator.notify()


class DiscordEmulator(WorldBuilding, UserActions, Dispatcher):
    """A local Discord: REST under /api/v10, a gateway websocket, a CDN, and coroutines that act as users.

    The world starts with one guild (`guild`, `guild_id`, `general`, `random`, `member`, ...); `add_guild`
    makes more. Sharding follows Discord: see `max_guilds_per_shard`, `recommended_shards`,
    `max_concurrency` and the opt-in identify limit (`enforce_identify_limit`, `identify_interval`).
    """

    def __init__(
        self,
        *,
        validator: Any = None,
        privileged_intents: int = Intent.PRIVILEGED,
        token: str = "emulated.bot.token",
    ) -> None:
        self.snowflake = SnowflakeFactory()
        self.world = World(self.snowflake)
        self.gateway = Gateway(self)
        self.rest = Rest(self)
        self.validator = validator
        self.privileged_intents = Intent(privileged_intents)
        self.token = token
        self.interaction_deadline = 3.0
        # An interaction's token works for 15 minutes; later its webhook routes answer 401 Invalid Webhook Token.
        self.interaction_token_lifetime = INTERACTION_TOKEN_SECONDS
        self.filesize_limit = 10 * MIB
        self.channel_rate_limit: tuple[int, float] | None = None
        self.max_guilds_per_shard = MAX_GUILDS_PER_SHARD
        self.recommended_shards: int | None = None
        self.max_concurrency = 1
        self.enforce_identify_limit = False
        self.identify_interval = 5.0
        self.identifies: list[IdentifyRecord] = []
        self.identify_refusals: list[IdentifyRefusal] = []
        self.requests: list[EmuRequest] = []
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.client_errors: list[str] = []
        self.interactions: list[EmuInteraction] = []
        self.attachments: dict[int, EmuAttachment] = {}
        self.global_commands: list[Json] = []
        self.guild_commands: dict[int, list[Json]] = {}
        self.rate_limit_rules: list[RateLimitRule] = []
        self.on_message_change: list[MessageListener] = []
        self.port = 0
        self._message_waiters: dict[int, list[tuple[MessagePredicate, asyncio.Future[EmuMessage]]]] = {}
        self._changed = asyncio.Event()
        self._watched: list[tuple[asyncio.Task[None], bool]] = []
        self._runner: web.AppRunner | None = None
        self._t0 = 0.0

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT (the CDN serves attachments under it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The value for discord.http.Route.BASE."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The value for discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY."""
        return f"ws://127.0.0.1:{self.port}/"

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self.rest.middleware], client_max_size=64 * MIB)
        self.rest.add_routes(app.router)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/resume", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._t0 = asyncio.get_running_loop().time()

    async def stop(self) -> None:
        """Close every websocket and stop serving."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def clock(self) -> float:
        """Seconds since the emulator started."""
        return asyncio.get_running_loop().time() - self._t0

    # -- waiting and failing loudly --------------------------------------------------------------

    def notify(self) -> None:
        """Wake every waiter: something changed."""
        self._changed.set()

    def record_error(self, text: str) -> None:
        """Record an emulator fault (a bug or an unimplemented route); tests fail on it."""
        self.errors.append(text)
        self.notify()

    def check_health(self) -> None:
        """Raise if the emulator faulted or a watched client died or logged an unhandled error."""
        if self.errors:
            raise AssertionError("the Discord emulator faulted:\n  " + "\n  ".join(self.errors))
        for task, fail_on_errors in self._watched:
            if task.done():
                exc = None if task.cancelled() else task.exception()
                raise ClientDied(f"the discord.py client stopped: {exc!r}\n{self.describe()}") from exc
            if fail_on_errors and self.client_errors:
                raise AssertionError("discord.py logged unhandled errors:\n  " + "\n  ".join(self.client_errors))

    # A timeout parameter, not asyncio.timeout: on expiry this raises an AssertionError describing the state.
    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "") -> T:  # noqa: ASYNC109
        """Wait until `predicate()` is truthy and return it; on timeout raise an AssertionError describing the state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            self.check_health()
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}\n{self.describe()}")
            # Some conditions (such as client.is_ready()) change without telling the emulator: poll too.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, POLL_INTERVAL))

    async def wait_for_message(
        self,
        channel_id: int,
        predicate: MessagePredicate,
        timeout: float = 5.0,  # noqa: ASYNC109 (see wait_for)
        *,
        what: str = "",
    ) -> EmuMessage:
        """The first message of the channel (current state, not deleted) for which `predicate` holds.

        Checks the stored messages, then resolves at the very change (create or edit) that satisfies it,
        without polling; the message's `visible_at` (and `timeline`) tell when each state became visible.
        """
        found = next((m for m in self.messages(channel_id) if predicate(m)), None)
        if found is not None:
            return found
        future: asyncio.Future[EmuMessage] = asyncio.get_running_loop().create_future()
        entry = (lambda m: not m.deleted and predicate(m), future)
        self._message_waiters.setdefault(channel_id, []).append(entry)
        try:
            await self.wait_for(future.done, timeout=timeout, what=what or f"a matching message in {channel_id}")
        finally:
            if entry in self._message_waiters.get(channel_id, []):
                self._message_waiters[channel_id].remove(entry)
        return future.result()

    def describe(self) -> str:
        """A summary of the emulator's state for failure messages."""
        lines = [f"gateway ops received: {self.gateway.ops[-10:]}"]
        lines.append("last requests: " + ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:]))
        for channel in self.world.channels.values():
            messages = [m for m in self.world.channel_messages(channel.id) if not m.deleted]
            if messages:
                shown = "; ".join(f"{m.author.username}: {m.content[:60]!r}" for m in messages[-5:])
                lines.append(f"#{channel.name or channel.id}: {shown}")
        for interaction in self.interactions[-3:]:
            lines.append(
                f"interaction {interaction.name!r}: callback={interaction.callback_type} "
                f"responded_at={interaction.responded_at} followups={len(interaction.followups)}"
            )
        for label, items in (("violations", self.violations), ("client errors", self.client_errors)):
            if items:
                lines.append(f"{label}: {items}")
        return "\n".join(lines)

    @contextlib.asynccontextmanager
    async def run_client(
        self,
        client: discord.Client,
        *,
        token: str | None = None,
        ready_timeout: float = 10.0,
        fail_on_errors: bool = True,
        guild_ready_timeout: float = 0.05,
    ) -> AsyncIterator[asyncio.Task[None]]:
        """Run `client.start()` against the emulator until ready; fail fast if it dies or logs unhandled errors."""
        # discord.py waits guild_ready_timeout (2 s by default) after the last GUILD_CREATE before READY.
        client._connection.guild_ready_timeout = guild_ready_timeout
        errors = _ClientErrorLog(self)
        logging.getLogger("discord").addHandler(errors)
        task = asyncio.create_task(client.start(token or self.token), name="discord-client")
        task.add_done_callback(lambda _: self.notify())
        watch = (task, fail_on_errors)
        self._watched.append(watch)
        try:
            await self.wait_for(client.is_ready, timeout=ready_timeout, what="the client to become ready")
            yield task
            self.check_health()
        finally:
            self._watched.remove(watch)
            # Let commands the test no longer waits on finish reading their answers before the session closes.
            invoking = [t for t in asyncio.all_tasks() if t.get_name() == "CommandTree-invoker" and not t.done()]
            if invoking:
                await asyncio.wait(invoking, timeout=COMMAND_FINISH_TIMEOUT)
            logging.getLogger("discord").removeHandler(errors)
            await client.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)

    # -- queries ---------------------------------------------------------------------------------

    def messages(
        self, channel_id: int, *, include_deleted: bool = False, include_ephemeral: bool = False
    ) -> list[EmuMessage]:
        """The channel's messages (also of a deleted channel), oldest first, in their current (edited) state."""
        return [
            message
            for message in self.world.channel_messages(channel_id)
            if (include_deleted or not message.deleted) and (include_ephemeral or not message.ephemeral)
        ]

    def last_message(self, channel_id: int, *, author: EmuUser | None = None) -> EmuMessage | None:
        """The channel's newest message that is not deleted nor ephemeral (by `author`, if given)."""
        for message in reversed(self.world.channel_messages(channel_id)):
            if not (message.deleted or message.ephemeral) and (author is None or message.author.id == author.id):
                return message
        return None

    def message(self, message_id: int) -> EmuMessage:
        """The stored message with this id."""
        return self.world.messages[message_id]

    def attachment(self, attachment_id: int) -> EmuAttachment:
        """A stored attachment: its bytes (`data`), `content_type`, `duration_secs`, `waveform`, `url`."""
        return self.attachments[attachment_id]

    def threads(self, parent_id: int) -> list[EmuChannel]:
        """The live threads opened in a channel, oldest first."""
        return self.world.threads_of(parent_id)

    def commands(self, guild_id: int | None = None) -> list[Json]:
        """The registered application commands: global ones, or those of a guild."""
        return self.global_commands if guild_id is None else self.guild_commands.get(guild_id, [])

    def events(self, name: str | None = None) -> list[Json]:
        """Every gateway dispatch frame ({op, t, s, d}) sent so far, optionally only those named `name`."""
        return self.gateway.events(name)

    def mark(self) -> int:
        """A mark in the REST log, for `rest_calls_by_route(since=...)`."""
        return len(self.requests)

    def rest_calls_by_route(self, since: int = 0) -> Counter[tuple[str, str]]:
        """How many REST calls the bot made per (method, route template) since a mark, e.g.
        ("PATCH", "/channels/{channel_id}/messages/{message_id}")."""
        return Counter((r.method, r.route or r.path) for r in self.requests[since:])

    # -- failure injection -----------------------------------------------------------------------

    async def drop_gateway(self, *, resumable: bool = True) -> None:
        """Close every gateway websocket; with resumable=False the sessions are gone and RESUME is refused."""
        await self.gateway.drop(resumable=resumable)

    def rate_limit_next(
        self, method: str, path_regex: str, retry_after: float = 0.2, *, is_global: bool = False
    ) -> None:
        """Answer the next request whose method and path (after /api/v10) match with a 429."""
        self.rate_limit_rules.append(RateLimitRule(method.upper(), re.compile(path_regex), retry_after, is_global))

    async def dispatch_event(self, event: str, data: Json) -> None:
        """Send a raw gateway event, as given, to the sessions of its `guild_id` (shard 0's without one)."""
        guild_id = int(data["guild_id"]) if isinstance(data.get("guild_id"), str | int) else None
        await self.gateway.dispatch(event, lambda _intents: data, guild_id=guild_id)
