"""The SQLite store on a real file: turns in order per channel, restarts, crashes, settings."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from bot.store import NewTurn, SqliteStore, UsageRecord, open_store

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


def test_a_transaction_killed_before_commit_leaves_no_turn(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    asyncio.run(_seed(path))
    script = textwrap.dedent(
        f"""
        import os, signal, sqlite3
        db = sqlite3.connect({str(path)!r}, isolation_level=None)
        db.execute("BEGIN")
        db.execute("INSERT INTO turns (channel_id, role, author_name, content, created_at)"
                   " VALUES (1, 'user', 'x', 'half-written', 'now')")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert completed.returncode == -signal.SIGKILL
    turns = asyncio.run(_read(path))
    assert [t.content for t in turns] == ["kept"]


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


async def _seed(path: Path) -> None:
    store = await SqliteStore.open(path)
    await store.add_turn(1, user_turn("kept"))
    await store.close()


async def _read(path: Path, limit: int = 10) -> list:
    store = await SqliteStore.open(path)
    try:
        return await store.recent_turns(1, limit)
    finally:
        await store.close()
