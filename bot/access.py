"""Who may use which feature where, and how much: the gate every request passes before any API call."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import discord

from bot.api import MODEL_NAME
from bot.budgets import FEATURE_NAMES as FEATURE_NAMES
from bot.budgets import FEATURES as FEATURES
from bot.budgets import Feature as Feature
from bot.budgets import budget_caps, rate_caps, refusal_words
from bot.budgets import start_of_day as start_of_day
from bot.budgets import start_of_month as start_of_month
from bot.budgets import tighter as tighter
from bot.config import VOICE_REPLY_MODES, Limits, Settings, VoiceReplies
from bot.errors import UserError
from bot.records import Records
from bot.store import Refusal, Reservation, Store, UsageRecord, utc_now

NO_DMS = "💬 I don't work in direct messages here. Use me in a server."
BLOCKED = "🚫 You can't use this bot."
# A refused /chat model: names this many of the allowed ones (Discord's autocomplete offers 25).
MAX_MODELS_NAMED = 25
GUILD_NOT_ALLOWED = "🚫 This bot isn't enabled in this server."


def role_ids_of(user: discord.abc.User) -> list[int]:
    """A member's role ids (@everyone included, its id being the guild's); none for a user outside a guild."""
    return [role.id for role in user.roles] if isinstance(user, discord.Member) else []


def parent_id_of(channel: object) -> int | None:
    """The channel a thread belongs to, whose settings the thread inherits; None for anything else."""
    return channel.parent_id if isinstance(channel, discord.Thread) else None


@dataclass
class Admission:
    """A request the gate let through: what it will use is held against today's budgets until it is spent.

    Use it as `async with await gate.admit(...) as admission:` around the API call, and `await
    admission.spend(...)` once the call is made: the usage is recorded and the hold dropped at once. A hold
    not spent when the block ends is released (the request failed, or used nothing).
    """

    gate: Gate
    feature: Feature
    user_id: int
    guild_id: int | None
    channel_id: int | None
    hold_id: int | None = None
    held: float = 0.0

    async def hold_at_least(self, amount: float) -> None:
        """Make sure `amount` in all is held (in the budget's unit), checking the budgets for what is added."""
        if amount > self.held:
            await self.gate.hold_more(self, amount - self.held)

    async def spend(self, model: str, **measured: Any) -> None:
        """Record what the request used (input_tokens, images, audio_seconds, …) and drop its hold."""
        usage = UsageRecord(self.feature, model, self.user_id, self.guild_id, self.channel_id, **measured)
        await self.gate.store.record_usage(usage, hold_id=self.hold_id)
        self.hold_id, self.held = None, 0.0

    async def release(self) -> None:
        """Stop holding what the request would have used: it was never spent."""
        if self.hold_id is not None:
            await self.gate.store.release_hold(self.hold_id)
        self.hold_id, self.held = None, 0.0

    async def __aenter__(self) -> Admission:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.release()


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
        records: Records | None = None,
    ) -> None:
        self.store = store
        self.records = records or Records(store)
        self._settings = settings
        self._now = now

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
        characters: int = 0,
        counts_as_request: bool = True,
    ) -> Admission:
        """Let one request through or raise UserError saying why not; `images`/`audio_seconds`/`characters` (of
        speech): what it will use.

        The limits are checked and taken in one transaction of the store, so requests running at the same time
        (in this process or another on the same database) cannot share the last of a budget or of a minute.
        What the request will use is held until the returned Admission spends it or its block ends.

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
        amount = {"images": float(images), "audio": audio_seconds, "speech": float(characters)}.get(feature, 0.0)
        rates = rate_caps(limits, user_id, guild_id) if counts_as_request else ()
        outcome = await self.store.reserve(
            Reservation(
                feature,
                user_id,
                guild_id,
                amount,
                budget_caps(feature, limits, user_id, guild_id),
                rates,
                now=self._now(),
            )
        )
        if isinstance(outcome, Refusal):
            raise refusal_words(feature, outcome, amount, self._now())
        return Admission(self, feature, user_id, guild_id, channel_id, outcome.hold_id, amount)

    async def hold_more(self, admission: Admission, amount: float) -> None:
        """Check that `amount` more fits today's budgets and hold it too (audio whose length shows once decoded)."""
        limits = await self.limits_for(admission.guild_id)
        budgets = budget_caps(admission.feature, limits, admission.user_id, admission.guild_id)
        reservation = Reservation(
            admission.feature,
            admission.user_id,
            admission.guild_id,
            amount,
            budgets,
            (),
            now=self._now(),
            hold_id=admission.hold_id,
        )
        outcome = await self.store.reserve(reservation)
        if isinstance(outcome, Refusal):
            raise refusal_words(admission.feature, outcome, amount, self._now())
        admission.hold_id = outcome.hold_id
        admission.held += amount

    async def limits_for(self, guild_id: int | None) -> Limits:
        """The limits in force in a guild: the bot-wide ones, lowered where the guild's admins set their own."""
        limits = self._settings.limits
        if guild_id is None:
            return limits
        own = (await self.records.guild_settings(guild_id)).get("limits")
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
            "speech": self._settings.tts_model,
        }
        return defaults[feature]

    async def chat_models_here(
        self, guild_id: int | None, channel_id: int | None, *, parent_id: int | None = None
    ) -> tuple[str, ...]:
        """The chat models members may pick here: CHAT_MODEL, CHAT_MODELS, and those admins chose for the channel,
        its parent or the server with /settings model (so a model chosen for one server is not offered in another).
        """
        chosen = await self._values(("models", "chat"), guild_id, channel_id, parent_id)
        picked = [model for model in chosen if isinstance(model, str) and model]
        return tuple(dict.fromkeys((*self._settings.member_chat_models, *picked)))

    async def check_chat_model(
        self, model: str, guild_id: int | None, channel_id: int | None, *, parent_id: int | None = None
    ) -> str:
        """The model a member picked, if they may pick it here; else UserError naming the ones they may."""
        allowed = await self.chat_models_here(guild_id, channel_id, parent_id=parent_id)
        if model.strip() in allowed:
            return model.strip()
        # A name only echoed when it looks like one: anything else could be markup or mentions.
        named = f"`{model}` isn't" if MODEL_NAME.match(model) else "That isn't"
        choices = ", ".join(f"`{name}`" for name in allowed[:MAX_MODELS_NAMED])
        raise UserError(f"❓ {named} a model you can pick here. Pick one of: {choices}.")

    async def auto_transcribe_here(
        self, guild_id: int | None, channel_id: int | None, *, parent_id: int | None = None
    ) -> bool:
        """Whether voice messages here are transcribed unasked: channel, parent, guild, then AUTO_TRANSCRIBE."""
        switch = await self._lookup(("auto_transcribe",), guild_id, channel_id, parent_id)
        return switch if isinstance(switch, bool) else self._settings.auto_transcribe

    async def voice_replies_here(
        self, guild_id: int | None, channel_id: int | None, *, parent_id: int | None = None
    ) -> VoiceReplies:
        """When answers here also come as voice messages: channel, parent, guild, then VOICE_REPLIES."""
        mode = await self._lookup(("voice_replies",), guild_id, channel_id, parent_id)
        for known in VOICE_REPLY_MODES:
            if mode == known:
                return known
        return self._settings.voice_replies

    def roles_allow(self, feature: Feature, role_ids: Iterable[int]) -> bool:
        """Whether a member with these roles may use the feature (true for everyone when no roles are set)."""
        allowed = self._allowed_roles(feature)
        return not allowed or bool(allowed & set(role_ids))

    def _allowed_roles(self, feature: Feature) -> frozenset[int]:
        return {
            "chat": self._settings.chat_role_ids,
            "images": self._settings.images_role_ids,
            "audio": self._settings.audio_role_ids,
            "speech": self._settings.speech_role_ids,
        }[feature]

    def _check_roles(self, feature: Feature, role_ids: set[int], *, in_guild: bool) -> None:
        allowed = self._allowed_roles(feature)
        if not allowed or allowed & role_ids:
            return
        if not in_guild:
            raise UserError(f"🔒 {FEATURE_NAMES[feature]} needs a server role. Use it in a server.")
        roles = ", ".join(f"<@&{role_id}>" for role_id in sorted(allowed))
        raise UserError(f"🔒 {FEATURE_NAMES[feature]} needs one of these roles: {roles}.")

    async def _lookup(
        self, path: tuple[str, ...], guild_id: int | None, channel_id: int | None, parent_id: int | None
    ) -> object:
        """The most specific value set at `path`: in the channel, its parent channel, then the guild; else None."""
        return next(iter(await self._values(path, guild_id, channel_id, parent_id)), None)

    async def _values(
        self, path: tuple[str, ...], guild_id: int | None, channel_id: int | None, parent_id: int | None
    ) -> list[object]:
        """Every value set at `path`, the most specific first: the channel's, its parent's, the guild's."""
        layers: list[dict[str, object]] = []
        if channel_id is not None:
            record = await self.records.channel(channel_id)
            layers.append(record.settings)
            parent_id = parent_id if parent_id is not None else record.parent_id
        if parent_id is not None:
            layers.append((await self.records.channel(parent_id)).settings)
        if guild_id is not None:
            layers.append(await self.records.guild_settings(guild_id))
        values = []
        for layer in layers:
            value: object = layer
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                values.append(value)
        return values


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
