"""What the bot forgets, end to end: deleted threads and channels, a server it leaves, history past retention."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.store import NewTurn, open_store, utc_now
from tests.databases import query
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat_flows import open_conversation, sent_messages, speaker, wait_for_answer
from tests.fakes.discord_emulator import DiscordEmulator
from tests.fakes.openai_server import FakeOpenAI


async def turn_count(database_url: str, channel_id: int) -> int:
    [(count,)] = await query(database_url, f"SELECT COUNT(*) FROM turns WHERE channel_id = {channel_id}")
    return int(count)  # type: ignore[call-overload]


async def until_forgotten(database_url: str, channel_id: int) -> None:
    """Wait (up to 5 s) until the database holds no turn of the channel; fail if it still does."""
    for _ in range(250):
        if await turn_count(database_url, channel_id) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"channel {channel_id}'s turns are still stored")


async def test_a_deleted_thread_is_forgotten(emulator: DiscordEmulator, run_bot: BotRunner, database_url: str) -> None:
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Remember me")
        await wait_for_answer(emulator, thread_id, f"Echo: {speaker(emulator.member)}: Remember me")
        assert await turn_count(database_url, thread_id) == 2
        await emulator.delete_thread(emulator.world.channels[thread_id])
        await until_forgotten(database_url, thread_id)


async def test_a_server_the_bot_leaves_is_forgotten_but_its_usage_stays(
    emulator: DiscordEmulator, run_bot: BotRunner, database_url: str
) -> None:
    async with run_bot() as bot:
        thread_id = await open_conversation(emulator, emulator.member, "Hello")
        await wait_for_answer(emulator, thread_id, f"Echo: {speaker(emulator.member)}: Hello")
        await bot.records.update_guild_settings(emulator.guild_id, {"features": {"images": False}})
        await emulator.remove_bot_from_guild(emulator.guild)
        await emulator.wait_for(lambda: bot.get_guild(emulator.guild_id) is None, what="the guild to be gone")
        await until_forgotten(database_url, thread_id)
    assert await query(database_url, f"SELECT * FROM guild_settings WHERE guild_id = {emulator.guild_id}") == []
    [(requests,)] = await query(database_url, f"SELECT COUNT(*) FROM usage WHERE guild_id = {emulator.guild_id}")
    assert int(requests) == 1  # type: ignore[call-overload]


async def test_history_past_its_retention_is_forgotten_and_never_sent_again(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner, database_url: str
) -> None:
    long_ago = utc_now() - timedelta(days=45)
    old = await open_store(database_url, clock=lambda: long_ago)
    channel = emulator.general.id
    await old.add_turn(channel, NewTurn("user", emulator.member.id, "Member", "a secret from long ago"))
    await old.add_turn(channel, NewTurn("assistant", None, "assistant", "noted"))
    await old.close()
    async with run_bot(HISTORY_RETENTION_DAYS="30"):
        await until_forgotten(database_url, channel)
        await emulator.send_message(channel, emulator.member, f"<@{emulator.bot_user.id}> What did I tell you?")
        await wait_for_answer(emulator, channel, f"Echo: {speaker(emulator.member)}: What did I tell you?")
    assert sent_messages(fake_openai)[1:] == [("user", f"{speaker(emulator.member)}: What did I tell you?")]
