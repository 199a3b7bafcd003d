"""The gate: access settings, per-server and per-channel switches, rate limits and daily budgets at their boundaries."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.access import Admission, Feature, Gate, tighter
from bot.config import Settings
from bot.errors import UserError
from bot.records import Records
from bot.store import Store, UsageRecord, open_store

MINIMAL = {"DISCORD_TOKEN": "discord-token", "OPENAI_API_KEY": "sk-secret-key"}
GUILD, OTHER_GUILD = 100, 200
CHANNEL, OTHER_CHANNEL, THREAD = 10, 11, 12
USER, OTHER_USER = 1, 2
# 14:30 UTC: the daily budgets reset 9.5 hours later, at midnight.
NOON = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 26, tzinfo=UTC)


class Clock:
    """The wall clock, moved by the test."""

    def __init__(self) -> None:
        self.wall = NOON

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[Store]:
    """The real store (each backend in turn), dating its rows by the test's clock."""
    store = await open_store(database_url, clock=lambda: clock.wall)
    yield store
    await store.close()


GateFactory = Callable[..., Gate]


@pytest.fixture
def records(store: Store) -> Records:
    """The records cache the bot's gate reads settings through; tests change settings through it, as the
    /settings commands do."""
    return Records(store)


@pytest.fixture
def make_gate(store: Store, records: Records, clock: Clock) -> GateFactory:
    """A gate over the real store; keyword arguments are environment variables."""

    def make(**env: str) -> Gate:
        settings = Settings.from_env({**MINIMAL, **env})
        return Gate(store, settings, now=lambda: clock.wall, records=records)

    return make


async def admit(
    gate: Gate,
    feature: Feature = "chat",
    *,
    user_id: int = USER,
    role_ids: tuple[int, ...] = (),
    guild_id: int | None = GUILD,
    channel_id: int | None = CHANNEL,
    parent_id: int | None = None,
    images: int = 0,
    audio_seconds: float = 0.0,
) -> None:
    """A request let through and finished (its hold released); the tests record usage themselves."""
    async with await gate.admit(
        feature,
        user_id=user_id,
        role_ids=role_ids,
        guild_id=guild_id,
        channel_id=channel_id,
        parent_id=parent_id,
        images=images,
        audio_seconds=audio_seconds,
    ):
        pass


async def refusal(gate: Gate, feature: Feature = "chat", **request: Any) -> str:
    """The words of the gate's refusal of a request as admit() takes it (the test fails if it is let through)."""
    with pytest.raises(UserError) as caught:
        await admit(gate, feature, **request)
    return str(caught.value)


def chat(tokens: int, *, user_id: int = USER, guild_id: int = GUILD) -> UsageRecord:
    return UsageRecord("chat", "gpt-5-mini", user_id, guild_id, CHANNEL, input_tokens=tokens)


# -- requests per minute ------------------------------------------------------------------------


async def test_a_member_may_make_the_requests_per_minute_and_not_one_more(make_gate: GateFactory) -> None:
    gate = make_gate(USER_REQUESTS_PER_MINUTE="3", GUILD_REQUESTS_PER_MINUTE="0")
    for _ in range(3):
        await admit(gate)
    message = await refusal(gate)
    assert "3 requests a minute" in message
    assert "Try again in 60 s" in message
    await admit(gate, user_id=OTHER_USER)  # another member is not held back


async def test_the_second_half_of_a_request_already_counted_takes_no_slot(make_gate: GateFactory) -> None:
    gate = make_gate(USER_REQUESTS_PER_MINUTE="1", GUILD_REQUESTS_PER_MINUTE="0")
    await admit(gate, "audio")  # a voice message, let through for transcription
    await gate.admit(  # ...then answered as a chat turn
        "chat", user_id=USER, role_ids=(), guild_id=GUILD, channel_id=CHANNEL, counts_as_request=False
    )
    assert "you can make 1 request a minute" in await refusal(gate)  # the next request is the second


async def test_the_per_minute_limit_frees_a_slot_when_the_oldest_request_is_a_minute_old(
    make_gate: GateFactory, clock: Clock
) -> None:
    gate = make_gate(USER_REQUESTS_PER_MINUTE="2", GUILD_REQUESTS_PER_MINUTE="0")
    await admit(gate)
    clock.advance(20)
    await admit(gate)
    clock.advance(39)
    assert "Try again in 1 s" in await refusal(gate)
    clock.advance(1)
    await admit(gate)
    assert "Try again in 20 s" in await refusal(gate)


async def test_the_server_per_minute_limit_counts_every_member(make_gate: GateFactory) -> None:
    gate = make_gate(USER_REQUESTS_PER_MINUTE="0", GUILD_REQUESTS_PER_MINUTE="2")
    await admit(gate, user_id=USER)
    await admit(gate, user_id=OTHER_USER)
    assert "This server has reached its limit of 2 requests a minute" in await refusal(gate, user_id=3)
    await admit(gate, user_id=3, guild_id=OTHER_GUILD)


async def test_refused_requests_do_not_use_up_the_minute(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(USER_REQUESTS_PER_MINUTE="1", USER_DAILY_IMAGES="1")
    await store.record_usage(UsageRecord("images", "gpt-image-2", USER, GUILD, CHANNEL, images=1))
    await refusal(gate, "images", images=1)
    await admit(gate, "chat")


async def test_a_member_idle_past_the_sweep_can_come_back(make_gate: GateFactory, clock: Clock) -> None:
    gate = make_gate(USER_REQUESTS_PER_MINUTE="1", GUILD_REQUESTS_PER_MINUTE="0")
    await admit(gate, user_id=USER)
    clock.advance(61)
    await admit(gate, user_id=OTHER_USER)
    clock.advance(600)  # the next request sweeps away members idle for over a minute
    await admit(gate, user_id=OTHER_USER)
    await admit(gate, user_id=USER)
    assert "1 request a minute" in await refusal(gate, user_id=USER)


# -- daily budgets --------------------------------------------------------------------------------


async def test_chat_is_admitted_until_the_daily_tokens_are_used_up(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(USER_DAILY_CHAT_TOKENS="1000")
    await store.record_usage(chat(999))
    await admit(gate)
    await store.record_usage(chat(1))
    message = await refusal(gate)
    assert "You have used today's chat allowance (1,000 tokens)" in message
    assert "It resets at 00:00 UTC" in message
    assert f"<t:{int(MIDNIGHT.timestamp())}:R>" in message


async def test_the_daily_budget_counts_input_and_output_tokens(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(USER_DAILY_CHAT_TOKENS="1000")
    await store.record_usage(UsageRecord("chat", "m", USER, GUILD, CHANNEL, input_tokens=600, output_tokens=400))
    assert "chat allowance" in await refusal(gate)


async def test_the_daily_budget_resets_at_midnight_utc(make_gate: GateFactory, store: Store, clock: Clock) -> None:
    gate = make_gate(USER_DAILY_CHAT_TOKENS="1000")
    await store.record_usage(chat(1000))
    await refusal(gate)
    clock.wall = MIDNIGHT
    await admit(gate)


async def test_use_before_midnight_does_not_count_today(make_gate: GateFactory, store: Store, clock: Clock) -> None:
    clock.wall = MIDNIGHT - timedelta(microseconds=1)
    await store.record_usage(chat(5000))
    clock.wall = MIDNIGHT
    await store.record_usage(chat(999))
    await admit(make_gate(USER_DAILY_CHAT_TOKENS="1000"))


async def test_the_member_budget_counts_their_use_in_every_server(make_gate: GateFactory, store: Store) -> None:
    await store.record_usage(chat(1000, guild_id=OTHER_GUILD))
    assert "You have used" in await refusal(make_gate(USER_DAILY_CHAT_TOKENS="1000"))


async def test_the_server_budget_counts_every_member(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(GUILD_DAILY_CHAT_TOKENS="1000", USER_DAILY_CHAT_TOKENS="0")
    await store.record_usage(chat(600, user_id=OTHER_USER))
    await store.record_usage(chat(399, user_id=3))
    await admit(gate)
    await store.record_usage(chat(1, user_id=3))
    message = await refusal(gate)
    assert "This server has used today's chat allowance (1,000 tokens)" in message
    assert "00:00 UTC" in message
    await admit(gate, guild_id=OTHER_GUILD)


async def test_images_are_admitted_while_the_ones_asked_for_fit_the_budget(
    make_gate: GateFactory, store: Store
) -> None:
    gate = make_gate(USER_DAILY_IMAGES="10")
    await store.record_usage(UsageRecord("images", "gpt-image-2", USER, GUILD, CHANNEL, images=8))
    await admit(gate, "images", images=2)
    assert "That needs 3 images; you have 2 of today's 10 left" in await refusal(gate, "images", images=3)
    await store.record_usage(UsageRecord("images", "gpt-image-2", USER, GUILD, CHANNEL, images=2))
    assert "You have used today's image allowance (10 images)" in await refusal(gate, "images", images=1)


async def test_a_budget_of_one_is_worded_in_the_singular(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(USER_DAILY_IMAGES="2", USER_REQUESTS_PER_MINUTE="1")
    assert "That needs 3 images; you have 2 of today's 2 left" in await refusal(gate, "images", images=3)
    await store.record_usage(UsageRecord("images", "gpt-image-2", USER, GUILD, CHANNEL, images=1))
    assert "That needs 2 images; you have 1 of today's 2 left" in await refusal(gate, "images", images=2)
    one = make_gate(USER_DAILY_IMAGES="1", USER_REQUESTS_PER_MINUTE="1")
    assert "You have used today's image allowance (1 image)." in await refusal(one, "images", images=1)
    await admit(one, "chat")
    assert "you can make 1 request a minute" in await refusal(one, "chat")


async def test_requests_in_flight_hold_their_share_of_the_budget(make_gate: GateFactory) -> None:
    gate = make_gate(USER_DAILY_IMAGES="10", GUILD_DAILY_IMAGES="0", USER_REQUESTS_PER_MINUTE="0")

    def drawing(count: int) -> Awaitable[Admission]:
        return gate.admit("images", user_id=USER, role_ids=(), guild_id=GUILD, channel_id=CHANNEL, images=count)

    first = await drawing(6)  # still drawing: nothing in the ledger yet
    assert "That needs 6 images; you have 4 of today's 10 left" in await refusal(gate, "images", images=6)
    second = await drawing(4)  # the rest of the day's budget
    assert "used today's image allowance" in await refusal(gate, "images", images=1)
    await first.release()  # the first drawing failed: its six pictures were never made
    third = await drawing(6)
    await second.release()
    await third.release()


async def test_spending_records_the_use_and_frees_the_hold_at_once(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(USER_DAILY_IMAGES="4", GUILD_DAILY_IMAGES="0", USER_REQUESTS_PER_MINUTE="0")
    async with await gate.admit(
        "images", user_id=USER, role_ids=(), guild_id=GUILD, channel_id=CHANNEL, images=3
    ) as admission:
        await admission.spend("gpt-image-2", images=2, image_size="1024x1024")  # the model made two of three
    assert "you have 2 of today's 4 left" in await refusal(gate, "images", images=3)
    [row] = await store.usage_by_model(NOON, user_id=USER)
    assert (row.feature, row.model, row.images, row.image_size) == ("images", "gpt-image-2", 2, "1024x1024")


async def test_gates_of_two_processes_share_one_members_limits(
    make_gate: GateFactory, database_url: str, clock: Clock
) -> None:
    # A member in two servers served by two processes (shards) on one database.
    other_store = await open_store(database_url, clock=lambda: clock.wall)
    env = {**MINIMAL, "USER_REQUESTS_PER_MINUTE": "3", "GUILD_REQUESTS_PER_MINUTE": "0"}
    here = make_gate(USER_REQUESTS_PER_MINUTE="3", GUILD_REQUESTS_PER_MINUTE="0")
    there = Gate(other_store, Settings.from_env(env), now=lambda: clock.wall)
    results = []
    for index in range(8):
        gate, guild = (here, GUILD) if index % 2 else (there, OTHER_GUILD)
        try:
            await admit(gate, guild_id=guild)
            results.append("admitted")
        except UserError:
            results.append("refused")
    await other_store.close()
    assert results.count("admitted") == 3


async def test_a_length_learned_later_is_checked_against_the_budget(make_gate: GateFactory) -> None:
    gate = make_gate(USER_DAILY_AUDIO_MINUTES="10")
    async with await gate.admit("audio", user_id=USER, role_ids=(), guild_id=GUILD, channel_id=CHANNEL) as admission:
        await admission.hold_at_least(8 * 60)  # an 8-minute file, measured once decoded
        with pytest.raises(UserError, match="needs 3 minutes of audio; you have 2 of today's 10 left"):
            await admission.hold_at_least(11 * 60)
    assert admission.held == 0  # released when the block ended
    await admit(gate, "audio", audio_seconds=10 * 60)  # nothing is held any more


async def test_audio_is_measured_in_minutes(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(USER_DAILY_AUDIO_MINUTES="2")
    await store.record_usage(UsageRecord("audio", "gpt-transcribe", USER, GUILD, CHANNEL, audio_seconds=90))
    await admit(gate, "audio", audio_seconds=30)
    message = await refusal(gate, "audio", audio_seconds=31)
    assert "needs 0.5 minutes of audio; you have 0.5 of today's 2 left" in message


async def test_budgets_of_other_features_do_not_mix(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(USER_DAILY_IMAGES="1")
    await store.record_usage(UsageRecord("images", "gpt-image-2", USER, GUILD, CHANNEL, images=1))
    await store.record_usage(UsageRecord("moderation", "omni-moderation-latest", USER, GUILD, CHANNEL))
    await admit(gate, "chat")
    await admit(gate, "audio", audio_seconds=10)


async def test_zero_means_no_limit(make_gate: GateFactory, store: Store) -> None:
    gate = make_gate(
        USER_DAILY_CHAT_TOKENS="0",
        GUILD_DAILY_CHAT_TOKENS="0",
        USER_REQUESTS_PER_MINUTE="0",
        GUILD_REQUESTS_PER_MINUTE="0",
    )
    await store.record_usage(chat(10**9))
    for _ in range(100):
        await admit(gate)


# -- who and where --------------------------------------------------------------------------------


async def test_a_blocked_user_is_refused_everything(make_gate: GateFactory) -> None:
    gate = make_gate(BLOCKED_USER_IDS=f"{USER}, 7")
    for feature in ("chat", "images", "audio"):
        assert "You can't use this bot" in await refusal(gate, feature)
    await admit(gate, user_id=OTHER_USER)
    assert not await gate.enabled_here("chat", GUILD, CHANNEL, user_id=USER)  # their messages go unanswered
    assert await gate.enabled_here("chat", GUILD, CHANNEL, user_id=OTHER_USER)


async def test_a_role_gate_names_the_roles_it_needs(make_gate: GateFactory) -> None:
    gate = make_gate(IMAGES_ROLE_IDS="555,556")
    message = await refusal(gate, "images", role_ids=(GUILD, 9))
    assert "Image generation needs one of these roles: <@&555>, <@&556>" in message
    await admit(gate, "images", role_ids=(GUILD, 556))
    await admit(gate, "chat", role_ids=(GUILD,))  # the other features are open to everyone


async def test_a_role_gate_cannot_be_passed_in_direct_messages(make_gate: GateFactory) -> None:
    gate = make_gate(CHAT_ROLE_IDS="555", ALLOW_DMS="true")
    assert "needs a server role" in await refusal(gate, guild_id=None, channel_id=5)


async def test_only_allowed_servers_are_served(make_gate: GateFactory) -> None:
    gate = make_gate(ALLOWED_GUILD_IDS=str(GUILD))
    await admit(gate)
    assert await gate.enabled_here("chat", GUILD, CHANNEL)
    assert "isn't enabled in this server" in await refusal(gate, guild_id=OTHER_GUILD)
    assert not await gate.enabled_here("chat", OTHER_GUILD, CHANNEL)


async def test_direct_messages_follow_allow_dms(make_gate: GateFactory) -> None:
    closed = make_gate(ALLOW_DMS="false")
    assert "direct messages" in await refusal(closed, guild_id=None, channel_id=5)
    assert not await closed.enabled_here("chat", None, 5)
    opened = make_gate(ALLOW_DMS="true")
    await admit(opened, guild_id=None, channel_id=5)
    assert await opened.enabled_here("chat", None, 5)


async def test_a_feature_switched_off_for_the_server_is_off_everywhere_in_it(
    make_gate: GateFactory, store: Store, records: Records
) -> None:
    gate = make_gate()
    await records.update_guild_settings(GUILD, {"features": {"images": False}})
    assert not await gate.enabled_here("images", GUILD, CHANNEL)
    assert "Image generation is turned off here" in await refusal(gate, "images")
    assert await gate.enabled_here("chat", GUILD, CHANNEL)
    assert await gate.enabled_here("images", OTHER_GUILD, CHANNEL)


async def test_a_channel_switch_overrides_the_server_and_carries_to_its_threads(
    make_gate: GateFactory, store: Store, records: Records
) -> None:
    gate = make_gate()
    await records.update_guild_settings(GUILD, {"features": {"chat": False}})
    await records.update_channel_settings(CHANNEL, {"features": {"chat": True}}, guild_id=GUILD)
    await records.update_channel_settings(OTHER_CHANNEL, {"features": {"images": False}}, guild_id=GUILD)
    assert await gate.enabled_here("chat", GUILD, CHANNEL)
    assert await gate.enabled_here("chat", GUILD, THREAD, parent_id=CHANNEL)
    assert not await gate.enabled_here("chat", GUILD, OTHER_CHANNEL)
    assert not await gate.enabled_here("images", GUILD, THREAD, parent_id=OTHER_CHANNEL)
    await records.save_conversation_thread(
        THREAD, guild_id=GUILD, parent_id=OTHER_CHANNEL, opened_by=USER, system_prompt=None
    )
    assert not await gate.enabled_here("images", GUILD, THREAD)  # the stored thread knows its parent


async def test_setting_a_switch_back_to_default_removes_it(
    make_gate: GateFactory, store: Store, records: Records
) -> None:
    gate = make_gate()
    await records.update_channel_settings(CHANNEL, {"features": {"chat": False}}, guild_id=GUILD)
    await records.update_channel_settings(CHANNEL, {"features": {"chat": None}}, guild_id=GUILD)
    assert await gate.enabled_here("chat", GUILD, CHANNEL)
    assert (await store.get_channel(CHANNEL)).settings == {"features": {}}


# -- per-server values ----------------------------------------------------------------------------


async def test_a_server_can_lower_a_limit_but_not_raise_it(
    make_gate: GateFactory, store: Store, records: Records
) -> None:
    gate = make_gate(USER_REQUESTS_PER_MINUTE="10", USER_DAILY_IMAGES="0")
    await records.update_guild_settings(
        GUILD, {"limits": {"user_requests_per_minute": 2, "user_daily_chat_tokens": 10**9, "user_daily_images": 5}}
    )
    limits = await gate.limits_for(GUILD)
    assert limits.user_requests_per_minute == 2
    assert limits.user_daily_chat_tokens == 200_000
    assert limits.user_daily_images == 5  # no bot-wide limit: the server's own applies
    assert (await gate.limits_for(OTHER_GUILD)).user_requests_per_minute == 10
    await admit(gate)
    await admit(gate)
    assert "2 requests a minute" in await refusal(gate)


def test_the_tighter_limit_wins_and_zero_means_none() -> None:
    assert tighter(10, None) == 10
    assert tighter(10, 3) == 3
    assert tighter(10, 30) == 10
    assert tighter(0, 30) == 30
    assert tighter(0, None) == 0


async def test_models_come_from_channel_then_parent_then_server_then_settings(
    make_gate: GateFactory, store: Store, records: Records
) -> None:
    gate = make_gate(CHAT_MODEL="bot-default")
    assert await gate.model_for("chat", GUILD, THREAD, parent_id=CHANNEL) == "bot-default"
    await records.update_guild_settings(GUILD, {"models": {"chat": "server-model"}})
    assert await gate.model_for("chat", GUILD, THREAD, parent_id=CHANNEL) == "server-model"
    await records.update_channel_settings(CHANNEL, {"models": {"chat": "channel-model"}}, guild_id=GUILD)
    assert await gate.model_for("chat", GUILD, THREAD, parent_id=CHANNEL) == "channel-model"
    await records.update_channel_settings(THREAD, {"models": {"chat": "thread-model"}}, guild_id=GUILD)
    assert await gate.model_for("chat", GUILD, THREAD, parent_id=CHANNEL) == "thread-model"
    assert await gate.model_for("images", GUILD, THREAD, parent_id=CHANNEL) == "gpt-image-2"


async def test_automatic_transcription_follows_channel_parent_server_then_setting(
    make_gate: GateFactory, store: Store, records: Records
) -> None:
    gate = make_gate(AUTO_TRANSCRIBE="true")
    assert await gate.auto_transcribe_here(GUILD, THREAD, parent_id=CHANNEL)
    await records.update_guild_settings(GUILD, {"auto_transcribe": False})
    assert not await gate.auto_transcribe_here(GUILD, THREAD, parent_id=CHANNEL)
    await records.update_channel_settings(CHANNEL, {"auto_transcribe": True}, guild_id=GUILD)
    assert await gate.auto_transcribe_here(GUILD, THREAD, parent_id=CHANNEL)


async def test_the_reset_time_is_a_discord_timestamp_of_the_next_midnight(
    make_gate: GateFactory, store: Store, clock: Clock
) -> None:
    clock.wall = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    await store.record_usage(chat(10**6))
    message = await refusal(make_gate(USER_DAILY_CHAT_TOKENS="1000"))
    stamp = re.search(r"<t:(\d+):R>", message)
    assert stamp is not None
    assert datetime.fromtimestamp(int(stamp.group(1)), UTC) == datetime(2027, 1, 1, tzinfo=UTC)


async def test_members_may_pick_the_chat_models_admins_chose_where_they_chose_them(
    make_gate: GateFactory, records: Records
) -> None:
    gate = make_gate(CHAT_MODELS="gpt-4.1")
    await records.update_guild_settings(GUILD, {"models": {"chat": "gpt-5"}})
    await records.update_channel_settings(CHANNEL, {"models": {"chat": "o3"}}, guild_id=GUILD)
    assert await gate.chat_models_here(GUILD, CHANNEL) == ("gpt-5-mini", "gpt-4.1", "o3", "gpt-5")
    assert await gate.chat_models_here(GUILD, THREAD, parent_id=CHANNEL) == ("gpt-5-mini", "gpt-4.1", "o3", "gpt-5")
    assert await gate.chat_models_here(OTHER_GUILD, OTHER_CHANNEL) == ("gpt-5-mini", "gpt-4.1")
    assert await gate.check_chat_model(" o3 ", GUILD, CHANNEL) == "o3"
    with pytest.raises(UserError, match=re.escape("❓ `o3` isn't a model you can pick here. Pick one of: `gpt-5-m")):
        await gate.check_chat_model("o3", OTHER_GUILD, OTHER_CHANNEL)
    with pytest.raises(UserError, match=re.escape("❓ That isn't a model you can pick here.")):
        await gate.check_chat_model("@everyone `x`", GUILD, CHANNEL)  # not echoed: it is no model name
