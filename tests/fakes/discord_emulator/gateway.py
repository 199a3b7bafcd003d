"""The emulated gateway: HELLO, heartbeats, IDENTIFY/READY, RESUME with replay, and ordered dispatches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .models import Intent, Json

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


class Session:
    """A gateway session: intents, sequence number, every event sent (for RESUME), current connection."""

    def __init__(self, intents: int, shard: list[int] | None) -> None:
        self.id = secrets.token_hex(16)
        self.intents = Intent(intents)
        self.shard = shard
        self.seq = 0
        self.sent: list[Json] = []
        self.connection: Connection | None = None
        self.resumable = True
        self.lock = asyncio.Lock()

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
        if data.get("token") != self.emu.token:
            await connection.ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            await connection.ws.close(code=CLOSE_INVALID_INTENTS, message=b"Invalid intent(s).")
            return
        if intents & Intent.PRIVILEGED & ~self.emu.privileged_intents:
            await connection.ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return
        for stale in self.sessions.values():
            stale.resumable = stale.resumable and stale.connection is not None
        session = Session(intents, data.get("shard"))
        self.sessions[session.id] = session
        async with session.lock:
            session.connection = connection
            connection.session = session
            await session.send_event("READY", self.emu.ready_payload(session))
            if session.intents & Intent.GUILDS:
                await session.send_event("GUILD_CREATE", self.emu.guild_create_payload(session.intents))
        self.emu.notify()

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

    async def dispatch(self, event: str, make: Callable[[Intent], Json | None]) -> None:
        """Send `event` to each session with the payload `make(intents)` builds (None skips that session)."""
        for session in [s for s in self.sessions.values() if s.resumable or s.connection is not None]:
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

    def events(self, name: str | None = None) -> list[Json]:
        """Every dispatch frame sent so far, in order, optionally only those named `name`."""
        frames: list[Any] = [frame for session in self.sessions.values() for frame in session.sent]
        return [frame for frame in frames if name is None or frame["t"] == name]
