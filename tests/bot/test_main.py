"""The entry point as a user runs it: --help, --version, and which .env it reads.

Every process here runs in a temporary working directory with a clean environment, so a developer's
own `.env` (in the project or above it) can never change what these tests see.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import discord
import pytest

import bot
from bot.bot import Bot
from bot.config import Settings

PROJECT_ROOT = Path(__file__).parents[2]
# Valid except for one value, so a run stops at once, before any network, and says which settings it read.
BAD_DMS_ENV_FILE = "DISCORD_TOKEN=token-from-dotenv\nOPENAI_API_KEY=sk-from-dotenv\nALLOW_DMS=maybe\n"


def run_entry_point(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` in `cwd`, with nothing of this machine's environment but PATH."""
    clean = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=60
    )


def test_help_shows_both_commands_and_the_exit_codes(tmp_path: Path) -> None:
    completed = run_entry_point("--help", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("Usage: python -m bot [doctor]\n")
    assert "python -m bot          run the bot until SIGTERM or SIGINT" in completed.stdout
    assert "python -m bot doctor   check the settings, the API and Discord" in completed.stdout
    assert "3 Discord refused the Message Content intent; 4 Discord could not be reached" in completed.stdout
    assert completed.stderr == ""


def test_version_prints_the_bots_version(tmp_path: Path) -> None:
    completed = run_entry_point("--version", cwd=tmp_path)
    assert completed.returncode == 0
    assert completed.stdout == f"discord-openai-bot {bot.__version__}\n"


def test_a_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(BAD_DMS_ENV_FILE)
    completed = run_entry_point(cwd=tmp_path)
    assert completed.returncode == 2
    assert "ALLOW_DMS must be true or false, not 'maybe'." in completed.stderr
    assert "DISCORD_TOKEN is required" not in completed.stderr  # it came from .env


def test_a_dotenv_in_a_parent_folder_is_not_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(BAD_DMS_ENV_FILE)
    working = tmp_path / "deployment"
    working.mkdir()
    completed = run_entry_point(cwd=working)
    assert completed.returncode == 2
    assert "DISCORD_TOKEN is required" in completed.stderr
    assert "ALLOW_DMS" not in completed.stderr


def test_the_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(BAD_DMS_ENV_FILE + "CONTEXT_TOKEN_BUDGET=lots\n")
    completed = run_entry_point(cwd=tmp_path, ALLOW_DMS="false")
    assert completed.returncode == 2
    assert "CONTEXT_TOKEN_BUDGET must be a whole number, not 'lots'." in completed.stderr
    assert "ALLOW_DMS" not in completed.stderr


def test_the_doctor_reads_the_working_directorys_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(BAD_DMS_ENV_FILE)
    completed = run_entry_point("doctor", cwd=tmp_path)
    assert completed.returncode == 2
    assert "✗ ALLOW_DMS must be true or false, not 'maybe'." in completed.stdout
    assert "DISCORD_TOKEN is required" not in completed.stdout


def test_building_the_bot_logs_no_warning_about_voice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As on a machine without PyNaCl and davey; discord.py clears the flags after its first client.
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    with caplog.at_level(logging.WARNING, logger="discord"):
        Bot(Settings.from_env({"DISCORD_TOKEN": "token", "OPENAI_API_KEY": "sk-key"}))
    assert "voice will NOT be supported" not in caplog.text
