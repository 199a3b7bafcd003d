"""The bot as a process: SIGTERM stops it cleanly, and neither that nor kill -9 loses a conversation."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.e2e.processes import bot_process, process_env, run_to_exit
from tests.e2e.test_chat_flows import open_conversation, sent_messages, speaker, wait_for_answer
from tests.fakes.discord_emulator import DiscordEmulator, Intent
from tests.fakes.openai_server import FakeOpenAI, Reply

CHAT = "/chat/completions"


async def test_sigterm_stops_the_bot_cleanly_and_kill_9_loses_no_finished_turn(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path, database_url: str
) -> None:
    env = {**process_env(emulator, fake_openai, tmp_path), "DATABASE_URL": database_url}
    fake_openai.queue(CHAT, Reply("First answer."), Reply("Second answer."), Reply("Third answer."))

    async with bot_process(emulator, env, tmp_path) as bot:
        thread_id = await open_conversation(emulator, emulator.member, "First question")
        await wait_for_answer(emulator, thread_id, "First answer.")
        code, stderr = await bot.stop(signal.SIGTERM)
    assert code == 0
    assert "Stopping" in stderr and "Traceback" not in stderr
    assert "sk-test-key" not in stderr and emulator.token not in stderr
    assert "Starting discord-openai-bot " in stderr and "; database " in stderr  # the short summary
    assert "system_prompt" not in stderr and "voice will NOT be supported" not in stderr

    async with bot_process(emulator, env, tmp_path) as bot:
        await emulator.send_message(thread_id, emulator.member, "Second question")
        await wait_for_answer(emulator, thread_id, "Second answer.")
        code, _ = await bot.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL

    async with bot_process(emulator, env, tmp_path) as bot:
        await emulator.send_message(thread_id, emulator.member, "Third question")
        await wait_for_answer(emulator, thread_id, "Third answer.")
        await bot.stop(signal.SIGTERM)
    assert sent_messages(fake_openai)[1:] == [
        ("user", f"{speaker(emulator.member)}: First question"),
        ("assistant", "First answer."),
        ("user", f"{speaker(emulator.member)}: Second question"),
        ("assistant", "Second answer."),
        ("user", f"{speaker(emulator.member)}: Third question"),
    ]


async def test_a_refused_message_content_intent_names_the_switch_to_turn_on(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    emulator.privileged_intents = Intent(0)  # the Developer Portal toggle is off
    env = process_env(emulator, fake_openai, tmp_path)
    code, stderr = await run_to_exit(emulator.api_base, emulator.gateway_url, env=env, cwd=tmp_path)
    assert code == 3
    assert "Message Content Intent" in stderr and "DISCORD_MESSAGE_CONTENT=false" in stderr
    assert f"applications/{emulator.application_id}/bot" in stderr
    assert "Traceback" not in stderr


async def test_an_unreachable_discord_is_said_plainly(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = process_env(emulator, fake_openai, tmp_path)
    code, stderr = await run_to_exit("http://127.0.0.1:9/api/v10", "ws://127.0.0.1:9/", env=env, cwd=tmp_path)
    assert code == 4
    assert "Could not reach Discord" in stderr
    assert "Traceback" not in stderr


async def test_a_database_that_cannot_be_opened_is_named_with_the_fix(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    env = {**process_env(emulator, fake_openai, tmp_path), "DATABASE_URL": f"sqlite:///{blocker}/bot.db"}
    code, stderr = await run_to_exit(emulator.api_base, emulator.gateway_url, env=env, cwd=tmp_path)
    assert code == 2
    assert "Could not open the database" in stderr and "DATABASE_URL" in stderr
    assert "Traceback" not in stderr


async def test_an_unreachable_postgresql_is_named_without_its_password(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    url = "postgres://bot:s3cr3t-pass@127.0.0.1:9/botdb?sslmode=disable"
    env = {**process_env(emulator, fake_openai, tmp_path), "DATABASE_URL": url}
    code, stderr = await run_to_exit(emulator.api_base, emulator.gateway_url, env=env, cwd=tmp_path)
    assert code == 2
    assert "Could not open the database postgres://bot:***@127.0.0.1:9/botdb" in stderr
    assert "s3cr3t-pass" not in stderr and "Traceback" not in stderr


async def test_after_a_kill_9_mid_answer_the_cut_answer_says_so_and_the_question_is_answered(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path, database_url: str
) -> None:
    env = {**process_env(emulator, fake_openai, tmp_path), "DATABASE_URL": database_url}
    long_answer = "Otters are members of the weasel family. " * 12
    fake_openai.queue(CHAT, Reply(long_answer.strip()))
    fake_openai.stream_chunk_chars, fake_openai.chunk_delay = 10, 0.25  # about 12 s of streaming
    async with bot_process(emulator, env, tmp_path) as bot:
        thread_id = await open_conversation(emulator, emulator.member, "Tell me about otters")
        cut = await emulator.wait_for(
            lambda: next((m for m in emulator.messages(thread_id) if len(m.content) > 40), None),
            timeout=10,
            what="part of the answer on screen",
        )
        await bot.stop(signal.SIGKILL)
    fake_openai.chunk_delay = 0.0
    async with bot_process(emulator, env, tmp_path) as bot:
        answer = await wait_for_answer(emulator, thread_id, "Echo: Member: Tell me about otters")
        marked = await emulator.wait_for(
            lambda: "interrupted" in emulator.message(cut.id).content and emulator.message(cut.id), what="the mark"
        )
        await bot.stop(signal.SIGTERM)
    assert marked.content.startswith("Otters are members of the weasel family.")
    assert answer.id != cut.id
    # The history the model saw again is the question alone: the cut-off answer is not built on.
    assert sent_messages(fake_openai)[1:] == [("user", f"{speaker(emulator.member)}: Tell me about otters")]


async def test_after_a_kill_9_before_any_answer_the_question_is_answered_and_old_ones_are_left_alone(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path, database_url: str
) -> None:
    env = {**process_env(emulator, fake_openai, tmp_path), "DATABASE_URL": database_url}
    fake_openai.first_chunk_delay = 60  # the model is still thinking when the process dies
    async with bot_process(emulator, env, tmp_path) as bot:
        await emulator.send_message(emulator.general.id, emulator.member, f"<@{emulator.bot_user.id}> Still there?")
        await emulator.wait_for(lambda: fake_openai.requests_to(CHAT), what="the question to reach the API")
        await bot.stop(signal.SIGKILL)
    fake_openai.first_chunk_delay = 0
    async with bot_process(emulator, env, tmp_path) as bot:
        reply = await wait_for_answer(emulator, emulator.general.id, "Echo: Member: Still there?")
        await bot.stop(signal.SIGTERM)
    assert reply.reply_to is not None and reply.reply_to.content.endswith("Still there?")

    # Past ANSWER_AFTER_RESTART_MINUTES nothing is taken up again.
    fake_openai.first_chunk_delay = 60
    async with bot_process(emulator, env, tmp_path) as bot:
        await emulator.send_message(emulator.general.id, emulator.member, f"<@{emulator.bot_user.id}> And now?")
        await emulator.wait_for(lambda: len(fake_openai.requests_to(CHAT)) == 3, what="the question at the API")
        await bot.stop(signal.SIGKILL)
    fake_openai.first_chunk_delay = 0
    async with bot_process(emulator, {**env, "ANSWER_AFTER_RESTART_MINUTES": "0"}, tmp_path) as bot:
        await asyncio.sleep(1.0)
        await bot.stop(signal.SIGTERM)
    assert len(fake_openai.requests_to(CHAT)) == 3


async def test_a_vocabulary_download_that_never_ends_holds_up_neither_start_nor_sigterm(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = {**process_env(emulator, fake_openai, tmp_path), "TEST_TIKTOKEN_HANGS": "1"}
    async with bot_process(emulator, env, tmp_path) as bot:  # connected and synced, though tiktoken never loads
        thread_id = await open_conversation(emulator, emulator.member, "Counting?")
        await wait_for_answer(emulator, thread_id, "Echo: Member: Counting?")
        started = asyncio.get_running_loop().time()
        code, stderr = await bot.stop(signal.SIGTERM)  # within its 10 s, or this fails
    assert code == 0 and "Traceback" not in stderr
    assert asyncio.get_running_loop().time() - started < 10
