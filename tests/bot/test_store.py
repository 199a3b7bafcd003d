"""The SQLite store on a real file: turns in order per channel, restarts, crashes, settings."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from bot.store import NewTurn, SqliteStore, UsageRecord, UsageTotals, open_store
from bot.store.sqlite import MIGRATIONS

PROJECT_ROOT = Path(__file__).parents[2]


def user_turn(text: str, author_id: int = 1) -> NewTurn:
    return NewTurn("user", author_id, f"user{author_id}", text)


async def test_turns_come_back_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub/bot.db"
    store = await open_store(url)
    await store.add_turn(10, user_turn("first"))
    await store.add_turn(10, NewTurn("assistant", None, "assistant", "second"))
    await store.add_turn(10, user_turn("third", author_id=2))
    await store.close()

    reopened = await open_store(url)
    turns = await reopened.recent_turns(10, 10)
    await reopened.close()
    assert [(t.role, t.author_id, t.content) for t in turns] == [
        ("user", 1, "first"),
        ("assistant", None, "second"),
        ("user", 2, "third"),
    ]


async def test_recent_turns_are_the_newest_and_never_from_another_channel(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    for i in range(30):
        await store.add_turn(1, user_turn(f"a{i}"))
        await store.add_turn(2, user_turn(f"b{i}"))
    turns = await store.recent_turns(1, 5)
    await store.close()
    assert [t.content for t in turns] == ["a25", "a26", "a27", "a28", "a29"]


async def test_clearing_a_channel_leaves_others_alone(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
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


async def test_conversation_threads_and_prompts_are_remembered(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    await store.set_system_prompt(5, "Be brief.", guild_id=9)
    await store.save_conversation_thread(6, guild_id=9, parent_id=5, opened_by=42, system_prompt="Be brief.")
    await store.update_channel_settings(6, {"auto_transcribe": False}, guild_id=9)
    await store.update_channel_settings(6, {"model": "m"}, guild_id=9)
    await store.close()

    store = await SqliteStore.open(tmp_path / "bot.db")
    thread = await store.get_channel(6)
    unknown = await store.get_channel(7)
    await store.close()
    assert thread.is_conversation and thread.opened_by == 42 and thread.parent_id == 5
    assert thread.system_prompt == "Be brief."
    assert thread.settings == {"auto_transcribe": False, "model": "m"}
    assert not unknown.is_conversation and unknown.system_prompt is None


async def test_meta_and_usage_are_stored(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    assert await store.get_meta("k") is None
    await store.set_meta("k", "v1")
    await store.set_meta("k", "v2")
    await store.record_usage(UsageRecord("chat", "m", 1, 2, 3, input_tokens=10, output_tokens=5))
    assert await store.get_meta("k") == "v2"
    await store.close()
    with sqlite3.connect(tmp_path / "bot.db") as db:
        assert db.execute("SELECT feature, input_tokens, output_tokens FROM usage").fetchall() == [("chat", 10, 5)]


async def test_a_newer_schema_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "bot.db") as db:
        db.execute("PRAGMA user_version = 99")
    try:
        await SqliteStore.open(tmp_path / "bot.db")
    except RuntimeError as error:
        assert "newer than this bot knows" in str(error)
    else:
        raise AssertionError("a database from a newer bot was opened")


def test_kill_9_while_writing_turns_leaves_only_whole_turns(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    writer = textwrap.dedent(
        f"""
        import asyncio
        from bot.store import NewTurn, SqliteStore
        async def main():
            store = await SqliteStore.open({str(path)!r})
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
    turns = asyncio.run(_read(path, limit=100_000))
    assert len(turns) >= 20
    for index, turn in enumerate(turns):
        assert turn.content == f"turn-{index}-" + "x" * 5000 + "-end"


async def _read(path: Path, limit: int = 10) -> list:
    store = await SqliteStore.open(path)
    try:
        return await store.recent_turns(1, limit)
    finally:
        await store.close()


async def test_usage_sums_select_by_feature_user_guild_and_time(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 24, 23, 0, tzinfo=UTC)]
    store = await SqliteStore.open(tmp_path / "bot.db", clock=lambda: now[0])
    await store.record_usage(UsageRecord("chat", "m", 1, 10, 5, input_tokens=1000, output_tokens=1000))  # yesterday
    now[0] = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    await store.record_usage(UsageRecord("chat", "m", 1, 10, 5, input_tokens=100, output_tokens=20))
    await store.record_usage(UsageRecord("chat", "m", 1, 20, 6, input_tokens=7, output_tokens=3))
    await store.record_usage(UsageRecord("chat", "m", 2, 10, 5, input_tokens=50, output_tokens=5))
    await store.record_usage(UsageRecord("images", "img", 1, 10, 5, images=2, image_size="1024x1024"))
    await store.record_usage(UsageRecord("audio", "tr", 1, 10, 5, audio_seconds=90.5))
    today = datetime(2026, 11, 25, tzinfo=UTC)

    by_user = await store.usage_total("chat", today, user_id=1)
    in_guild = await store.usage_total("chat", today, guild_id=10)
    user_in_guild = await store.usage_total("chat", today, user_id=1, guild_id=10)
    since_yesterday = await store.usage_total("chat", datetime(2026, 11, 24, tzinfo=UTC), user_id=1)
    images = await store.usage_total("images", today, user_id=1)
    audio = await store.usage_total("audio", today, guild_id=10)
    nothing = await store.usage_total("images", today, user_id=2)
    await store.close()

    assert (by_user.requests, by_user.input_tokens, by_user.output_tokens, by_user.tokens) == (2, 107, 23, 130)
    assert (in_guild.requests, in_guild.tokens) == (2, 175)
    assert user_in_guild.tokens == 120
    assert since_yesterday.tokens == 2130
    assert (images.requests, images.images) == (1, 2)
    assert audio.audio_seconds == 90.5
    assert nothing == UsageTotals()


async def test_usage_is_grouped_by_model_and_by_user_for_reports(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    since = datetime(2000, 1, 1, tzinfo=UTC)
    await store.record_usage(UsageRecord("chat", "a", 1, 10, 5, input_tokens=10, output_tokens=1))
    await store.record_usage(UsageRecord("chat", "a", 1, 10, 5, input_tokens=20, output_tokens=2))
    await store.record_usage(UsageRecord("chat", "b", 2, 10, 5, input_tokens=5))
    await store.record_usage(UsageRecord("images", "img", 2, 10, 5, images=1, image_size="1024x1024"))
    await store.record_usage(UsageRecord("images", "img", 2, 10, 5, images=3, image_size="1536x1024"))
    await store.record_usage(UsageRecord("chat", "a", 1, 99, 5, input_tokens=1000))
    models = await store.usage_by_model(since, guild_id=10)
    users = await store.usage_by_user(10, since)
    mine = await store.usage_by_model(since, user_id=1)
    await store.close()

    assert [(r.feature, r.model, r.image_size, r.requests, r.tokens, r.images) for r in models] == [
        ("chat", "a", None, 2, 33, 0),
        ("chat", "b", None, 1, 5, 0),
        ("images", "img", "1024x1024", 1, 0, 1),
        ("images", "img", "1536x1024", 1, 0, 3),
    ]
    assert [(r.user_id, r.model, r.tokens, r.images) for r in users] == [
        (1, "a", 33, 0),
        (2, "b", 5, 0),
        (2, "img", 0, 1),
        (2, "img", 0, 3),
    ]
    assert [(r.model, r.tokens) for r in mine] == [("a", 1033)]


async def test_the_budget_sums_use_the_feature_indexes(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    await store.close()
    query = "EXPLAIN QUERY PLAN SELECT COUNT(*), SUM(input_tokens) FROM usage WHERE feature = ? AND created_at >= ?"
    with sqlite3.connect(tmp_path / "bot.db") as db:
        by_user = db.execute(query + " AND user_id = ?", ("chat", "2026", 1)).fetchall()
        by_guild = db.execute(query + " AND guild_id = ?", ("chat", "2026", 1)).fetchall()
    assert any("usage_by_user_feature" in str(row) for row in by_user), by_user
    assert any("usage_by_guild_feature" in str(row) for row in by_guild), by_guild


async def test_guild_settings_merge_and_none_removes_a_key(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "bot.db")
    assert await store.get_guild_settings(1) == {}
    await store.update_guild_settings(1, {"features": {"chat": False}, "limits": {"user_daily_images": 3}})
    await store.update_guild_settings(1, {"features": {"images": False}})
    await store.update_guild_settings(1, {"limits": {"user_daily_images": None}, "auto_transcribe": None})
    await store.close()
    store = await SqliteStore.open(tmp_path / "bot.db")
    assert await store.get_guild_settings(1) == {"features": {"chat": False, "images": False}, "limits": {}}
    assert await store.get_guild_settings(2) == {}
    await store.close()


async def test_a_version_1_database_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO usage (created_at, feature, model, user_id, input_tokens) VALUES (?, 'chat', 'm', 1, 42)",
            (datetime.now(UTC).isoformat(),),
        )
    store = await SqliteStore.open(path)
    total = await store.usage_total("chat", datetime(2000, 1, 1, tzinfo=UTC), user_id=1)
    await store.update_guild_settings(5, {"features": {"chat": True}})
    await store.close()
    assert total.input_tokens == 42
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
