"""The admin cog's pure helpers: durations, limits and switches as people read them."""

from bot.config import Limits
from cogs.admin import LIMIT_NAMES, describe_limits, duration, switch_value


def test_durations_read_at_a_glance() -> None:
    assert duration(42.9) == "42 s"
    assert duration(125) == "2 min 5 s"
    assert duration(2 * 3600 + 5 * 60 + 7) == "2 h 5 min"
    assert duration(3 * 86_400 + 4 * 3600 + 59) == "3 d 4 h"


def test_every_limit_is_listed_and_zero_reads_as_no_limit() -> None:
    lines = describe_limits(Limits(user_requests_per_minute=0, guild_daily_chat_tokens=2_500_000)).splitlines()
    assert len(lines) == len(LIMIT_NAMES)
    assert "- Requests a minute, per member: no limit" in lines
    assert "- Chat tokens a day, whole server: 2,500,000" in lines


def test_default_removes_the_override() -> None:
    assert (switch_value("on"), switch_value("off"), switch_value("default")) == (True, False, None)
