"""Settings read from the environment (and `.env`), checked all at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bot.env_reader import EnvReader
from bot.errors import ConfigError
from bot.models import DEFAULT_REASONING_MODELS, DEFAULT_VISION_MODELS
from bot.prices import ModelPrice, read_prices
from bot.urls import database_kind, public_url, redact_url, url_host

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEVELOPER_PORTAL = "https://discord.com/developers/applications"
# Where an owner gets a (new) bot token; said by every message about a missing or rejected token.
TOKEN_FIX = f"copy the bot token from the Developer Portal ({DEVELOPER_PORTAL} → your app → Bot → Reset Token)"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord server. Several people may talk to you in one conversation: "
    "each user message starts with the speaker's name. Answer in Discord markdown, concisely."
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Every quality some image model family offers: GPT image's four and DALL·E's two.
IMAGE_QUALITIES = ("auto", "low", "medium", "high", "standard", "hd")

# When an answer also comes as a voice message: when the turn it answers was spoken, always, or never.
VoiceReplies = Literal["spoken", "always", "never"]
VOICE_REPLY_MODES: tuple[VoiceReplies, ...] = ("spoken", "always", "never")
# What a voice name can look like: OpenAI's ("alloy"), and local servers' mixes such as Kokoro's "af_bella(2)+af_sky".
VOICE_NAME = re.compile(r"^[\w.+\-:()/]{1,100}$")
# The speech endpoint refuses `instructions` over 4096 characters.
MAX_TTS_INSTRUCTIONS_CHARS = 4096


@dataclass(frozen=True)
class Limits:
    """Caps on use per member and per server; 0 means no limit. Each is the setting of the same name in capitals."""

    user_requests_per_minute: int = 10
    guild_requests_per_minute: int = 60
    user_daily_chat_tokens: int = 200_000
    guild_daily_chat_tokens: int = 2_000_000
    user_daily_images: int = 10
    guild_daily_images: int = 100
    user_daily_audio_minutes: int = 60
    guild_daily_audio_minutes: int = 600
    user_daily_speech_characters: int = 20_000
    guild_daily_speech_characters: int = 200_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Settings:
    """Everything the server owner can configure; secrets are kept out of repr so Settings can be logged."""

    discord_token: str = field(repr=False)
    openai_api_key: str = field(repr=False)
    openai_base_url: str = OPENAI_DEFAULT_BASE_URL
    # The URL may carry the database password: kept out of repr, shown only through database_display.
    database_url: str = field(default="sqlite:///data/bot.db", repr=False)
    database_pool_size: int = 10
    answer_after_restart_minutes: int = 5
    history_retention_days: int = 0  # 0: keep
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    chat_model: str = "gpt-5-mini"
    # CHAT_MODELS: what members may pick with /chat model: besides CHAT_MODEL (and what admins chose here).
    chat_models: tuple[str, ...] = ()
    reasoning_models: tuple[str, ...] = DEFAULT_REASONING_MODELS
    vision_models: tuple[str, ...] = DEFAULT_VISION_MODELS
    max_pictures_per_turn: int = 4
    picture_turns: int = 5
    picture_tokens: int = 0  # 0: OpenAI's tile formula
    max_file_kb: int = 100
    max_turn_files_kb: int = 200
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
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "alloy"
    tts_instructions: str | None = None
    # None: speech comes from the OpenAI-compatible API above (see speech_base_url and speech_api_key).
    tts_base_url: str | None = None
    tts_api_key: str | None = field(default=None, repr=False)
    max_speech_minutes: int = 10
    voice_replies: VoiceReplies = "spoken"
    max_download_mb: int = 100
    log_level: str = "INFO"
    allowed_guild_ids: frozenset[int] = frozenset()
    chat_role_ids: frozenset[int] = frozenset()
    images_role_ids: frozenset[int] = frozenset()
    audio_role_ids: frozenset[int] = frozenset()
    speech_role_ids: frozenset[int] = frozenset()
    blocked_user_ids: frozenset[int] = frozenset()
    limits: Limits = DEFAULT_LIMITS
    moderate_prompts: bool = False
    moderate_answers: bool = False
    moderation_model: str = "omni-moderation-latest"
    moderation_log_channel_id: int | None = None
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)

    @property
    def member_chat_models(self) -> tuple[str, ...]:
        """The chat models any member may pick with /chat model: CHAT_MODEL first, then CHAT_MODELS."""
        return tuple(dict.fromkeys((self.chat_model, *self.chat_models)))

    @property
    def max_download_bytes(self) -> int:
        """MAX_DOWNLOAD_MB in bytes; MB as the OpenAI API counts them (10^6), so limits read alike everywhere."""
        return self.max_download_mb * 1_000_000

    @property
    def speech_base_url(self) -> str:
        """Where speech comes from: TTS_BASE_URL, else the OpenAI-compatible API chat uses."""
        return self.tts_base_url or self.openai_base_url

    @property
    def speech_api_key(self) -> str:
        """The key for the speech server: TTS_API_KEY, else OPENAI_API_KEY when speech comes from that same API.

        A speech server of its own gets no key unless TTS_API_KEY is set: the OpenAI key never goes elsewhere.
        """
        if self.tts_api_key is not None:
            return self.tts_api_key
        return self.openai_api_key if self.speech_base_url == self.openai_base_url else ""

    @property
    def max_speech_seconds(self) -> float:
        """MAX_SPEECH_MINUTES in seconds: the longest recording a spoken answer becomes."""
        return self.max_speech_minutes * 60.0

    @property
    def database_path(self) -> Path:
        """The SQLite file named by DATABASE_URL (relative paths are relative to the working directory)."""
        return Path(self.database_url.removeprefix("sqlite:///"))

    @property
    def database_display(self) -> str:
        """DATABASE_URL as it may be shown in logs and messages: any password replaced by ***."""
        return redact_url(self.database_url)

    def summary(self) -> str:
        """One short line for the start-up log: models, API host, database kind, features on. No secrets."""
        moderated = [
            what for what, on in (("prompts", self.moderate_prompts), ("answers", self.moderate_answers)) if on
        ]
        return (
            f"chat {self.chat_model}, images {self.image_model}, transcription {self.transcribe_model}; "
            f"API {url_host(self.openai_base_url)}; database {database_kind(self.database_url)}; "
            f"direct messages {'on' if self.allow_dms else 'off'}, "
            f"moderation {' and '.join(moderated) if moderated else 'off'}, "
            f"automatic transcription {'on' if self.auto_transcribe else 'off'}"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build Settings from a mapping such as os.environ; raise ConfigError naming every problem."""
        reader = _EnvReader(env)
        base_url = reader.text("OPENAI_BASE_URL", OPENAI_DEFAULT_BASE_URL).rstrip("/")
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
            reader.problem(
                f"OPENAI_BASE_URL must be an http(s) URL such as {OPENAI_DEFAULT_BASE_URL}, "
                f"not {public_url(base_url)!r}."
            )
        api_key = reader.text("OPENAI_API_KEY", "")
        if api_key and urlsplit(base_url).username:
            reader.problem(
                "OPENAI_BASE_URL carries a user name and password, and OPENAI_API_KEY is set: a request carries one "
                "Authorization header, so leave out one of them."
            )
        if not api_key and base_url == OPENAI_DEFAULT_BASE_URL:
            reader.problem(
                "OPENAI_API_KEY is required for the OpenAI API: create a key at https://platform.openai.com/api-keys "
                "(it may be empty only when OPENAI_BASE_URL points at another server)."
            )
        token = reader.text("DISCORD_TOKEN", "")
        if not token:
            reader.problem(f"DISCORD_TOKEN is required: {TOKEN_FIX}.")
        database_url = reader.database_url("DATABASE_URL")
        shard_count = reader.optional_int("SHARD_COUNT", "a whole number of shards (at least 1)")
        shard_ids = reader.shard_ids("SHARD_IDS", shard_count)
        settings = cls(
            discord_token=token,
            openai_api_key=api_key,
            openai_base_url=base_url,
            database_url=database_url,
            database_pool_size=reader.integer("DATABASE_POOL_SIZE", cls.database_pool_size, minimum=1),
            shard_count=shard_count,
            shard_ids=shard_ids,
            history_retention_days=reader.integer("HISTORY_RETENTION_DAYS", cls.history_retention_days, minimum=0),
            answer_after_restart_minutes=reader.integer(
                "ANSWER_AFTER_RESTART_MINUTES", cls.answer_after_restart_minutes, minimum=0
            ),
            chat_model=reader.text("CHAT_MODEL", cls.chat_model),
            chat_models=reader.model_names("CHAT_MODELS"),
            reasoning_models=reader.patterns("REASONING_MODELS", DEFAULT_REASONING_MODELS),
            vision_models=reader.patterns("VISION_MODELS", DEFAULT_VISION_MODELS),
            max_pictures_per_turn=reader.integer("MAX_PICTURES_PER_TURN", cls.max_pictures_per_turn, minimum=0),
            picture_turns=reader.integer("PICTURE_TURNS", cls.picture_turns, minimum=1),
            picture_tokens=reader.integer("PICTURE_TOKENS", cls.picture_tokens, minimum=0),
            max_file_kb=reader.integer("MAX_FILE_KB", cls.max_file_kb, minimum=1),
            max_turn_files_kb=reader.integer("MAX_TURN_FILES_KB", cls.max_turn_files_kb, minimum=1),
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
                lambda quality: quality in IMAGE_QUALITIES,
                "auto, low, medium, high (GPT image), standard or hd (DALL·E)",
            ),
            image_variations_endpoint=reader.boolean("IMAGE_VARIATIONS_ENDPOINT", False),
            transcribe_model=reader.text("TRANSCRIBE_MODEL", cls.transcribe_model),
            auto_transcribe=reader.boolean("AUTO_TRANSCRIBE", True),
            tts_model=reader.text("TTS_MODEL", cls.tts_model),
            tts_voice=reader.voice("TTS_VOICE", cls.tts_voice),
            tts_instructions=reader.text("TTS_INSTRUCTIONS", "") or None,
            tts_base_url=reader.base_url("TTS_BASE_URL"),
            tts_api_key=reader.env.get("TTS_API_KEY", "").strip() or None,
            max_speech_minutes=reader.integer("MAX_SPEECH_MINUTES", cls.max_speech_minutes, minimum=1),
            voice_replies=reader.voice_replies("VOICE_REPLIES", cls.voice_replies),
            max_download_mb=reader.integer("MAX_DOWNLOAD_MB", cls.max_download_mb, minimum=1),
            log_level=reader.text("LOG_LEVEL", "INFO").upper(),
            allowed_guild_ids=reader.ids("ALLOWED_GUILD_IDS", "server"),
            chat_role_ids=reader.ids("CHAT_ROLE_IDS", "role"),
            images_role_ids=reader.ids("IMAGES_ROLE_IDS", "role"),
            audio_role_ids=reader.ids("AUDIO_ROLE_IDS", "role"),
            speech_role_ids=reader.ids("SPEECH_ROLE_IDS", "role"),
            blocked_user_ids=reader.ids("BLOCKED_USER_IDS", "user"),
            limits=Limits(
                **{
                    limit.name: reader.integer(limit.name.upper(), getattr(DEFAULT_LIMITS, limit.name), minimum=0)
                    for limit in fields(Limits)
                }
            ),
            moderate_prompts=reader.boolean("MODERATE_PROMPTS", False),
            moderate_answers=reader.boolean("MODERATE_ANSWERS", False),
            moderation_model=reader.text("MODERATION_MODEL", cls.moderation_model),
            moderation_log_channel_id=reader.optional_int(
                "MODERATION_LOG_CHANNEL_ID", "a Discord channel id (a number; right-click the channel → Copy ID)"
            ),
            prices=reader.prices("PRICES"),
        )
        if settings.log_level not in LOG_LEVELS:
            reader.problem(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level!r}.")
        if settings.max_answer_tokens >= settings.context_token_budget:
            reader.problem("MAX_ANSWER_TOKENS must be smaller than CONTEXT_TOKEN_BUDGET.")
        _check_speech(settings, reader)
        if reader.problems:
            raise ConfigError(reader.problems)
        return settings


def _check_speech(settings: Settings, reader: _EnvReader) -> None:
    """The speech settings that only make sense together with others."""
    # With both on the OpenAI API, OPENAI_API_KEY is the one missing, and that is said already.
    on_openai = settings.tts_base_url == OPENAI_DEFAULT_BASE_URL != settings.openai_base_url
    if on_openai and not settings.speech_api_key:
        reader.problem(
            "TTS_API_KEY is required when speech comes from the OpenAI API (TTS_BASE_URL): create a key at "
            "https://platform.openai.com/api-keys."
        )
    if settings.tts_instructions and len(settings.tts_instructions) > MAX_TTS_INSTRUCTIONS_CHARS:
        reader.problem(
            f"TTS_INSTRUCTIONS is {len(settings.tts_instructions):,} characters long; "
            f"the speech endpoint takes at most {MAX_TTS_INSTRUCTIONS_CHARS:,}."
        )


def _is_image_size(value: str) -> bool:
    width, _, height = value.partition("x")
    return value == "auto" or (width.isdigit() and height.isdigit())


class _EnvReader(EnvReader):
    """The environment reader with the readers only these settings need."""

    def prices(self, name: str) -> dict[str, ModelPrice]:
        """The price table: a JSON object, or the path of a JSON file holding one."""
        return read_prices(self, name)

    def database_url(self, name: str) -> str:
        """sqlite:///path, or a PostgreSQL URL as platforms' add-ons give it; never echoed, as it may hold a
        password."""
        url = self.text(name, "sqlite:///data/bot.db")
        if url.startswith(("postgresql://", "postgres://")):
            if not urlsplit(url).hostname and "host=" not in url:
                self.problem(f"{name} names no database server: use postgresql://user:password@host:5432/database.")
            return url
        if not url.startswith("sqlite:///") or url == "sqlite:///":
            scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
            self.problem(
                f"{name} must be sqlite:///relative/path.db, sqlite:////absolute/path.db or "
                f"postgresql://user:password@host:5432/database (it has {scheme})."
            )
        return url

    def shard_ids(self, name: str, shard_count: int | None) -> tuple[int, ...] | None:
        """The shards this process runs: comma-separated ids below SHARD_COUNT, which they need."""
        raw = self.env.get(name, "").strip()
        if shard_count is not None and shard_count < 1:
            self.problem(f"SHARD_COUNT must be at least 1, not {shard_count}.")
            return None
        if not raw:
            return None
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        if not all(part.isdigit() for part in parts):
            self.problem(f"{name} must be comma-separated shard numbers such as 0,1; not {raw!r}.")
            return None
        ids = tuple(sorted({int(part) for part in parts}))
        if shard_count is None:
            self.problem(f"{name} needs SHARD_COUNT: the number of shards across all processes.")
        elif ids[-1] >= shard_count:
            self.problem(f"{name} lists shard {ids[-1]}, but shards are numbered 0 to {shard_count - 1} (SHARD_COUNT).")
        return ids

    def base_url(self, name: str) -> str | None:
        """An optional http(s) URL of an OpenAI-compatible server, without its trailing slash; unset is None."""
        url = self.text(name, "").rstrip("/")
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
            self.problem(f"{name} must be an http(s) URL such as http://localhost:8880/v1, not {public_url(url)!r}.")
        return url or None

    def voice(self, name: str, default: str) -> str:
        """A voice name as speech servers spell them."""
        value = self.text(name, default)
        if not VOICE_NAME.match(value):
            self.problem(f"{name} must be a voice name such as alloy or coral, not {value!r}.")
            return default
        return value

    def voice_replies(self, name: str, default: VoiceReplies) -> VoiceReplies:
        """When answers also come as voice messages: spoken, always or never."""
        value = self.text(name, default).lower()
        for mode in VOICE_REPLY_MODES:
            if value == mode:
                return mode
        self.problem(f"{name} must be {', '.join(VOICE_REPLY_MODES[:-1])} or {VOICE_REPLY_MODES[-1]}, not {value!r}.")
        return default
