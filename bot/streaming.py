"""Showing an answer while it streams: throttled edits, continuation messages past 2000 characters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import discord

from bot.render import split_message

log = logging.getLogger(__name__)

# Discord allows roughly 5 message creates/edits per 5 s per channel; one a second leaves room for others.
EDIT_INTERVAL_SECONDS = 1.0


class EditThrottle:
    """Remembers when each channel last saw an edit, so intermediate edits stay under Discord's limit."""

    def __init__(self, interval: float = EDIT_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last_edit: dict[int, float] = {}

    def wait_time(self, channel_id: int) -> float:
        """Seconds until an intermediate edit in this channel is allowed (0 when it is now)."""
        last = self._last_edit.get(channel_id)
        return 0.0 if last is None else max(0.0, last + self.interval - self._clock())

    def note_edit(self, channel_id: int) -> None:
        """Record an edit or send in this channel now."""
        now = self._clock()
        self._last_edit[channel_id] = now
        if len(self._last_edit) > 1000:  # forget channels that have been quiet: the dict stays small
            self._last_edit = {cid: t for cid, t in self._last_edit.items() if now - t < self.interval}


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
        self._typing_task = asyncio.create_task(self._type_until_cancelled())

    async def _type_until_cancelled(self) -> None:
        with contextlib.suppress(discord.HTTPException):
            async with self._channel.typing():
                await asyncio.Event().wait()

    async def _stop_typing(self) -> None:
        if self._typing_task is not None:
            self._typing_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing_task
            self._typing_task = None

    async def update(self, text: str) -> None:
        """Show the text so far, now if the throttle allows, else soon."""
        self._latest = text
        wait = self._throttle.wait_time(self._channel_id)
        if not self._messages or wait == 0:
            await self._show(text)
        elif self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush_after(wait))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flush_task = None
        if not self._finished:
            await self._show(self._latest)

    async def finish(self, text: str) -> list[discord.Message]:
        """Show the exact final text at once and return the messages it occupies."""
        # A pending flush is not cancelled (cancelling a send mid-request could post a message twice);
        # once finished it does nothing, and the lock orders it before or after this final edit.
        self._finished = True
        self._latest = text
        await self._show(text)
        await self._stop_typing()
        return self.messages

    async def _show(self, text: str) -> None:
        async with self._lock:
            chunks = split_message(text)
            if chunks:
                await self._stop_typing()
            for index, chunk in enumerate(chunks):
                if index < len(self._messages):
                    if self._shown[index] != chunk:
                        self._messages[index] = await self._messages[index].edit(content=chunk)
                        self._shown[index] = chunk
                else:
                    self._messages.append(await self._send(chunk))
                    self._shown.append(chunk)
            self._throttle.note_edit(self._channel_id)

    async def _send(self, chunk: str) -> discord.Message:
        if self._reply_to is not None and not self._messages:
            reference = self._reply_to.to_reference(fail_if_not_exists=False)
            return await self._channel.send(chunk, reference=reference, mention_author=False)
        return await self._channel.send(chunk)
