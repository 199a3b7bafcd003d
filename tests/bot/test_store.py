"""Both stores on a real database (an SQLite file, a PostgreSQL server): turns, restarts, crashes, settings,
limits that hold across processes, and reports from the daily roll-up."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.store import (
    Cap,
    NewTurn,
    OutdatedSchema,
    Picture,
    PostgresStore,
    Refusal,
    Reservation,
    Reserved,
    SqliteStore,
    Store,
    UsageRecord,
    is_postgres_url,
    open_store,
)
from bot.store.base import MAX_PICTURES_PER_CHANNEL
from bot.store.schema import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from bot.usage import totals_by_feature
from tests.databases import fresh_postgres_database, query

PROJECT_ROOT = Path(__file__).parents[2]
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def user_turn(text: str, author_id: int = 1) -> NewTurn:
    return NewTurn("user", author_id, f"user{author_id}", text)


def images(user_id: int, amount: float, *, limit: float, guild_id: int = 10, now: datetime = NOON) -> Reservation:
    """A request for `amount` pictures against a member's daily budget of `limit`."""
    return Reservation("images", user_id, guild_id, amount, (Cap("user", user_id, limit),), (), now=now)


def requests(user_id: int, *, per_minute: int, now: datetime = NOON) -> Reservation:
    """A chat request counted against a member's per-minute limit."""
    return Reservation("chat", user_id, 10, 0, (), (Cap("user", user_id, per_minute),), now=now)


# -- conversations ----------------------------------------------------------------------------------


async def test_turns_come_back_in_order_and_survive_a_restart(database_url: str) -> None:
    store = await open_store(database_url)
    await store.add_turn(10, user_turn("first"))
    await store.add_turn(10, NewTurn("assistant", None, "assistant", "second"))
    await store.add_turn(10, user_turn("third", author_id=2))
    await store.close()

    reopened = await open_store(database_url)
    turns = await reopened.recent_turns(10, 10)
    await reopened.close()
    assert [(t.role, t.author_id, t.content) for t in turns] == [
        ("user", 1, "first"),
        ("assistant", None, "second"),
        ("user", 2, "third"),
    ]


async def test_a_new_sqlite_file_gets_its_folders(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/sub/folder/bot.db")
    await store.close()
    assert (tmp_path / "sub" / "folder" / "bot.db").exists()


async def test_recent_turns_are_the_newest_and_never_from_another_channel(database_url: str) -> None:
    store = await open_store(database_url)
    for i in range(30):
        await store.add_turn(1, user_turn(f"a{i}"))
        await store.add_turn(2, user_turn(f"b{i}"))
    turns = await store.recent_turns(1, 5)
    await store.close()
    assert [t.content for t in turns] == ["a25", "a26", "a27", "a28", "a29"]


async def test_clearing_a_channel_leaves_others_alone(database_url: str) -> None:
    store = await open_store(database_url)
    await store.add_turn(1, user_turn("one"))
    await store.add_turn(2, user_turn("two"))
    assert await store.clear_turns(1) == 1
    assert await store.recent_turns(1, 10) == []
    assert [t.content for t in await store.recent_turns(2, 10)] == ["two"]
    await store.close()


async def test_window_read_uses_the_channel_index(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    await store.close()
    with sqlite3.connect(tmp_path / "bot.db") as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM turns WHERE channel_id = ? ORDER BY id DESC LIMIT ?", (1, 10)
        ).fetchall()
    assert any("turns_by_channel" in str(row) for row in plan), plan


async def test_conversation_threads_and_prompts_are_remembered(database_url: str) -> None:
    store = await open_store(database_url)
    await store.set_system_prompt(5, "Be brief.", guild_id=9)
    await store.save_conversation_thread(6, guild_id=9, parent_id=5, opened_by=42, system_prompt="Be brief.")
    await store.update_channel_settings(6, {"auto_transcribe": False}, guild_id=9)
    await store.update_channel_settings(6, {"model": "m"}, guild_id=9)
    await store.close()

    store = await open_store(database_url)
    thread = await store.get_channel(6)
    unknown = await store.get_channel(7)
    await store.close()
    assert thread.is_conversation and thread.opened_by == 42 and thread.parent_id == 5 and thread.guild_id == 9
    assert thread.system_prompt == "Be brief."
    assert thread.settings == {"auto_transcribe": False, "model": "m"}
    assert not unknown.is_conversation and unknown.system_prompt is None


async def test_guild_settings_merge_and_none_removes_a_key(database_url: str) -> None:
    store = await open_store(database_url)
    assert await store.get_guild_settings(1) == {}
    await store.update_guild_settings(1, {"features": {"chat": False}, "limits": {"user_daily_images": 3}})
    await store.update_guild_settings(1, {"features": {"images": False}})
    await store.update_guild_settings(1, {"limits": {"user_daily_images": None}, "auto_transcribe": None})
    await store.update_channel_settings(3, {"models": {"chat": "m1"}}, guild_id=1)
    await store.update_channel_settings(3, {"models": {"chat": None, "images": "m2"}}, guild_id=1)
    await store.close()
    store = await open_store(database_url)
    assert await store.get_guild_settings(1) == {"features": {"chat": False, "images": False}, "limits": {}}
    assert await store.get_guild_settings(2) == {}
    assert (await store.get_channel(3)).settings == {"models": {"images": "m2"}}
    assert await store.chosen_models() == [("images", "m2")]
    await store.close()


async def test_meta_is_kept_and_a_swap_returns_what_it_replaced(database_url: str) -> None:
    store = await open_store(database_url)
    assert await store.get_meta("k") is None
    await store.set_meta("k", "v1")
    await store.set_meta("k", "v2")
    assert await store.get_meta("k") == "v2"
    assert await store.swap_meta("k", "v3") == "v2"
    assert await store.swap_meta("new", "x") is None
    assert await store.get_meta("k") == "v3"
    await store.close()


async def test_of_processes_swapping_in_the_same_value_at_once_one_sees_the_old(database_url: str) -> None:
    stores = [await open_store(database_url) for _ in range(3)]
    await stores[0].set_meta("sync", "old")
    seen = await asyncio.gather(*(store.swap_meta("sync", "new") for store in stores for _ in range(3)))
    for store in stores:
        await store.close()
    assert sorted(seen, key=str) == ["new"] * 8 + ["old"]


# -- schema --------------------------------------------------------------------------------------------


async def test_a_newer_schema_is_refused_with_a_clear_reason(database_url: str) -> None:
    store = await open_store(database_url)
    await store.close()
    if is_postgres_url(database_url):
        connection = await asyncpg.connect(database_url)
        await connection.execute("INSERT INTO schema_migrations (version) VALUES (99)")
        await connection.close()
    else:
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer than this bot knows"):
        await open_store(database_url)


def test_processes_starting_together_on_an_empty_database_migrate_it_once(database_url: str) -> None:
    opener = textwrap.dedent(
        f"""
        import asyncio
        from bot.store import open_store
        async def main():
            store = await open_store({database_url!r})
            await store.add_turn(1, __import__("bot.store").store.NewTurn("user", 1, "u", "hello"))
            await store.close()
        asyncio.run(main())
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", opener], cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors
    turns = asyncio.run(_read(database_url, limit=10))
    assert [turn.content for turn in turns] == ["hello"] * 4


async def test_a_version_1_sqlite_database_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as db:
        for statement in SQLITE_MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        for tokens in (42, 8):
            db.execute(
                "INSERT INTO usage (created_at, feature, model, user_id, guild_id, input_tokens)"
                " VALUES (?, 'chat', 'm', 1, 10, ?)",
                (NOON.isoformat(), tokens),
            )
    store = await SqliteStore.open(path, clock=lambda: NOON)
    report = totals_by_feature(await store.usage_by_model(NOON, user_id=1))
    # The day's use, from before the migration, counts against the budget too.
    over = await store.reserve(Reservation("chat", 1, 10, 0, (Cap("user", 1, 50),), (), now=NOON))
    await store.close()
    assert (report["chat"].requests, report["chat"].input_tokens) == (2, 50)
    assert over == Refusal("budget", "user", 50, 50.0)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(SQLITE_MIGRATIONS),)


async def test_a_version_3_postgres_database_gets_the_reservation_function_and_its_use_counts() -> None:
    async with fresh_postgres_database() as url:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            for version, statements in enumerate(POSTGRES_MIGRATIONS[:3], start=1):
                for statement in statements:
                    await connection.execute(statement)
                await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            await connection.execute(
                "INSERT INTO spend_daily (scope, key, feature, day, used) VALUES ('user', 1, 'chat', $1, 50)",
                NOON.date(),
            )
        finally:
            await connection.close()
        store = await PostgresStore.open(url, clock=lambda: NOON)
        try:
            over = await store.reserve(Reservation("chat", 1, 10, 0, (Cap("user", 1, 50),), (), now=NOON))
            other = await store.reserve(Reservation("chat", 2, 10, 0, (Cap("user", 2, 50),), (), now=NOON))
        finally:
            await store.close()
        assert over == Refusal("budget", "user", 50, 50.0)
        assert other == Reserved(None)
        assert await query(url, "SELECT MAX(version) FROM schema_migrations") == [(len(POSTGRES_MIGRATIONS),)]


async def test_the_doctor_reads_a_live_database_with_its_last_commits(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    bot = await SqliteStore.open(path)  # the running bot, its writes still in the WAL
    await bot.update_guild_settings(1, {"models": {"chat": "chosen"}})
    inspector = await SqliteStore.open_read_only(path)
    chosen = await inspector.chosen_models()
    await inspector.close()
    await bot.close()
    assert chosen == [("chat", "chosen")]


async def test_the_doctor_names_an_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as db:
        for statement in SQLITE_MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
    with pytest.raises(OutdatedSchema) as caught:
        await SqliteStore.open_read_only(path)
    assert (caught.value.found, caught.value.expected) == (1, len(SQLITE_MIGRATIONS))


# -- crashes ---------------------------------------------------------------------------------------------


def test_kill_9_while_writing_turns_leaves_only_whole_turns(database_url: str) -> None:
    writer = textwrap.dedent(
        f"""
        import asyncio
        from bot.store import NewTurn, open_store
        async def main():
            store = await open_store({database_url!r})
            i = 0
            while True:
                await store.add_turn(1, NewTurn("user", 1, "u", f"turn-{{i}}-" + "x" * 5000 + "-end"))
                i += 1
                if i == 20:
                    print("writing", flush=True)
        asyncio.run(main())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", writer], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "writing"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    turns = asyncio.run(_read(database_url, limit=100_000))
    assert len(turns) >= 20
    for index, turn in enumerate(turns):
        assert turn.content == f"turn-{index}-" + "x" * 5000 + "-end"


async def _read(database_url: str, limit: int = 10) -> list:
    store = await open_store(database_url)
    try:
        return await store.recent_turns(1, limit)
    finally:
        await store.close()


# -- usage reports -----------------------------------------------------------------------------------------


async def test_reports_sum_from_the_utc_day_of_since_by_user_and_guild(database_url: str) -> None:
    now = [datetime(2026, 11, 24, 23, 0, tzinfo=UTC)]
    store = await open_store(database_url, clock=lambda: now[0])
    await store.record_usage(UsageRecord("chat", "m", 1, 10, 5, input_tokens=1000, output_tokens=1000))  # yesterday
    now[0] = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    await store.record_usage(UsageRecord("chat", "m", 1, 10, 5, input_tokens=100, output_tokens=20))
    await store.record_usage(UsageRecord("chat", "m", 1, 20, 6, input_tokens=7, output_tokens=3))
    await store.record_usage(UsageRecord("chat", "m", 2, 10, 5, input_tokens=50, output_tokens=5))
    await store.record_usage(UsageRecord("images", "img", 1, 10, 5, images=2, image_size="1024x1024"))
    await store.record_usage(UsageRecord("audio", "tr", 1, 10, 5, audio_seconds=90.5))
    await store.record_usage(UsageRecord("speech", "tts", 1, 10, 5, speech_characters=1200))
    today = datetime(2026, 11, 25, 17, 45, tzinfo=UTC)  # any moment of the day: reports start at its midnight

    by_user = totals_by_feature(await store.usage_by_model(today, user_id=1))
    in_guild = totals_by_feature(await store.usage_by_model(today, guild_id=10))
    user_in_guild = totals_by_feature(await store.usage_by_model(today, user_id=1, guild_id=10))
    since_yesterday = totals_by_feature(await store.usage_by_model(datetime(2026, 11, 24, tzinfo=UTC), user_id=1))
    nobody = await store.usage_by_model(today, user_id=3)
    await store.close()

    chat = by_user["chat"]
    assert (chat.requests, chat.input_tokens, chat.output_tokens, chat.tokens) == (2, 107, 23, 130)
    assert (in_guild["chat"].requests, in_guild["chat"].tokens) == (2, 175)
    assert user_in_guild["chat"].tokens == 120
    assert since_yesterday["chat"].tokens == 2130
    assert (by_user["images"].requests, by_user["images"].images) == (1, 2)
    assert in_guild["audio"].audio_seconds == 90.5
    assert in_guild["speech"].speech_characters == 1200
    assert nobody == []


async def test_usage_is_grouped_by_model_and_by_user_for_reports(database_url: str) -> None:
    store = await open_store(database_url)
    since = datetime(2000, 1, 1, tzinfo=UTC)
    await store.record_usage(UsageRecord("chat", "a", 1, 10, 5, input_tokens=10, output_tokens=1))
    await store.record_usage(UsageRecord("chat", "a", 1, 10, 5, input_tokens=20, output_tokens=2))
    await store.record_usage(UsageRecord("chat", "b", 2, 10, 5, input_tokens=5))
    await store.record_usage(UsageRecord("images", "img", 2, 10, 5, images=1, image_size="1024x1024"))
    await store.record_usage(UsageRecord("images", "img", 2, 10, 5, images=3, image_size="1536x1024"))
    await store.record_usage(UsageRecord("chat", "a", 1, 99, 5, input_tokens=1000))
    await store.record_usage(UsageRecord("moderation", "mod", None, 10, 5))
    models = await store.usage_by_model(since, guild_id=10)
    users = await store.usage_by_user(10, since)
    mine = await store.usage_by_model(since, user_id=1)
    await store.close()

    assert [(r.feature, r.model, r.image_size, r.requests, r.tokens, r.images) for r in models] == [
        ("chat", "a", None, 2, 33, 0),
        ("chat", "b", None, 1, 5, 0),
        ("images", "img", "1024x1024", 1, 0, 1),
        ("images", "img", "1536x1024", 1, 0, 3),
        ("moderation", "mod", None, 1, 0, 0),
    ]
    assert [(r.user_id, r.model, r.tokens, r.images) for r in users] == [
        (1, "a", 33, 0),
        (2, "b", 5, 0),
        (2, "img", 0, 1),
        (2, "img", 0, 3),
    ]
    assert [(r.model, r.tokens) for r in mine] == [("a", 1033)]


# -- limits -------------------------------------------------------------------------------------------------


async def test_a_reservation_holds_its_amount_until_it_is_spent_or_released(database_url: str) -> None:
    store = await open_store(database_url, clock=lambda: NOON)
    first = await store.reserve(images(1, 6, limit=10))
    assert isinstance(first, Reserved) and first.hold_id is not None
    assert await store.reserve(images(1, 6, limit=10)) == Refusal("budget", "user", 10, 6.0)
    await store.release_hold(first.hold_id)  # that drawing failed
    second = await store.reserve(images(1, 6, limit=10))
    assert isinstance(second, Reserved)
    await store.record_usage(UsageRecord("images", "img", 1, 10, 5, images=6), hold_id=second.hold_id)
    # Spent now, no longer held: counted once.
    assert await store.reserve(images(1, 5, limit=10)) == Refusal("budget", "user", 10, 6.0)
    assert isinstance(await store.reserve(images(1, 4, limit=10)), Reserved)
    await store.close()


async def test_a_hold_can_grow_when_the_amount_is_learned_later(database_url: str) -> None:
    store = await open_store(database_url)
    taken = await store.reserve(images(1, 2, limit=10))
    assert isinstance(taken, Reserved)
    grown = await store.reserve(_grow(images(1, 6, limit=10), taken))
    assert grown == Reserved(taken.hold_id)
    assert await store.reserve(_grow(images(1, 3, limit=10), taken)) == Refusal("budget", "user", 10, 8.0)
    await store.close()


def _grow(reservation: Reservation, taken: Reserved) -> Reservation:
    return Reservation(
        reservation.feature,
        reservation.user_id,
        reservation.guild_id,
        reservation.amount,
        reservation.budgets,
        (),
        now=reservation.now,
        hold_id=taken.hold_id,
    )


async def test_a_process_that_died_holding_stops_holding_after_a_while(database_url: str) -> None:
    store = await open_store(database_url)
    assert isinstance(await store.reserve(images(1, 10, limit=10)), Reserved)  # and then the process died
    assert isinstance(await store.reserve(images(1, 1, limit=10)), Refusal)
    later = NOON + timedelta(hours=1)
    assert isinstance(await store.reserve(images(1, 10, limit=10, now=later)), Reserved)
    await store.close()


async def test_the_per_minute_limit_says_when_the_oldest_request_frees_its_slot(database_url: str) -> None:
    store = await open_store(database_url)
    assert isinstance(await store.reserve(requests(1, per_minute=2)), Reserved)
    assert isinstance(await store.reserve(requests(1, per_minute=2, now=NOON + timedelta(seconds=20))), Reserved)
    refused = await store.reserve(requests(1, per_minute=2, now=NOON + timedelta(seconds=45)))
    assert isinstance(refused, Refusal) and refused.kind == "rate"
    assert refused.retry_after == pytest.approx(15)
    assert isinstance(await store.reserve(requests(1, per_minute=2, now=NOON + timedelta(seconds=60))), Reserved)
    assert isinstance(await store.reserve(requests(2, per_minute=2, now=NOON + timedelta(seconds=60))), Reserved)
    await store.close()


async def test_concurrent_reservations_from_several_processes_never_share_the_last_of_a_budget(
    database_url: str,
) -> None:
    # Each store is its own connection(s), as each bot process has; forty requests for one picture each.
    stores: list[Store] = [await open_store(database_url) for _ in range(4)]
    outcomes = await asyncio.gather(*(stores[i % 4].reserve(images(1, 1, limit=3)) for i in range(40)))
    rates = await asyncio.gather(*(stores[i % 4].reserve(requests(7, per_minute=5)) for i in range(40)))
    for store in stores:
        await store.close()
    assert sum(isinstance(outcome, Reserved) for outcome in outcomes) == 3
    assert sum(isinstance(outcome, Reserved) for outcome in rates) == 5


async def test_spending_while_others_reserve_counts_the_request_exactly_once(database_url: str) -> None:
    # A request that finishes while another is being admitted must be seen either as held or as spent.
    stores = [await open_store(database_url, clock=lambda: NOON) for _ in range(2)]
    for round_ in range(15):
        held = await stores[0].reserve(images(1, 5, limit=10))
        assert isinstance(held, Reserved)
        spend = stores[0].record_usage(UsageRecord("images", "img", 1, 10, 5, images=5), hold_id=held.hold_id)
        results = await asyncio.gather(spend, *(stores[1].reserve(images(1, 6, limit=10)) for _ in range(3)))
        assert not any(isinstance(outcome, Reserved) for outcome in results[1:]), (round_, results)
        await _forget_spending(stores[0], database_url)
    for store in stores:
        await store.close()


async def _forget_spending(store: Store, database_url: str) -> None:
    """Reset today's images between rounds of the test above."""
    if isinstance(store, PostgresStore):
        connection = await asyncpg.connect(database_url)
        await connection.execute("DELETE FROM spend_daily")
        await connection.close()
    else:
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
            db.execute("DELETE FROM spend_daily")


async def test_the_identify_slot_of_a_bucket_is_taken_once_per_interval_across_processes(database_url: str) -> None:
    first, second = await open_store(database_url), await open_store(database_url)
    waits = await asyncio.gather(first.claim_identify_slot(0, 2.0), second.claim_identify_slot(0, 2.0))
    assert sorted(waits)[0] == 0 and 1.5 < sorted(waits)[1] <= 2.0
    assert await second.claim_identify_slot(1, 2.0) == 0  # another bucket is free
    await asyncio.sleep(max(waits))
    assert await first.claim_identify_slot(0, 2.0) == 0
    await first.close()
    await second.close()


# -- forgetting --------------------------------------------------------------------------------------------


async def test_a_deleted_channel_takes_its_turns_records_and_known_threads_with_it(database_url: str) -> None:
    store = await open_store(database_url)
    for channel in (1, 2, 3):
        await store.add_turn(channel, user_turn(f"in {channel}"), guild_id=9)
    await store.save_conversation_thread(2, guild_id=9, parent_id=1, opened_by=5, system_prompt=None)
    await store.set_system_prompt(1, "Be brief.", guild_id=9)
    await store.record_usage(UsageRecord("chat", "m", 1, 9, 1, input_tokens=10))
    assert await store.forget_channels([1]) == 2  # channel 1 and its thread 2
    assert await store.recent_turns(1, 10) == [] and await store.recent_turns(2, 10) == []
    assert [t.content for t in await store.recent_turns(3, 10)] == ["in 3"]
    assert (await store.get_channel(1)).system_prompt is None and not (await store.get_channel(2)).is_conversation
    assert totals_by_feature(await store.usage_by_model(NOON - timedelta(days=400)))["chat"].input_tokens == 10
    await store.close()


async def test_a_server_the_bot_left_is_forgotten_but_its_usage_stays(database_url: str) -> None:
    store = await open_store(database_url)
    await store.add_turn(1, user_turn("here"), guild_id=9)
    await store.add_turn(2, user_turn("elsewhere"), guild_id=8)
    await store.update_guild_settings(9, {"features": {"chat": False}})
    await store.update_channel_settings(1, {"auto_transcribe": False}, guild_id=9)
    await store.record_usage(UsageRecord("chat", "m", 1, 9, 1, input_tokens=10))
    assert await store.forget_guild(9) == 1
    assert await store.recent_turns(1, 10) == [] and len(await store.recent_turns(2, 10)) == 1
    assert await store.get_guild_settings(9) == {} and (await store.get_channel(1)).settings == {}
    assert len(await store.usage_by_user(9, NOON - timedelta(days=400))) == 1
    await store.close()


async def test_the_retention_sweep_drops_old_turns_a_batch_at_a_time(database_url: str) -> None:
    moment = [NOON - timedelta(days=40)]
    store = await open_store(database_url, clock=lambda: moment[0])
    for index in range(5):
        await store.add_turn(1, user_turn(f"old {index}"))
    moment[0] = NOON
    await store.add_turn(1, user_turn("new"))
    cutoff = NOON - timedelta(days=30)
    assert await store.prune(NOON, turns_before=cutoff, batch=2) == 2
    assert await store.prune(NOON, turns_before=cutoff, batch=2) == 2
    assert await store.prune(NOON, turns_before=cutoff, batch=2) == 1
    assert await store.prune(NOON, turns_before=cutoff, batch=2) == 0
    assert [t.content for t in await store.recent_turns(1, 10)] == ["new"]
    await store.close()


async def test_pruning_drops_spent_rate_entries_and_expired_holds(database_url: str) -> None:
    store = await open_store(database_url)
    assert isinstance(await store.reserve(requests(1, per_minute=1)), Reserved)
    assert isinstance(await store.reserve(images(1, 10, limit=10)), Reserved)
    await store.prune(NOON + timedelta(hours=2))
    rows = await query(database_url, "SELECT (SELECT COUNT(*) FROM rate_hits), (SELECT COUNT(*) FROM holds)")
    assert [tuple(int(value) for value in row) for row in rows] == [(0, 0)]
    await store.close()


async def test_a_turns_pictures_are_kept_with_it_bounded_per_channel_and_go_with_it(database_url: str) -> None:
    store = await open_store(database_url)
    shot = Picture("shot.png", "image/png", 765, b"\x89PNG picture bytes")
    turn = await store.add_turn(1, NewTurn("user", 1, "Ada", "look", pictures=(shot,)))
    assert turn.pictures == (Picture("shot.png", "image/png", 765),)  # named, its data left in the store
    await store.close()
    store = await open_store(database_url)
    [again] = await store.recent_turns(1, 10)
    assert again.pictures == (Picture("shot.png", "image/png", 765),)
    assert await store.picture_data([again.id]) == {again.id: [b"\x89PNG picture bytes"]}
    for index in range(MAX_PICTURES_PER_CHANNEL):
        await store.add_turn(1, NewTurn("user", 1, "Ada", f"more {index}", pictures=(shot,)))
    assert await store.picture_data([again.id]) == {}  # the oldest went: a channel keeps a bounded number
    assert await store.clear_turns(1) == MAX_PICTURES_PER_CHANNEL + 1
    [(left,)] = await query(database_url, "SELECT COUNT(*) FROM turn_pictures")
    assert int(left) == 0  # type: ignore[call-overload]
    await store.close()
