"""Conversations end to end: the real bot, the Discord emulator and the fake OpenAI server."""

from __future__ import annotations

import itertools
import logging
import re

import pytest

from bot.conversation import NOTE_OMITTED
from bot.render import MESSAGE_LIMIT
from cogs.chat import NOT_ALLOWED
from tests.e2e.conftest import BotRunner
from tests.fakes.discord_emulator import ChannelType, DiscordEmulator, EmuMessage, EmuUser, Perm
from tests.fakes.openai_server import (
    Behaviour,
    FakeOpenAI,
    Hang,
    Reply,
    StreamCut,
    quota_exhausted,
    rate_limited,
    server_error,
    unknown_model,
)

CHAT = "/chat/completions"


def bot_messages(emu: DiscordEmulator, channel_id: int) -> list[EmuMessage]:
    """What the bot has posted in a channel, oldest first."""
    return [m for m in emu.messages(channel_id) if m.author.id == emu.bot_user.id]


# Answers stream for a few seconds in some tests; a slow CI machine gets room before a wait fails.
ANSWER_TIMEOUT = 10.0


async def wait_for_answer(emu: DiscordEmulator, channel_id: int, text: str) -> EmuMessage:
    """The bot's message in the channel whose content is exactly `text`, once it is."""
    return await emu.wait_for(
        lambda: next((m for m in bot_messages(emu, channel_id) if m.content == text), None),
        timeout=ANSWER_TIMEOUT,
        what=f"the answer {text[:60]!r} in channel {channel_id}",
    )


async def wait_for_text(emu: DiscordEmulator, channel_id: int, fragment: str) -> EmuMessage:
    """The bot's message in the channel that contains `fragment`, once one does."""
    return await emu.wait_for(
        lambda: next((m for m in bot_messages(emu, channel_id) if fragment in m.content), None),
        timeout=ANSWER_TIMEOUT,
        what=f"a bot message containing {fragment!r} in channel {channel_id}",
    )


async def open_conversation(emu: DiscordEmulator, user: EmuUser, prompt: str) -> int:
    """/chat in #general; return the id of the thread it opened."""
    before = len(emu.threads(emu.general.id))
    await emu.invoke_slash(user, emu.general.id, "chat", {"prompt": prompt})
    thread = await emu.wait_for(
        lambda: emu.threads(emu.general.id)[before] if len(emu.threads(emu.general.id)) > before else None,
        what="a thread opened by /chat",
    )
    return thread.id


def sent_messages(fake: FakeOpenAI, index: int = -1) -> list[tuple[str, str]]:
    """(role, content) of each message in one chat request the fake received."""
    return [(m["role"], m["content"]) for m in fake.requests_to(CHAT)[index].json["messages"]]


def speaker(user: EmuUser) -> str:
    """How a user's turn starts in the request: their display name."""
    return user.global_name or user.username


async def test_commands_are_synced_to_the_guild_and_the_invite_link_is_logged(
    emulator: DiscordEmulator, run_bot: BotRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    async with run_bot():
        commands = {c["name"]: c for c in emulator.commands(emulator.guild_id)}
    assert {"chat", "reset", "system"} <= set(commands)
    options = {o["name"]: o for o in commands["chat"]["options"]}
    assert options["prompt"]["required"] is True
    assert (options["temperature"]["min_value"], options["temperature"]["max_value"]) == (0, 2)
    invite = next(r.getMessage() for r in caplog.records if "Invite link" in r.getMessage())
    assert f"client_id={emulator.application_id}" in invite
    assert "scope=bot+applications.commands" in invite
    assert re.search(r"permissions=\d+", invite)


async def test_global_commands_are_synced_only_when_they_changed(emulator: DiscordEmulator, run_bot: BotRunner) -> None:
    def global_syncs() -> int:
        path = f"/applications/{emulator.application_id}/commands"
        return sum(1 for r in emulator.requests if r.method == "PUT" and r.path == path)

    async with run_bot(DISCORD_GUILD_ID=""):
        assert global_syncs() == 1
    async with run_bot(DISCORD_GUILD_ID=""):
        assert global_syncs() == 1  # unchanged definitions: no second sync after a restart
    assert "chat" in {c["name"] for c in emulator.commands()}


async def test_chat_in_a_channel_opens_a_public_thread_and_streams_the_answer_there(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    answer = "Otters hold hands while they sleep so they do not drift apart. " * 4
    fake_openai.queue(CHAT, Reply(answer.strip()))
    fake_openai.stream_chunk_chars, fake_openai.chunk_delay = 12, 0.1  # about 2 s of streaming
    async with run_bot():
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "Otters?"})
        thread = await emulator.wait_for(lambda: next(iter(emulator.threads(emulator.general.id)), None))
        final = await wait_for_answer(emulator, thread.id, answer.strip())

    assert interaction.deferred_at is not None and interaction.deferred_at < 1.0
    assert thread.type == ChannelType.PUBLIC_THREAD and thread.name == "Otters?"
    assert interaction.original is not None and "Otters?" in interaction.original.content
    assert interaction.original.thread_id == thread.id  # the thread hangs off the prompt message
    assert len(final.revisions) >= 2  # edited as the text arrived
    # The first words came within half a second: no typing indicator was worth a request.
    assert not [r for r in emulator.requests if r.path == f"/channels/{thread.id}/typing"]
    assert sent_messages(fake_openai) == [
        ("system", sent_messages(fake_openai)[0][1]),
        ("user", f"{speaker(emulator.member)}: Otters?"),
    ]
    name = fake_openai.requests_to(CHAT)[0].json["messages"][1]["name"]
    assert re.fullmatch(r"user_[0-9a-f]{12}", name) and str(emulator.member.id) not in name


async def test_a_model_that_thinks_first_shows_the_typing_indicator_until_its_first_words(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Having thought about it: yes."))
    fake_openai.first_chunk_delay = 1.5
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Should I?")
        await wait_for_answer(emulator, thread_id, "Having thought about it: yes.")
    typing = [r.at for r in emulator.requests if r.method == "POST" and r.path == f"/channels/{thread_id}/typing"]
    first_post = next(
        r.at for r in emulator.requests if r.method == "POST" and r.path == f"/channels/{thread_id}/messages"
    )
    assert len(typing) == 1 and typing[0] < first_post


async def test_follow_ups_carry_the_thread_and_a_mention_elsewhere_carries_none_of_it(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("First answer."), Reply("Second answer."), Reply("Elsewhere."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "First question")
        await wait_for_answer(emulator, thread_id, "First answer.")
        await emulator.send_message(thread_id, emulator.admin, "Second question")
        await wait_for_answer(emulator, thread_id, "Second answer.")
        sent = await emulator.send_message(emulator.random.id, emulator.admin, f"{emulator.bot_user.mention} hi there")
        elsewhere = await wait_for_answer(emulator, emulator.random.id, "Elsewhere.")

    assert sent_messages(fake_openai, 1)[1:] == [
        ("user", f"{speaker(emulator.member)}: First question"),
        ("assistant", "First answer."),
        ("user", f"{speaker(emulator.admin)}: Second question"),
    ]
    assert sent_messages(fake_openai, 2)[1:] == [("user", f"{speaker(emulator.admin)}: hi there")]
    assert elsewhere.reply_to is not None and elsewhere.reply_to.id == int(sent["id"])
    assert not elsewhere.pings


async def test_the_conversation_survives_a_restart(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Before the restart."), Reply("After the restart."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Remember this")
        await wait_for_answer(emulator, thread_id, "Before the restart.")
    async with run_bot():
        await emulator.send_message(thread_id, emulator.member, "Still there?")
        await wait_for_answer(emulator, thread_id, "After the restart.")
    assert sent_messages(fake_openai)[1:] == [
        ("user", f"{speaker(emulator.member)}: Remember this"),
        ("assistant", "Before the restart."),
        ("user", f"{speaker(emulator.member)}: Still there?"),
    ]


async def test_system_prompt_changes_only_the_thread_and_only_for_those_allowed(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    stranger = emulator.add_user("stranger")
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Hello")
        await wait_for_text(emulator, thread_id, "Echo:")
        refused = await emulator.invoke_slash(stranger, thread_id, "system", {"prompt": "Talk like a pirate"})
        await refused.wait_done()
        allowed = await emulator.invoke_slash(emulator.member, thread_id, "system", {"prompt": "Talk like a pirate"})
        await allowed.wait_done()
        shown = await emulator.invoke_slash(stranger, thread_id, "system")
        await shown.wait_done()
        await emulator.send_message(thread_id, emulator.member, "Ahoy?")
        await wait_for_text(emulator, thread_id, "Ahoy?")
        await emulator.send_message(emulator.general.id, emulator.member, f"{emulator.bot_user.mention} and here?")
        await wait_for_text(emulator, emulator.general.id, "and here?")

    assert refused.ephemeral and refused.messages[0].content == NOT_ALLOWED
    assert not allowed.ephemeral and "system prompt" in allowed.messages[0].content
    assert shown.ephemeral and "Talk like a pirate" in shown.messages[0].content
    thread_request, channel_request = sent_messages(fake_openai, -2), sent_messages(fake_openai, -1)
    assert thread_request[0] == ("system", "Talk like a pirate")
    assert channel_request[0][1] != "Talk like a pirate"


async def test_reset_forgets_the_history_for_the_opener_or_a_moderator_only(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    stranger = emulator.add_user("stranger")
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Something to forget")
        await wait_for_text(emulator, thread_id, "Echo:")
        refused = await emulator.invoke_slash(stranger, thread_id, "reset")
        await refused.wait_done()
        done = await emulator.invoke_slash(emulator.moderator, thread_id, "reset")
        await done.wait_done()
        await emulator.send_message(thread_id, emulator.member, "Fresh start")
        await wait_for_text(emulator, thread_id, "Fresh start")

    assert refused.ephemeral and refused.messages[0].content == NOT_ALLOWED
    assert "cleared" in done.messages[0].content
    assert sent_messages(fake_openai)[1:] == [("user", f"{speaker(emulator.member)}: Fresh start")]


async def test_a_long_answer_with_code_arrives_split_with_balanced_fences(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    code = "\n".join(f"    print('line {i}', {'x' * 40!r})" for i in range(75))
    answer = "Here is the script:\n```python\ndef main():\n" + code + "\n```\nRun it with python."
    assert len(answer) > 4500
    fake_openai.queue(CHAT, Reply(answer))
    fake_openai.stream_chunk_chars = 400
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Write a long script")
        await emulator.wait_for(
            lambda: (
                bot_messages(emulator, thread_id)
                and bot_messages(emulator, thread_id)[-1].content.endswith("Run it with python.")
            ),
            what="the last part of the long answer",
        )
        parts = [m.content for m in bot_messages(emulator, thread_id)]
    assert len(parts) >= 3
    for part in parts:
        assert len(part) <= MESSAGE_LIMIT
        assert part.count("```") % 2 == 0
    assert all(part.startswith("```python") for part in parts[1:-1])


async def test_nothing_the_bot_posts_pings_anyone(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    mention_bait = f"Hello @everyone and @here, <@&{emulator.moderator_role.id}> and {emulator.admin.mention}!"
    fake_openai.queue(CHAT, Reply(mention_bait))
    async with run_bot():
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "@everyone"})
        thread = await emulator.wait_for(lambda: next(iter(emulator.threads(emulator.general.id)), None))
        answer = await wait_for_answer(emulator, thread.id, mention_bait)
    assert interaction.original is not None and not interaction.original.pings
    assert not answer.pings
    assert answer.allowed_mentions == {"parse": []}


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        pytest.param([rate_limited(0.05)] * 3, "rate limit", id="rate-limited"),
        pytest.param([quota_exhausted()], "credit is used up", id="quota"),
        pytest.param([server_error()] * 3, "having trouble", id="server-error"),
        pytest.param([Hang()], "took too long", id="hang"),
        pytest.param([unknown_model("gpt-5-mini")], "does not exist", id="unknown-model"),
    ],
)
async def test_an_api_failure_is_explained_and_the_next_turn_works(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner, failure: list[Behaviour], words: str
) -> None:
    fake_openai.queue(CHAT, *failure, Reply("Back to normal."))
    async with run_bot(OPENAI_TIMEOUT="1"):
        thread_id = await open_conversation(emulator, emulator.member, "Are you there?")
        failed = await wait_for_text(emulator, thread_id, words)
        await emulator.send_message(thread_id, emulator.member, "Try again")
        await wait_for_answer(emulator, thread_id, "Back to normal.")
    assert "Traceback" not in failed.content and "sk-test-key" not in failed.content


async def test_a_stream_cut_midway_keeps_the_partial_answer_and_says_so(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, StreamCut("The first half of an answer that "), Reply("Whole again."))
    fake_openai.chunk_delay = 0.05
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Tell me")
        cut = await wait_for_text(emulator, thread_id, "interrupted")
        await emulator.send_message(thread_id, emulator.member, "Again")
        await wait_for_answer(emulator, thread_id, "Whole again.")
    assert cut.content.startswith("The first half")


async def test_older_turns_left_out_of_the_window_are_noted(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(CONTEXT_TOKEN_BUDGET="600", MAX_ANSWER_TOKENS="100"):
        thread_id = await open_conversation(emulator, emulator.member, "word " * 300)
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "short follow-up")
        noted = await wait_for_text(emulator, thread_id, "short follow-up")
    assert NOTE_OMITTED in noted.content
    assert [role for role, _ in sent_messages(fake_openai)] == ["system", "user"]


async def test_two_quick_messages_get_two_answers_in_order(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Opening."), Reply("Answer one, slowly streamed."), Reply("Answer two."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Start")
        await wait_for_answer(emulator, thread_id, "Opening.")
        fake_openai.chunk_delay = 0.05
        await emulator.send_message(thread_id, emulator.member, "one")
        await emulator.send_message(thread_id, emulator.admin, "two")
        first = await wait_for_answer(emulator, thread_id, "Answer one, slowly streamed.")
        second = await wait_for_answer(emulator, thread_id, "Answer two.")
    assert first.id < second.id
    assert sent_messages(fake_openai)[-3:] == [
        ("user", f"{speaker(emulator.member)}: one"),
        ("assistant", "Answer one, slowly streamed."),
        ("user", f"{speaker(emulator.admin)}: two"),
    ]


async def test_a_slow_channel_holds_up_no_other(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(OPENAI_TIMEOUT="3"):
        thread_id = await open_conversation(emulator, emulator.member, "Start")
        await wait_for_text(emulator, thread_id, "Echo:")
        fake_openai.queue(CHAT, Hang())
        await emulator.send_message(thread_id, emulator.member, "This one hangs")
        await emulator.wait_for(lambda: len(fake_openai.requests_to(CHAT)) == 2, what="the hanging request")
        await emulator.send_message(emulator.random.id, emulator.admin, f"{emulator.bot_user.mention} quick one")
        await wait_for_text(emulator, emulator.random.id, "quick one")
        assert not any("took too long" in m.content for m in bot_messages(emulator, thread_id))
        await wait_for_text(emulator, thread_id, "took too long")


async def test_a_gateway_reconnect_mid_conversation_loses_nothing(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Before."), Reply("After."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Before the drop")
        await wait_for_answer(emulator, thread_id, "Before.")
        await emulator.drop_gateway(resumable=True)
        await emulator.send_message(thread_id, emulator.member, "During the drop")
        await wait_for_answer(emulator, thread_id, "After.")
    assert "RESUME" in emulator.gateway.ops
    assert sent_messages(fake_openai)[1:] == [
        ("user", f"{speaker(emulator.member)}: Before the drop"),
        ("assistant", "Before."),
        ("user", f"{speaker(emulator.member)}: During the drop"),
    ]


async def test_streaming_edits_stay_within_discords_rate_limit(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    emulator.channel_rate_limit = (5, 5.0)
    answer = "A steady stream of words arriving one small piece at a time. " * 5
    fake_openai.queue(CHAT, Reply(answer.strip()))
    fake_openai.stream_chunk_chars, fake_openai.chunk_delay = 5, 0.05  # about 3 s, 60 pieces
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Stream")
        await wait_for_answer(emulator, thread_id, answer.strip())
    in_thread = [r for r in emulator.requests if r.path.startswith(f"/channels/{thread_id}/messages")]
    assert all(r.status != 429 for r in in_thread)
    edits = [r.at for r in in_thread if r.method == "PATCH"]
    assert len(edits) >= 2  # the answer grew on screen, not only at the end
    # Intermediate edits at most about once a second; the last (final) edit is never held back.
    intermediate = edits[:-1]
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(intermediate))
    writes = [r.at for r in in_thread if r.method in ("POST", "PATCH")]
    assert all(sum(1 for t in writes if start <= t < start + 5.0) <= 5 for start in writes)


async def test_without_the_message_content_intent_only_mentions_are_answered_in_threads(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(DISCORD_MESSAGE_CONTENT="false"):
        thread_id = await open_conversation(emulator, emulator.member, "Start")
        await wait_for_text(emulator, thread_id, "Echo:")
        await emulator.send_message(thread_id, emulator.member, "not addressed")
        await emulator.send_message(thread_id, emulator.member, f"{emulator.bot_user.mention} addressed")
        await wait_for_text(emulator, thread_id, "addressed")
    assert len(fake_openai.requests_to(CHAT)) == 2
    assert sent_messages(fake_openai)[-1] == ("user", f"{speaker(emulator.member)}: addressed")


async def test_a_missing_permission_is_named_before_anything_is_posted(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    emulator.set_channel_permissions(emulator.general.id, emulator.bot_role, deny=Perm.CREATE_PUBLIC_THREADS)
    async with run_bot():
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "Hi"})
        await interaction.wait_done()
    assert interaction.ephemeral
    assert "Create Public Threads" in interaction.messages[0].content
    assert fake_openai.requests_to(CHAT) == []
    assert emulator.threads(emulator.general.id) == []


async def test_direct_messages_get_a_note_when_dms_are_off(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    dm = emulator.dm_channel(emulator.member)
    async with run_bot():
        await emulator.send_message(dm.id, emulator.member, "hello in private")
        note = await wait_for_text(emulator, dm.id, "direct messages")
    assert fake_openai.requests_to(CHAT) == []
    assert not note.pings


async def test_direct_messages_are_conversations_when_allowed(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    dm = emulator.dm_channel(emulator.member)
    async with run_bot(ALLOW_DMS="true"):
        await emulator.send_message(dm.id, emulator.member, "first")
        await wait_for_text(emulator, dm.id, "first")
        await emulator.send_message(dm.id, emulator.member, "second")
        await wait_for_text(emulator, dm.id, "second")
    assert [role for role, _ in sent_messages(fake_openai)] == ["system", "user", "assistant", "user"]


async def test_reset_while_an_answer_streams_waits_for_it_and_then_clears(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    slow = "This answer takes a while to stream in, long past Discord's three seconds."
    fake_openai.queue(CHAT, Reply("Opening."), Reply(slow), Reply("Fresh."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Start")
        await wait_for_answer(emulator, thread_id, "Opening.")
        fake_openai.stream_chunk_chars, fake_openai.chunk_delay = 4, 0.2  # about 4 s
        await emulator.send_message(thread_id, emulator.member, "Go slowly")
        await emulator.wait_for(lambda: len(fake_openai.requests_to(CHAT)) == 2, what="the slow request")
        reset = await emulator.invoke_slash(emulator.member, thread_id, "reset")
        await emulator.wait_for(lambda: reset.original and "cleared" in reset.original.content, timeout=10)
        fake_openai.chunk_delay = 0
        await emulator.send_message(thread_id, emulator.member, "After the reset")
        await wait_for_answer(emulator, thread_id, "Fresh.")
    assert reset.deferred_at is not None and reset.deferred_at < 1.0
    assert any(m.content == slow for m in bot_messages(emulator, thread_id))  # the answer in flight finished
    assert sent_messages(fake_openai)[1:] == [("user", f"{speaker(emulator.member)}: After the reset")]


async def test_a_failing_moderation_check_is_answered_not_ignored(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue("/moderations", server_error(), server_error(), server_error())
    async with run_bot(MODERATE_PROMPTS="true"):
        await emulator.send_message(emulator.random.id, emulator.member, f"{emulator.bot_user.mention} hello")
        refusal = await wait_for_text(emulator, emulator.random.id, "having trouble")
    assert fake_openai.requests_to(CHAT) == []  # moderation fails closed
    assert not refusal.pings


async def test_a_thread_people_opened_uses_its_channels_system_prompt(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        prompt_set = await emulator.invoke_slash(
            emulator.moderator, emulator.general.id, "system", {"prompt": "Answer in French."}
        )
        await prompt_set.wait_done()
        thread = await emulator.create_thread(emulator.general.id, emulator.member, "People's thread")
        await emulator.send_message(thread.id, emulator.member, f"{emulator.bot_user.mention} hello")
        await wait_for_text(emulator, thread.id, "hello")
    assert sent_messages(fake_openai)[0] == ("system", "Answer in French.")
