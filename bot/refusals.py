"""Saying a refusal once: a member flooding a channel hears why they are not answered once, not per message.

A refusal holds for a while (a per-minute limit for its wait, a budget until it resets): the message paths
(typed and spoken turns) ask `RefusalMemory.should_say` before replying with one, and stay silent while the
same refusal to the same member in the same channel still holds. Slash commands are private and always answer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from bot.errors import ApiError, LimitReached, UserError

# A refusal that names no wait of its own (a role missing, moderation) is not repeated for this long.
QUIET_SECONDS = 60.0
# Nor is any refusal kept quiet longer than this: someone back an hour later should hear why again.
MAX_QUIET_SECONDS = 600.0
# Entries are a few dozen bytes: this many cover every member refused recently on a busy shard.
MAX_REMEMBERED = 10_000


def reason_of(error: BaseException) -> str:
    """What a refusal is about, so that another reason is said on its own: a limit's kind, else its words."""
    if isinstance(error, LimitReached):
        return error.reason
    if isinstance(error, UserError):
        return f"words:{error}"
    if isinstance(error, ApiError):
        return f"api:{error.kind.value}"
    return f"error:{type(error).__name__}"


def quiet_for(error: BaseException) -> float:
    """How long the same refusal is not said again: as long as it holds, within [0, MAX_QUIET_SECONDS]."""
    wait = error.retry_after if isinstance(error, LimitReached) else QUIET_SECONDS
    return min(max(wait, 0.0), MAX_QUIET_SECONDS)


class RefusalMemory:
    """Remembers, per (member, channel, reason), until when a refusal said there still holds; bounded in size."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, size: int = MAX_REMEMBERED) -> None:
        self._clock = clock
        self._size = size
        self._until: OrderedDict[tuple[int, int, str], float] = OrderedDict()

    def should_say(self, user_id: int, channel_id: int, error: BaseException) -> bool:
        """Whether to tell the member this refusal now; if so, it is remembered for as long as it holds."""
        now = self._clock()
        key = (user_id, channel_id, reason_of(error))
        until = self._until.get(key)
        if until is not None and until > now:
            return False
        self._until[key] = now + quiet_for(error)
        self._until.move_to_end(key)
        while len(self._until) > self._size:
            self._until.popitem(last=False)  # the oldest said: forgetting it costs at most one more reply
        return True
