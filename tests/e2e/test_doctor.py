"""`python -m bot doctor` against the Discord emulator and the fake OpenAI server."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from bot import doctor
from bot.store import SqliteStore, open_store
from tests.fakes.discord_emulator import DiscordEmulator, Intent, Perm
from tests.fakes.openai_server import FakeOpenAI


async def doctor_in_thread(env: dict[str, str]) -> tuple[int, str]:
    """The doctor's exit code and output; it runs its own event loop, so in a worker thread."""
    out = io.StringIO()
    code = await asyncio.to_thread(doctor.main, env, out)
    return code, out.getvalue()


async def test_a_healthy_set_up_exits_0_and_prints_the_invite_link(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    code, text = await doctor_in_thread(bot_env)
    assert code == 0, text
    assert "All is well." in text
    assert f"Invite link: https://discord.com/oauth2/authorize?client_id={emulator.application_id}" in text
    assert "The Message Content intent is on" in text
    assert emulator.token not in text and "sk-test-key" not in text


async def test_each_slow_check_is_announced_before_it_starts(
    fake_openai: FakeOpenAI, emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    _, text = await doctor_in_thread(bot_env)
    lines = text.splitlines()
    api_host = fake_openai.base_url.split("/")[2]
    asking = lines.index(f"  … Asking the API at {api_host} for its models (up to 2 s)…")
    assert lines[asking + 1].startswith("  ✓ GET /models answered in ")
    connecting = lines.index("  … Connecting to Discord (up to 60 s)…")
    assert lines[connecting + 1].startswith("  ✓ Logged in as ")


async def test_a_missing_permission_exits_non_zero_naming_it_and_the_fix(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    emulator.set_channel_permissions(emulator.random.id, emulator.bot_role, deny=int(Perm.CREATE_PUBLIC_THREADS))
    code, text = await doctor_in_thread(bot_env)
    assert code == doctor.EXIT_PROBLEMS
    assert "✗ In #random the bot lacks Create Public Threads." in text
    assert "Fix: grant them to the bot's role" in text
    assert "1 problem found." in text


async def test_a_wrong_model_exits_non_zero_naming_the_setting(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, bot_env: dict[str, str]
) -> None:
    code, text = await doctor_in_thread({**bot_env, "IMAGE_MODEL": "gpt-imagine"})
    assert code == doctor.EXIT_PROBLEMS
    assert "✗ IMAGE_MODEL gpt-imagine is not offered by the API." in text
    assert "Fix: set IMAGE_MODEL to a model it offers, such as gpt-image-2" in text


async def test_the_message_content_intent_switched_off_in_the_portal_is_a_problem(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    emulator.privileged_intents = Intent(0)
    code, text = await doctor_in_thread(bot_env)
    assert code == doctor.EXIT_PROBLEMS
    assert "the application's Message Content intent is off" in text
    assert "or set DISCORD_MESSAGE_CONTENT=false" in text
    code, text = await doctor_in_thread({**bot_env, "DISCORD_MESSAGE_CONTENT": "false"})
    assert code == 0, text


async def test_a_rejected_token_is_a_problem_with_its_fix(emulator: DiscordEmulator, bot_env: dict[str, str]) -> None:
    code, text = await doctor_in_thread({**bot_env, "DISCORD_TOKEN": "not.the.token"})
    assert code == doctor.EXIT_PROBLEMS
    assert "Discord rejected DISCORD_TOKEN" in text and "Reset Token" in text
    assert "not.the.token" not in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a file on disk
async def test_a_damaged_database_is_named_with_the_fix_and_left_untouched(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    path = Path(bot_env["DATABASE_URL"].removeprefix("sqlite:///"))
    path.write_bytes(b"this is not a database" * 100)
    code, text = await doctor_in_thread(bot_env)
    assert code == 1
    assert "cannot be read as a database" in text and "DATABASE_URL" in text
    assert "Traceback" not in text
    assert "Invite link:" in text  # the other checks still ran
    assert path.read_bytes() == b"this is not a database" * 100


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a file on disk
async def test_the_bots_database_is_read_without_being_changed(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    path = Path(bot_env["DATABASE_URL"].removeprefix("sqlite:///"))
    store = await SqliteStore.open(path)
    await store.close()
    before = sorted(p.name for p in path.parent.iterdir())
    code, text = await doctor_in_thread(bot_env)
    assert code == 0, text
    assert "Readable, with the current schema." in text
    assert sorted(p.name for p in path.parent.iterdir()) == before  # no -wal or -shm files left behind


async def test_the_doctor_reads_the_models_admins_chose_in_any_database(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    store = await open_store(bot_env["DATABASE_URL"])  # as the running bot left it
    await store.update_guild_settings(emulator.guild_id, {"models": {"chat": "gpt-retired"}})
    await store.close()
    code, text = await doctor_in_thread(bot_env)
    assert code == 1
    assert "The chat model gpt-retired, chosen for a server or channel with /settings model, is not offered" in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the bot's own database plays no part
async def test_an_unreachable_postgresql_is_named_without_its_password(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    env = {**bot_env, "DATABASE_URL": "postgresql://bot:s3cr3t-pass@127.0.0.1:9/botdb"}
    code, text = await doctor_in_thread(env)
    assert code == 1
    assert "Database (postgresql://bot:***@127.0.0.1:9/botdb)" in text
    assert "cannot be reached" in text and "s3cr3t-pass" not in text
    assert "Invite link:" in text  # the other checks still ran


async def test_the_doctor_shows_the_servers_of_each_shard_of_this_process(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    for name in ("Two", "Three"):
        emulator.add_guild(name)  # on shards 1 and 0 of 2
    code, text = await doctor_in_thread({**bot_env, "SHARD_COUNT": "2", "SHARD_IDS": "1"})
    assert "Shard 1 of 2: 1 server." in text
    assert "Shard 0 of 2" not in text  # another process runs it
    assert code == 0, text
