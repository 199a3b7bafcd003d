"""The order of each channel's turns: taken when a message arrives, kept while turns are screened at once."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class TurnOrder:
    """Per channel, the places of the turns not yet answered, in the order their messages arrived.

    A message takes its place at once (no await before it), so its turn is stored and answered after every
    turn that arrived before it; what comes between (the gate, moderation, a transcription) runs while the
    turns ahead are answered. A message that turns out not to be a turn leaves its place without waiting.
    """

    def __init__(self) -> None:
        self._queues: dict[int, deque[Place]] = {}

    def arrive(self, channel_id: int) -> Place:
        """Take the next place in a channel."""
        queue = self._queues.setdefault(channel_id, deque())
        place = Place(self, channel_id)
        if not queue:
            place.ready.set()
        queue.append(place)
        return place

    def busy(self, channel_id: int) -> bool:
        """Whether any turn of the channel holds a place."""
        return channel_id in self._queues

    def _leave(self, place: Place) -> None:
        queue = self._queues.get(place.channel_id)
        if queue is None or place not in queue:
            return
        was_first = queue[0] is place
        queue.remove(place)
        if not queue:
            del self._queues[place.channel_id]
        elif was_first:
            queue[0].ready.set()


class Place:
    """One turn's place in its channel: `async with place:` waits for the turns ahead, and leaves at the end."""

    def __init__(self, order: TurnOrder, channel_id: int) -> None:
        self._order = order
        self.channel_id = channel_id
        self.ready = asyncio.Event()

    async def __aenter__(self) -> Place:
        try:
            await self.ready.wait()
        except BaseException:
            self.leave()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.leave()

    def leave(self) -> None:
        """Give up the place (the turns behind move up); leaving twice does nothing."""
        self._order._leave(self)
