"""How each feature's use is measured against its limits, and the words for a request a limit refuses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from bot.config import Limits
from bot.errors import LimitReached
from bot.render import count, plural
from bot.store import Cap, Refusal

Feature = Literal["chat", "images", "audio", "speech"]
FEATURES: tuple[Feature, ...] = ("chat", "images", "audio", "speech")
FEATURE_NAMES: dict[Feature, str] = {
    "chat": "Chat",
    "images": "Image generation",
    "audio": "Transcription",
    "speech": "Speech",
}


@dataclass(frozen=True)
class Budget:
    """How one feature's daily budget is measured and named.

    The store counts use in the feature's own measure (tokens, images, seconds of audio); a limit is set in
    `unit`s, each `per_unit` of that measure (a minute of audio is 60 seconds).
    """

    noun: str
    unit: str  # singular: "image", "minute of audio"
    user_limit: str
    guild_limit: str
    per_unit: float = 1.0
    units: str | None = None  # the plural, when it is not `unit` + "s"


BUDGETS: dict[Feature, Budget] = {
    "chat": Budget("chat", "token", "user_daily_chat_tokens", "guild_daily_chat_tokens"),
    "images": Budget("image", "image", "user_daily_images", "guild_daily_images"),
    "audio": Budget(
        "transcription",
        "minute of audio",
        "user_daily_audio_minutes",
        "guild_daily_audio_minutes",
        per_unit=60.0,
        units="minutes of audio",
    ),
    "speech": Budget(
        "speech",
        "character of speech",
        "user_daily_speech_characters",
        "guild_daily_speech_characters",
        units="characters of speech",
    ),
}


def start_of_day(moment: datetime) -> datetime:
    """00:00 UTC on the day of `moment`: when daily budgets reset."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def start_of_month(moment: datetime) -> datetime:
    """00:00 UTC on the first of the month of `moment`."""
    return start_of_day(moment).replace(day=1)


def tighter(bot_wide: int, guild: int | None) -> int:
    """The stricter of the bot-wide limit and a guild's own (0 means no limit), so a guild can only lower it."""
    if guild is None or guild <= 0:
        return bot_wide
    return guild if bot_wide == 0 else min(bot_wide, guild)


def refusal_words(feature: Feature, refusal: Refusal, need: float, now: datetime) -> LimitReached:
    """A refused reservation as words (which limit, what is left, when it frees up) and how long it holds."""
    reason = f"{refusal.kind}:{refusal.scope}"
    if refusal.kind == "rate":
        wait = max(math.ceil(refusal.retry_after), 1)
        requests = count(int(refusal.limit), "request")
        if refusal.scope == "user":
            return LimitReached(f"⏳ Slow down: you can make {requests} a minute. Try again in {wait} s.", reason, wait)
        words = f"⏳ This server has reached its limit of {requests} a minute. Try again in {wait} s."
        return LimitReached(words, reason, wait)
    budget = BUDGETS[feature]
    scale = budget.per_unit
    used, limit = refusal.used / scale, refusal.limit / scale
    resets_at = start_of_day(now) + timedelta(days=1)
    who = "You have" if refusal.scope == "user" else "This server has"
    if used < limit:
        left = _amount(limit - used)
        needed = _amount(need / scale)
        words = (
            f"📊 That needs {needed} {plural(needed, budget.unit, budget.units)}; "
            f"{who.lower()} {left} of today's {limit:,g} left."
        )
    else:
        allowance = count(limit, budget.unit, budget.units, spec=",g")
        words = f"📊 {who} used today's {budget.noun} allowance ({allowance})."
    words += f" It resets at 00:00 UTC (<t:{int(resets_at.timestamp())}:R>)."
    return LimitReached(words, reason, (resets_at - now).total_seconds())


def budget_caps(feature: Feature, limits: Limits, user_id: int, guild_id: int | None) -> tuple[Cap, ...]:
    """The daily budgets a request counts against (the member's, and the server's in a guild), in the store's
    measure; a limit of 0 is none."""
    budget = BUDGETS[feature]
    caps = [Cap("user", user_id, getattr(limits, budget.user_limit) * budget.per_unit)]
    if guild_id is not None:
        caps.append(Cap("guild", guild_id, getattr(limits, budget.guild_limit) * budget.per_unit))
    return tuple(cap for cap in caps if cap.limit > 0)


def rate_caps(limits: Limits, user_id: int, guild_id: int | None) -> tuple[Cap, ...]:
    """The per-minute limits a request counts against; a limit of 0 is none."""
    caps = [Cap("user", user_id, limits.user_requests_per_minute)]
    if guild_id is not None:
        caps.append(Cap("guild", guild_id, limits.guild_requests_per_minute))
    return tuple(cap for cap in caps if cap.limit > 0)


def _amount(value: float) -> str:
    """A budget figure: whole numbers with thousands separators, minutes to one decimal (rounded down)."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{math.floor(value * 10) / 10:,.1f}"
