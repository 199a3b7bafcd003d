"""How members are named to the API: one keyed hash per deployment, agreed by every process on its database."""

from __future__ import annotations

import asyncio
import re

from bot.identity import Identity
from bot.store import open_store

MEMBER, OTHER = 412_345_678_901_234_567, 412_345_678_901_234_568


async def test_names_and_safety_identifiers_hide_the_discord_id_and_tell_members_apart(database_url: str) -> None:
    store = await open_store(database_url)
    identity = await Identity.load(store)
    await store.close()
    name, other = identity.message_name(MEMBER), identity.message_name(OTHER)
    assert re.fullmatch(r"user_[0-9a-f]{12}", name) and name != other
    assert re.fullmatch(r"[0-9a-f]{32}", identity.safety_identifier(MEMBER))
    for shown in (name, identity.safety_identifier(MEMBER)):
        assert str(MEMBER) not in shown and str(MEMBER)[-6:] not in shown


async def test_processes_on_one_database_agree_on_the_key_and_keep_it_across_restarts(database_url: str) -> None:
    stores = [await open_store(database_url) for _ in range(3)]
    # Started together: each makes a key of its own, and all end up with the one stored first.
    identities = await asyncio.gather(*(Identity.load(store) for store in stores))
    later = await Identity.load(stores[0])
    for store in stores:
        await store.close()
    assert len({identity.message_name(MEMBER) for identity in [*identities, later]}) == 1
    assert len({identity.safety_identifier(MEMBER) for identity in [*identities, later]}) == 1


async def test_two_deployments_name_the_same_member_differently() -> None:
    first, second = await open_store("sqlite:///:memory:"), await open_store("sqlite:///:memory:")
    ours, theirs = await Identity.load(first), await Identity.load(second)
    await first.close()
    await second.close()
    assert ours.message_name(MEMBER) != theirs.message_name(MEMBER)
    assert ours.safety_identifier(MEMBER) != theirs.safety_identifier(MEMBER)
