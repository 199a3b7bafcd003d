"""Commands against what a busy server or a strange value does to them: answers that outlast the interaction's
token, and option values Discord let through that the bot cannot use."""

from __future__ import annotations

import logging

import pytest

from bot import replies
from bot.errors import GENERIC_FAILURE
from tests.e2e.conftest import BotRunner
from tests.e2e.test_admin_flows import ephemeral_answer
from tests.e2e.test_transcribe_flows import TRANSCRIPTIONS, audio_usage, transcribe_command
from tests.fakes.audio_fixtures import mp3_file
from tests.fakes.discord_emulator import ChannelType, DiscordEmulator, EmuChannel, EmuFile, EmuMessage
from tests.fakes.openai_server import FakeOpenAI, Hang, TranscriptReply

LATE_TIMEOUT = 10.0
# Shortened for the tests: the bot answers through the channel after this, the emulator's token dies after that.
ANSWER_SECONDS, TOKEN_SECONDS = 0.8, 1.0


@pytest.fixture
def short_token(emulator: DiscordEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interaction tokens that last a second (Discord: 15 minutes), and a bot that knows it."""
    monkeypatch.setattr(replies, "INTERACTION_ANSWER_SECONDS", ANSWER_SECONDS)
    emulator.interaction_token_lifetime = TOKEN_SECONDS


async def channel_message(emulator: DiscordEmulator, channel_id: int, fragment: str) -> EmuMessage:
    """The bot's channel message (not an interaction's answer) containing `fragment`, once there is one."""
    return await emulator.wait_for(
        lambda: next(
            (
                m
                for m in emulator.messages(channel_id)
                if m.author.id == emulator.bot_user.id and m.interaction_metadata is None and fragment in m.content
            ),
            None,
        ),
        timeout=LATE_TIMEOUT,
        what=f"a channel message with {fragment!r}",
    )


@pytest.mark.usefixtures("short_token")
async def test_a_transcript_ready_after_the_token_is_posted_in_the_channel_mentioning_the_member(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Words from long ago.", delay=TOKEN_SECONDS + 0.3))
    async with run_bot() as bot:
        interaction = await transcribe_command(emulator, EmuFile("talk.mp3", mp3_file(1.0), "audio/mpeg"))
        late = await channel_message(emulator, emulator.general.id, "Words from long ago.")
        usage = await audio_usage(bot)
    lines = late.content.splitlines()
    assert lines[0] == emulator.member.mention and lines[1].startswith("-# 📝 Transcript of **talk.mp3**")
    assert lines[-1] == f"-# {replies.LATE_NOTE}"
    assert late.pings.users == {emulator.member.id}  # they waited a long time: this one pings
    assert interaction.original is not None and interaction.original.loading  # the token was never used late
    assert len(usage) == 1


@pytest.mark.usefixtures("short_token")
async def test_an_error_after_the_token_is_posted_in_the_channel_too(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, Hang())
    async with run_bot(OPENAI_TIMEOUT="1.2"):
        await transcribe_command(emulator, EmuFile("talk.mp3", mp3_file(1.0), "audio/mpeg"))
        late = await channel_message(emulator, emulator.general.id, "took too long")
    assert late.content == (
        f"{emulator.member.mention}\n⌛ The AI service took too long to answer. Please try again.\n\n"
        f"-# {replies.LATE_NOTE}"
    )


async def test_a_channel_the_bot_cannot_see_is_named_as_the_value_it_could_not_use(
    emulator: DiscordEmulator, run_bot: BotRunner, caplog: pytest.LogCaptureFixture
) -> None:
    # A thread archived while the bot was away: Discord offers it, but the bot has it in no cache.
    unseen = EmuChannel(
        emulator.snowflake(),
        ChannelType.PUBLIC_THREAD,
        "old",
        emulator.guild_id,
        parent_id=emulator.general.id,
        owner_id=emulator.admin.id,
    )
    emulator.world.add_channel(unseen)
    unseen.archived = True
    async with run_bot():
        shown = await emulator.invoke_slash(
            emulator.admin, emulator.general.id, "settings", {"show": {"channel": unseen}}
        )
        text = await ephemeral_answer(emulator, shown)
    assert text == (
        "⚠️ I couldn't use that value for `channel`: I can't see that channel (it may be archived, or private to "
        "me), or it is not a kind I can use. Pick another."
    )
    assert GENERIC_FAILURE not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("bot")]
