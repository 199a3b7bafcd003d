"""Usage reports as text: totals per feature against the daily limits, estimated cost from the PRICES table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.config import Limits
from bot.prices import ModelPrice
from bot.render import count
from bot.store import UsageSum, UsageTotals

TOP_USERS = 5


@dataclass(frozen=True)
class Cost:
    """An estimated cost, and the models whose use the price table could not price."""

    amount: float = 0.0
    unpriced: tuple[str, ...] = ()


def totals_by_feature(rows: Iterable[UsageSum]) -> dict[str, UsageTotals]:
    """Rows of any grouping folded into one total per feature."""
    folded: dict[str, UsageTotals] = {}
    for row in rows:
        old = folded.get(row.feature, UsageTotals())
        folded[row.feature] = UsageTotals(
            requests=old.requests + row.requests,
            input_tokens=old.input_tokens + row.input_tokens,
            output_tokens=old.output_tokens + row.output_tokens,
            images=old.images + row.images,
            audio_seconds=old.audio_seconds + row.audio_seconds,
            speech_characters=old.speech_characters + row.speech_characters,
        )
    return folded


def estimate_cost(rows: Iterable[UsageSum], prices: Mapping[str, ModelPrice]) -> Cost:
    """What the rows cost by the price table; use of a model the table does not price is listed, not guessed."""
    amount = 0.0
    unpriced: set[str] = set()
    for row in rows:
        if not (row.tokens or row.images or row.audio_seconds or row.speech_characters):
            continue  # nothing measured (moderation checks): nothing to price
        price = prices.get(row.model)
        if price is None:
            unpriced.add(row.model)
            continue
        amount += row.input_tokens / 1e6 * price.input_per_million
        amount += row.output_tokens / 1e6 * price.output_per_million
        amount += row.audio_seconds / 60 * price.per_audio_minute
        amount += row.speech_characters / 1e6 * price.per_million_speech_characters
        if row.images:
            per_image = price.image_price(row.image_size)
            if per_image is not None:
                amount += row.images * per_image
            elif price.per_image_by_size:
                unpriced.add(f"{row.model} ({row.image_size or 'unknown size'})")
            # Neither: the table prices this image model by tokens alone, already counted above.
    return Cost(amount, tuple(sorted(unpriced)))


def describe_cost(cost: Cost, prices: Mapping[str, ModelPrice]) -> str:
    """An estimated cost for people, saying what it leaves out."""
    if not prices:
        return "unknown (set PRICES to estimate it)"
    shown = "< $0.01" if 0 < cost.amount < 0.01 else f"≈ ${cost.amount:,.2f}"
    if cost.unpriced:
        shown += f", not counting {', '.join(cost.unpriced)} (no price in PRICES)"
    return shown


def describe_totals(totals: Mapping[str, UsageTotals], limits: Mapping[str, int] | None = None) -> str:
    """Use per feature on one line, each "of N" when a limit applies; moderation checks are left out."""
    chat = totals.get("chat", UsageTotals())
    images = totals.get("images", UsageTotals())
    audio = totals.get("audio", UsageTotals())
    speech = totals.get("speech", UsageTotals())
    limits = limits or {}
    parts = [
        "chat " + _used(chat.tokens, limits.get("chat"), "token"),
        _used(images.images, limits.get("images"), "image"),
        _used(audio.audio_seconds / 60, limits.get("audio"), "minute of audio", "minutes of audio", spec=",.1f"),
        _used(speech.speech_characters, limits.get("speech"), "character of speech", "characters of speech"),
    ]
    return " · ".join(parts)


def daily_limits(limits: Limits, scope: str) -> dict[str, int]:
    """The daily budgets of one scope ("user" or "guild") by feature."""
    return {
        "chat": getattr(limits, f"{scope}_daily_chat_tokens"),
        "images": getattr(limits, f"{scope}_daily_images"),
        "audio": getattr(limits, f"{scope}_daily_audio_minutes"),
        "speech": getattr(limits, f"{scope}_daily_speech_characters"),
    }


def own_report(today: list[UsageSum], month: list[UsageSum], limits: Limits) -> str:
    """What /usage shows every member about themselves."""
    today_text = describe_totals(totals_by_feature(today), daily_limits(limits, "user"))
    return (
        f"**Your use today** (resets at 00:00 UTC): {today_text}\n"
        f"**Your use this month**: {describe_totals(totals_by_feature(month))}"
    )


def guild_report(
    today: list[UsageSum],
    month: list[UsageSum],
    by_user: list[UsageSum],
    limits: Limits,
    prices: Mapping[str, ModelPrice],
) -> str:
    """What /usage adds for admins: the server's totals, its top users this month, and the estimated cost."""
    lines = [
        f"**This server today**: {describe_totals(totals_by_feature(today), daily_limits(limits, 'guild'))}",
        f"**This server this month**: {describe_totals(totals_by_feature(month))}",
        f"**Estimated cost**: today {describe_cost(estimate_cost(today, prices), prices)}; "
        f"this month {describe_cost(estimate_cost(month, prices), prices)}",
    ]
    ranked = rank_users(by_user, prices)
    if ranked:
        lines.append(f"**Top users this month** (by {'estimated cost' if prices else 'requests'}):")
        for place, (user_id, rows) in enumerate(ranked[:TOP_USERS], start=1):
            cost = f" · {describe_cost(estimate_cost(rows, prices), prices)}" if prices else ""
            lines.append(f"{place}. <@{user_id}>: {describe_totals(totals_by_feature(rows))}{cost}")
    return "\n".join(lines)


def rank_users(rows: Iterable[UsageSum], prices: Mapping[str, ModelPrice]) -> list[tuple[int, list[UsageSum]]]:
    """Users with their rows, the costliest first (by requests when there is no price table)."""
    per_user: defaultdict[int, list[UsageSum]] = defaultdict(list)
    for row in rows:
        # Moderation checks are not use a member chose to make: a member with only those is no "top user".
        if row.user_id is not None and row.feature != "moderation":
            per_user[row.user_id].append(row)

    def weight(item: tuple[int, list[UsageSum]]) -> tuple[float, int]:
        user_rows = item[1]
        requests = sum(row.requests for row in user_rows if row.feature != "moderation")
        return estimate_cost(user_rows, prices).amount, requests

    return sorted(per_user.items(), key=weight, reverse=True)


def _used(amount: float, limit: int | None, singular: str, plural_form: str | None = None, *, spec: str = ",") -> str:
    """ "3 images", or against a limit "3 of 10 images": the noun agrees with the last number said."""
    if not limit:
        return count(amount, singular, plural_form, spec=spec)
    return f"{amount:{spec}} of {count(limit, singular, plural_form)}"
