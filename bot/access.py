"""Who may use which feature where, and how much: the gate every request passes before any API call."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import discord

from bot.config import Limits, Settings
from bot.errors import UserError
from bot.store import Store, UsageTotals

Feature = Literal["chat", "images", "audio"]
FEATURES: tuple[Feature, ...] = ("chat", "images", "audio")
FEATURE_NAMES: dict[Feature, str] = {"chat": "Chat", "images": "Image generation", "audio": "Transcription"}
RATE_WINDOW_SECONDS = 60.0
# Forgetting idle members' request times at most this often keeps the sweep off the hot path.
SWEEP_INTERVAL_SECONDS = 300.0

NO_DMS = "💬 I don't work in direct messages here. Use me in a server."
BLOCKED = "🚫 You can't use this bot."
GUILD_NOT_ALLOWED = "🚫 This bot isn't enabled in this server."


@dataclass(frozen=True)
class Budget:
    """How one feature's daily budget is measured and named."""

    noun: str
    unit: str
    user_limit: str
    guild_limit: str


BUDGETS: dict[Feature, Budget] = {
    "chat": Budget("chat", "tokens", "user_daily_chat_tokens", "guild_daily_chat_tokens"),
    "images": Budget("image", "images", "user_daily_images", "guild_daily_images"),
    "audio": Budget("transcription", "minutes of audio", "user_daily_audio_minutes", "guild_daily_audio_minutes"),
}


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def start_of_day(moment: datetime) -> datetime:
    """00:00 UTC on the day of `moment`: when daily budgets reset."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def start_of_month(moment: datetime) -> datetime:
    """00:00 UTC on the first of the month of `moment`."""
    return start_of_day(moment).replace(day=1)


def role_ids_of(user: discord.abc.User) -> list[int]:
    """A member's role ids (@everyone included, its id being the guild's); none for a user outside a guild."""
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


def parent_id_of(channel: object) -> int | None:
    """The channel a thread belongs to, whose settings the thread inherits; None for anything else."""
    return channel.parent_id if isinstance(channel, discord.Thread) else None


def tighter(bot_wide: int, guild: int | None) -> int:
    """The stricter of the bot-wide limit and a guild's own (0 means no limit), so a guild can only lower it."""
    if guild is None or guild <= 0:
        return bot_wide
    return guild if bot_wide == 0 else min(bot_wide, guild)


class RateWindow:
    """Requests in the last minute per key (a user or a guild).

    Kept in memory: it guards against bursts, so a restart forgetting at most one minute of requests is
    harmless, while a database write per request is not free. Daily budgets, which must survive
    restarts, come from the usage ledger instead.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._hits: dict[int, deque[float]] = {}
        self._last_sweep = clock()

    def retry_after(self, key: int, limit: int) -> float | None:
        """Seconds until `key` may make another request under `limit` per minute, or None if it may now."""
        hits = self._recent(key)
        if limit <= 0 or len(hits) < limit:
            return None
        return max(hits[-limit] + RATE_WINDOW_SECONDS - self._clock(), 0.0)

    def add(self, key: int) -> None:
        """Count one request by `key` now."""
        now = self._clock()
        self._hits.setdefault(key, deque()).append(now)
        if now - self._last_sweep >= SWEEP_INTERVAL_SECONDS:
            self._last_sweep = now
            for idle in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - RATE_WINDOW_SECONDS]:
                del self._hits[idle]

    def _recent(self, key: int) -> deque[float]:
        hits = self._hits.get(key, deque())
        cutoff = self._clock() - RATE_WINDOW_SECONDS
        while hits and hits[0] <= cutoff:
            hits.popleft()
        return hits


Scope = Literal["user", "guild"]


@dataclass(frozen=True)
class _Spent:
    """One daily budget that applies to a request, and what the ledger says of it today."""

    scope: Scope
    key: int
    limit: int
    used: float
    resets_at: datetime


@dataclass
class Admission:
    """A request the gate let through. Use it as `with await gate.admit(...):` around the API call and the
    recording of its usage: what it will use is held against the budgets until the block ends."""

    gate: Gate
    feature: Feature
    user_id: int
    guild_id: int | None
    held: float = 0.0

    def budget_keys(self) -> list[tuple[Scope, int, Feature]]:
        """The budgets what this request uses counts against."""
        keys: list[tuple[Scope, int, Feature]] = [("user", self.user_id, self.feature)]
        if self.guild_id is not None:
            keys.append(("guild", self.guild_id, self.feature))
        return keys

    async def hold_at_least(self, amount: float) -> None:
        """Make sure `amount` in all is held, checking the budgets for what is added (raises UserError)."""
        if amount > self.held:
            await self.gate.hold_more(self, amount - self.held)

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *_: object) -> None:
        self.gate.release(self)


class Gate:
    """Decides whether a request may reach the API: access settings, per-channel toggles, rate limits, budgets.

    Cogs call `admit` before every API call (it raises UserError saying which rule refused and what to do)
    and `enabled_here` to ignore messages silently where a feature is off.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        now: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._settings = settings
        self._now = now
        self._user_rate = RateWindow(monotonic)
        self._guild_rate = RateWindow(monotonic)
        # What admitted requests still in flight will use, per (scope, id, feature): not yet in the ledger.
        self._held: dict[tuple[Scope, int, Feature], float] = {}

    async def enabled_here(
        self,
        feature: Feature,
        guild_id: int | None,
        channel_id: int | None,
        *,
        parent_id: int | None = None,
        user_id: int | None = None,
    ) -> bool:
        """Whether the feature works here at all: DMs allowed, guild allowed, not switched off for guild or channel.

        With `user_id`, also False for a blocked user: messages are ignored silently rather than answered with
        a refusal each time, which would let a blocked user make the bot post.
        """
        if user_id is not None and user_id in self._settings.blocked_user_ids:
            return False
        if guild_id is None:
            return self._settings.allow_dms
        if self._settings.allowed_guild_ids and guild_id not in self._settings.allowed_guild_ids:
            return False
        switch = await self._lookup(("features", feature), guild_id, channel_id, parent_id)
        return switch is not False

    async def admit(
        self,
        feature: Feature,
        *,
        user_id: int,
        role_ids: Iterable[int],
        guild_id: int | None,
        channel_id: int | None,
        parent_id: int | None = None,
        images: int = 0,
        audio_seconds: float = 0.0,
        counts_as_request: bool = True,
    ) -> Admission:
        """Let one request through or raise UserError saying why not; `images`/`audio_seconds`: what it will use.

        What it will use is held against today's budgets until the returned Admission's `with` block ends (by
        then it is in the usage ledger), so requests running at the same time cannot share the last of a budget.

        `counts_as_request=False` is for the second half of one request already counted (a voice message
        transcribed, then answered), which should cost one slot of the per-minute limit, not two.

        A request that brings use up to a limit is let through; one that would go past it is refused. Token use
        is only known afterwards, so chat is admitted while today's tokens are below the budget.
        """
        settings = self._settings
        if user_id in settings.blocked_user_ids:
            raise UserError(BLOCKED)
        if guild_id is None and not settings.allow_dms:
            raise UserError(NO_DMS)
        if guild_id is not None and settings.allowed_guild_ids and guild_id not in settings.allowed_guild_ids:
            raise UserError(GUILD_NOT_ALLOWED)
        if not await self.enabled_here(feature, guild_id, channel_id, parent_id=parent_id):
            raise UserError(f"🔕 {FEATURE_NAMES[feature]} is turned off here. A server admin can turn it on.")
        self._check_roles(feature, set(role_ids), in_guild=guild_id is not None)
        limits = await self.limits_for(guild_id)
        need = images if feature == "images" else audio_seconds / 60 if feature == "audio" else 0
        spent = await self._spent_today(feature, limits, user_id=user_id, guild_id=guild_id)
        # From here no await: budgets and rates are checked, held and counted at once, so requests running
        # at the same time cannot both take the last of a budget or the last slot of a minute.
        self._check_budget(feature, spent, need)
        if counts_as_request:
            self._check_rate(limits, user_id, guild_id)
            self._user_rate.add(user_id)
            if guild_id is not None:
                self._guild_rate.add(guild_id)
        admission = Admission(self, feature, user_id, guild_id)
        self._hold(admission, need)
        return admission

    async def hold_more(self, admission: Admission, amount: float) -> None:
        """Check that `amount` more fits today's budgets and hold it too (audio whose length shows once decoded)."""
        limits = await self.limits_for(admission.guild_id)
        spent = await self._spent_today(
            admission.feature, limits, user_id=admission.user_id, guild_id=admission.guild_id
        )
        self._check_budget(admission.feature, spent, amount)
        self._hold(admission, amount)

    def _hold(self, admission: Admission, amount: float) -> None:
        if amount <= 0:
            return
        for key in admission.budget_keys():
            self._held[key] = self._held.get(key, 0.0) + amount
        admission.held += amount

    def release(self, admission: Admission) -> None:
        """Stop holding what an admitted request would use: it is in the ledger now, or was never spent."""
        for key in admission.budget_keys():
            left = self._held.get(key, 0.0) - admission.held
            if left > 1e-9:
                self._held[key] = left
            else:
                self._held.pop(key, None)
        admission.held = 0.0

    async def limits_for(self, guild_id: int | None) -> Limits:
        """The limits in force in a guild: the bot-wide ones, lowered where the guild's admins set their own."""
        limits = self._settings.limits
        if guild_id is None:
            return limits
        own = (await self._store.get_guild_settings(guild_id)).get("limits")
        if not isinstance(own, dict):
            return limits
        return replace(
            limits,
            **{
                limit.name: tighter(getattr(limits, limit.name), _as_int(own.get(limit.name)))
                for limit in fields(Limits)
            },
        )

    async def model_for(
        self, feature: Feature, guild_id: int | None, channel_id: int | None, *, parent_id: int | None = None
    ) -> str:
        """The model a feature uses here: the channel's, else its parent's, else the guild's, else the bot's."""
        chosen = await self._lookup(("models", feature), guild_id, channel_id, parent_id)
        if isinstance(chosen, str) and chosen:
            return chosen
        defaults = {
            "chat": self._settings.chat_model,
            "images": self._settings.image_model,
            "audio": self._settings.transcribe_model,
        }
        return defaults[feature]

    async def auto_transcribe_here(
        self, guild_id: int | None, channel_id: int | None, *, parent_id: int | None = None
    ) -> bool:
        """Whether voice messages here are transcribed unasked: channel, parent, guild, then AUTO_TRANSCRIBE."""
        switch = await self._lookup(("auto_transcribe",), guild_id, channel_id, parent_id)
        return switch if isinstance(switch, bool) else self._settings.auto_transcribe

    def _check_roles(self, feature: Feature, role_ids: set[int], *, in_guild: bool) -> None:
        allowed = {
            "chat": self._settings.chat_role_ids,
            "images": self._settings.images_role_ids,
            "audio": self._settings.audio_role_ids,
        }[feature]
        if not allowed or allowed & role_ids:
            return
        if not in_guild:
            raise UserError(f"🔒 {FEATURE_NAMES[feature]} needs a server role. Use it in a server.")
        roles = ", ".join(f"<@&{role_id}>" for role_id in sorted(allowed))
        raise UserError(f"🔒 {FEATURE_NAMES[feature]} needs one of these roles: {roles}.")

    async def _spent_today(
        self, feature: Feature, limits: Limits, *, user_id: int, guild_id: int | None
    ) -> list[_Spent]:
        """Today's use from the ledger for each budget that applies (member, and server in a guild)."""
        budget = BUDGETS[feature]
        since = start_of_day(self._now())
        scopes: list[tuple[Scope, int, int]] = [("user", user_id, getattr(limits, budget.user_limit))]
        if guild_id is not None:
            scopes.append(("guild", guild_id, getattr(limits, budget.guild_limit)))
        spent = []
        for scope, key, limit in scopes:
            if limit <= 0:
                continue
            totals = await self._store.usage_total(
                feature, since, user_id=key if scope == "user" else None, guild_id=key if scope == "guild" else None
            )
            spent.append(_Spent(scope, key, limit, _measure(feature, totals), since + timedelta(days=1)))
        return spent

    def _check_budget(self, feature: Feature, spent: list[_Spent], need: float) -> None:
        """Refuse when `need` more would go past a budget, counting what requests in flight hold."""
        budget = BUDGETS[feature]
        for item in spent:
            used = item.used + self._held.get((item.scope, item.key, feature), 0.0)
            if used < item.limit and used + need <= item.limit:
                continue
            who = "You have" if item.scope == "user" else "This server has"
            if used < item.limit:
                left = _amount(item.limit - used)
                words = (
                    f"📊 That needs {_amount(need)} {budget.unit}; {who.lower()} {left} of today's {item.limit:,} left."
                )
            else:
                words = f"📊 {who} used today's {budget.noun} allowance ({item.limit:,} {budget.unit})."
            raise UserError(f"{words} It resets at 00:00 UTC (<t:{int(item.resets_at.timestamp())}:R>).")

    def _check_rate(self, limits: Limits, user_id: int, guild_id: int | None) -> None:
        wait = self._user_rate.retry_after(user_id, limits.user_requests_per_minute)
        if wait is not None:
            raise UserError(
                f"⏳ Slow down: you can make {_requests(limits.user_requests_per_minute)} a minute. "
                f"Try again in {max(math.ceil(wait), 1)} s."
            )
        if guild_id is None:
            return
        wait = self._guild_rate.retry_after(guild_id, limits.guild_requests_per_minute)
        if wait is not None:
            raise UserError(
                f"⏳ This server has reached its limit of {_requests(limits.guild_requests_per_minute)} a minute. "
                f"Try again in {max(math.ceil(wait), 1)} s."
            )

    async def _lookup(
        self, path: tuple[str, ...], guild_id: int | None, channel_id: int | None, parent_id: int | None
    ) -> object:
        """The most specific value set at `path`: in the channel, its parent channel, then the guild; else None."""
        layers: list[dict[str, object]] = []
        if channel_id is not None:
            record = await self._store.get_channel(channel_id)
            layers.append(record.settings)
            parent_id = parent_id if parent_id is not None else record.parent_id
        if parent_id is not None:
            layers.append((await self._store.get_channel(parent_id)).settings)
        if guild_id is not None:
            layers.append(await self._store.get_guild_settings(guild_id))
        for layer in layers:
            value: object = layer
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                return value
        return None


def _measure(feature: Feature, totals: UsageTotals) -> float:
    """Use in the unit of the feature's daily budget."""
    if feature == "chat":
        return totals.tokens
    if feature == "images":
        return totals.images
    return totals.audio_seconds / 60


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _amount(value: float) -> str:
    """A budget figure: whole numbers with thousands separators, minutes to one decimal (rounded down)."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{math.floor(value * 10) / 10:,.1f}"


def _requests(count: int) -> str:
    return f"{count} request" if count == 1 else f"{count} requests"
