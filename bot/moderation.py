"""Moderation: prompts (and optionally answers) checked with the API's /moderations endpoint first."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bot.api import OpenAIClient
from bot.config import Settings
from bot.errors import UserError
from bot.render import truncate
from bot.store import Store, UsageRecord

log = logging.getLogger(__name__)

# Enough of a flagged text for moderators to judge it, short enough for one Discord message.
REPORT_EXCERPT_CHARS = 1500

Notify = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Verdict:
    """What moderation said about a text: flagged or not, and the categories it was flagged for."""

    flagged: bool
    categories: tuple[str, ...] = ()

    def describe(self) -> str:
        """The categories for people, such as "harassment, violence"."""
        return ", ".join(self.categories) or "unspecified"


CLEAN = Verdict(flagged=False)


async def moderate(api: OpenAIClient, text: str, *, model: str) -> Verdict:
    """Ask POST /moderations about `text`; flagged when any result is, with every category any result names."""
    body = await api.post_json("/moderations", {"model": model, "input": text}, model=model)
    results = [result for result in body.get("results") or [] if isinstance(result, dict)]
    categories = sorted(
        {name for result in results for name, hit in (result.get("categories") or {}).items() if hit is True}
    )
    return Verdict(flagged=any(result.get("flagged") is True for result in results), categories=tuple(categories))


def withheld_note(verdict: Verdict) -> str:
    """What is shown instead of an answer that moderation flagged."""
    return f"🚫 The answer was withheld: moderation flagged it ({verdict.describe()})."


class Moderator:
    """Applies MODERATE_PROMPTS and MODERATE_ANSWERS: records each check and reports flagged items to moderators."""

    def __init__(self, api: OpenAIClient, store: Store, settings: Settings, notify: Notify | None = None) -> None:
        self._api = api
        self._store = store
        self._settings = settings
        self._notify = notify

    async def check_prompt(
        self,
        text: str,
        *,
        feature: Literal["chat", "images", "audio", "speech"],
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
    ) -> None:
        """Raise UserError naming the categories when MODERATE_PROMPTS is on and moderation flags the prompt."""
        if not self._settings.moderate_prompts:
            return
        verdict = await self._check(text, user_id=user_id, guild_id=guild_id, channel_id=channel_id)
        if verdict.flagged:
            await self._report("prompt", feature, verdict, text, user_id=user_id, channel_id=channel_id)
            raise UserError(f"🚫 I didn't send that: moderation flagged it ({verdict.describe()}).")

    async def check_answer(
        self,
        text: str,
        *,
        feature: Literal["chat", "images", "audio", "speech"],
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
    ) -> Verdict:
        """The verdict on an answer before it is shown; always clean when MODERATE_ANSWERS is off."""
        if not self._settings.moderate_answers or not text.strip():
            return CLEAN
        verdict = await self._check(text, user_id=user_id, guild_id=guild_id, channel_id=channel_id)
        if verdict.flagged:
            await self._report("answer", feature, verdict, text, user_id=user_id, channel_id=channel_id)
        return verdict

    async def _check(self, text: str, *, user_id: int, guild_id: int | None, channel_id: int | None) -> Verdict:
        model = self._settings.moderation_model
        verdict = await moderate(self._api, text, model=model)
        await self._store.record_usage(UsageRecord("moderation", model, user_id, guild_id, channel_id))
        return verdict

    async def _report(
        self,
        kind: Literal["prompt", "answer"],
        feature: str,
        verdict: Verdict,
        text: str,
        *,
        user_id: int,
        channel_id: int | None,
    ) -> None:
        log.info("Moderation flagged a %s %s of user %s: %s", feature, kind, user_id, verdict.describe())
        if self._notify is None or self._settings.moderation_log_channel_id is None:
            return
        where = f" in <#{channel_id}>" if channel_id is not None else ""
        subject = f"a {feature} prompt by <@{user_id}>" if kind == "prompt" else f"a {feature} answer to <@{user_id}>"
        excerpt = truncate(text, REPORT_EXCERPT_CHARS)
        try:
            await self._notify(f"🚩 Moderation flagged {subject}{where} ({verdict.describe()}):\n>>> {excerpt}")
        except Exception:
            # The member has their answer already; a failed report must not turn into their error.
            log.warning("Could not report flagged content to the moderators' channel", exc_info=True)
