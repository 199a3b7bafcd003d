"""Usage reports: estimated cost from the price table, totals against limits, ranking of users."""

from __future__ import annotations

import pytest

from bot.config import Limits
from bot.prices import ModelPrice
from bot.store import UsageSum
from bot.usage import Cost, describe_cost, estimate_cost, guild_report, own_report, rank_users

PRICES = {
    "chat-model": ModelPrice(input_per_million=2.0, output_per_million=8.0),
    "image-model": ModelPrice(per_image_by_size={"1024x1024": 0.04, "1536x1024": 0.06}),
    "flat-image": ModelPrice(per_image=0.1),
    "token-image": ModelPrice(input_per_million=5.0, output_per_million=40.0),
    "transcriber": ModelPrice(per_audio_minute=0.006),
}


def row(
    feature: str,
    model: str,
    *,
    user_id: int | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    images: int = 0,
    audio_seconds: float = 0.0,
) -> UsageSum:
    """One request's use, as the ledger sums it."""
    return UsageSum(
        feature=feature,
        model=model,
        user_id=user_id,
        requests=1,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        images=images,
        audio_seconds=audio_seconds,
    )


def test_cost_adds_tokens_images_by_size_and_audio_minutes() -> None:
    rows = [
        row("chat", "chat-model", input_tokens=1_000_000, output_tokens=500_000),  # 2 + 4
        UsageSum(feature="images", model="image-model", image_size="1536x1024", images=10),  # 0.6
        UsageSum(feature="images", model="flat-image", image_size="auto", images=2),  # 0.2
        row("images", "token-image", input_tokens=100_000, output_tokens=10_000, images=1),  # 0.5 + 0.4
        row("audio", "transcriber", audio_seconds=600),  # 0.06
    ]
    cost = estimate_cost(rows, PRICES)
    assert cost.amount == pytest.approx(7.76)
    assert cost.unpriced == ()


def test_use_the_table_cannot_price_is_named_not_guessed() -> None:
    rows = [
        row("chat", "unknown-model", input_tokens=10),
        UsageSum(feature="images", model="image-model", image_size="1024x1536", images=1),
        row("moderation", "omni-moderation-latest"),  # nothing measured: nothing to price
    ]
    cost = estimate_cost(rows, PRICES)
    assert cost.amount == 0
    assert cost.unpriced == ("image-model (1024x1536)", "unknown-model")
    assert "not counting image-model (1024x1536), unknown-model" in describe_cost(cost, PRICES)


def test_without_a_price_table_the_cost_is_unknown() -> None:
    assert describe_cost(Cost(0.0), {}) == "unknown (set PRICES to estimate it)"
    assert describe_cost(Cost(0.004), PRICES) == "< $0.01"
    assert describe_cost(Cost(1234.5), PRICES) == "≈ $1,234.50"


def test_the_own_report_shows_today_against_the_limits_and_the_month() -> None:
    today = [
        row("chat", "chat-model", input_tokens=1200, output_tokens=34),
        row("audio", "transcriber", audio_seconds=150),
    ]
    month = [*today, row("images", "flat-image", images=3)]
    text = own_report(today, month, Limits(user_daily_chat_tokens=200_000, user_daily_images=0))
    first, second = text.splitlines()
    assert "chat 1,234 of 200,000 tokens" in first
    assert "0 images ·" in first  # no daily image limit: no "of"
    assert "2.5 of 60 minutes of audio" in first
    assert "3 images" in second


def test_top_users_are_ranked_by_cost_with_prices_and_by_requests_without() -> None:
    rows = [
        row("chat", "chat-model", user_id=1, input_tokens=10),
        row("chat", "chat-model", user_id=1, input_tokens=10),
        row("chat", "chat-model", user_id=1, input_tokens=10),
        row("images", "flat-image", user_id=2, images=5),
    ]
    assert [user for user, _ in rank_users(rows, PRICES)] == [2, 1]
    assert [user for user, _ in rank_users(rows, {})] == [1, 2]


def test_the_guild_report_has_totals_cost_and_top_users() -> None:
    rows = [
        row("chat", "chat-model", user_id=3, input_tokens=1_000_000),
        row("images", "flat-image", user_id=4, images=1),
    ]
    text = guild_report(rows, rows, rows, Limits(), PRICES)
    assert "**This server today**: chat 1,000,000 of 2,000,000 tokens" in text
    assert "**Estimated cost**: today ≈ $2.10; this month ≈ $2.10" in text
    assert "1. <@3>: chat 1,000,000 tokens" in text
    assert "2. <@4>" in text


def test_counts_of_one_are_worded_in_the_singular() -> None:
    today = [row("images", "flat-image", images=1), row("audio", "transcriber", audio_seconds=60)]
    text = own_report(today, today, Limits(user_daily_images=1, user_daily_audio_minutes=0))
    first, second = text.splitlines()
    assert "1 of 1 image ·" in first
    assert "1.0 minutes of audio" in first
    assert "chat 0 tokens" in second and "· 1 image ·" in second
