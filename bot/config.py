"""Settings read from the environment (and `.env`), checked all at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from bot.errors import ConfigError

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord server. Several people may talk to you in one conversation: "
    "each user message starts with the speaker's name. Answer in Discord markdown, concisely."
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Everything the server owner can configure; secrets are kept out of repr so Settings can be logged."""

    discord_token: str = field(repr=False)
    openai_api_key: str = field(repr=False)
    openai_base_url: str = OPENAI_DEFAULT_BASE_URL
    database_url: str = "sqlite:///data/bot.db"
    chat_model: str = "gpt-5-mini"
    discord_guild_id: int | None = None
    discord_message_content: bool = True
    allow_dms: bool = False
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    context_token_budget: int = 16_000
    max_answer_tokens: int = 4_000
    api_timeout_seconds: float = 120.0
    api_max_retries: int = 2
    image_model: str = "gpt-image-2"
    image_sizes: tuple[str, ...] = ("auto", "1024x1024", "1536x1024", "1024x1536")
    image_qualities: tuple[str, ...] = ("auto", "low", "medium", "high")
    image_variations_endpoint: bool = False
    transcribe_model: str = "gpt-transcribe"
    auto_transcribe: bool = True
    max_download_mb: int = 100
    log_level: str = "INFO"

    @property
    def database_path(self) -> Path:
        """The SQLite file named by DATABASE_URL (relative paths are relative to the working directory)."""
        return Path(self.database_url.removeprefix("sqlite:///"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build Settings from a mapping such as os.environ; raise ConfigError naming every problem."""
        reader = _EnvReader(env)
        base_url = reader.text("OPENAI_BASE_URL", OPENAI_DEFAULT_BASE_URL).rstrip("/")
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
            reader.problem(
                f"OPENAI_BASE_URL must be an http(s) URL such as {OPENAI_DEFAULT_BASE_URL}, not {base_url!r}."
            )
        api_key = reader.text("OPENAI_API_KEY", "")
        if not api_key and base_url == OPENAI_DEFAULT_BASE_URL:
            reader.problem(
                "OPENAI_API_KEY is required for the OpenAI API: create a key at https://platform.openai.com/api-keys "
                "(it may be empty only when OPENAI_BASE_URL points at another server)."
            )
        token = reader.text("DISCORD_TOKEN", "")
        if not token:
            reader.problem(
                "DISCORD_TOKEN is required: copy the bot token from the Developer Portal "
                "(https://discord.com/developers/applications → your app → Bot → Reset Token)."
            )
        database_url = reader.text("DATABASE_URL", "sqlite:///data/bot.db")
        if not database_url.startswith("sqlite:///") or database_url == "sqlite:///":
            reader.problem(
                "DATABASE_URL must look like sqlite:///relative/path.db or sqlite:////absolute/path.db, "
                f"not {database_url!r}."
            )
        settings = cls(
            discord_token=token,
            openai_api_key=api_key,
            openai_base_url=base_url,
            database_url=database_url,
            chat_model=reader.text("CHAT_MODEL", cls.chat_model),
            discord_guild_id=reader.optional_int("DISCORD_GUILD_ID"),
            discord_message_content=reader.boolean("DISCORD_MESSAGE_CONTENT", True),
            allow_dms=reader.boolean("ALLOW_DMS", False),
            system_prompt=reader.text("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT),
            context_token_budget=reader.integer("CONTEXT_TOKEN_BUDGET", cls.context_token_budget, minimum=500),
            max_answer_tokens=reader.integer("MAX_ANSWER_TOKENS", cls.max_answer_tokens, minimum=16),
            api_timeout_seconds=reader.number("OPENAI_TIMEOUT", cls.api_timeout_seconds, minimum=1),
            api_max_retries=reader.integer("OPENAI_MAX_RETRIES", cls.api_max_retries, minimum=0),
            image_model=reader.text("IMAGE_MODEL", cls.image_model),
            image_sizes=reader.choices("IMAGE_SIZES", cls.image_sizes, _is_image_size, "auto or WIDTHxHEIGHT"),
            image_qualities=reader.choices(
                "IMAGE_QUALITIES",
                cls.image_qualities,
                lambda q: q in ("auto", "low", "medium", "high"),
                "auto, low, medium or high",
            ),
            image_variations_endpoint=reader.boolean("IMAGE_VARIATIONS_ENDPOINT", False),
            transcribe_model=reader.text("TRANSCRIBE_MODEL", cls.transcribe_model),
            auto_transcribe=reader.boolean("AUTO_TRANSCRIBE", True),
            max_download_mb=reader.integer("MAX_DOWNLOAD_MB", cls.max_download_mb, minimum=1),
            log_level=reader.text("LOG_LEVEL", "INFO").upper(),
        )
        if settings.log_level not in LOG_LEVELS:
            reader.problem(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level!r}.")
        if settings.max_answer_tokens >= settings.context_token_budget:
            reader.problem("MAX_ANSWER_TOKENS must be smaller than CONTEXT_TOKEN_BUDGET.")
        if reader.problems:
            raise ConfigError(reader.problems)
        return settings


def _is_image_size(value: str) -> bool:
    width, _, height = value.partition("x")
    return value == "auto" or (width.isdigit() and height.isdigit())


class _EnvReader:
    """Reads typed values from the environment, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def text(self, name: str, default: str) -> str:
        value = self.env.get(name, "").strip()
        return value or default

    def _parse(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.problem(f"{name} must be {expected}, not {raw!r}.")
            return default

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self._parse(name, default, int, "a whole number")
        if value < minimum:
            self.problem(f"{name} must be at least {minimum}, not {value}.")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        value = self._parse(name, default, float, "a number")
        if value < minimum:
            self.problem(f"{name} must be at least {minimum:g}, not {value:g}.")
        return value

    def optional_int(self, name: str) -> int | None:
        return self._parse(name, None, int, "a Discord server id (a number; right-click the server → Copy ID)")

    def boolean(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)

        return self._parse(name, default, parse, "true or false")

    def choices(
        self, name: str, default: tuple[str, ...], is_valid: Callable[[str], bool], expected: str
    ) -> tuple[str, ...]:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        values = tuple(part.strip() for part in raw.split(",") if part.strip())
        bad = [value for value in values if not is_valid(value)]
        if bad or not values:
            self.problem(f"{name} must be a comma-separated list of {expected}; these are not: {', '.join(bad)}.")
            return default
        return values
