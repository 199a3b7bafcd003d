"""Saying a refusal once per member, channel and reason while it holds."""

from __future__ import annotations

from bot.errors import ApiError, ApiErrorKind, LimitReached, UserError
from bot.refusals import MAX_QUIET_SECONDS, QUIET_SECONDS, RefusalMemory

MEMBER, OTHER = 1, 2
CHANNEL, OTHER_CHANNEL = 10, 11


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slow_down(wait: float = 30.0) -> LimitReached:
    return LimitReached(
        f"⏳ Slow down: you can make 10 requests a minute. Try again in {wait:.0f} s.", "rate:user", wait
    )


def test_a_rate_refusal_is_said_once_while_it_holds_and_again_after() -> None:
    clock = Clock()
    memory = RefusalMemory(clock=clock)
    assert memory.should_say(MEMBER, CHANNEL, slow_down(30))
    clock.now += 5
    assert not memory.should_say(MEMBER, CHANNEL, slow_down(25))  # other words, the same refusal
    clock.now += 26
    assert memory.should_say(MEMBER, CHANNEL, slow_down(30))


def test_other_members_channels_and_reasons_are_told_on_their_own() -> None:
    memory = RefusalMemory(clock=Clock())
    assert memory.should_say(MEMBER, CHANNEL, slow_down())
    assert memory.should_say(OTHER, CHANNEL, slow_down())
    assert memory.should_say(MEMBER, OTHER_CHANNEL, slow_down())
    budget = LimitReached("📊 You have used today's chat allowance (1,000 tokens).", "budget:user", 30_000)
    assert memory.should_say(MEMBER, CHANNEL, budget)
    assert memory.should_say(MEMBER, CHANNEL, UserError("🔒 Chat needs one of these roles: <@&5>."))
    assert memory.should_say(MEMBER, CHANNEL, ApiError(ApiErrorKind.SERVER_ERROR, "boom"))
    assert not memory.should_say(MEMBER, CHANNEL, budget)


def test_a_budget_is_not_kept_quiet_all_day_and_a_refusal_without_a_wait_for_a_minute() -> None:
    clock = Clock()
    memory = RefusalMemory(clock=clock)
    budget = LimitReached("📊 You have used today's image allowance (10 images).", "budget:user", 9 * 3600)
    roles = UserError("🔒 Chat needs one of these roles: <@&5>.")
    assert memory.should_say(MEMBER, CHANNEL, budget) and memory.should_say(MEMBER, CHANNEL, roles)
    clock.now += QUIET_SECONDS - 1
    assert not memory.should_say(MEMBER, CHANNEL, roles)
    clock.now += 2
    assert memory.should_say(MEMBER, CHANNEL, roles)
    clock.now = 1000.0 + MAX_QUIET_SECONDS + 1
    assert memory.should_say(MEMBER, CHANNEL, budget)


def test_the_memory_stays_within_its_size() -> None:
    memory = RefusalMemory(clock=Clock(), size=3)
    for member in range(10):
        assert memory.should_say(member, CHANNEL, slow_down())
    assert not memory.should_say(9, CHANNEL, slow_down())  # the newest are kept
    assert memory.should_say(0, CHANNEL, slow_down())  # the oldest was forgotten: said once more
