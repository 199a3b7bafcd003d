"""Each channel's newest turns, kept in memory: read from the store once, then appended to."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.chat_messages import ChatMessage
from bot.store import Store, Turn
from bot.tokens import TokenCounter
from bot.window import MAX_WINDOW_TURNS, NameOf, ShownPictures, turn_to_message, turn_tokens

# Conversations kept in memory at once; a channel beyond that is read again from the store when it speaks.
MAX_CHANNELS = 1_000


@dataclass
class ChannelTurns:
    """A channel's newest turns (oldest first), whether the store holds older ones, and each turn's chat
    message as it was last sent (a long conversation's turns go out again with every request)."""

    turns: list[Turn] = field(default_factory=list)
    has_older: bool = False
    tokens: int = 0  # of `turns`, together
    messages: dict[int, ChatMessage] = field(default_factory=dict)


class History:
    """The turns each conversation's window is built from, without reading the store each turn.

    A channel belongs to one process (its guild's shard), so nothing else changes its turns behind this
    cache. Only as many of the newest turns are kept as could ever fit a request (`keep_tokens`, and at
    most MAX_WINDOW_TURNS), so memory is bounded however long a conversation grows. Callers hold the
    channel's place (TurnOrder) while they read or change it.
    """

    def __init__(
        self,
        store: Store,
        counter: TokenCounter,
        *,
        keep_tokens: int,
        name_of: NameOf | None = None,
        channels: int = MAX_CHANNELS,
    ) -> None:
        self._store = store
        self._counter = counter
        self._keep_tokens = keep_tokens
        self._name_of = name_of
        self._max_channels = channels
        self._channels: OrderedDict[int, ChannelTurns] = OrderedDict()

    async def load(self, channel_id: int) -> ChannelTurns:
        """The channel's newest turns, read from the store the first time."""
        cached = self._channels.get(channel_id)
        if cached is not None:
            self._channels.move_to_end(channel_id)
            return cached
        stored = await self._store.recent_turns(channel_id, MAX_WINDOW_TURNS + 1)
        # Turns stored before token counts were kept (tokens 0) are counted now, once.
        turns = [turn if turn.tokens else replace(turn, tokens=turn_tokens(turn, self._counter)) for turn in stored]
        kept = turns[-MAX_WINDOW_TURNS:]
        loaded = ChannelTurns(kept, has_older=len(turns) > MAX_WINDOW_TURNS, tokens=sum(t.tokens for t in kept))
        self._trim(loaded)
        self._channels[channel_id] = loaded
        if len(self._channels) > self._max_channels:
            self._channels.popitem(last=False)
        return loaded

    def message(self, channel: ChannelTurns, turn: Turn, shown: ShownPictures | None) -> ChatMessage:
        """A turn's chat message, made once (a turn whose pictures are shown is made afresh: rare, and large)."""
        if shown is not None:
            return turn_to_message(turn, self._name_of, shown)
        message = channel.messages.get(turn.id)
        if message is None:
            message = channel.messages[turn.id] = turn_to_message(turn, self._name_of)
        return message

    def append(self, channel_id: int, turn: Turn) -> None:
        """Add a stored turn to a channel kept in memory."""
        cached = self._channels.get(channel_id)
        if cached is not None:
            cached.turns.append(turn)
            cached.tokens += turn.tokens
            self._trim(cached)

    def replace(self, channel_id: int, turn: Turn) -> None:
        """Put a turn stored again (an answer now whole) in place of its earlier version, or add it."""
        cached = self._channels.get(channel_id)
        if cached is None:
            return
        if not cached.turns or turn.id > cached.turns[-1].id:  # a turn stored for the first time: newer than all
            self.append(channel_id, turn)
            return
        # An answer being written again is one of the newest turns: look from the end.
        for index in range(len(cached.turns) - 1, -1, -1):
            kept = cached.turns[index]
            if kept.id == turn.id:
                cached.turns[index] = turn
                cached.tokens += turn.tokens - kept.tokens
                cached.messages.pop(turn.id, None)
                return
        self.append(channel_id, turn)

    def remove(self, channel_id: int, turn_id: int) -> None:
        """Drop a turn the store no longer has (an answer that failed part way)."""
        cached = self._channels.get(channel_id)
        if cached is not None:
            cached.turns = [turn for turn in cached.turns if turn.id != turn_id]
            cached.tokens = sum(turn.tokens for turn in cached.turns)
            cached.messages.pop(turn_id, None)

    def forget(self, channel_id: int) -> None:
        """Drop a channel from memory (its history was cleared)."""
        self._channels.pop(channel_id, None)

    def forget_older(self, before: datetime) -> None:
        """Drop turns older than `before` from memory, as the store's retention sweep drops them."""
        for channel_id in [cid for cid, channel in self._channels.items() if channel.turns]:
            if self._channels[channel_id].turns[0].created_at < before:
                self.forget(channel_id)  # read again from the store, which no longer has them, when it speaks

    def _trim(self, channel: ChannelTurns) -> None:
        """Keep the newest turns that could still fit a request; older ones stay in the store only."""
        while len(channel.turns) > 1 and (channel.tokens > self._keep_tokens or len(channel.turns) > MAX_WINDOW_TURNS):
            dropped = channel.turns.pop(0)
            channel.tokens -= dropped.tokens
            channel.messages.pop(dropped.id, None)
            channel.has_older = True
