"""Moderation decisions against the fake server's /moderations: what is refused, withheld, recorded and reported."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.api import OpenAIClient
from bot.config import Settings
from bot.errors import ApiError, UserError
from bot.moderation import Moderator, Verdict, moderate, withheld_note
from bot.store import SqliteStore
from tests.fakes.openai_server import FakeOpenAI, ModerationReply, server_error

MODERATIONS = "/moderations"


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIClient]:
    async with aiohttp.ClientSession() as session:
        yield OpenAIClient(
            session, base_url=fake_openai.base_url, api_key="sk-test-key", timeout_seconds=5, max_retries=0
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "bot.db")
    yield store
    await store.close()


class Notes:
    """Collects what would be posted in the moderators' channel."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    async def __call__(self, text: str) -> None:
        self.posted.append(text)


async def check_prompt(check: Moderator, text: str) -> None:
    """A chat prompt by user 7 in guild 8, channel 9."""
    await check.check_prompt(text, feature="chat", user_id=7, guild_id=8, channel_id=9)


async def check_answer(check: Moderator, text: str) -> Verdict:
    """A chat answer to user 7 in guild 8, channel 9."""
    return await check.check_answer(text, feature="chat", user_id=7, guild_id=8, channel_id=9)


def moderator(client: OpenAIClient, store: SqliteStore, notes: Notes | None = None, **env: str) -> Moderator:
    settings = Settings.from_env({"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", **env})
    return Moderator(client, store, settings, notify=notes)


async def test_moderate_reports_flagged_and_every_category(client: OpenAIClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(MODERATIONS, ModerationReply(flagged=True, categories=("violence", "harassment")))
    verdict = await moderate(client, "some text", model="omni-moderation-latest")
    assert verdict.flagged
    assert verdict.categories == ("harassment", "violence")
    sent = fake_openai.requests_to(MODERATIONS)[0].json
    assert sent == {"model": "omni-moderation-latest", "input": "some text"}


async def test_a_clean_text_is_not_flagged(client: OpenAIClient) -> None:
    verdict = await moderate(client, "hello", model="omni-moderation-latest")
    assert not verdict.flagged and verdict.categories == ()


async def test_a_flagged_prompt_is_refused_naming_the_category_and_reported(
    client: OpenAIClient, store: SqliteStore, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(MODERATIONS, ModerationReply(flagged=True, categories=("harassment",)))
    notes = Notes()
    check = moderator(client, store, notes, MODERATE_PROMPTS="true", MODERATION_LOG_CHANNEL_ID="555")
    with pytest.raises(UserError) as caught:
        await check_prompt(check, "you are awful")
    assert str(caught.value) == "🚫 I didn't send that: moderation flagged it (harassment)."
    assert len(notes.posted) == 1
    assert "a chat prompt by <@7> in <#9> (harassment)" in notes.posted[0]
    assert "you are awful" in notes.posted[0]


async def test_a_clean_prompt_passes_and_the_check_is_recorded(
    client: OpenAIClient, store: SqliteStore, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    await check_prompt(moderator(client, store, MODERATE_PROMPTS="true"), "hello")
    assert len(fake_openai.requests_to(MODERATIONS)) == 1
    with sqlite3.connect(tmp_path / "bot.db") as db:
        rows = db.execute("SELECT feature, model, user_id, guild_id, channel_id FROM usage").fetchall()
    assert rows == [("moderation", "omni-moderation-latest", 7, 8, 9)]


async def test_nothing_is_checked_when_moderation_is_off(
    client: OpenAIClient, store: SqliteStore, fake_openai: FakeOpenAI
) -> None:
    check = moderator(client, store)
    await check_prompt(check, "anything")
    verdict = await check_answer(check, "anything")
    assert not verdict.flagged
    assert fake_openai.requests_to(MODERATIONS) == []


async def test_answers_are_checked_only_with_moderate_answers(
    client: OpenAIClient, store: SqliteStore, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(MODERATIONS, ModerationReply(flagged=True, categories=("violence",)))
    prompts_only = moderator(client, store, MODERATE_PROMPTS="true")
    assert not (await check_answer(prompts_only, "a violent answer")).flagged
    answers = moderator(client, store, MODERATE_ANSWERS="true", MODERATION_MODEL="omni-moderation-2")
    verdict = await check_answer(answers, "a violent answer")
    assert verdict.flagged
    assert withheld_note(verdict) == "🚫 The answer was withheld: moderation flagged it (violence)."
    assert [r.json["model"] for r in fake_openai.requests_to(MODERATIONS)] == ["omni-moderation-2"]


async def test_a_failing_report_does_not_fail_the_check(
    client: OpenAIClient, store: SqliteStore, fake_openai: FakeOpenAI
) -> None:
    async def broken(text: str) -> None:
        raise RuntimeError("Discord is down")

    fake_openai.queue(MODERATIONS, ModerationReply(flagged=True, categories=("hate",)))
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "t", "OPENAI_API_KEY": "k", "MODERATE_ANSWERS": "true", "MODERATION_LOG_CHANNEL_ID": "5"}
    )
    verdict = await check_answer(Moderator(client, store, settings, notify=broken), "x")
    assert verdict.flagged


async def test_when_moderation_fails_the_prompt_is_not_let_through(
    client: OpenAIClient, store: SqliteStore, fake_openai: FakeOpenAI
) -> None:
    fake_openai.queue(MODERATIONS, server_error())
    with pytest.raises(ApiError):
        await check_prompt(moderator(client, store, MODERATE_PROMPTS="true"), "hello")
