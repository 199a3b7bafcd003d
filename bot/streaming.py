"""Showing an answer while it streams: throttled edits, continuation messages past 2000 characters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import discord

from bot.render import split_message

log = logging.getLogger(__name__)

# Discord allows roughly 5 message creates/edits per 5 s per channel (community-observed). Intermediate
# edits come at most once a second and leave one slot of the window free, so the final edit and the
# next answer's first message never run into a 429 (which discord.py would wait out, stalling the stream).
EDIT_INTERVAL_SECONDS = 1.0
RATE_WINDOW_SECONDS = 5.0
RATE_WINDOW_WRITES = 5
RESERVED_WRITES = 1


class EditThrottle:
    """Remembers each channel's recent sends and edits, so intermediate edits stay under Discord's limit."""

    def __init__(self, interval: float = EDIT_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._writes: dict[int, deque[float]] = {}

    def wait_time(self, channel_id: int) -> float:
        """Seconds until an intermediate edit in this channel is allowed (0 when it is now)."""
        writes = self._recent(channel_id, self._clock())
        if not writes:
            return 0.0
        now = self._clock()
        wait = writes[-1] + self.interval - now
        if len(writes) >= RATE_WINDOW_WRITES - RESERVED_WRITES:
            # The oldest write that must leave the window before one more intermediate edit fits.
            oldest = writes[len(writes) - (RATE_WINDOW_WRITES - RESERVED_WRITES)]
            wait = max(wait, oldest + RATE_WINDOW_SECONDS - now)
        return max(0.0, wait)

    def note_edit(self, channel_id: int) -> None:
        """Record an edit or send in this channel now."""
        now = self._clock()
        self._recent(channel_id, now).append(now)
        if len(self._writes) > 1000:  # forget quiet channels so the map stays small
            self._writes = {cid: w for cid, w in self._writes.items() if self._recent(cid, now)}

    def _recent(self, channel_id: int, now: float) -> deque[float]:
        writes = self._writes.setdefault(channel_id, deque())
        while writes and writes[0] <= now - RATE_WINDOW_SECONDS:
            writes.popleft()
        return writes


async def keep_typing(channel: discord.abc.Messageable) -> None:
    """Show the typing indicator until cancelled; a channel that refuses it only loses the indicator."""
    with contextlib.suppress(discord.HTTPException):
        async with channel.typing():
            await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def typing_in(channel: discord.abc.Messageable) -> AsyncIterator[None]:
    """Show the typing indicator while the block runs."""
    task = asyncio.create_task(keep_typing(channel))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class StreamingReply:
    """One answer shown in a channel as it grows, as one or more messages of at most 2000 characters.

    Intermediate updates are throttled per channel (skipped ones are flushed later); the first message
    and the final text are never delayed by the throttle.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        channel_id: int,
        throttle: EditThrottle,
        *,
        reply_to: discord.Message | None = None,
    ) -> None:
        self._channel = channel
        self._channel_id = channel_id
        self._throttle = throttle
        self._reply_to = reply_to
        self._messages: list[discord.Message] = []
        self._shown: list[str] = []
        self._latest = ""
        self._lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None
        self._finished = False
        self._typing_task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        """The latest text given to update(), shown or about to be."""
        return self._latest

    @property
    def messages(self) -> list[discord.Message]:
        """The messages posted so far."""
        return list(self._messages)

    def start_typing(self) -> None:
        """Show the typing indicator until the first text appears."""
        self._typing_task = asyncio.create_task(keep_typing(self._channel))

    async def _stop_typing(self) -> None:
        if self._typing_task is not None:
            self._typing_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing_task
            self._typing_task = None

    async def update(self, text: str) -> None:
        """Show the text so far, now if the throttle allows, else as soon as it does."""
        self._latest = text
        if self._flush_task is None:
            await self._show(intermediate=True)

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flush_task = None
        await self._show(intermediate=True)

    async def finish(self, text: str) -> list[discord.Message]:
        """Show the exact final text at once and return the messages it occupies."""
        # A flush still asleep is cancelled; one already showing (its task handle is cleared on waking) is
        # left to finish, since cancelling a send mid-request could post a message twice. The lock orders it.
        if self._flush_task is not None:
            self._flush_task.cancel()
            self._flush_task = None
        self._finished = True
        self._latest = text
        await self._show(intermediate=False)
        await self._stop_typing()
        return self.messages

    async def _show(self, *, intermediate: bool) -> None:
        # The throttle is asked under the lock, after any write in flight has been counted.
        async with self._lock:
            if intermediate:
                wait = self._throttle.wait_time(self._channel_id) if self._messages else 0.0
                if self._finished or wait > 0:
                    if not self._finished and self._flush_task is None:
                        self._flush_task = asyncio.create_task(self._flush_later(wait))
                    return
            chunks = split_message(self._latest)
            if chunks:
                await self._stop_typing()
            for index, chunk in enumerate(chunks):
                if index < len(self._messages) and self._shown[index] == chunk:
                    continue
                # Counted before the request: a write in flight already uses its slot.
                self._throttle.note_edit(self._channel_id)
                if index < len(self._messages):
                    self._messages[index] = await self._messages[index].edit(content=chunk)
                    self._shown[index] = chunk
                else:
                    self._messages.append(await self._send(chunk))
                    self._shown.append(chunk)

    async def _send(self, chunk: str) -> discord.Message:
        if self._reply_to is not None and not self._messages:
            reference = self._reply_to.to_reference(fail_if_not_exists=False)
            return await self._channel.send(chunk, reference=reference, mention_author=False)
        return await self._channel.send(chunk)
