"""The store's interface and the small records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class NewTurn:
    """A turn about to be stored: who said what in a channel or thread."""

    role: Role
    author_id: int | None
    author_name: str
    content: str
    spoken: bool = False


@dataclass(frozen=True)
class Turn(NewTurn):
    """A stored turn, with its position and time."""

    id: int = 0
    created_at: datetime = datetime.min


@dataclass(frozen=True)
class ChannelRecord:
    """What the bot keeps about a channel or thread besides its turns."""

    channel_id: int
    guild_id: int | None = None
    parent_id: int | None = None
    opened_by: int | None = None
    is_conversation: bool = False
    system_prompt: str | None = None
    settings: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageRecord:
    """One API call's cost, for usage reports and limits."""

    feature: Literal["chat", "images", "audio", "moderation"]
    model: str
    user_id: int | None
    guild_id: int | None
    channel_id: int | None
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    image_size: str | None = None
    audio_seconds: float = 0.0


@dataclass(frozen=True)
class UsageTotals:
    """What a set of API calls used, summed."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    audio_seconds: float = 0.0

    @property
    def tokens(self) -> int:
        """Input and output tokens together, as the daily chat budget counts them."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class UsageSum(UsageTotals):
    """Usage summed for one feature, model and image size (and, from usage_by_user, one user)."""

    feature: str = ""
    model: str = ""
    image_size: str | None = None
    user_id: int | None = None


class Store(Protocol):
    """Everything the bot persists. Every write is atomic: a crash never leaves half a turn."""

    async def close(self) -> None:
        """Flush and close; the store is unusable afterwards."""

    async def add_turn(self, channel_id: int, turn: NewTurn) -> Turn:
        """Append a turn to a channel's conversation."""

    async def recent_turns(self, channel_id: int, limit: int) -> list[Turn]:
        """The newest `limit` turns of a channel, oldest first; costs the same however long the history."""

    async def clear_turns(self, channel_id: int) -> int:
        """Forget a channel's turns; return how many were forgotten."""

    async def get_channel(self, channel_id: int) -> ChannelRecord:
        """The channel's record, or an empty one when the bot has stored nothing about it."""

    async def save_conversation_thread(
        self, thread_id: int, *, guild_id: int | None, parent_id: int, opened_by: int, system_prompt: str | None
    ) -> None:
        """Remember a thread the bot opened as a conversation, and who opened it."""

    async def set_system_prompt(self, channel_id: int, prompt: str | None, *, guild_id: int | None) -> None:
        """Set (or with None, clear) a channel's system prompt."""

    async def update_channel_settings(
        self, channel_id: int, changes: dict[str, object], *, guild_id: int | None
    ) -> None:
        """Merge `changes` into a channel's settings (as JSON merge patch: None removes a key, objects merge)."""

    async def get_meta(self, key: str) -> str | None:
        """A value the bot keeps about itself (such as the last command sync)."""

    async def set_meta(self, key: str, value: str) -> None:
        """Store a value the bot keeps about itself."""

    async def record_usage(self, usage: UsageRecord) -> None:
        """Add one API call to the usage ledger."""

    async def usage_total(
        self, feature: str, since: datetime, *, user_id: int | None = None, guild_id: int | None = None
    ) -> UsageTotals:
        """One feature's use since `since`, by a user and/or in a guild (neither: the whole bot)."""

    async def usage_by_model(
        self, since: datetime, *, user_id: int | None = None, guild_id: int | None = None
    ) -> list[UsageSum]:
        """Use since `since` per feature, model and image size, by a user and/or in a guild."""

    async def usage_by_user(self, guild_id: int, since: datetime) -> list[UsageSum]:
        """Use in a guild since `since` per user, feature, model and image size."""

    async def chosen_models(self) -> list[tuple[str, str]]:
        """(feature, model) for every model admins chose for a server or channel with /settings model."""

    async def get_guild_settings(self, guild_id: int) -> dict[str, object]:
        """A guild's settings as /settings stored them (empty when none were changed)."""

    async def update_guild_settings(self, guild_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a guild's settings (as JSON merge patch: None removes a key, objects merge)."""
