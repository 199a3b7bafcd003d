"""Deletions, removals and replies to deleted messages as discord.py sees them; REST counts and change timing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest

from tests.e2e.test_emulator import EchoBot
from tests.fakes.discord_emulator import DiscordEmulator, EmuMessage, Perm


class WatchingBot(EchoBot):
    """The echo bot, also recording what it is told was deleted or removed."""

    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[tuple[str, Any]] = []

    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        """Record the thread id."""
        self.deleted.append(("raw_thread", payload.thread_id))

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        """Record the channel id."""
        self.deleted.append(("channel", channel.id))

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Record the guild id."""
        self.deleted.append(("guild", guild.id))

    async def on_guild_join(self, guild: discord.Guild) -> None:
        """Record the guild id."""
        self.deleted.append(("joined", guild.id))

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """Record the message id."""
        self.deleted.append(("message", payload.message_id))


@pytest.fixture
async def watcher(emulator: DiscordEmulator) -> AsyncIterator[WatchingBot]:
    """The watching bot, logged in."""
    client = WatchingBot()
    async with emulator.run_client(client):
        yield client


async def test_a_deleted_thread_reaches_the_client_and_then_answers_unknown_channel(
    emulator: DiscordEmulator, watcher: WatchingBot
) -> None:
    thread = await emulator.create_thread(emulator.general.id, emulator.member, "to be deleted")
    await emulator.wait_for(lambda: watcher.get_channel(thread.id), what="the thread in the cache")

    await emulator.delete_thread(thread)
    await emulator.wait_for(lambda: watcher.deleted, what="on_raw_thread_delete")
    with pytest.raises(discord.NotFound) as gone:
        await watcher.fetch_channel(thread.id)

    [event] = emulator.events("THREAD_DELETE")
    assert event["d"] == {
        "id": str(thread.id),
        "guild_id": str(emulator.guild_id),
        "parent_id": str(emulator.general.id),
        "type": 11,
    }
    assert watcher.deleted == [("raw_thread", thread.id)]
    assert watcher.get_channel(thread.id) is None and gone.value.code == 10003
    assert emulator.threads(emulator.general.id) == []


async def test_a_deleted_channel_takes_its_threads_without_thread_delete_events(
    emulator: DiscordEmulator, watcher: WatchingBot
) -> None:
    random = emulator.random
    thread = await emulator.create_thread(random.id, emulator.member, "inside #random")
    await emulator.send_message(thread.id, emulator.member, "kept for the record")
    await emulator.wait_for(lambda: watcher.get_channel(thread.id), what="the thread in the cache")

    await emulator.delete_channel(random)
    await emulator.wait_for(lambda: len(watcher.deleted) == 2, what="the channel and thread deletions")
    refusals = []
    for channel_id in (random.id, thread.id):
        with pytest.raises(discord.NotFound) as gone:
            await watcher.http.get_message(channel_id, emulator.messages(thread.id)[0].id)
        refusals.append(gone.value.code)

    [event] = emulator.events("CHANNEL_DELETE")
    assert event["d"]["id"] == str(random.id) and event["d"]["guild_id"] == str(emulator.guild_id)
    assert emulator.events("THREAD_DELETE") == []  # Discord sends none; discord.py drops the threads itself
    assert sorted(watcher.deleted) == sorted([("channel", random.id), ("raw_thread", thread.id)])
    assert refusals == [10003, 10003]
    assert [c.name for c in emulator.guild.text_channels] == ["general"]


async def test_the_bot_deletes_a_thread_with_manage_threads_only(
    emulator: DiscordEmulator, watcher: WatchingBot
) -> None:
    channel = watcher.get_channel(emulator.general.id)
    assert isinstance(channel, discord.TextChannel)
    thread = await channel.create_thread(name="bot's own", type=discord.ChannelType.public_thread)

    with pytest.raises(discord.Forbidden) as refused:
        await thread.delete()
    emulator.set_channel_permissions(emulator.general.id, emulator.bot_user, allow=Perm.MANAGE_THREADS)
    await thread.delete()
    await emulator.wait_for(lambda: watcher.deleted, what="on_raw_thread_delete")

    assert refused.value.code == 50013
    assert watcher.deleted == [("raw_thread", thread.id)]
    assert [r.status for r in emulator.requests if r.route == "/channels/{channel_id}"] == [403, 200]


async def test_a_bot_removed_from_a_guild_gets_guild_delete_and_then_unknown_guild(
    emulator: DiscordEmulator,
) -> None:
    second = emulator.add_guild("second")
    client = WatchingBot()
    async with emulator.run_client(client):
        await emulator.remove_bot_from_guild(second)
        await emulator.wait_for(lambda: client.deleted, what="on_guild_remove")
        with pytest.raises(discord.NotFound) as gone:
            await client.http.get_roles(second.id)
        with pytest.raises(discord.NotFound):
            await client.fetch_guild(second.id)
        with pytest.raises(discord.Forbidden) as hidden:
            await client.fetch_channel(second.general.id)
        listed = [int(g["id"]) for g in await client.http.get_guilds(200)]
        await emulator.add_bot_to_guild(second)
        await emulator.wait_for(lambda: len(client.deleted) == 2, what="on_guild_join")

    assert [e["d"] for e in emulator.events("GUILD_DELETE")] == [{"id": str(second.id)}]
    assert client.deleted == [("guild", second.id), ("joined", second.id)]
    assert (gone.value.code, hidden.value.code) == (10004, 50001)
    assert listed == [emulator.guild_id]


async def test_a_reply_to_a_deleted_message_keeps_its_reference_with_a_null_referenced_message(
    emulator: DiscordEmulator, watcher: WatchingBot
) -> None:
    original = await emulator.send_message(emulator.general.id, emulator.member, "the question")
    reply = await emulator.send_message(emulator.general.id, emulator.admin, "the answer", reply_to=int(original["id"]))

    await emulator.delete_message(int(original["id"]))
    await emulator.wait_for(lambda: watcher.deleted, what="on_raw_message_delete")
    channel = watcher.get_channel(emulator.general.id)
    assert isinstance(channel, discord.TextChannel)
    fetched = await channel.fetch_message(int(reply["id"]))
    raw = await watcher.http.get_message(emulator.general.id, reply["id"])
    with pytest.raises(discord.NotFound) as gone:
        await channel.fetch_message(int(original["id"]))
    with pytest.raises(LookupError):
        await emulator.send_message(emulator.general.id, emulator.admin, "too late", reply_to=int(original["id"]))

    assert watcher.deleted == [("message", int(original["id"]))]
    assert fetched.reference is not None and fetched.reference.message_id == int(original["id"])
    assert isinstance(fetched.reference.resolved, discord.DeletedReferencedMessage)
    assert raw["referenced_message"] is None and raw["message_reference"]["message_id"] == original["id"]
    assert gone.value.code == 10008


async def test_rest_calls_are_counted_per_route_since_a_mark(emulator: DiscordEmulator, watcher: WatchingBot) -> None:
    channel = watcher.get_channel(emulator.general.id)
    assert isinstance(channel, discord.TextChannel)
    await channel.send("before the mark")

    mark = emulator.mark()
    first = await channel.send("one")
    await channel.send("two")
    await first.edit(content="one, edited")

    assert emulator.rest_calls_by_route(mark) == {
        ("POST", "/channels/{channel_id}/messages"): 2,
        ("PATCH", "/channels/{channel_id}/messages/{message_id}"): 1,
    }
    assert emulator.rest_calls_by_route()[("POST", "/channels/{channel_id}/messages")] == 3


async def test_a_message_waiter_wakes_at_the_change_with_the_time_it_became_visible(
    emulator: DiscordEmulator, watcher: WatchingBot
) -> None:
    channel = watcher.get_channel(emulator.general.id)
    assert isinstance(channel, discord.TextChannel)
    changes: list[tuple[str, str]] = []
    emulator.on_message_change.append(lambda event, message: changes.append((event, message.content)))

    async def stream() -> None:
        message = await channel.send("Thinking")
        await asyncio.sleep(0.05)
        await message.edit(content="The final answer.")

    started = emulator.clock()
    streaming = asyncio.create_task(stream())
    final: EmuMessage = await emulator.wait_for_message(emulator.general.id, lambda m: m.content.endswith("answer."))
    woke = emulator.clock()
    await streaming

    assert changes == [("create", "Thinking"), ("update", "The final answer.")]
    [(shown, first), (edited, last)] = final.timeline
    assert (first, last) == ("Thinking", "The final answer.")
    assert started < shown < edited == final.visible_at <= woke
    assert edited - shown >= 0.05
    assert emulator.last_message(emulator.general.id) is final
