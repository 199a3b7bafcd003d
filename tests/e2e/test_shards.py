"""Two bot processes as shards 0 and 1 of 2 on one PostgreSQL: conversations in each, a kill -9 and a restart,
and limits that hold exactly across the two."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.databases import fresh_postgres_database, query
from tests.e2e.processes import bot_process, process_env
from tests.fakes.discord_emulator import DiscordEmulator, EmuChannel, EmuGuild, EmuUser
from tests.fakes.openai_server import FakeOpenAI

CHAT = "/chat/completions"
IMAGES = "/images/generations"
ANSWER_TIMEOUT = 15.0


@pytest.fixture
async def shared_database() -> AsyncIterator[str]:
    """One PostgreSQL database both processes use (the suite's PostgreSQL half: fails in CI without a server)."""
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(autouse=True)
def whole_answers(fake_openai: FakeOpenAI) -> None:
    """Each answer in one piece, so the first text of a reply is its last."""
    fake_openai.stream_chunk_chars = 10_000


@pytest.fixture
def second_guild(emulator: DiscordEmulator) -> EmuGuild:
    """A second server, on the other shard of two, with the first server's plain member in it too."""
    guild = emulator.add_guild("Second Guild")
    emulator.add_member(emulator.member, guild)
    assert (emulator.shard_of(emulator.guild, 2), emulator.shard_of(guild, 2)) == (0, 1)
    return guild


def shard_env(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path, database_url: str, shard: int, **extra: str
) -> dict[str, str]:
    """The environment of the process that runs `shard` of two; commands are global, as for many servers."""
    return {
        **process_env(emulator, fake_openai, tmp_path),
        "DATABASE_URL": database_url,
        "DISCORD_GUILD_ID": "",
        "SHARD_COUNT": "2",
        "SHARD_IDS": str(shard),
        **extra,
    }


async def mention(emulator: DiscordEmulator, channel: EmuChannel, user: EmuUser, text: str) -> int:
    """Post a message that mentions the bot; its id."""
    sent = await emulator.send_message(channel.id, user, f"<@{emulator.bot_user.id}> {text}")
    return int(sent["id"])


async def answer_to(emulator: DiscordEmulator, channel: EmuChannel, message_id: int) -> str:
    """The bot's reply to a message, once there is one."""
    reply = await emulator.wait_for(
        lambda: next(
            (
                m
                for m in emulator.messages(channel.id)
                if m.author.id == emulator.bot_user.id and m.reply_to is not None and m.reply_to.id == message_id
            ),
            None,
        ),
        timeout=ANSWER_TIMEOUT,
        what=f"the reply to message {message_id}",
    )
    return reply.content


async def all_stored(database_url: str) -> None:
    """Wait until every answer shown is stored whole (its usage with it)."""
    for _ in range(250):
        [(unfinished,)] = await query(database_url, "SELECT COUNT(*) FROM turns WHERE state != 'done'")
        if not unfinished:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("answers shown are still not stored whole")


def history_sent_for(fake_openai: FakeOpenAI, text: str) -> list[str]:
    """The user turns of the chat request whose last turn says `text`."""
    for request in fake_openai.requests_to(CHAT):
        users = [m["content"] for m in request.json["messages"] if m["role"] == "user"]
        if users and users[-1].endswith(text):
            return users
    raise AssertionError(f"no chat request ended with {text!r}")


async def test_two_processes_as_two_shards_keep_their_conversations_through_a_kill_9(
    emulator: DiscordEmulator,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    shared_database: str,
    second_guild: EmuGuild,
) -> None:
    emulator.enforce_identify_limit = True  # the processes must take turns to connect, as Discord demands
    first_env = shard_env(emulator, fake_openai, tmp_path, shared_database, 0)
    second_env = shard_env(emulator, fake_openai, tmp_path, shared_database, 1)
    async with bot_process(emulator, first_env, tmp_path) as shard_0, bot_process(emulator, second_env, tmp_path):
        here = await mention(emulator, emulator.general, emulator.member, "Otters in guild one?")
        there = await mention(emulator, second_guild.general, emulator.member, "Beavers in guild two?")
        assert await answer_to(emulator, emulator.general, here) == "Echo: Member: Otters in guild one?"
        assert await answer_to(emulator, second_guild.general, there) == "Echo: Member: Beavers in guild two?"
        await all_stored(shared_database)  # a kill sooner would rightly have the restart answer again

        code, _ = await shard_0.stop(signal.SIGKILL)
        assert code == -signal.SIGKILL
        async with bot_process(emulator, first_env, tmp_path):
            here = await mention(emulator, emulator.general, emulator.member, "And their dams?")
            there = await mention(emulator, second_guild.general, emulator.member, "And their lodges?")
            await answer_to(emulator, emulator.general, here)
            await answer_to(emulator, second_guild.general, there)

    assert history_sent_for(fake_openai, "And their dams?") == [
        "Member: Otters in guild one?",
        "Member: And their dams?",
    ]
    assert history_sent_for(fake_openai, "And their lodges?") == [
        "Member: Beavers in guild two?",
        "Member: And their lodges?",
    ]
    # Each process handled only its own shard's guild: one answer per message, no more.
    bot_replies = [m for m in emulator.messages(emulator.general.id) if m.author.id == emulator.bot_user.id]
    assert len(bot_replies) == 2
    assert emulator.identify_refusals == []
    starts = sorted(record.at for record in emulator.identifies)
    assert all(later - earlier >= 4.9 for earlier, later in itertools.pairwise(starts))


async def test_limits_hold_exactly_across_the_two_processes(
    emulator: DiscordEmulator,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    shared_database: str,
    second_guild: EmuGuild,
) -> None:
    emulator.max_concurrency = 2  # both shards may connect at once: this test is about the limits
    limits = {"USER_REQUESTS_PER_MINUTE": "3", "GUILD_REQUESTS_PER_MINUTE": "0", "USER_DAILY_IMAGES": "3"}
    async with AsyncExitStack() as processes:
        for shard in (0, 1):
            env = shard_env(emulator, fake_openai, tmp_path, shared_database, shard, **limits)
            await processes.enter_async_context(bot_process(emulator, env, tmp_path))
        await chatty_member_gets_three_answers(emulator, fake_openai, second_guild)
        await drawer_gets_three_pictures(emulator, fake_openai, second_guild, shared_database)


async def chatty_member_gets_three_answers(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, second_guild: EmuGuild
) -> None:
    """A member in both servers asks six times at once, alternating servers (and so processes): three answers."""
    chatty = emulator.add_user("chatty")
    emulator.add_member(chatty, second_guild)
    channels = [emulator.general, second_guild.general] * 3
    await asyncio.gather(*(mention(emulator, c, chatty, f"question {i}") for i, c in enumerate(channels)))

    def answers() -> list[str]:
        replies = [m.content for c in (emulator.general, second_guild.general) for m in emulator.messages(c.id)]
        return [text for text in replies if text.startswith("Echo: Chatty:")]

    await emulator.wait_for(lambda: len(answers()) >= 3, timeout=ANSWER_TIMEOUT, what="three answers")
    await asyncio.sleep(1.0)  # time for a fourth, were the limit not held
    assert len(answers()) == 3
    asked = [r for r in fake_openai.requests_to(CHAT) if r.json["messages"][-1]["content"].startswith("Chatty:")]
    assert len(asked) == 3


async def drawer_gets_three_pictures(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, second_guild: EmuGuild, database_url: str
) -> None:
    """Five pictures asked for at once in both servers, with a daily budget of three: exactly three are made."""
    drawer = emulator.add_user("drawer")
    emulator.add_member(drawer, second_guild)
    channels = [emulator.general, second_guild.general, emulator.general, second_guild.general, emulator.general]
    interactions = await asyncio.gather(
        *(
            emulator.invoke_slash(drawer, channel.id, "image", {"generate": {"prompt": f"an otter, take {i}"}})
            for i, channel in enumerate(channels)
        )
    )
    for interaction in interactions:
        await emulator.wait_for(
            lambda interaction=interaction: (
                interaction.original is not None
                and interaction.original.content != ""  # the deferral, not yet the answer
                and not interaction.original.content.startswith("🎨 Drawing")
            ),
            timeout=ANSWER_TIMEOUT,
            what="each /image to finish",
        )
    made = [i for i in interactions if i.original is not None and i.original.attachments]
    refused = [i for i in interactions if i.original is not None and "image allowance" in i.original.content]
    assert (len(made), len(refused)) == (3, 2)
    assert len(fake_openai.requests_to(IMAGES)) == 3
    [(pictures,)] = await query(database_url, f"SELECT SUM(images) FROM usage WHERE user_id = {drawer.id}")
    assert pictures == 3
