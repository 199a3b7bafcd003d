"""Settings from the environment: defaults, parsing, and one report naming every problem."""

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import OPENAI_DEFAULT_BASE_URL, Settings
from bot.errors import ConfigError

PROJECT_ROOT = Path(__file__).parents[2]
MINIMAL = {"DISCORD_TOKEN": "discord-token", "OPENAI_API_KEY": "sk-secret-key"}


def test_minimal_environment_gives_documented_defaults() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.openai_base_url == OPENAI_DEFAULT_BASE_URL
    assert settings.database_path == Path("data/bot.db")
    assert settings.discord_guild_id is None
    assert settings.discord_message_content is True
    assert settings.allow_dms is False


def test_absolute_database_url_keeps_its_leading_slash() -> None:
    settings = Settings.from_env({**MINIMAL, "DATABASE_URL": "sqlite:////var/lib/bot/bot.db"})
    assert settings.database_path == Path("/var/lib/bot/bot.db")


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            **MINIMAL,
            "DISCORD_GUILD_ID": "123456789012345678",
            "DISCORD_MESSAGE_CONTENT": "false",
            "ALLOW_DMS": "yes",
            "CONTEXT_TOKEN_BUDGET": "9000",
            "OPENAI_BASE_URL": "http://localhost:8080/v1/",
            "IMAGE_SIZES": "1024x1024, auto",
        }
    )
    assert settings.discord_guild_id == 123456789012345678
    assert settings.discord_message_content is False
    assert settings.allow_dms is True
    assert settings.context_token_budget == 9000
    assert settings.openai_base_url == "http://localhost:8080/v1"
    assert settings.image_sizes == ("1024x1024", "auto")


def test_api_key_may_be_empty_for_another_server() -> None:
    settings = Settings.from_env({"DISCORD_TOKEN": "t", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert settings.openai_api_key == ""


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"DATABASE_URL": "postgres://x", "ALLOW_DMS": "maybe", "CONTEXT_TOKEN_BUDGET": "lots"})
    report = caught.value.report()
    for name in ("DISCORD_TOKEN", "OPENAI_API_KEY", "DATABASE_URL", "ALLOW_DMS", "CONTEXT_TOKEN_BUDGET"):
        assert name in report
    assert len(caught.value.problems) == 5


def test_secrets_stay_out_of_repr() -> None:
    text = repr(Settings.from_env(MINIMAL))
    assert "sk-secret-key" not in text
    assert "discord-token" not in text


def test_process_exits_2_with_the_problems_and_no_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "OPENAI_API_KEY": ""}
    completed = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 2
    assert "DISCORD_TOKEN is required" in completed.stderr
    assert "OPENAI_API_KEY is required" in completed.stderr
    assert "Traceback" not in completed.stderr
