"""Showing an answer while it streams: throttled edits, continuation messages past 2000 characters.

Discord-free: a StreamingReply shows text through a ReplySurface (send, edit, typing), which bot/replies.py
implements for a Discord channel and tests implement in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.render import split_message

log = logging.getLogger(__name__)

# Discord allows roughly 5 message creates/edits per 5 s per channel (community-observed). Intermediate
# edits come at most once a second and leave one slot of the window free, so the final edit and the
# next answer's first message never run into a 429 (which discord.py would wait out, stalling the stream).
EDIT_INTERVAL_SECONDS = 1.0
RATE_WINDOW_SECONDS = 5.0
RATE_WINDOW_WRITES = 5
RESERVED_WRITES = 1
# The typing indicator costs a request: shown only when no text has come by then, and renewed before
# Discord's own 10 s expire while the model is still thinking.
TYPING_DELAY_SECONDS = 0.5
TYPING_RENEW_SECONDS = 8.0


class SentMessage(Protocol):
    """A message a surface posted: its id is all the reply keeps of it."""

    @property
    def id(self) -> int:
        """The message's id."""


class ReplySurface(Protocol):
    """Where an answer appears: the only way the conversation engine talks to Discord."""

    async def send(self, text: str, *, first: bool) -> SentMessage:
        """Post a message; `first` is the answer's first one (a reply to the question, where that is asked)."""

    async def edit(self, message: SentMessage, text: str) -> SentMessage:
        """Replace a posted message's text."""

    async def typing(self) -> None:
        """Show the typing indicator (Discord shows it for about 10 s, or until a message arrives)."""


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


BeforeShow = Callable[[str], Awaitable[None]]


class StreamingReply:
    """One answer shown as it grows, as one or more messages of at most 2000 characters.

    The first text is shown the moment it arrives and the final text the moment it is given; the edits
    between are throttled per channel (skipped ones are flushed later). `before_show` is awaited with the
    text of each intermediate update just before it is shown: the engine stores what people are about to
    see there, so a crash never loses what someone read.
    """

    def __init__(
        self,
        surface: ReplySurface,
        channel_id: int,
        throttle: EditThrottle,
        *,
        before_show: BeforeShow | None = None,
    ) -> None:
        self._surface = surface
        self._channel_id = channel_id
        self._throttle = throttle
        self._before_show = before_show
        self._messages: list[SentMessage] = []
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
    def message_ids(self) -> tuple[int, ...]:
        """The ids of the messages posted so far."""
        return tuple(message.id for message in self._messages)

    def start_typing(self) -> None:
        """Show the typing indicator if no text has appeared shortly, and keep it up until text does."""
        self._typing_task = asyncio.create_task(self._keep_typing())

    async def _keep_typing(self) -> None:
        await asyncio.sleep(TYPING_DELAY_SECONDS)
        while not self._messages and not self._finished:
            try:
                await self._surface.typing()
            except Exception:  # the indicator is a courtesy: a channel that refuses it only loses it
                log.debug("The typing indicator failed in channel %s", self._channel_id, exc_info=True)
                return
            await asyncio.sleep(TYPING_RENEW_SECONDS)

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
        try:
            await self._show(intermediate=True)
        except Exception:
            # A later update or finish() shows the text again; a failed intermediate edit only costs a frame.
            log.warning("An intermediate edit failed in channel %s", self._channel_id, exc_info=True)

    async def finish(self, text: str) -> tuple[int, ...]:
        """Show the exact final text at once; return the ids of the messages it occupies."""
        # A flush still asleep is cancelled; one already showing (its task handle is cleared on waking) is
        # left to finish, since cancelling a send mid-request could post a message twice. The lock orders it.
        if self._flush_task is not None:
            self._flush_task.cancel()
            self._flush_task = None
        self._finished = True
        self._latest = text
        try:
            await self._show(intermediate=False)
        finally:
            await self._stop_typing()
        return self.message_ids

    async def close(self) -> None:
        """Stop what is still scheduled (typing, a delayed edit) without showing anything more."""
        self._finished = True
        if self._flush_task is not None:
            self._flush_task.cancel()
            self._flush_task = None
        await self._stop_typing()

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
            changed = [
                index
                for index, chunk in enumerate(chunks)
                if index >= len(self._messages) or self._shown[index] != chunk
            ]
            if not changed:
                return
            if intermediate and self._before_show is not None:
                await self._before_show(self._latest)
            for index in changed:
                await self._write(index, chunks[index])

    async def _write(self, index: int, chunk: str) -> None:
        # Counted before the request: a write in flight already uses its slot.
        self._throttle.note_edit(self._channel_id)
        if index < len(self._messages):
            self._messages[index] = await self._surface.edit(self._messages[index], chunk)
            self._shown[index] = chunk
        else:
            self._messages.append(await self._surface.send(chunk, first=not self._messages))
            self._shown.append(chunk)
