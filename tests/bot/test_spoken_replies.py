"""The speech service and what it rests on: its settings, the gate's speech budget and switches, usage and the doctor.

The service runs on real parts: the gate over a real store, the API client against the fake server, the job runner.
Posting to Discord is covered end to end (tests/e2e/test_speech_flows.py).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from bot.access import Gate, start_of_day
from bot.api import OpenAIClient
from bot.config import Limits, Settings
from bot.doctor import Report, check_api, check_speech_api
from bot.errors import ApiError, ApiErrorKind, ConfigError, UserError
from bot.jobs import JobRunner
from bot.prices import ModelPrice
from bot.records import Records
from bot.spoken_replies import (
    OPENAI_VOICES,
    Asker,
    NothingToRead,
    Speaker,
    VoiceRefused,
    planned_characters,
    voice_suggestions,
    wants_voice_reply,
)
from bot.store import SqliteStore, Store, UsageSum, utc_now
from bot.usage import estimate_cost, own_report
from tests.fakes.openai_server import FakeOpenAI, invalid_request

MINIMAL = {"DISCORD_TOKEN": "discord-token", "OPENAI_API_KEY": "sk-test-key"}
GUILD, CHANNEL, THREAD, USER = 100, 10, 12, 1
SPEECH = "/audio/speech"


def settings_from(**env: str) -> Settings:
    return Settings.from_env({**MINIMAL, **env})


# -- settings ----------------------------------------------------------------------------------------------------


def test_speech_settings_default_to_openai_and_the_chat_api() -> None:
    settings = settings_from()
    assert (settings.tts_model, settings.tts_voice, settings.tts_instructions) == ("gpt-4o-mini-tts", "alloy", None)
    assert (settings.speech_base_url, settings.speech_api_key) == ("https://api.openai.com/v1", "sk-test-key")
    assert (settings.voice_replies, settings.max_speech_seconds) == ("spoken", 600.0)
    assert (settings.limits.user_daily_speech_characters, settings.limits.guild_daily_speech_characters) == (
        20_000,
        200_000,
    )


def test_a_speech_server_of_its_own_never_gets_the_openai_key() -> None:
    local = settings_from(TTS_BASE_URL="http://localhost:8880/v1/")
    assert (local.speech_base_url, local.speech_api_key) == ("http://localhost:8880/v1", "")
    keyed = settings_from(TTS_BASE_URL="http://localhost:8880/v1", TTS_API_KEY="local-key")
    assert keyed.speech_api_key == "local-key"
    assert "local-key" not in repr(keyed)


def test_bad_speech_settings_are_named_together() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "DISCORD_TOKEN": "t",
                "OPENAI_BASE_URL": "http://llm.local/v1",
                "TTS_BASE_URL": "https://api.openai.com/v1",
                "TTS_VOICE": "two words",
                "VOICE_REPLIES": "sometimes",
                "MAX_SPEECH_MINUTES": "0",
                "TTS_INSTRUCTIONS": "x" * 4097,
            }
        )
    assert caught.value.problems == [
        "TTS_VOICE must be a voice name such as alloy or coral, not 'two words'.",
        "MAX_SPEECH_MINUTES must be at least 1, not 0.",
        "VOICE_REPLIES must be spoken, always or never, not 'sometimes'.",
        "TTS_API_KEY is required when speech comes from the OpenAI API (TTS_BASE_URL): create a key at "
        "https://platform.openai.com/api-keys.",
        "TTS_INSTRUCTIONS is 4,097 characters long; the speech endpoint takes at most 4,096.",
    ]


def test_a_local_servers_mixed_voice_is_a_voice_name() -> None:
    assert settings_from(TTS_VOICE="af_bella(2)+af_sky(1)").tts_voice == "af_bella(2)+af_sky(1)"


# -- deciding and planning ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "spoken", "wanted"),
    [
        ("spoken", True, True),
        ("spoken", False, False),
        ("always", False, True),
        ("always", True, True),
        ("never", True, False),
    ],
)
def test_voice_replies_decide_by_the_mode_and_the_turn(mode: str, spoken: bool, wanted: bool) -> None:
    assert wants_voice_reply(mode, spoken=spoken) is wanted  # type: ignore[arg-type]  # the modes as literals


def test_the_characters_planned_are_the_speakable_ones_up_to_the_length_limit() -> None:
    assert planned_characters("**Hello** there, see https://example.com", 600) == len("Hello there, see a link.")
    # A minute at 15 characters a second, with the margin synthesize asks for: 1,125 characters at most.
    assert planned_characters("Words and more words. " * 1000, 60) == 1125
    assert planned_characters("```py\nprint(1)\n```", 600) == 0


def test_voice_suggestions_put_the_bots_voice_first_and_match_what_is_typed() -> None:
    assert voice_suggestions("af_bella", "")[:3] == ["af_bella", "alloy", "ash"]
    assert voice_suggestions("alloy", "")[: len(OPENAI_VOICES)] == list(OPENAI_VOICES)
    assert voice_suggestions("alloy", " ER ") == ["shimmer", "verse"]
    assert voice_suggestions("alloy", "zz") == []


# -- the service on real parts -----------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await SqliteStore.open(tmp_path / "bot.db")
    yield store
    await store.close()


@pytest.fixture
async def jobs() -> AsyncIterator[JobRunner]:
    runner = JobRunner(workers=1)
    runner.start()
    yield runner
    runner.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Service:
    """A speaker with its gate and records, as the bot wires them."""

    def __init__(self, store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake: FakeOpenAI, **env: str):
        self.settings = settings_from(OPENAI_BASE_URL=fake.base_url, **env)
        self.records = Records(store)
        self.gate = Gate(store, self.settings, records=self.records)
        api = OpenAIClient(session, base_url=fake.base_url, api_key="sk-test-key", timeout_seconds=2, max_retries=0)
        self.speaker = Speaker(settings=self.settings, gate=self.gate, api=api, jobs=jobs)
        self.store = store


ASKER = Asker(USER, (), GUILD, THREAD, CHANNEL)


async def test_speaking_records_the_characters_sent_with_the_model_chosen_for_the_channel(
    store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    service = Service(store, jobs, session, fake_openai)
    await service.records.update_channel_settings(CHANNEL, {"models": {"speech": "tts-1"}}, guild_id=GUILD)
    text = "The parent channel chose the model; the thread follows it."
    async with await service.speaker.admit(text, ASKER) as admission:
        assert admission.held == len(text)
        spoken = await service.speaker.synthesize(text, admission, ASKER)

    assert (spoken.characters, spoken.requests, spoken.cut) == (len(text), 1, False)
    assert spoken.recording.duration_secs == pytest.approx(fake_openai.speech_seconds(text), abs=0.1)
    [sent] = fake_openai.requests_to(SPEECH)
    assert sent.json["model"] == "tts-1"
    [row] = await store.usage_by_model(spoken_day(), user_id=USER)
    assert (row.feature, row.model, row.speech_characters, row.requests) == ("speech", "tts-1", len(text), 1)


def spoken_day() -> datetime:
    """The start of today: usage rows are summed per UTC day."""
    return start_of_day(utc_now())


async def test_what_a_request_holds_counts_against_the_budget_until_it_is_spent(
    store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    service = Service(store, jobs, session, fake_openai, USER_DAILY_SPEECH_CHARACTERS="50")
    first = "Thirty characters, or so here."
    async with await service.speaker.admit(first, ASKER):
        with pytest.raises(UserError, match="That needs 30 characters of speech; you have 20 of today's 50 left"):
            await service.speaker.admit(first, ASKER)
    # Released unspent: the whole budget is there again.
    async with await service.speaker.admit(first, ASKER):
        pass
    assert fake_openai.requests == []


async def test_a_spoken_half_of_a_request_costs_no_slot_of_the_per_minute_limit(
    store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    service = Service(store, jobs, session, fake_openai, USER_REQUESTS_PER_MINUTE="1")
    async with await service.speaker.admit("One request.", ASKER):
        pass
    for _ in range(3):
        async with await service.speaker.admit("Follow-on of an answer.", ASKER, counts_as_request=False):
            pass
    with pytest.raises(UserError, match="Slow down"):
        await service.speaker.admit("A second request.", ASKER)


async def test_text_without_words_is_refused_before_the_gate_and_the_api(
    store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    service = Service(store, jobs, session, fake_openai, USER_DAILY_SPEECH_CHARACTERS="1")
    with pytest.raises(NothingToRead):
        await service.speaker.admit("```\ncode only\n```\nhttps://example.com", ASKER)
    assert fake_openai.requests == []


async def test_a_refused_chosen_voice_is_named_and_a_refused_default_is_the_apis_error(
    store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    service = Service(store, jobs, session, fake_openai)
    fake_openai.queue(SPEECH, invalid_request("Invalid voice."), invalid_request("Invalid voice."))
    async with await service.speaker.admit("Hello.", ASKER) as admission:
        with pytest.raises(VoiceRefused, match="refused the voice `af_nobody`"):
            await service.speaker.synthesize("Hello.", admission, ASKER, voice="af_nobody")
        with pytest.raises(ApiError) as caught:
            await service.speaker.synthesize("Hello.", admission, ASKER)
    assert caught.value.kind is ApiErrorKind.BAD_REQUEST
    assert await store.usage_by_model(spoken_day(), user_id=USER) == []  # nothing spoken, nothing counted


async def test_voice_replies_follow_channel_then_parent_then_server_then_the_setting(
    store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    service = Service(store, jobs, session, fake_openai, VOICE_REPLIES="never")
    gate, records = service.gate, service.records

    async def here() -> str:
        return await gate.voice_replies_here(GUILD, THREAD, parent_id=CHANNEL)

    assert await here() == "never"
    await records.update_guild_settings(GUILD, {"voice_replies": "spoken"})
    assert await here() == "spoken"
    await records.update_channel_settings(CHANNEL, {"voice_replies": "always"}, guild_id=GUILD)
    assert await here() == "always"
    await records.update_channel_settings(THREAD, {"voice_replies": "never"}, guild_id=GUILD)
    assert await here() == "never"
    await records.update_channel_settings(THREAD, {"voice_replies": None}, guild_id=GUILD)
    assert await here() == "always"


async def test_speech_roles_and_the_speech_switch_are_the_gates(
    store: Store, jobs: JobRunner, session: aiohttp.ClientSession, fake_openai: FakeOpenAI
) -> None:
    service = Service(store, jobs, session, fake_openai, SPEECH_ROLE_IDS="77")
    assert service.gate.roles_allow("speech", [77, 5]) and not service.gate.roles_allow("speech", [5])
    assert service.gate.roles_allow("chat", [5])
    with pytest.raises(UserError, match="Speech needs one of these roles: <@&77>"):
        await service.speaker.admit("Hello.", ASKER)
    await service.records.update_guild_settings(GUILD, {"features": {"speech": False}})
    with pytest.raises(UserError, match="Speech is turned off here"):
        await service.speaker.admit("Hello.", Asker(USER, (77,), GUILD, THREAD, CHANNEL))


# -- usage -------------------------------------------------------------------------------------------------------


def test_speech_is_priced_per_million_characters_and_shown_against_its_limit() -> None:
    rows = [UsageSum(requests=2, speech_characters=250_000, feature="speech", model="gpt-4o-mini-tts")]
    assert estimate_cost(rows, {"gpt-4o-mini-tts": ModelPrice(per_million_speech_characters=12.0)}).amount == 3.0
    assert estimate_cost(rows, {}).unpriced == ("gpt-4o-mini-tts",)
    text = own_report(rows, rows, Limits(user_daily_speech_characters=300_000))
    first, second = text.splitlines()
    assert first.endswith("· 250,000 of 300,000 characters of speech")
    assert second.endswith("· 250,000 characters of speech")


def test_prices_take_speech_characters() -> None:
    settings = settings_from(PRICES='{"tts-1": {"speech_characters": 15}}')
    assert settings.prices["tts-1"].per_million_speech_characters == 15.0


# -- the doctor --------------------------------------------------------------------------------------------------


async def doctor_text(fake_openai: FakeOpenAI, speech_server: FakeOpenAI | None, **env: str) -> tuple[int, str]:
    """The API checks (and the speech server's, when there is one): the problems and the printed text."""
    if speech_server is not None:
        env |= {"TTS_BASE_URL": speech_server.base_url, "TTS_API_KEY": "local-key"}
    settings = settings_from(OPENAI_BASE_URL=fake_openai.base_url, **env)
    out = io.StringIO()
    report = Report(out)
    store = await SqliteStore.open(":memory:")
    async with aiohttp.ClientSession() as session:
        await check_api(settings, store, session, report)
        if speech_server is not None:
            await check_speech_api(settings, store, session, report)
    await store.close()
    return report.problems, out.getvalue()


async def test_the_doctor_checks_the_speech_model_on_the_chat_api(fake_openai: FakeOpenAI) -> None:
    problems, text = await doctor_text(fake_openai, None, TTS_MODEL="tts-2")
    assert problems == 1
    assert "✗ TTS_MODEL tts-2 is not offered by the API." in text


async def test_the_doctor_asks_a_speech_server_of_its_own_for_its_models(fake_openai: FakeOpenAI) -> None:
    speech_server = FakeOpenAI(validator=None, api_key="wrong-key")
    await speech_server.start()
    try:
        problems, text = await doctor_text(fake_openai, speech_server, TTS_MODEL="kokoro")
    finally:
        await speech_server.close()
    assert problems == 1
    assert f"Speech API ({speech_server.base_url})" in text
    assert "✗ The API rejected TTS_API_KEY." in text  # named by the setting that holds it
    assert "TTS_MODEL" not in text.split("Speech API")[0]  # not looked for on the chat API
