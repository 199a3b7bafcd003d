"""Speech end to end: /speak, the Speak menu and spoken answers, the real bot on the emulator and the fake API."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import pytest
from av.audio.stream import AudioStream

from bot import doctor
from bot.speech import speakable_text
from bot.voice_message import NO_PERMISSION_NOTE
from tests.databases import query
from tests.e2e.conftest import BotRunner
from tests.e2e.test_chat_flows import CHAT, bot_messages, open_conversation, wait_for_answer, wait_for_text
from tests.e2e.test_doctor import doctor_in_thread
from tests.e2e.test_transcribe_flows import TRANSCRIPTIONS, send_voice
from tests.fakes.discord_emulator import DiscordEmulator, EmuAttachment, EmuInteraction, EmuMessage, Perm
from tests.fakes.openai_server import (
    FakeOpenAI,
    Reply,
    TranscriptReply,
    server_error,
    unknown_model,
)
from tests.fakes.openapi import OpenApiValidator

SPEECH = "/audio/speech"
# Synthesizing and encoding a minute of audio takes a moment on a busy machine.
SPOKEN_TIMEOUT = 15.0
# How long a voice message that should not come would need to show up; the fake answers within milliseconds.
SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class Decoded:
    """What a recording holds, as a player decoding it finds."""

    codec: str
    sample_rate: int
    channels: int
    seconds: float


def decode(data: bytes) -> Decoded:
    """Decode a whole recording with PyAV, counting its samples."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert isinstance(stream, AudioStream)
        codec, rate, channels = stream.codec_context.name, stream.codec_context.sample_rate, stream.channels
        samples = sum(frame.samples for frame in container.decode(stream))
    return Decoded(codec, rate, channels, samples / rate)


def voice_messages(emu: DiscordEmulator, channel_id: int) -> list[EmuMessage]:
    """The bot's voice messages in a channel, oldest first."""
    return [m for m in bot_messages(emu, channel_id) if m.is_voice_message]


async def wait_for_voice(emu: DiscordEmulator, channel_id: int, count: int = 1) -> EmuMessage:
    """The channel's `count`-th voice message from the bot, once it is there."""
    return await emu.wait_for(
        lambda: voice_messages(emu, channel_id)[count - 1] if len(voice_messages(emu, channel_id)) >= count else None,
        timeout=SPOKEN_TIMEOUT,
        what=f"voice message {count} in channel {channel_id}",
    )


def recording(emu: DiscordEmulator, message: EmuMessage) -> EmuAttachment:
    """The single attachment of a message, as the emulator stored it."""
    [attachment] = message.attachments
    return emu.attachment(attachment.id)


async def answered(interaction: EmuInteraction) -> str:
    """The interaction's answer once it is neither missing nor "thinking"."""
    assert interaction.emulator is not None
    await interaction.emulator.wait_for(
        lambda: interaction.original is not None and not interaction.original.loading,
        timeout=SPOKEN_TIMEOUT,
        what=f"the answer to {interaction.name!r}",
    )
    assert interaction.original is not None
    return interaction.original.content


async def speech_usage(database_url: str) -> list[tuple[object, ...]]:
    return await query(
        database_url,
        "SELECT model, user_id, guild_id, channel_id, speech_characters FROM usage WHERE feature = 'speech'",
    )


async def test_speak_posts_a_voice_message_under_a_caption_naming_who_asked(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    text = "Good morning, everyone. The standup starts in five minutes."
    async with run_bot() as bot:
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": text})
        voice = await wait_for_voice(emulator, emulator.general.id)
        caption = await answered(interaction)
        usage = await speech_usage(bot.settings.database_url)

    assert caption == f"🔊 {emulator.member.mention} asked me to say:\n>>> {text}"
    assert interaction.deferred_at is not None and interaction.deferred_at < 1.0 and not interaction.ephemeral
    assert voice.content == "" and voice.reply_to is interaction.original
    attachment = recording(emulator, voice)
    assert (attachment.filename, attachment.content_type) == ("voice-message.ogg", "audio/ogg")
    heard = decode(attachment.data)
    assert (heard.codec, heard.sample_rate, heard.channels) == ("opus", 48_000, 1)
    assert attachment.duration_secs == pytest.approx(heard.seconds, abs=0.03)
    assert heard.seconds == pytest.approx(fake_openai.speech_seconds(text), abs=0.1)
    waveform = attachment.waveform_bytes
    assert waveform is not None and 1 < len(waveform) <= 256 and len(set(waveform)) > 3
    [sent] = fake_openai.requests_to(SPEECH)
    assert sent.json == {"model": "gpt-4o-mini-tts", "input": text, "voice": "alloy", "response_format": "opus"}
    assert usage == [("gpt-4o-mini-tts", emulator.member.id, emulator.guild_id, emulator.general.id, len(text))]


async def test_speak_takes_a_voice_and_suggests_voices_as_they_are_typed(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot(TTS_INSTRUCTIONS="Speak warmly."):
        suggested = await emulator.invoke_autocomplete(
            emulator.member, emulator.general.id, "speak", {"text": "Hi", "voice": "SH"}, "voice"
        )
        await suggested.wait_done()
        await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": "Hi.", "voice": "coral"})
        await wait_for_voice(emulator, emulator.general.id)
        refused = await emulator.invoke_slash(
            emulator.member, emulator.general.id, "speak", {"text": "Hi.", "voice": "no voice"}
        )
        refusal = await answered(refused)

    assert [choice["value"] for choice in suggested.choices or []] == ["ash", "shimmer"]
    [sent] = fake_openai.requests_to(SPEECH)
    assert (sent.json["voice"], sent.json["instructions"]) == ("coral", "Speak warmly.")
    assert refused.ephemeral and refusal.startswith("🗣️ That is not a voice name.")


async def test_the_speak_menu_reads_a_text_message_aloud_without_the_message_content_intent(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    text = "**Lunch** is at `noon` today, see https://example.com/menu for the menu"
    async with run_bot(DISCORD_MESSAGE_CONTENT="false"):
        target = await emulator.send_message(emulator.general.id, emulator.member, text)
        interaction = await emulator.invoke_message_command(
            emulator.moderator, emulator.general.id, "Speak", int(target["id"])
        )
        voice = await wait_for_voice(emulator, emulator.general.id)
        note = await answered(interaction)

    [sent] = fake_openai.requests_to(SPEECH)
    assert sent.json["input"] == "Lunch is at noon today, see a link for the menu."
    assert voice.reply_to is not None and voice.reply_to.id == int(target["id"])
    assert interaction.ephemeral and note.startswith("🔊 Read aloud: https://discord.com/channels/")
    assert note.endswith(f"/{emulator.general.id}/{voice.id}")


async def test_the_speak_menu_on_a_message_without_words_says_so_without_an_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        target = await emulator.send_message(emulator.general.id, emulator.member, "```py\nprint(1)\n```")
        interaction = await emulator.invoke_message_command(
            emulator.member, emulator.general.id, "Speak", int(target["id"])
        )
        refusal = await answered(interaction)
    assert interaction.ephemeral and refusal.startswith("🔇 There is nothing there to read aloud")
    assert fake_openai.requests_to(SPEECH) == []


async def test_a_voice_message_in_a_bot_thread_is_answered_in_text_then_in_a_voice_message(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    answer = "Otters hold hands while they sleep, so they **don't drift apart**."
    fake_openai.queue(CHAT, Reply("Hello! Ask me anything."), Reply(answer))
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Tell me something about otters."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Hi")
        await wait_for_answer(emulator, thread_id, "Hello! Ask me anything.")
        voice_id = await send_voice(emulator, thread_id, emulator.member)
        voice = await wait_for_voice(emulator, thread_id)

    text_answer, spoken = bot_messages(emulator, thread_id)[1:]
    assert text_answer.content == answer and spoken is voice  # the voice message comes right under the text
    assert voice.reply_to is not None and voice.reply_to.id == voice_id
    [sent] = fake_openai.requests_to(SPEECH)  # the first, typed turn got no voice message
    assert sent.json["input"] == "Otters hold hands while they sleep, so they don't drift apart."
    attachment = recording(emulator, voice)
    heard = decode(attachment.data)
    assert attachment.duration_secs == pytest.approx(heard.seconds, abs=0.03)
    assert heard.seconds == pytest.approx(fake_openai.speech_seconds(sent.json["input"]), abs=0.1)


async def test_a_6000_character_answer_is_spoken_as_one_recording(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.speech_chars_per_second = 150.0  # a quick voice: 40 s of audio instead of 400
    sentence = "Rivers carve valleys over many thousands of years, grain by grain. "
    answer = (sentence * (6000 // len(sentence) + 1))[:6000].rsplit(" ", 1)[0] + "."
    fake_openai.queue(CHAT, Reply(answer))
    async with run_bot(VOICE_REPLIES="always"):
        thread_id = await open_conversation(emulator, emulator.member, "Tell me about rivers")
        voice = await wait_for_voice(emulator, thread_id)
        await asyncio.sleep(SETTLE_SECONDS)

    first, second = fake_openai.requests_to(SPEECH)
    assert len(first.json["input"]) <= 4096 and first.json["input"].endswith("grain by grain.")
    assert first.json["input"] + " " + second.json["input"] == speakable_text(answer)
    assert voice_messages(emulator, thread_id) == [voice]
    heard = decode(recording(emulator, voice).data)
    assert heard.seconds == pytest.approx(fake_openai.speech_seconds(speakable_text(answer)), abs=0.3)


async def test_an_answer_longer_than_the_limit_is_cut_with_a_note(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    answer = "Tell me more about the weather in spring, and why it changes so quickly. " * 20  # about 100 s
    fake_openai.queue(CHAT, Reply(answer.strip()))
    async with run_bot(VOICE_REPLIES="always", MAX_SPEECH_MINUTES="1"):
        thread_id = await open_conversation(emulator, emulator.member, "Weather?")
        voice = await wait_for_voice(emulator, thread_id)
        note = await wait_for_text(emulator, thread_id, "recording stops")

    assert recording(emulator, voice).duration_secs == pytest.approx(60.0, abs=0.05)
    assert note.content == "-# The answer is longer than 1 min 00 s, so the recording stops there."
    assert bot_messages(emulator, thread_id)[-2:] == [voice, note]


async def test_without_send_voice_messages_the_recording_comes_as_an_ogg_file_with_a_note(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    emulator.set_channel_permissions(emulator.general.id, emulator.bot_role, deny=int(Perm.SEND_VOICE_MESSAGES))
    async with run_bot():
        await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": "Testing, one two."})
        posted = await wait_for_text(emulator, emulator.general.id, "Send Voice Messages")

    assert posted.content == NO_PERMISSION_NOTE and not posted.is_voice_message
    attachment = recording(emulator, posted)
    assert attachment.filename == "voice-message.ogg"
    assert decode(attachment.data).codec == "opus"
    assert voice_messages(emulator, emulator.general.id) == []
    assert [r for r in emulator.requests if r.status == 403] == []  # known from the permissions: never tried


async def test_discord_refusing_the_voice_message_anyway_brings_the_file(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Hello!"), Reply("Here is your answer."))
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("A question."))
    async with run_bot():
        thread_id = await open_conversation(emulator, emulator.member, "Hi")
        await wait_for_answer(emulator, thread_id, "Hello!")
        # Changed behind the bot's back: its cached permissions still allow voice messages, Discord says 50173.
        emulator.set_channel_permissions(emulator.general.id, emulator.bot_role, deny=int(Perm.SEND_VOICE_MESSAGES))
        voice_id = await send_voice(emulator, thread_id, emulator.member)
        posted = await wait_for_text(emulator, thread_id, "Send Voice Messages")

    assert posted.content == NO_PERMISSION_NOTE and posted.reply_to is not None and posted.reply_to.id == voice_id
    assert recording(emulator, posted).filename == "voice-message.ogg"
    refused = [r for r in emulator.requests if r.route == "/channels/{channel_id}/messages" and r.status == 403]
    assert len(refused) == 1


async def test_the_speech_budget_refuses_speak_before_any_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    text = "This is more than twenty characters."
    async with run_bot(USER_DAILY_SPEECH_CHARACTERS="20"):
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": text})
        refusal = await answered(interaction)
    assert interaction.ephemeral and interaction.deferred_at is None
    assert refusal.startswith(
        f"📊 That needs {len(text)} characters of speech; you have 20 of today's 20 left. It resets at 00:00 UTC"
    )
    assert fake_openai.requests_to(SPEECH) == []


async def test_a_spoken_reply_over_the_budget_leaves_the_text_and_a_note_naming_the_limit(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("A long enough answer to go over the budget."))
    async with run_bot(VOICE_REPLIES="always", USER_DAILY_SPEECH_CHARACTERS="10"):
        thread_id = await open_conversation(emulator, emulator.member, "Question")
        note = await wait_for_text(emulator, thread_id, "couldn't speak")

    assert bot_messages(emulator, thread_id)[0].content == "A long enough answer to go over the budget."
    assert note.content.startswith("-# I couldn't speak this answer: 📊 That needs 43 characters of speech")
    assert fake_openai.requests_to(SPEECH) == []


async def test_a_failing_speech_endpoint_leaves_the_text_answer_and_says_why(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Hi there."), Reply("Still here."))
    fake_openai.queue(SPEECH, server_error())
    async with run_bot(VOICE_REPLIES="always", OPENAI_MAX_RETRIES="0"):
        thread_id = await open_conversation(emulator, emulator.member, "Hello")
        note = await wait_for_text(emulator, thread_id, "couldn't speak")
        await emulator.send_message(thread_id, emulator.member, "Are you there?")
        await wait_for_voice(emulator, thread_id)  # the next answer is spoken again

    assert note.content == (
        "-# I couldn't speak this answer: 🛠️ The AI service is having trouble right now. Please try again in a few "
        "minutes."
    )
    assert [m.content for m in bot_messages(emulator, thread_id)][:2] == ["Hi there.", note.content]


async def test_speak_with_an_unknown_speech_model_names_it(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(SPEECH, unknown_model("tts-9"))
    async with run_bot(TTS_MODEL="tts-9"):
        interaction = await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": "Hello."})
        await emulator.wait_for(lambda: interaction.original is not None and "tts-9" in interaction.original.content)
    assert interaction.original is not None
    assert (
        interaction.original.content == "❓ The model `tts-9` does not exist on the configured API. Pick another model."
    )
    assert voice_messages(emulator, emulator.general.id) == []


async def test_voice_replies_always_speaks_an_answer_to_a_typed_mention(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Sure, it is sunny."))
    async with run_bot(VOICE_REPLIES="always"):
        asked = await emulator.send_message(
            emulator.general.id, emulator.member, f"{emulator.bot_user.mention} is it sunny?"
        )
        voice = await wait_for_voice(emulator, emulator.general.id)

    text_answer = bot_messages(emulator, emulator.general.id)[0]
    assert text_answer.content == "Sure, it is sunny."
    assert voice.reply_to is not None and voice.reply_to.id == int(asked["id"])
    assert voice.pings.users == frozenset()  # replying pings nobody


async def test_voice_replies_never_keeps_a_spoken_turn_in_text(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Hello!"), Reply("An answer in text only."))
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("A spoken question."))
    async with run_bot(VOICE_REPLIES="never"):
        thread_id = await open_conversation(emulator, emulator.member, "Hi")
        await wait_for_answer(emulator, thread_id, "Hello!")
        await send_voice(emulator, thread_id, emulator.member)
        await wait_for_answer(emulator, thread_id, "An answer in text only.")
        await asyncio.sleep(SETTLE_SECONDS)
    assert voice_messages(emulator, thread_id) == []
    assert fake_openai.requests_to(SPEECH) == []


async def test_settings_voice_replies_turns_spoken_answers_on_for_one_channel(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    mention = emulator.bot_user.mention
    async with run_bot():
        changed = await emulator.invoke_slash(
            emulator.admin,
            emulator.general.id,
            "settings",
            {"voice_replies": {"state": "always", "channel": emulator.random}},
        )
        confirmation = await answered(changed)
        await emulator.send_message(emulator.random.id, emulator.member, f"{mention} one")
        await wait_for_voice(emulator, emulator.random.id)
        await emulator.send_message(emulator.general.id, emulator.member, f"{mention} two")
        await wait_for_answer(emulator, emulator.general.id, "Echo: Member: two")
        shown = await emulator.invoke_slash(emulator.admin, emulator.random.id, "settings", {"show": {}})
        settings_text = await answered(shown)
        await asyncio.sleep(SETTLE_SECONDS)

    assert confirmation == f"✅ Voice replies: always in <#{emulator.random.id}>."
    assert voice_messages(emulator, emulator.general.id) == []
    server, channel = settings_text.split("\n\n")[:2]
    assert "- Answers also spoken as voice messages: when the turn was a voice message" in server
    assert "- Answers also spoken as voice messages: on every answer" in channel
    assert "Speech on" in server


async def test_usage_counts_the_characters_spoken_and_their_cost(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    text = "Twelve words are enough to make this sentence worth counting, I think."
    async with run_bot(PRICES='{"gpt-4o-mini-tts": {"speech_characters": 15000}}'):
        await emulator.invoke_slash(emulator.admin, emulator.general.id, "speak", {"text": text})
        await wait_for_voice(emulator, emulator.general.id)
        report = await answered(await emulator.invoke_slash(emulator.admin, emulator.general.id, "usage"))

    assert f"{len(text)} of 20,000 characters of speech" in report
    assert f"{len(text)} of 200,000 characters of speech" in report  # the server's line
    assert f"**Estimated cost**: today ≈ ${len(text) * 15000 / 1e6:.2f}" in report


async def test_speech_switched_off_means_no_spoken_answers_and_speak_refused(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Hello!"))
    async with run_bot(VOICE_REPLIES="always"):
        switched = await emulator.invoke_slash(
            emulator.admin, emulator.general.id, "settings", {"feature": {"feature": "speech", "state": "off"}}
        )
        await answered(switched)
        thread_id = await open_conversation(emulator, emulator.member, "Hi")
        await wait_for_answer(emulator, thread_id, "Hello!")
        refused = await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": "Hello."})
        refusal = await answered(refused)
        await asyncio.sleep(SETTLE_SECONDS)

    assert refusal == "🔕 Speech is turned off here. A server admin can turn it on."
    assert bot_messages(emulator, thread_id)[-1].content == "Hello!"  # no voice message, no note
    assert fake_openai.requests_to(SPEECH) == []


async def test_speech_role_ids_limit_speech_to_those_roles(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("For the member."))
    role = emulator.moderator_role
    async with run_bot(SPEECH_ROLE_IDS=str(role.id), VOICE_REPLIES="always"):
        refused = await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": "Hello."})
        refusal = await answered(refused)
        thread_id = await open_conversation(emulator, emulator.member, "Hi")
        await wait_for_answer(emulator, thread_id, "For the member.")
        await emulator.invoke_slash(emulator.moderator, emulator.general.id, "speak", {"text": "Hello."})
        await wait_for_voice(emulator, emulator.general.id)
        await asyncio.sleep(SETTLE_SECONDS)

    assert refused.ephemeral and refusal == f"🔒 Speech needs one of these roles: <@&{role.id}>."
    assert voice_messages(emulator, thread_id) == []  # the member's answers stay text, without a note each time
    assert bot_messages(emulator, thread_id)[-1].content == "For the member."
    assert len(fake_openai.requests_to(SPEECH)) == 1


@pytest.fixture
async def speech_server(openai_validator: OpenApiValidator | None) -> AsyncIterator[FakeOpenAI]:
    """A second OpenAI-compatible server, for speech only, with a key of its own."""
    fake = FakeOpenAI(validator=openai_validator, api_key="local-speech-key")
    fake.models = ["kokoro"]
    await fake.start()
    yield fake
    await fake.close()
    assert fake.violations == []


async def test_speech_can_come_from_a_server_of_its_own(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, speech_server: FakeOpenAI, run_bot: BotRunner
) -> None:
    speech_server.models = ["kokoro", "kokoro-hd"]
    async with run_bot(
        TTS_BASE_URL=speech_server.base_url, TTS_API_KEY="local-speech-key", TTS_MODEL="kokoro", TTS_VOICE="af_bella"
    ):
        chosen, refused = [
            await answered(
                await emulator.invoke_slash(
                    emulator.admin,
                    emulator.general.id,
                    "settings",
                    {"model": {"feature": "speech", "model": model}},
                )
            )
            for model in ("kokoro-hd", "gpt-5-mini")  # the chat API offers gpt-5-mini; the speech server does not
        ]
        await emulator.invoke_slash(emulator.member, emulator.general.id, "speak", {"text": "Hello from nearby."})
        await wait_for_voice(emulator, emulator.general.id)

    assert chosen == "✅ Speech model: `kokoro-hd` in this server."
    assert refused.startswith("❓ The API offers no model `gpt-5-mini`. It offers: `kokoro`, `kokoro-hd`.")
    [sent] = speech_server.requests_to(SPEECH)
    assert (sent.json["model"], sent.json["voice"]) == ("kokoro-hd", "af_bella")
    assert sent.headers["Authorization"] == "Bearer local-speech-key"
    assert fake_openai.requests_to(SPEECH) == []
    assert fake_openai.requests_to(CHAT) == []


async def test_the_doctor_names_a_missing_send_voice_messages_and_the_invite_asks_for_it(
    emulator: DiscordEmulator, bot_env: dict[str, str]
) -> None:
    emulator.set_channel_permissions(emulator.random.id, emulator.bot_role, deny=int(Perm.SEND_VOICE_MESSAGES))
    code, text = await doctor_in_thread(bot_env)
    assert code == doctor.EXIT_PROBLEMS
    assert "✗ In #random the bot lacks Send Voice Messages." in text
    [permissions] = re.findall(r"Invite link: \S+permissions=(\d+)", text)
    assert int(permissions) & Perm.SEND_VOICE_MESSAGES
