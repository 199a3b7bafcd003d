"""Running the bot for a server, end to end: limits, moderation, /settings, /usage and /status."""

from __future__ import annotations

import re

import discord
import pytest

from bot import __version__
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat_flows import CHAT, open_conversation, wait_for_answer, wait_for_text
from tests.fakes.discord_emulator import DiscordEmulator, EmuInteraction
from tests.fakes.openai_server import FakeOpenAI, ModerationReply, Reply

MODERATIONS = "/moderations"


async def ephemeral_answer(emu: DiscordEmulator, interaction: EmuInteraction) -> str:
    """The text of an interaction's answer, which must be visible to its user only."""
    await interaction.wait_done()
    assert interaction.ephemeral, interaction
    assert interaction.original is not None
    return interaction.original.content


async def test_a_member_over_the_daily_budget_is_refused_with_the_reset_time_and_no_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("First answer.", usage=(900, 100)))
    async with run_bot(USER_DAILY_CHAT_TOKENS="1000"):
        thread_id = await open_conversation(emulator, emulator.member, "First question")
        await wait_for_answer(emulator, thread_id, "First answer.")
        refused = await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "More?"})
        text = await ephemeral_answer(emulator, refused)
        await emulator.send_message(thread_id, emulator.member, "And in the thread?")
        reply = await wait_for_text(emulator, thread_id, "allowance")
    assert "You have used today's chat allowance (1,000 tokens)" in text
    assert "It resets at 00:00 UTC (<t:" in text
    assert "00:00 UTC" in reply.content
    assert len(fake_openai.requests_to(CHAT)) == 1
    assert refused.deferred_at is None  # refused at once: no "thinking…" for nothing


async def test_a_member_hammering_chat_is_stopped_by_the_per_minute_limit(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(USER_REQUESTS_PER_MINUTE="2"):
        for prompt in ("one", "two"):
            await open_conversation(emulator, emulator.member, prompt)
        refused = await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "three"})
        text = await ephemeral_answer(emulator, refused)
        await emulator.wait_for(lambda: len(fake_openai.requests_to(CHAT)) == 2 or None)
    assert text.startswith("⏳ Slow down: you can make 2 requests a minute. Try again in")
    assert [r.json["messages"][-1]["content"] for r in fake_openai.requests_to(CHAT)] == [
        "Member: one",
        "Member: two",
    ]


async def test_a_flagged_prompt_is_refused_before_it_reaches_the_chat_endpoint(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(MODERATIONS, ModerationReply(flagged=True, categories=("harassment",)))
    async with run_bot(MODERATE_PROMPTS="true", MODERATION_LOG_CHANNEL_ID=str(emulator.random.id)):
        refused = await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "insult"})
        await refused.wait_done()
        report = await wait_for_text(emulator, emulator.random.id, "Moderation flagged")
    assert refused.original is not None
    assert refused.original.content == "🚫 I didn't send that: moderation flagged it (harassment)."
    assert fake_openai.requests_to(CHAT) == []
    assert emulator.threads(emulator.general.id) == []
    assert f"a chat prompt by <@{emulator.member.id}>" in report.content and "insult" in report.content


async def test_a_flagged_answer_is_withheld_and_left_out_of_the_history(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Something violent."), Reply("Fine."))
    fake_openai.queue(MODERATIONS, ModerationReply(flagged=True, categories=("violence",)))
    async with run_bot(MODERATE_ANSWERS="true"):
        thread_id = await open_conversation(emulator, emulator.member, "Tell me")
        await wait_for_answer(emulator, thread_id, "🚫 The answer was withheld: moderation flagged it (violence).")
        await emulator.send_message(thread_id, emulator.member, "Again")
        await wait_for_answer(emulator, thread_id, "Fine.")
    shown = [revision for m in emulator.messages(thread_id) for revision in m.revisions]
    assert not any("violent" in text for text in shown)
    history = [m["content"] for m in fake_openai.requests_to(CHAT)[-1].json["messages"]]
    assert "Something violent." not in history


async def test_chat_switched_off_in_a_channel_ignores_mentions_and_says_so_to_commands(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        changed = await emulator.invoke_slash(
            emulator.admin,
            emulator.general.id,
            "settings",
            {"feature": {"feature": "chat", "state": "off", "channel": emulator.random}},
        )
        assert "Chat: off in <#" in await ephemeral_answer(emulator, changed)
        await emulator.send_message(emulator.random.id, emulator.member, f"{emulator.bot_user.mention} hello?")
        refused = await emulator.invoke_slash(emulator.member, emulator.random.id, "chat", {"prompt": "hi"})
        text = await ephemeral_answer(emulator, refused)
        thread_id = await open_conversation(emulator, emulator.member, "elsewhere")  # #general is unaffected
        await wait_for_answer(emulator, thread_id, "Echo: Member: elsewhere")
    assert text == "🔕 Chat is turned off here. A server admin can turn it on."
    assert [m for m in emulator.messages(emulator.random.id) if m.author.id == emulator.bot_user.id] == []
    assert len(fake_openai.requests_to(CHAT)) == 1


async def test_usage_shows_what_the_api_reported(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("One.", usage=(1_200_000, 34_000)), Reply("Two.", usage=(2_000_000, 66_000)))
    prices = '{"gpt-5-mini": {"input": 1.0, "output": 10.0}}'
    async with run_bot(PRICES=prices):
        first = await open_conversation(emulator, emulator.member, "one")
        await wait_for_answer(emulator, first, "One.")
        second = await open_conversation(emulator, emulator.admin, "two")
        await wait_for_answer(emulator, second, "Two.")
        mine = await ephemeral_answer(emulator, await emulator.invoke_slash(emulator.member, second, "usage"))
        admins = await ephemeral_answer(emulator, await emulator.invoke_slash(emulator.admin, second, "usage"))
    assert "**Your use today** (resets at 00:00 UTC): chat 1,234,000 of 200,000 tokens" in mine
    assert "This server" not in mine
    assert "**This server today**: chat 3,300,000 of 2,000,000 tokens" in admins
    # 3,200,000 input tokens at $1/M and 100,000 output tokens at $10/M.
    assert "**Estimated cost**: today ≈ $4.20; this month ≈ $4.20" in admins
    assert f"1. <@{emulator.admin.id}>: chat 2,066,000 tokens" in admins and "≈ $2.66" in admins
    assert f"2. <@{emulator.member.id}>: chat 1,234,000 tokens" in admins and "≈ $1.54" in admins


async def test_settings_are_hidden_from_members_without_manage_server(
    emulator: DiscordEmulator, run_bot: BotRunner
) -> None:
    async with run_bot():
        commands = {c["name"]: c for c in emulator.commands(emulator.guild_id)}
        with pytest.raises(PermissionError, match="does not see /settings"):
            await emulator.invoke_slash(emulator.member, emulator.general.id, "settings", {"show": {}})
        shown = await emulator.invoke_slash(emulator.admin, emulator.general.id, "settings", {"show": {}})
        text = await ephemeral_answer(emulator, shown)
    assert int(commands["settings"]["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
    assert "Limits in this server" in text


async def test_status_names_the_models_the_api_latency_and_the_version(
    emulator: DiscordEmulator, run_bot: BotRunner
) -> None:
    async with run_bot(MODERATE_PROMPTS="true"):
        text = await ephemeral_answer(
            emulator, await emulator.invoke_slash(emulator.member, emulator.general.id, "status")
        )
    assert f"**Version** {__version__}" in text
    assert "chat `gpt-5-mini`" in text and "image generation `gpt-image-2`" in text
    assert "**Moderation**: `omni-moderation-latest` on prompts" in text
    assert "): answered in " in text
    assert re.search(r"\*\*Discord\*\* \(1 shard in all; shard 0: \d+ ms, 1 server\)", text), text


async def test_status_shows_each_shard_of_this_process(emulator: DiscordEmulator, run_bot: BotRunner) -> None:
    for name in ("Two", "Three", "Four"):
        emulator.add_guild(name)  # guilds made one after another fall on shards 1, 0, 1 of 2
    async with run_bot(SHARD_COUNT="2", DISCORD_GUILD_ID=""):
        text = await ephemeral_answer(
            emulator, await emulator.invoke_slash(emulator.member, emulator.general.id, "status")
        )
    assert re.search(r"2 shards in all; shard 0: \d+ ms, 2 servers · shard 1: \d+ ms, 2 servers", text), text


async def test_settings_change_the_model_at_once_and_refuse_an_unknown_one(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        unknown = await emulator.invoke_slash(
            emulator.admin, emulator.general.id, "settings", {"model": {"feature": "chat", "model": "gpt-9"}}
        )
        await unknown.wait_done()
        changed = await emulator.invoke_slash(
            emulator.admin, emulator.general.id, "settings", {"model": {"feature": "chat", "model": "gpt-5"}}
        )
        await changed.wait_done()
        thread_id = await open_conversation(emulator, emulator.member, "Which model?")
        await wait_for_answer(emulator, thread_id, "Echo: Member: Which model?")
        shown = await ephemeral_answer(
            emulator, await emulator.invoke_slash(emulator.admin, emulator.general.id, "settings", {"show": {}})
        )
    assert unknown.original is not None and "The API offers no model `gpt-9`" in unknown.original.content
    assert changed.original is not None and changed.original.content == "✅ Chat model: `gpt-5` in this server."
    assert fake_openai.requests_to(CHAT)[-1].json["model"] == "gpt-5"
    assert "chat `gpt-5`" in shown


async def test_a_server_can_lower_a_limit_and_is_told_it_cannot_raise_one(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(USER_REQUESTS_PER_MINUTE="10"):
        raised = await emulator.invoke_slash(
            emulator.admin,
            emulator.general.id,
            "settings",
            {"limit": {"limit": "user_requests_per_minute", "value": 50}},
        )
        lowered = await emulator.invoke_slash(
            emulator.admin,
            emulator.general.id,
            "settings",
            {"limit": {"limit": "user_requests_per_minute", "value": 1}},
        )
        assert "a server can only lower it" in await ephemeral_answer(emulator, raised)
        assert await ephemeral_answer(emulator, lowered) == "✅ Requests a minute, per member: 1."
        await open_conversation(emulator, emulator.member, "one")
        refused = await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "two"})
        assert "you can make 1 request a minute" in await ephemeral_answer(emulator, refused)
