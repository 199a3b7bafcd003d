"""The emulated gateway: HELLO, heartbeats, IDENTIFY/READY, RESUME with replay, and ordered dispatches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import WSMsgType, web

from .flags import Intent
from .models import EmuGuild, Json

if TYPE_CHECKING:
    from .emulator import DiscordEmulator

HEARTBEAT_INTERVAL_MS = 41_250
OP_NAMES = {
    1: "HEARTBEAT",
    2: "IDENTIFY",
    3: "PRESENCE_UPDATE",
    4: "VOICE_STATE_UPDATE",
    6: "RESUME",
    8: "REQUEST_MEMBERS",
}
CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_INVALID_INTENTS = 4013
CLOSE_DISALLOWED_INTENTS = 4014
CLOSE_UNKNOWN_ERROR = 4000
CLOSE_SESSION_TIMED_OUT = 4009
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011


class Connection:
    """One websocket; serialises sends so that zlib-stream frames stay in order."""

    def __init__(self, ws: web.WebSocketResponse, *, compress: bool) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()
        self.compressor = zlib.compressobj() if compress else None
        self.session: Session | None = None

    async def send(self, frame: Json) -> None:
        """Send one gateway frame (compressed when the client asked for zlib-stream)."""
        text = json.dumps(frame)
        async with self.lock:
            if self.ws.closed:
                return
            # A socket closing under us loses nothing: dispatches stay in Session.sent for RESUME.
            with contextlib.suppress(ConnectionResetError):
                if self.compressor is None:
                    await self.ws.send_str(text)
                else:
                    data = self.compressor.compress(text.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)


class IdentifyRecord(NamedTuple):
    """An IDENTIFY that started a session: when (emulator clock) and for which shard (0 when unsharded)."""

    at: float
    shard_id: int


class IdentifyRefusal(NamedTuple):
    """An IDENTIFY refused by the identify rate limit (answered with op 9 Invalid Session, d=false)."""

    shard_id: int
    at: float


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that receives a guild's events (Discord's formula)."""
    return (guild_id >> 22) % shard_count


class Session:
    """A gateway session: intents, shard, sequence number, every event sent (for RESUME), current connection."""

    def __init__(self, intents: int, shard: list[int] | None) -> None:
        self.id = secrets.token_hex(16)
        self.intents = Intent(intents)
        self.shard = shard
        self.seq = 0
        self.sent: list[Json] = []
        self.connection: Connection | None = None
        self.resumable = True
        self.lock = asyncio.Lock()

    @property
    def shard_id(self) -> int:
        """The session's shard id (an unsharded session is shard 0 of 1)."""
        return self.shard[0] if self.shard else 0

    def receives(self, guild_id: int | None) -> bool:
        """Whether this session gets a guild's events; events without a guild go to shard 0 only."""
        if self.shard is None:
            return True
        if guild_id is None:
            return self.shard[0] == 0
        return shard_of(guild_id, self.shard[1]) == self.shard[0]

    async def send_event(self, event: str, data: Json) -> None:
        """Number the event, keep it for replay and send it if connected; hold `lock` while calling."""
        self.seq += 1
        frame = {"op": 0, "t": event, "s": self.seq, "d": data}
        self.sent.append(frame)
        if self.connection is not None:
            await self.connection.send(frame)


class Gateway:
    """Serves the websocket endpoint and dispatches events to every session."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self.emu = emulator
        self.sessions: dict[str, Session] = {}
        self.connections: list[Connection] = []
        self.ops: list[str] = []
        self._last_identify: dict[int, float] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Run one websocket connection until it closes."""
        ws = web.WebSocketResponse(timeout=1.0, autoping=True)
        await ws.prepare(request)
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=CLOSE_DECODE_ERROR, message=b"only encoding=json is emulated")
            return ws
        connection = Connection(ws, compress=request.query.get("compress") == "zlib-stream")
        self.connections.append(connection)
        await connection.send({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["emulator"]}})
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    break
                await self._receive(connection, json.loads(message.data))
        except Exception as exc:
            self.emu.record_error(f"gateway handler crashed: {exc!r}")
            raise
        finally:
            self.connections.remove(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
        return ws

    async def _receive(self, connection: Connection, frame: Json) -> None:
        op: int | None = frame.get("op")
        data: Any = frame.get("d")
        if op != 1:
            self.ops.append(OP_NAMES.get(op or 0, f"op {op}"))
            self.emu.notify()
        if op == 1:
            await connection.send({"op": 11})
        elif op == 2:
            await self._identify(connection, data)
        elif op == 6:
            await self._resume(connection, data)
        elif op == 8:
            await self._request_members(connection, data)
        elif op not in (3, 4):
            await connection.ws.close(code=CLOSE_UNKNOWN_OPCODE, message=b"unknown opcode")

    async def _identify(self, connection: Connection, data: Json) -> None:
        refusal = self._identify_problem(data)
        if refusal is not None:
            code, reason = refusal
            await connection.ws.close(code=code, message=reason.encode())
            return
        shard: list[int] | None = data.get("shard")
        if not self._identify_allowed(shard[0] if shard else 0):
            # Discord's answer to an IDENTIFY inside the max_concurrency window (docs: Gateway, Rate Limiting).
            await connection.send({"op": 9, "d": False})
            return
        for stale in self.sessions.values():
            # A new session for the same shard ends disconnected old ones (a restarted process).
            if stale.shard == shard:
                stale.resumable = stale.resumable and stale.connection is not None
        session = Session(data["intents"], shard)
        self.sessions[session.id] = session
        guilds = self.session_guilds(session)
        async with session.lock:
            session.connection = connection
            connection.session = session
            await session.send_event("READY", self.emu.ready_payload(session, guilds))
            if session.intents & Intent.GUILDS:
                for guild in guilds:
                    await session.send_event("GUILD_CREATE", self.emu.guild_create_payload(guild, session.intents))
        self.emu.notify()

    def _identify_problem(self, data: Json) -> tuple[int, str] | None:
        """The close code and reason Discord would end this IDENTIFY with, if any."""
        if data.get("token") != self.emu.token:
            return CLOSE_AUTHENTICATION_FAILED, "Authentication failed."
        intents = data.get("intents")
        if not isinstance(intents, int):
            return CLOSE_INVALID_INTENTS, "Invalid intent(s)."
        if intents & Intent.PRIVILEGED & ~self.emu.privileged_intents:
            return CLOSE_DISALLOWED_INTENTS, "Disallowed intent(s)."
        shard = data.get("shard")
        if shard is not None and not _valid_shard(shard):
            return CLOSE_INVALID_SHARD, "Invalid shard."
        probe = Session(intents, shard)
        if len(self.session_guilds(probe)) > self.emu.max_guilds_per_shard:
            return CLOSE_SHARDING_REQUIRED, "Sharding required."
        return None

    def _identify_allowed(self, shard_id: int) -> bool:
        """Apply the opt-in identify limit: one IDENTIFY per `identify_interval` per max_concurrency bucket."""
        now = self.emu.clock()
        bucket = shard_id % self.emu.max_concurrency
        last = self._last_identify.get(bucket)
        if self.emu.enforce_identify_limit and last is not None and now - last < self.emu.identify_interval:
            self.emu.identify_refusals.append(IdentifyRefusal(shard_id, now))
            self.emu.notify()
            return False
        self._last_identify[bucket] = now
        self.emu.identifies.append(IdentifyRecord(now, shard_id))
        return True

    def session_guilds(self, session: Session) -> list[EmuGuild]:
        """The guilds whose events go to this session."""
        return [guild for guild in self.emu.world.bot_guilds() if session.receives(guild.id)]

    async def _resume(self, connection: Connection, data: Json) -> None:
        session = self.sessions.get(data.get("session_id", ""))
        if data.get("token") != self.emu.token:
            await connection.ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        if session is None or not session.resumable or not isinstance(data.get("seq"), int):
            await connection.send({"op": 9, "d": False})
            return
        async with session.lock:
            session.connection = connection
            connection.session = session
            for frame in session.sent:
                if frame["s"] > data["seq"]:
                    await connection.send(frame)
            await session.send_event("RESUMED", {"_trace": ["emulator"]})
        self.emu.notify()

    async def _request_members(self, connection: Connection, data: Json) -> None:
        session = connection.session
        if session is None:
            return
        chunk = self.emu.members_chunk_payload(data)
        async with session.lock:
            await session.send_event("GUILD_MEMBERS_CHUNK", chunk)

    async def dispatch(self, event: str, make: Callable[[Intent], Json | None], *, guild_id: int | None) -> None:
        """Send `event` to each session that gets `guild_id`'s events (None: shard 0's) with `make(intents)`.

        `make` returning None skips that session.
        """
        live = [s for s in self.sessions.values() if (s.resumable or s.connection is not None) and s.receives(guild_id)]
        for session in live:
            data = make(session.intents)
            if data is None:
                continue
            async with session.lock:
                await session.send_event(event, data)
        self.emu.notify()

    async def drop(self, *, resumable: bool) -> None:
        """Close every websocket as a network failure would; the sessions stay resumable if asked."""
        for connection in list(self.connections):
            if connection.session is not None:
                connection.session.resumable = resumable
            code = CLOSE_UNKNOWN_ERROR if resumable else CLOSE_SESSION_TIMED_OUT
            await connection.ws.close(code=code, message=b"dropped by the emulator")

    async def close(self) -> None:
        """Close every websocket (the emulator is stopping)."""
        for connection in list(self.connections):
            await connection.ws.close(code=1001, message=b"emulator stopping")

    def connected(self, guild_id: int | None) -> bool:
        """Whether a connected session gets the events of this guild (None: of DMs)."""
        return any(s.connection is not None and s.receives(guild_id) for s in self.sessions.values())

    def events(self, name: str | None = None) -> list[Json]:
        """Every dispatch frame sent so far, in order, optionally only those named `name`."""
        frames: list[Any] = [frame for session in self.sessions.values() for frame in session.sent]
        return [frame for frame in frames if name is None or frame["t"] == name]


def _valid_shard(shard: Any) -> bool:
    """Whether `shard` is [shard_id, shard_count] with 0 <= shard_id < shard_count."""
    if not isinstance(shard, list) or len(shard) != 2 or not all(type(n) is int for n in shard):
        return False
    shard_id, count = shard
    return 0 <= shard_id < count
