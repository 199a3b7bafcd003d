"""Settings from the environment: defaults, parsing, and one report naming every problem."""

import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from dotenv import dotenv_values

import bot
from bot.config import OPENAI_DEFAULT_BASE_URL, Limits, Settings
from bot.errors import ConfigError
from bot.prices import ModelPrice
from bot.urls import public_url, url_host

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
        Settings.from_env({"DATABASE_URL": "mysql://u:p@x/db", "ALLOW_DMS": "maybe", "CONTEXT_TOKEN_BUDGET": "lots"})
    report = caught.value.report()
    for name in ("DISCORD_TOKEN", "OPENAI_API_KEY", "DATABASE_URL", "ALLOW_DMS", "CONTEXT_TOKEN_BUDGET"):
        assert name in report
    assert len(caught.value.problems) == 5


def test_a_platforms_postgres_url_is_taken_as_it_comes() -> None:
    url = "postgres://bot:s3cr3t-pass@db.example.com:5432/botdb?sslmode=require"
    settings = Settings.from_env({**MINIMAL, "DATABASE_URL": url, "DATABASE_POOL_SIZE": "4"})
    assert settings.database_url == url
    assert settings.database_pool_size == 4
    assert settings.database_display == "postgres://bot:***@db.example.com:5432/botdb?sslmode=require"
    assert "s3cr3t-pass" not in repr(settings)


def test_a_refused_database_url_is_not_echoed_with_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "DATABASE_URL": "mysql://bot:s3cr3t-pass@db/botdb"})
    assert "s3cr3t-pass" not in caught.value.report()
    assert "postgresql://user:password@host:5432/database" in caught.value.report()


def test_shards_are_numbered_below_the_shard_count() -> None:
    settings = Settings.from_env({**MINIMAL, "SHARD_COUNT": "4", "SHARD_IDS": "2, 3"})
    assert (settings.shard_count, settings.shard_ids) == (4, (2, 3))
    assert Settings.from_env(MINIMAL).shard_ids is None
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "SHARD_COUNT": "2", "SHARD_IDS": "1,2"})
    assert "numbered 0 to 1" in caught.value.report()
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "SHARD_IDS": "0"})
    assert "SHARD_IDS needs SHARD_COUNT" in caught.value.report()


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


def test_access_limits_and_moderation_settings_are_parsed() -> None:
    settings = Settings.from_env(
        {
            **MINIMAL,
            "ALLOWED_GUILD_IDS": "1, 2",
            "IMAGES_ROLE_IDS": "30",
            "BLOCKED_USER_IDS": "40,41",
            "USER_REQUESTS_PER_MINUTE": "3",
            "GUILD_DAILY_IMAGES": "0",
            "MODERATE_PROMPTS": "true",
            "MODERATION_LOG_CHANNEL_ID": "50",
        }
    )
    assert settings.allowed_guild_ids == {1, 2}
    assert settings.images_role_ids == {30} and settings.chat_role_ids == frozenset()
    assert settings.blocked_user_ids == {40, 41}
    assert settings.limits.user_requests_per_minute == 3
    assert settings.limits.guild_daily_images == 0
    assert settings.limits.user_daily_chat_tokens == Limits().user_daily_chat_tokens
    assert settings.moderate_prompts and not settings.moderate_answers
    assert settings.moderation_model == "omni-moderation-latest"
    assert settings.moderation_log_channel_id == 50


def test_bad_ids_and_limits_are_named_with_their_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "CHAT_ROLE_IDS": "12,@mods", "USER_DAILY_IMAGES": "-1"})
    report = caught.value.report()
    assert "CHAT_ROLE_IDS must be a comma-separated list of role ids" in report
    assert "Copy ID" in report and "@mods" in report
    assert "USER_DAILY_IMAGES must be at least 0" in report


def test_prices_come_from_json_or_a_file(tmp_path: Path) -> None:
    table = '{"m": {"input": 1, "output": 2.5}, "img": {"image": {"1024x1024": 0.04}}, "t": {"audio_minute": 0.006}}'
    inline = Settings.from_env({**MINIMAL, "PRICES": table}).prices
    (tmp_path / "prices.json").write_text(table)
    from_file = Settings.from_env({**MINIMAL, "PRICES": str(tmp_path / "prices.json")}).prices
    assert inline == from_file
    assert inline["m"] == ModelPrice(input_per_million=1.0, output_per_million=2.5)
    assert inline["img"].image_price("1024x1024") == 0.04
    assert inline["img"].image_price("auto") is None
    assert inline["t"].per_audio_minute == 0.006
    assert Settings.from_env(MINIMAL).prices == {}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ('{"m": {"input": "cheap"}}', "input must be a number"),
        ('{"m": {"inptu": 1}}', "unknown keys 'inptu'"),
        ('{"m": 5}', "the entry for 'm' must be an object"),
        ("{not json", "is not valid JSON"),
        ("no/such/prices.json", "must be a JSON object or the path of a JSON file"),
    ],
)
def test_a_bad_price_table_is_named(value: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "PRICES": value})
    assert named in caught.value.report()


def test_a_price_file_must_hold_an_object(tmp_path: Path) -> None:
    (tmp_path / "prices.json").write_text("[1, 2]")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "PRICES": str(tmp_path / "prices.json")})
    assert "must be a JSON object of model name → prices" in caught.value.report()


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name Settings asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def test_env_example_lists_every_setting_and_parses() -> None:
    example = {name: value or "" for name, value in dotenv_values(PROJECT_ROOT / ".env.example").items()}
    env = RecordingEnv({**example, **MINIMAL})
    Settings.from_env(env)
    documented = set(example) | {"SYSTEM_PROMPT"}  # commented out there: its default is long
    assert env.asked <= documented, env.asked - documented


def test_the_package_version_is_the_one_in_the_code() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bot.__version__"}
    assert bot.__version__.count(".") == 2


def test_dall_e_qualities_can_be_configured() -> None:
    assert Settings.from_env({**MINIMAL, "IMAGE_QUALITIES": "standard,hd"}).image_qualities == ("standard", "hd")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "IMAGE_QUALITIES": "hd,ultra"})
    assert caught.value.problems == [
        "IMAGE_QUALITIES must be a comma-separated list of auto, low, medium, high (GPT image), standard or hd "
        "(DALL·E); these are not: ultra."
    ]


def test_the_summary_names_models_host_database_and_features_in_one_short_line() -> None:
    settings = Settings.from_env(
        {
            **MINIMAL,
            "OPENAI_API_KEY": "",  # the proxy's password is the credential
            "OPENAI_BASE_URL": "https://proxy-user:proxy-pass@llm.example.com:8443/v1",
            "CHAT_MODEL": "llama-3.3",
            "ALLOW_DMS": "true",
            "MODERATE_PROMPTS": "true",
            "AUTO_TRANSCRIBE": "false",
        }
    )
    summary = settings.summary()
    assert summary == (
        "chat llama-3.3, images gpt-image-2, transcription gpt-transcribe; API llm.example.com:8443; "
        "database SQLite data/bot.db; direct messages on, moderation prompts, automatic transcription off"
    )
    assert "\n" not in summary and len(summary) < 250
    assert settings.system_prompt not in summary


def test_the_summary_never_shows_the_database_password_or_any_secret() -> None:
    settings = replace(
        Settings.from_env(MINIMAL), database_url="postgresql://bot:hunter2@db:5432/bot?sslmode=require&password=x"
    )
    summary = settings.summary()
    assert "database PostgreSQL db:5432/bot;" in summary
    for secret in ("hunter2", "password", "sk-secret-key", "discord-token"):
        assert secret not in summary


def test_urls_are_printed_without_credentials() -> None:
    assert url_host("https://user:secret@[::1]:8080/v1") == "[::1]:8080"
    assert public_url("https://user:secret@api.example.com/v1?api-key=secret") == "https://api.example.com/v1"


def test_chat_models_and_reasoning_models_are_parsed() -> None:
    defaults = Settings.from_env(MINIMAL)
    assert defaults.member_chat_models == ("gpt-5-mini",)
    assert defaults.reasoning_models == ("gpt-5*", "o1*", "o3*", "o4*")
    settings = Settings.from_env(
        {**MINIMAL, "CHAT_MODELS": "gpt-5, gpt-5-mini,gpt-4.1", "REASONING_MODELS": "gpt-5*, my-thinker-*"}
    )
    assert settings.member_chat_models == ("gpt-5-mini", "gpt-5", "gpt-4.1")  # CHAT_MODEL first, once
    assert settings.reasoning_models == ("gpt-5*", "my-thinker-*")
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "CHAT_MODELS": "gpt-5,gpt 4o"})
    assert caught.value.problems == [
        "CHAT_MODELS must be comma-separated model names such as gpt-5-mini,gpt-5; not gpt 4o."
    ]


def test_a_refused_base_url_is_not_echoed_with_its_credentials() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "OPENAI_BASE_URL": "ftp://proxy-user:proxy-pass@llm.example.com/v1?key=k-123"})
    assert "proxy-pass" not in caught.value.report() and "k-123" not in caught.value.report()
    assert "ftp://llm.example.com/v1" in caught.value.report()


def test_a_password_in_the_base_url_and_an_api_key_cannot_both_be_sent() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "OPENAI_BASE_URL": "https://proxy-user:proxy-pass@llm.example.com/v1"})
    assert "a request carries one Authorization header" in caught.value.report()
    assert "proxy-pass" not in caught.value.report()
