"""The bot as a process: SIGTERM stops it cleanly, and neither that nor kill -9 loses a conversation."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.e2e.test_chat_flows import open_conversation, sent_messages, speaker, wait_for_answer
from tests.fakes.discord_emulator import DiscordEmulator, Intent
from tests.fakes.openai_server import FakeOpenAI, Reply

LAUNCHER = Path(__file__).with_name("bot_process.py")
CHAT = "/chat/completions"


async def run_to_exit(*arguments: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run the launcher in `cwd` until it exits by itself; its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(LAUNCHER), *arguments, env={**os.environ, **env}, cwd=cwd, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


class BotProcess:
    """A `python -m bot` process talking to the emulator and the fake OpenAI server."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def stop(self, signum: int) -> tuple[int, str]:
        """Send a signal; return the exit code and what the process wrote to stderr."""
        self.process.send_signal(signum)
        assert self.process.stderr is not None
        stderr = await asyncio.wait_for(self.process.stderr.read(), 10)
        return await asyncio.wait_for(self.process.wait(), 10), stderr.decode()


@asynccontextmanager
async def bot_process(emulator: DiscordEmulator, env: dict[str, str], cwd: Path) -> AsyncIterator[BotProcess]:
    """Start the process in `cwd` and wait until it is connected and its commands are synced."""
    identifies = len([op for op in emulator.gateway.ops if op == "IDENTIFY"])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LAUNCHER),
        emulator.api_base,
        emulator.gateway_url,
        env={**os.environ, **env},
        cwd=cwd,  # never the project folder, whose .env (a developer's own) the entry point would read
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await emulator.wait_for(
            lambda: (
                len([op for op in emulator.gateway.ops if op == "IDENTIFY"]) > identifies
                and emulator.commands(emulator.guild_id)
            ),
            timeout=20,
            what="the bot process to connect and sync its commands",
        )
        await asyncio.sleep(2.5)  # discord.py holds READY back for 2 s after the last GUILD_CREATE
        yield BotProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def process_env(emulator: DiscordEmulator, fake_openai: FakeOpenAI, tmp_path: Path) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": emulator.token,
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "DISCORD_GUILD_ID": str(emulator.guild_id),
        "PYTHONUNBUFFERED": "1",
    }


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
