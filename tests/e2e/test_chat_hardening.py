"""Chat against members who push it: models they may not pick, temperatures reasoning models refuse, answers
spent on thinking, floods of messages over the limit, bare mentions, and ids that stay in the deployment."""

from __future__ import annotations

import asyncio
import json

from tests.e2e.conftest import BotRunner
from tests.e2e.test_admin_flows import ephemeral_answer
from tests.e2e.test_chat_flows import CHAT, bot_messages, open_conversation, wait_for_text
from tests.e2e.test_transcribe_flows import send_voice
from tests.fakes.discord_emulator import DiscordEmulator
from tests.fakes.openai_server import FakeOpenAI, Reply

# Models a bot set up like the default can reach (the fake lists them), but only some may be picked.
PICKABLE = "gpt-5,gpt-4.1"
# How long the bot must stay quiet for a channel to count as settled: the fake answers in milliseconds.
SETTLE_SECONDS = 0.5


async def test_a_model_members_may_not_pick_is_refused_naming_those_they_may_and_costs_nothing(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        refused = await emulator.invoke_slash(
            emulator.member, emulator.general.id, "chat", {"prompt": "Expensive?", "model": "gpt-5"}
        )
        text = await ephemeral_answer(emulator, refused)
    assert text == "❓ `gpt-5` isn't a model you can pick here. Pick one of: `gpt-5-mini`."
    assert fake_openai.requests == [] and emulator.threads(emulator.general.id) == []


async def test_a_model_an_admin_chose_for_a_channel_may_then_be_picked_there_only(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        chosen = await emulator.invoke_slash(
            emulator.admin,
            emulator.general.id,
            "settings",
            {"model": {"feature": "chat", "model": "gpt-5", "channel": emulator.general}},
        )
        await chosen.wait_done()
        await open_conversation(emulator, emulator.member, "Picked")  # the thread follows its channel
        picked = await emulator.invoke_slash(
            emulator.member, emulator.general.id, "chat", {"prompt": "Explicitly", "model": "gpt-5"}
        )
        await emulator.wait_for(lambda: len(fake_openai.requests_to(CHAT)) == 2 or None, what="both answers")
        elsewhere = await emulator.invoke_slash(
            emulator.member, emulator.random.id, "chat", {"prompt": "Here too?", "model": "gpt-5"}
        )
        text = await ephemeral_answer(emulator, elsewhere)
    assert picked.deferred_at is not None
    assert [r.json["model"] for r in fake_openai.requests_to(CHAT)] == ["gpt-5", "gpt-5"]
    assert text.startswith("❓ `gpt-5` isn't a model you can pick here.")


async def test_autocomplete_offers_the_models_members_may_pick_filtered_by_what_was_typed(
    emulator: DiscordEmulator, run_bot: BotRunner
) -> None:
    async with run_bot(CHAT_MODELS=PICKABLE):
        everything = await emulator.invoke_autocomplete(
            emulator.member, emulator.general.id, "chat", {"prompt": "x", "model": ""}, "model"
        )
        typed = await emulator.invoke_autocomplete(
            emulator.member, emulator.general.id, "chat", {"prompt": "x", "model": "4.1"}, "model"
        )
        await everything.wait_done()
        await typed.wait_done()
    assert [choice["value"] for choice in everything.choices or []] == ["gpt-5-mini", "gpt-5", "gpt-4.1"]
    assert typed.choices == [{"name": "gpt-4.1", "value": "gpt-4.1"}]


async def test_a_reasoning_model_gets_no_temperature_and_the_answer_says_so(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(CHAT_MODELS=PICKABLE):
        await emulator.invoke_slash(
            emulator.member, emulator.general.id, "chat", {"prompt": "Warm?", "temperature": 1.5}
        )
        thread = await emulator.wait_for(lambda: next(iter(emulator.threads(emulator.general.id)), None))
        answer = await wait_for_text(emulator, thread.id, "Echo:")
        await emulator.invoke_slash(
            emulator.member, thread.id, "chat", {"prompt": "Cool?", "model": "gpt-4.1", "temperature": 0.2}
        )
        other = await wait_for_text(emulator, thread.id, "Cool?")
    sent = fake_openai.requests_to(CHAT)
    assert "temperature" not in sent[0].json and sent[1].json["temperature"] == 0.2
    assert answer.content == "Echo: Member: Warm?\n\n-# gpt-5-mini takes no temperature; it answered at its default."
    assert "-#" not in other.content


async def test_an_answer_spent_thinking_names_the_setting_that_raises_it(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("", finish_reason="length"))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Prove it")
        note = await wait_for_text(emulator, thread_id, "MAX_ANSWER_TOKENS")
    assert note.content == (
        "-# The model spent its whole answer budget thinking and wrote nothing to show. "
        "Ask for something smaller, or the bot's owner can raise MAX_ANSWER_TOKENS."
    )
    assert len(bot_messages(emulator, thread_id)) == 1


async def test_the_api_never_sees_a_discord_id_yet_tells_speakers_apart(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot() as bot:
        thread_id = await open_conversation(emulator, emulator.member, "Hello")
        await wait_for_text(emulator, thread_id, "Echo: Member: Hello")
        await emulator.send_message(thread_id, emulator.admin, "Me too")
        await wait_for_text(emulator, thread_id, "Echo: Admin: Me too")
    body = fake_openai.requests_to(CHAT)[-1].json
    names = [message.get("name") for message in body["messages"] if message["role"] == "user"]
    assert names == [bot.identity.message_name(emulator.member.id), bot.identity.message_name(emulator.admin.id)]
    assert len(set(names)) == 2
    assert body["safety_identifier"] == bot.identity.safety_identifier(emulator.admin.id)
    for request in fake_openai.requests_to(CHAT):
        sent = json.dumps(request.json)
        assert str(emulator.member.id) not in sent and str(emulator.admin.id) not in sent


async def settled(emulator: DiscordEmulator, channel_id: int, seconds: float = SETTLE_SECONDS) -> list[str]:
    """The bot's messages in a channel once nothing new has come for `seconds`."""
    while True:
        before = [m.content for m in bot_messages(emulator, channel_id)]
        await asyncio.sleep(seconds)
        if [m.content for m in bot_messages(emulator, channel_id)] == before:
            return before


async def test_a_flood_over_the_rate_limit_gets_one_refusal_not_one_each(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(USER_REQUESTS_PER_MINUTE="2"):
        thread_id = await open_conversation(emulator, emulator.member, "First")
        await wait_for_text(emulator, thread_id, "Echo: Member: First")
        for number in range(20):
            await emulator.send_message(thread_id, emulator.member, f"spam {number}")
        shown = await settled(emulator, thread_id)
    refusals = [text for text in shown if text.startswith("⏳ Slow down")]
    assert len(refusals) == 1 and len(shown) == 3  # two answers and one refusal
    assert len(fake_openai.requests_to(CHAT)) == 2


async def test_a_flood_over_the_budget_gets_one_refusal_and_other_members_are_still_told(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Costly.", usage=(900, 100)))
    async with run_bot(USER_DAILY_CHAT_TOKENS="1000", USER_REQUESTS_PER_MINUTE="0"):
        thread_id = await open_conversation(emulator, emulator.member, "First")
        await wait_for_text(emulator, thread_id, "Costly.")
        for number in range(8):
            await emulator.send_message(thread_id, emulator.member, f"more {number}")
        await emulator.send_message(thread_id, emulator.admin, "Me?")
        shown = await settled(emulator, thread_id)
    assert [text.split(" It resets")[0] for text in shown if text.startswith("📊")] == [
        "📊 You have used today's chat allowance (1,000 tokens)."
    ]
    assert "Echo: Admin: Me?" in shown  # the admin's own budget is untouched


async def test_a_flood_of_voice_messages_over_the_rate_limit_gets_one_refusal(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(USER_REQUESTS_PER_MINUTE="2"):
        thread_id = await open_conversation(emulator, emulator.member, "First")
        await wait_for_text(emulator, thread_id, "Echo: Member: First")
        for _ in range(5):
            await send_voice(emulator, thread_id, emulator.member, seconds=1.0)
        await wait_for_text(emulator, thread_id, "Echo: Member (voice message)")
        shown = await settled(emulator, thread_id, seconds=1.0)
    assert len([text for text in shown if text.startswith("⏳ Slow down")]) == 1
    assert len(fake_openai.requests_to("/audio/transcriptions")) == 1


async def test_a_bare_mention_is_greeted_with_what_works_here(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(USER_REQUESTS_PER_MINUTE="2"):
        switched = await emulator.invoke_slash(
            emulator.admin,
            emulator.general.id,
            "settings",
            {"feature": {"feature": "images", "state": "off", "channel": emulator.random}},
        )
        await switched.wait_done()
        sent = await emulator.send_message(emulator.general.id, emulator.member, f" {emulator.bot_user.mention} ")
        hello = await wait_for_text(emulator, emulator.general.id, "👋")
        await emulator.send_message(emulator.random.id, emulator.member, emulator.bot_user.mention)
        elsewhere = await wait_for_text(emulator, emulator.random.id, "👋")
        await emulator.send_message(emulator.random.id, emulator.member, emulator.bot_user.mention)
        shown = await settled(emulator, emulator.random.id)
    assert hello.content.splitlines() == [
        "👋 Hi! I'm emulated-bot. Mention me with a question and I'll answer it.",
        "- `/chat`: Ask the AI. In a channel this opens a thread for the conversation.",
        "- `/image`: Draw, edit and vary pictures with AI.",
        "- `/transcribe`: Get the transcript of an audio or video file.",
        "- `/speak`: Say something in a voice message.",
    ]
    assert hello.reply_to is not None and hello.reply_to.id == int(sent["id"]) and not hello.pings
    assert "/image" not in elsewhere.content  # images are off in #random
    assert shown[-1].startswith("⏳ Slow down: you can make 2 requests a minute")  # greetings post, so they count
    assert fake_openai.requests == []


async def test_a_bare_mention_gets_nothing_where_chat_is_off_or_from_a_blocked_member(
    emulator: DiscordEmulator, run_bot: BotRunner
) -> None:
    async with run_bot(BLOCKED_USER_IDS=str(emulator.moderator.id)):
        switched = await emulator.invoke_slash(
            emulator.admin, emulator.general.id, "settings", {"feature": {"feature": "chat", "state": "off"}}
        )
        await switched.wait_done()
        await emulator.send_message(emulator.general.id, emulator.member, emulator.bot_user.mention)
        await emulator.send_message(emulator.random.id, emulator.moderator, emulator.bot_user.mention)
        assert await settled(emulator, emulator.general.id) == []
        assert await settled(emulator, emulator.random.id) == []
