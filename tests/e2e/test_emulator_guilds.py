"""The Discord emulator with many guilds and shards, driven by plain discord.py clients."""

from __future__ import annotations

import asyncio
import time

import discord
import pytest

from tests.e2e.test_emulator import EchoBot
from tests.fakes.discord_emulator import ClientDied, DiscordEmulator, EmuGuild, Intent


class ShardBot(EchoBot):
    """The echo bot as one process of a sharded deployment; re-identifying waits `retry_after`, not 5 s."""

    def __init__(self, shard_id: int, shard_count: int, *, retry_after: float = 0.0) -> None:
        super().__init__(shard_id=shard_id, shard_count=shard_count)
        self.retry_after = retry_after

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait before every IDENTIFY but the first, as discord.py's default does (for 5 s)."""
        if not initial:
            await asyncio.sleep(self.retry_after)


def add_guilds(emulator: DiscordEmulator, count: int) -> list[EmuGuild]:
    """Add `count` guilds named server-1, server-2, ..."""
    return [emulator.add_guild(f"server-{n}") for n in range(1, count + 1)]


def close_code(died: pytest.ExceptionInfo[ClientDied]) -> int:
    """The gateway close code that ended the client."""
    cause = died.value.__cause__
    assert isinstance(cause, discord.ConnectionClosed), cause
    return cause.code


async def test_each_added_guild_arrives_with_its_own_channels_roles_and_members(emulator: DiscordEmulator) -> None:
    second = emulator.add_guild("second", channels=("general", "music"))
    emulator.add_member(emulator.member, second, roles=[emulator.add_role(second, "DJ")])
    client = EchoBot()
    async with emulator.run_client(client):
        await emulator.send_message(second.general.id, emulator.member, "hello from the second guild")
        seen = await emulator.wait_for(lambda: client.saw("hello from the second guild"))
        fetched = await client.get_guild(second.id).fetch_member(emulator.member.id)  # type: ignore[union-attr]
        details = await client.fetch_guild(second.id)

    guild = client.get_guild(second.id)
    assert guild is not None and len(client.guilds) == 2
    assert [c.name for c in guild.text_channels] == ["general", "music"]
    assert guild.me.get_role(second.bot_role.id) is not None
    assert guild.default_role.id == second.id and guild.owner_id == emulator.admin.id
    assert isinstance(seen.author, discord.Member) and seen.guild == guild
    assert [role.name for role in fetched.roles] == ["@everyone", "DJ"]
    assert emulator.guild.is_member(emulator.member.id) and second.is_member(emulator.member.id)
    assert (details.name, details.approximate_member_count) == ("second", 3)


async def test_my_guilds_are_listed_by_id_in_pages(emulator: DiscordEmulator) -> None:
    added = add_guilds(emulator, 4)
    ids = sorted(g.id for g in [emulator.guild, *added])
    client = EchoBot()
    async with emulator.run_client(client):
        first = await client.http.get_guilds(2)
        rest = await client.http.get_guilds(200, after=first[-1]["id"])
        before = await client.http.get_guilds(2, before=ids[-1])
        with pytest.raises(discord.HTTPException) as refused:
            await client.http.get_guilds(201)

    assert [int(g["id"]) for g in first + rest] == ids
    assert [int(g["id"]) for g in before] == ids[-3:-1]
    assert {g["name"] for g in rest} >= {"server-3", "server-4"}
    assert (refused.value.status, refused.value.code) == (400, 50035)
    emulator.violations.clear()


async def test_commands_sync_per_guild_and_interactions_carry_their_guild(emulator: DiscordEmulator) -> None:
    second = emulator.add_guild("second")
    emulator.add_member(emulator.member, second)
    elsewhere = emulator.add_guild("without the bot", with_bot=False)
    client = EchoBot()
    async with emulator.run_client(client):
        client.tree.copy_global_to(guild=discord.Object(second.id))
        await client.tree.sync(guild=discord.Object(second.id))
        interaction = await emulator.invoke_slash(emulator.member, second.general.id, "permissions")
        await interaction.wait_done()
        with pytest.raises(discord.Forbidden) as refused:
            await client.tree.sync(guild=discord.Object(elsewhere.id))
        with pytest.raises(LookupError):
            await emulator.invoke_slash(emulator.member, emulator.general.id, "permissions")

    assert interaction.payload["guild_id"] == str(second.id)
    assert interaction.payload["member"]["roles"] == []
    assert {c["name"] for c in emulator.commands(second.id)} >= {"permissions", "slow"}
    assert emulator.commands(emulator.guild_id) == []
    assert refused.value.code == 50001


async def test_a_thousand_guilds_arrive_at_identify(emulator: DiscordEmulator) -> None:
    guilds = add_guilds(emulator, 1000)
    thread = await emulator.create_thread(guilds[-1].general.id, emulator.admin, "last guild's thread")
    client = EchoBot()

    started = time.perf_counter()
    async with emulator.run_client(client, ready_timeout=30.0):
        ready_after = time.perf_counter() - started

    assert len(client.guilds) == 1001
    assert len(emulator.events("GUILD_CREATE")) == 1001
    assert client.get_channel(thread.id) is not None
    assert ready_after < 10.0  # about 0.3 s on the 2-core test machine


async def test_a_guild_payload_costs_as_much_among_2000_guilds_as_among_200(emulator: DiscordEmulator) -> None:
    async def add_busy_guilds(count: int) -> None:
        for guild in add_guilds(emulator, count):
            thread = await emulator.create_thread(guild.general.id, emulator.admin, "busy")
            for text in ("one", "two", "three"):
                await emulator.send_message(thread.id, emulator.admin, text)

    def cost_per_guild() -> float:
        guilds = emulator.guilds
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            payloads = [emulator.guild_create_payload(guild, Intent.GUILDS) for guild in guilds]
            timings.append((time.perf_counter() - started) / len(guilds))
        assert all(payload["threads"][0]["message_count"] == 3 for payload in payloads[1:])
        return min(timings)

    await add_busy_guilds(199)
    among_200 = cost_per_guild()
    await add_busy_guilds(1800)
    among_2000 = cost_per_guild()

    # Scanning every channel or message per guild (as a single-guild emulator may) would cost ~10 times more.
    assert among_2000 < 3 * among_200


async def test_a_sharded_client_gets_only_its_shards_guilds(emulator: DiscordEmulator) -> None:
    add_guilds(emulator, 5)
    client = discord.AutoShardedClient(intents=discord.Intents.default(), shard_ids=[0], shard_count=2)
    async with emulator.run_client(client):
        pass

    mine = emulator.guilds_of_shard(0, 2)
    assert len(mine) == 3  # the k-th guild made (the first is 0) is on shard k % shard_count
    assert sorted(g.id for g in client.guilds) == sorted(g.id for g in mine)
    [ready] = emulator.events("READY")
    assert ready["d"]["shard"] == [0, 2]
    assert [g["id"] for g in ready["d"]["guilds"]] == [str(g.id) for g in mine]
    assert emulator.identifies[0].shard_id == 0


async def test_an_auto_sharded_client_follows_the_recommended_shard_count(emulator: DiscordEmulator) -> None:
    add_guilds(emulator, 3)
    emulator.recommended_shards = 2

    class Quick(discord.AutoShardedClient):
        async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
            """Identify at once (discord.py waits 5 s between shards; max_concurrency decides really)."""

    client = Quick(intents=discord.Intents.default())
    async with emulator.run_client(client):
        pass

    assert client.shard_count == 2 and len(client.guilds) == 4
    assert [e["d"]["shard"] for e in emulator.events("READY")] == [[0, 2], [1, 2]]
    assert {g.id: g.shard_id for g in client.guilds} == {g.id: emulator.shard_of(g, 2) for g in emulator.guilds}


async def test_events_go_to_the_guilds_shard_and_dms_to_shard_0(emulator: DiscordEmulator) -> None:
    other = emulator.add_guild("on shard 1")
    emulator.add_member(emulator.member, other)
    assert (emulator.shard_of(emulator.guild, 2), emulator.shard_of(other, 2)) == (0, 1)
    zero, one = ShardBot(0, 2), ShardBot(1, 2)
    async with emulator.run_client(zero), emulator.run_client(one):
        await one.tree.sync(guild=None)
        await emulator.send_message(other.general.id, emulator.member, "in guild on shard 1")
        await emulator.send_message(emulator.dm_channel(emulator.member).id, emulator.member, "a DM")
        interaction = await emulator.invoke_slash(emulator.member, other.general.id, "colour", {"name": "red"})
        await interaction.wait_done()
        await emulator.wait_for(lambda: zero.saw("a DM") and one.saw("in guild on shard 1"))

    assert len(emulator.events("INTERACTION_CREATE")) == 1
    assert [m.content for m in zero.seen] == ["a DM"]
    assert [m.content for m in one.seen] == ["in guild on shard 1"]
    assert [g.id for g in zero.guilds] == [emulator.guild_id] and [g.id for g in one.guilds] == [other.id]
    assert interaction.original is not None and interaction.original.content == "red"


async def test_a_shard_id_outside_the_shard_count_closes_with_4010(emulator: DiscordEmulator) -> None:
    with pytest.raises(ClientDied) as died:
        async with emulator.run_client(ShardBot(2, 2)):
            pass

    assert close_code(died) == 4010
    assert emulator.identifies == []


async def test_more_than_2500_guilds_without_sharding_closes_with_4011(emulator: DiscordEmulator) -> None:
    add_guilds(emulator, 2500)

    with pytest.raises(ClientDied) as died:
        async with emulator.run_client(EchoBot()):
            pass

    assert close_code(died) == 4011
    assert emulator.events("READY") == []


async def test_gateway_bot_recommends_shards_and_reports_the_session_start_limit(emulator: DiscordEmulator) -> None:
    client = EchoBot()
    async with emulator.run_client(client):
        default = await client.http.request(discord.http.Route("GET", "/gateway/bot"))
        add_guilds(emulator, 2500)
        crowded = await client.http.request(discord.http.Route("GET", "/gateway/bot"))
        emulator.recommended_shards, emulator.max_concurrency = 16, 16
        configured = await client.http.request(discord.http.Route("GET", "/gateway/bot"))
        plain = await client.http.request(discord.http.Route("GET", "/gateway"))

    assert default["shards"] == 1 and crowded["shards"] == 3
    assert default["session_start_limit"] == {
        "total": 1000,
        "remaining": 999,
        "reset_after": 14_400_000,
        "max_concurrency": 1,
    }
    assert (configured["shards"], configured["session_start_limit"]["max_concurrency"]) == (16, 16)
    assert plain == {"url": default["url"]}


async def test_an_identify_inside_the_interval_is_refused_with_invalid_session(emulator: DiscordEmulator) -> None:
    emulator.enforce_identify_limit, emulator.identify_interval = True, 0.5
    first, second = ShardBot(0, 2, retry_after=0.6), ShardBot(1, 2, retry_after=0.6)
    async with emulator.run_client(first), emulator.run_client(second):
        pass

    [refusal] = emulator.identify_refusals
    assert refusal.shard_id == 1
    assert [record.shard_id for record in emulator.identifies] == [0, 1]
    assert emulator.identifies[1].at - emulator.identifies[0].at >= 0.5
    assert emulator.identifies[1].at - refusal.at >= 0.6  # discord.py waited in before_identify_hook
    # The refusal is op 9 with d=false, after which discord.py identified on a fresh connection.
    assert emulator.gateway.ops.count("IDENTIFY") == 3


async def test_shards_in_different_concurrency_buckets_identify_together(emulator: DiscordEmulator) -> None:
    emulator.enforce_identify_limit, emulator.max_concurrency = True, 2
    async with emulator.run_client(ShardBot(0, 2)), emulator.run_client(ShardBot(1, 2)):
        pass

    assert emulator.identify_refusals == []
    assert [record.shard_id for record in emulator.identifies] == [0, 1]
    assert emulator.identifies[1].at - emulator.identifies[0].at < emulator.identify_interval
