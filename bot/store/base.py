"""The store's interface and the small records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

Role = Literal["user", "assistant"]
# A user turn is "pending" until it is answered (or its answer failed); an answer is "streaming" while only
# part of it is stored (what was already shown), then "done". A restart looks for what is not done.
TurnState = Literal["pending", "streaming", "done"]
Scope = Literal["user", "guild"]
UsageFeature = Literal["chat", "images", "audio", "speech", "moderation"]

# Per-minute limits count the requests of the last RATE_WINDOW_SECONDS.
RATE_WINDOW_SECONDS = 60.0
# Pictures kept per channel (the newest): no more can ever be sent again (PICTURE_TURNS × the pictures a turn
# may carry stays well under it), and a channel's stored pictures stay bounded however long it talks.
MAX_PICTURES_PER_CHANNEL = 40
# A hold left by a process that died mid-request stops counting after this long: longer than any request
# (a transcription must finish while its 15-minute interaction token lasts).
HOLD_SECONDS = 30 * 60.0


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Picture:
    """A picture shared in a turn, as the model is shown it; `data` is empty when read back with the turn."""

    filename: str
    mime_type: str
    tokens: int  # what it costs in a request
    data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class NewTurn:
    """A turn about to be stored: who said what in a channel or thread."""

    role: Role
    author_id: int | None
    author_name: str
    content: str
    spoken: bool = False
    tokens: int = 0  # counted once, when the turn is stored
    message_id: int | None = None  # the Discord message a user turn came from
    state: TurnState = "done"
    pictures: tuple[Picture, ...] = ()


@dataclass(frozen=True)
class Turn(NewTurn):
    """A stored turn, with its position, time and place."""

    id: int = 0
    created_at: datetime = datetime.min
    channel_id: int = 0
    guild_id: int | None = None
    reply_ids: tuple[int, ...] = ()  # the Discord messages an answer occupies


@dataclass(frozen=True)
class AnswerWrite:
    """An answer to store: while streaming, what was shown so far; once whole, with its usage.

    Without `usage` the answer is stored as "streaming" (written before that much is shown, so a crash keeps
    it); with `usage` it is "done", its question is marked answered and the usage recorded (its hold dropped),
    all in one transaction. `answer_id` updates the answer written before instead of adding one.
    """

    channel_id: int
    guild_id: int | None
    question_id: int
    text: str
    tokens: int
    reply_ids: tuple[int, ...] = ()
    answer_id: int | None = None
    usage: UsageRecord | None = None
    hold_id: int | None = None


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

    feature: UsageFeature
    model: str
    user_id: int | None
    guild_id: int | None
    channel_id: int | None
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    image_size: str | None = None
    audio_seconds: float = 0.0
    speech_characters: int = 0


def budget_measure(usage: UsageRecord) -> float:
    """What a call counts against its feature's daily budget, in the unit the store keeps budgets in."""
    match usage.feature:
        case "chat":
            return usage.input_tokens + usage.output_tokens
        case "images":
            return usage.images
        case "audio":
            return usage.audio_seconds
        case "speech":
            return usage.speech_characters
        case "moderation":
            return 0.0


@dataclass(frozen=True)
class UsageTotals:
    """What a set of API calls used, summed."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    audio_seconds: float = 0.0
    speech_characters: int = 0

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


@dataclass(frozen=True)
class Cap:
    """One limit a request must stay within: whose (a member or a server) and how much (more than 0)."""

    scope: Scope
    key: int
    limit: float


@dataclass(frozen=True)
class Reservation:
    """What a request asks of the limits: checked and taken at once, in one transaction.

    `amount` (in the unit the feature's budget counts: tokens, images, seconds of audio, characters) is
    held against the daily `budgets` until the usage is recorded or the hold released. `rates` are the
    per-minute limits the request counts against; empty for the second half of a request already counted.
    With `hold_id`, `amount` is added to that hold instead (a length learned later) and no rate is counted.
    """

    feature: UsageFeature
    user_id: int
    guild_id: int | None
    amount: float
    budgets: tuple[Cap, ...]
    rates: tuple[Cap, ...]
    now: datetime
    hold_id: int | None = None


@dataclass(frozen=True)
class Reserved:
    """The request may go ahead; its amount is held under `hold_id` (None when nothing was held)."""

    hold_id: int | None


@dataclass(frozen=True)
class Refusal:
    """Why a reservation was refused: the first cap it would break.

    For a budget, `used` is what is used and held today; for a rate, the requests of the last minute and
    `retry_after` the seconds until one of them is a minute old.
    """

    kind: Literal["budget", "rate"]
    scope: Scope
    limit: float
    used: float
    retry_after: float = 0.0


class Store(Protocol):
    """Everything the bot persists. Every write is atomic: a crash never leaves half a turn or half a charge."""

    async def close(self) -> None:
        """Flush and close; the store is unusable afterwards."""

    async def add_turn(self, channel_id: int, turn: NewTurn, *, guild_id: int | None = None) -> Turn:
        """Append a turn to a channel's conversation."""

    async def write_answer(self, answer: AnswerWrite) -> int:
        """Store (or update) an answer; return its turn id. See AnswerWrite."""

    async def abandon_answer(
        self,
        question_id: int,
        *,
        answer_id: int | None = None,
        usage: UsageRecord | None = None,
        hold_id: int | None = None,
    ) -> None:
        """An answer that failed or was withheld: forget what was stored of it, mark the question answered (it
        was told why) and record what the call used, in one transaction."""

    async def turns_in_flight(self, since: datetime) -> list[Turn]:
        """Questions still pending and answers still streaming, stored since `since`, oldest first: what a
        crash interrupted."""

    async def picture_data(self, turn_ids: list[int]) -> dict[int, list[bytes]]:
        """The data of the pictures of these turns, each turn's in order (pictures past the channel's bound
        are gone: a turn may come back with fewer than it names)."""

    async def recent_turns(self, channel_id: int, limit: int) -> list[Turn]:
        """The newest `limit` turns of a channel, oldest first; costs the same however long the history."""

    async def clear_turns(self, channel_id: int) -> int:
        """Forget a channel's turns; return how many were forgotten."""

    async def forget_channels(self, channel_ids: list[int]) -> int:
        """Forget deleted channels or threads: their turns and records (their usage stays in the ledger, which
        holds no content). Return how many turns were forgotten."""

    async def forget_guild(self, guild_id: int) -> int:
        """Forget a server the bot left: every turn, channel record and setting of it. Return how many turns."""

    async def prune(self, now: datetime, *, turns_before: datetime | None = None, batch: int = 1000) -> int:
        """Drop what no longer counts (rate-limit entries past their minute, holds past their expiry) and, with
        `turns_before`, at most `batch` turns older than it; return how many turns went (call again while > 0)."""

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

    async def swap_meta(self, key: str, value: str) -> str | None:
        """Store a value and return the one it replaced, atomically: of processes swapping in the same value at
        once, exactly one sees the old one."""

    async def setdefault_meta(self, key: str, value: str) -> str:
        """The value kept at `key`, storing `value` first if there is none: of processes doing this at once,
        all get the one value stored first."""

    async def reserve(self, reservation: Reservation) -> Reserved | Refusal:
        """Check the request against its budgets and rates and, if it fits, count it and hold its amount:
        one transaction, so requests in any process at the same time cannot share the last of a limit."""

    async def release_hold(self, hold_id: int) -> None:
        """Stop holding what a request would have used: it failed, or used nothing."""

    async def record_usage(self, usage: UsageRecord, *, hold_id: int | None = None) -> None:
        """Add one API call to the usage ledger and today's totals, dropping its hold, in one transaction."""

    async def usage_by_model(
        self, since: datetime, *, user_id: int | None = None, guild_id: int | None = None
    ) -> list[UsageSum]:
        """Use from the UTC day of `since` on, per feature, model and image size, by a user and/or in a guild."""

    async def usage_by_user(self, guild_id: int, since: datetime) -> list[UsageSum]:
        """Use in a guild from the UTC day of `since` on, per user, feature, model and image size."""

    async def chosen_models(self) -> list[tuple[str, str]]:
        """(feature, model) for every model admins chose for a server or channel with /settings model."""

    async def get_guild_settings(self, guild_id: int) -> dict[str, object]:
        """A guild's settings as /settings stored them (empty when none were changed)."""

    async def update_guild_settings(self, guild_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a guild's settings (as JSON merge patch: None removes a key, objects merge)."""

    async def claim_identify_slot(self, bucket: int, interval: float) -> float:
        """Take the gateway identify slot of a `max_concurrency` bucket if it is free (return 0), else return the
        seconds until it is: at most one identify per bucket per `interval`, across every process."""
