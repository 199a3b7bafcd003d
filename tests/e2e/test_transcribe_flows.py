"""Transcription end to end: the real bot on the Discord emulator, transcribing through the fake OpenAI server."""

from __future__ import annotations

import asyncio

import pytest

from bot import audio
from bot.bot import Bot
from bot.transcripts import FILE_THRESHOLD
from tests.databases import query
from tests.e2e.conftest import BotRunner
from tests.fakes.audio_fixtures import mp3_file, mp4_video, tone, voice_message, wav_file
from tests.fakes.discord_emulator import DiscordEmulator, EmuFile, EmuInteraction, EmuMessage, EmuUser, MessageFlag
from tests.fakes.openai_server import FakeOpenAI, Reply, TranscriptReply

TRANSCRIPTIONS = "/audio/transcriptions"
CHAT = "/chat/completions"
# The fake answers at once; the bot still downloads, decodes and (for long files) converts.
ANSWER_TIMEOUT = 10.0
# How long a wrongly triggered transcription would need to show up; the fake answers within milliseconds.
SETTLE_SECONDS = 0.3
WAVEFORM = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def voice_file(seconds: float = 2.0) -> EmuFile:
    """A voice message's attachment as the Discord client uploads it."""
    return EmuFile("voice-message.ogg", voice_message(seconds), "audio/ogg", duration_secs=seconds, waveform=WAVEFORM)


async def send_voice(emulator: DiscordEmulator, channel_id: int, user: EmuUser, seconds: float = 2.0) -> int:
    """Post a voice message; return its id."""
    payload = await emulator.send_message(
        channel_id, user, attachments=[voice_file(seconds)], flags=MessageFlag.IS_VOICE_MESSAGE
    )
    return int(payload["id"])


def bot_messages(emulator: DiscordEmulator, channel_id: int) -> list[EmuMessage]:
    """What the bot has posted in a channel, oldest first."""
    return [m for m in emulator.messages(channel_id) if m.author.id == emulator.bot_user.id]


async def reply_to(emulator: DiscordEmulator, channel_id: int, message_id: int) -> EmuMessage:
    """The bot's reply to a message, once it is there."""
    return await emulator.wait_for(
        lambda: next(
            (m for m in bot_messages(emulator, channel_id) if m.reply_to and m.reply_to.id == message_id), None
        ),
        timeout=ANSWER_TIMEOUT,
        what=f"the bot's reply to message {message_id}",
    )


async def final_answer(emulator: DiscordEmulator, interaction: EmuInteraction) -> EmuMessage:
    """The deferred answer once it shows neither "thinking" nor progress."""

    def finished() -> EmuMessage | None:
        original = interaction.original
        if original is None or original.loading or original.content.startswith(("🎛️", "🎧")):
            return None
        return original

    return await emulator.wait_for(finished, timeout=ANSWER_TIMEOUT, what="the transcript or an error")


async def transcribe_command(emulator: DiscordEmulator, file: EmuFile, **options: str) -> EmuInteraction:
    return await emulator.invoke_slash(emulator.member, emulator.general.id, "transcribe", {"file": file, **options})


async def audio_usage(bot: Bot) -> list[tuple[object, ...]]:
    return await query(
        bot.settings.database_url,
        "SELECT feature, model, user_id, guild_id, channel_id, audio_seconds FROM usage WHERE feature = 'audio'",
    )


async def test_transcribe_defers_at_once_and_answers_with_the_transcript(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Welcome to the *weekly* sync."))
    recording = mp3_file(3.0)
    async with run_bot() as bot:
        interaction = await transcribe_command(
            emulator, EmuFile("standup.mp3", recording, "audio/mpeg"), language="EN", prompt="Names: Ana, Bo."
        )
        answer = await final_answer(emulator, interaction)
        usage = await audio_usage(bot)

    assert interaction.deferred_at is not None and interaction.deferred_at < 1.0
    assert not interaction.ephemeral
    assert answer.content == "-# 📝 Transcript of **standup.mp3** · 3 s\nWelcome to the \\*weekly\\* sync."
    [sent] = fake_openai.requests_to(TRANSCRIPTIONS)
    assert sent.files["file"] == ("standup.mp3", "audio/mpeg", recording)
    assert sent.fields == {
        "model": "gpt-transcribe",
        "response_format": "json",
        "language": "en",
        "prompt": "Names: Ana, Bo.",
    }
    [(feature, model, user_id, guild_id, channel_id, seconds)] = usage
    assert (feature, model, user_id, guild_id, channel_id) == (
        "audio",
        "gpt-transcribe",
        emulator.member.id,
        emulator.guild_id,
        emulator.general.id,
    )
    assert seconds == pytest.approx(3.0, abs=0.1)


async def test_a_video_is_transcribed_from_its_sound_track(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        interaction = await transcribe_command(emulator, EmuFile("demo.mp4", mp4_video(2.0), "video/mp4"))
        answer = await final_answer(emulator, interaction)

    [sent] = fake_openai.requests_to(TRANSCRIPTIONS)
    assert sent.files["file"][:2] == ("demo.ogg", "audio/ogg")
    assert answer.content.startswith("-# 📝 Transcript of **demo.mp4** · 2 s\nTranscript of demo.ogg")
    assert answer.revisions[1] == "🎛️ Converting 2 s of audio…"


async def test_a_long_recording_shows_its_progress_piece_by_piece(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limits scaled down with the recording: 5 s in pieces of at most 2 s takes the path of a long file.
    monkeypatch.setattr(audio, "MAX_UPLOAD_SECONDS", 2)
    monkeypatch.setattr(audio, "MAX_PIECE_SECONDS", 2)
    monkeypatch.setattr(audio, "CUT_SEARCH_SECONDS", 1)
    monkeypatch.setattr(audio, "MIN_LAST_PIECE_SECONDS", 0)
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("One."), TranscriptReply("Two."), TranscriptReply("Three."))
    async with run_bot():
        interaction = await transcribe_command(emulator, EmuFile("lecture.wav", wav_file(tone(5.0)), "audio/wav"))
        answer = await final_answer(emulator, interaction)

    assert answer.revisions == [
        "",
        "🎛️ Converting 5 s of audio…",
        "🎧 Transcribing 5 s of audio: piece 1 of 3…",
        "🎧 Transcribing 5 s of audio: piece 2 of 3…",
        "🎧 Transcribing 5 s of audio: piece 3 of 3…",
        "-# 📝 Transcript of **lecture.wav** · 5 s\nOne. Two. Three.",
    ]
    assert [request.fields.get("prompt") for request in fake_openai.requests_to(TRANSCRIPTIONS)] == [
        None,
        "One.",
        "Two.",
    ]


async def test_a_transcript_over_one_message_is_split(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    text = " ".join(f"Sentence number {number} of the talk." for number in range(90))  # ~3,000 characters
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply(text))
    async with run_bot():
        interaction = await transcribe_command(emulator, EmuFile("talk.mp3", mp3_file(1.0), "audio/mpeg"))
        await final_answer(emulator, interaction)
        await emulator.wait_for(
            lambda: interaction.messages[-1].content.endswith("number 89 of the talk."), what="the transcript's end"
        )

    contents = [message.content for message in interaction.messages]
    assert len(contents) == 2
    assert all(len(content) <= 2000 for content in contents)
    assert " ".join(contents).replace("\n", " ").split() == f"-# 📝 Transcript of **talk.mp3** · 1 s {text}".split()


async def test_a_very_long_transcript_comes_as_a_text_file(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    text = "And so the meeting went on. " * (FILE_THRESHOLD // 20)
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply(text))
    async with run_bot():
        interaction = await transcribe_command(emulator, EmuFile("board meeting.mp3", mp3_file(1.0), "audio/mpeg"))
        answer = await final_answer(emulator, interaction)

    [attachment] = answer.attachments
    assert attachment.filename == "board-meeting-transcript.txt"
    assert attachment.data.decode() == text.strip()
    assert answer.content.startswith("-# 📝 Transcript of **board meeting.mp3** · 1 s\nAnd so the meeting went on.")
    assert answer.content.endswith(f"-# {len(text.strip()):,} characters: the whole transcript is attached.")
    assert interaction.followups == []


@pytest.mark.parametrize(
    ("file", "refusal"),
    [
        (EmuFile("notes.txt", b"Agenda: budget.", "text/plain; charset=utf-8"), "is not an audio or video file"),
        (EmuFile("silence.ogg", b"", "audio/ogg"), "That file is empty"),
    ],
    ids=["text-file", "empty-file"],
)
async def test_a_file_refused_before_download_gets_a_private_answer_and_no_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner, file: EmuFile, refusal: str
) -> None:
    async with run_bot():
        interaction = await (await transcribe_command(emulator, file)).wait_done()

    assert interaction.ephemeral and interaction.original is not None
    assert refusal in interaction.original.content
    assert fake_openai.requests == []


async def test_a_damaged_file_is_reported_as_unreadable_without_an_api_call(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    broken = EmuFile("broken.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(2000), "audio/mpeg")
    async with run_bot():
        answer = await final_answer(emulator, await transcribe_command(emulator, broken))

    assert answer.content.startswith("🔇 I couldn't read that file as audio or video")
    assert fake_openai.requests == []


async def test_the_context_menu_transcribes_a_voice_message_without_the_message_content_intent(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Running late, start without me."))
    async with run_bot(DISCORD_MESSAGE_CONTENT="false"):
        voice_id = await send_voice(emulator, emulator.general.id, emulator.member)
        interaction = await emulator.invoke_message_command(
            emulator.moderator, emulator.general.id, "Transcribe", voice_id
        )
        answer = await final_answer(emulator, interaction)
        await asyncio.sleep(SETTLE_SECONDS)

    assert answer.content == "-# 📝 Transcript of this voice message · 2 s\nRunning late, start without me."
    # Without the intent the voice message reached the bot without its attachment: only the menu transcribed it.
    [sent] = fake_openai.requests_to(TRANSCRIPTIONS)
    assert sent.files["file"][:2] == ("voice-message.ogg", "audio/ogg")
    assert bot_messages(emulator, emulator.general.id) == [answer]


async def test_the_context_menu_on_a_message_without_media_says_so(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    async with run_bot():
        payload = await emulator.send_message(emulator.general.id, emulator.member, "just words")
        interaction = await emulator.invoke_message_command(
            emulator.member, emulator.general.id, "Transcribe", int(payload["id"])
        )
        await interaction.wait_done()

    assert interaction.ephemeral and interaction.original is not None
    assert interaction.original.content == "🎞️ That message has no voice message, audio or video file to transcribe."
    assert fake_openai.requests == []


async def test_a_voice_message_in_a_plain_channel_gets_its_transcript_as_a_reply(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Lunch at noon?"))
    async with run_bot() as bot:
        voice_id = await send_voice(emulator, emulator.general.id, emulator.member, seconds=3.0)
        reply = await reply_to(emulator, emulator.general.id, voice_id)
        usage = await audio_usage(bot)

    assert reply.content == "-# 📝 Transcript of this voice message · 3 s\nLunch at noon?"
    assert not reply.pings  # a reply that pings nobody, the author included
    [sent] = fake_openai.requests_to(TRANSCRIPTIONS)
    assert sent.files["file"] == ("voice-message.ogg", "audio/ogg", emulator.message(voice_id).attachments[0].data)
    assert sent.fields["model"] == "gpt-transcribe"
    assert [(row[0], row[2], row[4]) for row in usage] == [("audio", emulator.member.id, emulator.general.id)]
    assert fake_openai.requests_to(CHAT) == []


async def test_autotranscribe_switches_a_channel_off_and_on(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Second message."))
    async with run_bot():
        off = await emulator.invoke_slash(emulator.admin, emulator.general.id, "autotranscribe", {"enabled": False})
        await off.wait_done()
        ignored = await send_voice(emulator, emulator.general.id, emulator.member)
        await asyncio.sleep(SETTLE_SECONDS)  # let it be ignored before the switch goes back on
        shown = await (await emulator.invoke_slash(emulator.admin, emulator.general.id, "autotranscribe")).wait_done()
        on = await emulator.invoke_slash(emulator.admin, emulator.general.id, "autotranscribe", {"enabled": True})
        await on.wait_done()
        heard = await send_voice(emulator, emulator.general.id, emulator.member)
        await reply_to(emulator, emulator.general.id, heard)
        await asyncio.sleep(SETTLE_SECONDS)

    assert off.original is not None and "turned automatic transcription **off** in this channel" in off.original.content
    assert shown.ephemeral and shown.messages[0].content == "🎙️ Automatic transcription is **off** in this channel."
    assert len(fake_openai.requests_to(TRANSCRIPTIONS)) == 1
    assert not any(m.reply_to and m.reply_to.id == ignored for m in bot_messages(emulator, emulator.general.id))


async def test_any_member_sees_the_autotranscribe_setting_but_only_managers_change_it(
    emulator: DiscordEmulator, run_bot: BotRunner
) -> None:
    async with run_bot():
        shown = await (await emulator.invoke_slash(emulator.member, emulator.general.id, "autotranscribe")).wait_done()
        refused = await emulator.invoke_slash(
            emulator.member, emulator.general.id, "autotranscribe", {"enabled": False}
        )
        await refused.wait_done()
        still = await (await emulator.invoke_slash(emulator.member, emulator.general.id, "autotranscribe")).wait_done()

    assert shown.ephemeral and shown.messages[0].content == "🎙️ Automatic transcription is **on** in this channel."
    assert refused.ephemeral
    assert refused.messages[0].content == "🔒 Only members with Manage Channels or Manage Server can change this."
    assert still.messages[0].content == shown.messages[0].content


async def test_a_voice_message_in_a_conversation_is_answered_as_a_spoken_turn(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Hello! Ask me anything."), Reply("Otters hold hands while they sleep."))
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("Tell me something about otters."))
    async with run_bot():
        await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "Hi"})
        thread = await emulator.wait_for(lambda: next(iter(emulator.threads(emulator.general.id)), None))
        await emulator.wait_for(lambda: bot_messages(emulator, thread.id), what="the first answer")
        voice_id = await send_voice(emulator, thread.id, emulator.member)
        answer = await reply_to(emulator, thread.id, voice_id)
        await emulator.wait_for(lambda: answer.content == "Otters hold hands while they sleep.", what="the answer")

    [sent] = fake_openai.requests_to(TRANSCRIPTIONS)
    assert sent.files["file"][:2] == ("voice-message.ogg", "audio/ogg")
    last_turn = fake_openai.requests_to(CHAT)[-1].json["messages"][-1]
    speaker = emulator.member.global_name or emulator.member.username
    assert (last_turn["role"], last_turn["content"]) == (
        "user",
        f"{speaker} (voice message): Tell me something about otters.",
    )
    assert [m.content for m in bot_messages(emulator, thread.id)] == [
        "Hello! Ask me anything.",
        "Otters hold hands while they sleep.",
    ]  # the transcript is the turn, not a message of its own


async def test_a_voice_message_in_a_dm_is_a_turn_when_dms_are_allowed(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("What time is it in Lisbon?"))
    dm = emulator.dm_channel(emulator.member)
    speaker = emulator.member.global_name or emulator.member.username
    expected = f"Echo: {speaker} (voice message): What time is it in Lisbon?"  # the fake echoes the last turn
    async with run_bot(ALLOW_DMS="true"):
        voice_id = await send_voice(emulator, dm.id, emulator.member)
        answer = await reply_to(emulator, dm.id, voice_id)
        await emulator.wait_for(lambda: answer.content == expected, what="the whole answer")


async def test_a_voice_message_in_a_dm_gets_a_note_when_dms_are_off(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    dm = emulator.dm_channel(emulator.member)
    async with run_bot():
        voice_id = await send_voice(emulator, dm.id, emulator.member)
        note = await reply_to(emulator, dm.id, voice_id)

    assert "direct messages" in note.content
    assert fake_openai.requests == []


async def test_a_voice_message_and_a_quick_typed_one_are_answered_in_the_order_sent(
    emulator: DiscordEmulator, fake_openai: FakeOpenAI, run_bot: BotRunner
) -> None:
    fake_openai.queue(CHAT, Reply("Hello!"), Reply("About the voice message."), Reply("About the typed one."))
    fake_openai.queue(TRANSCRIPTIONS, TranscriptReply("First, spoken."))
    async with run_bot():
        await emulator.invoke_slash(emulator.member, emulator.general.id, "chat", {"prompt": "Hi"})
        thread = await emulator.wait_for(lambda: next(iter(emulator.threads(emulator.general.id)), None))
        await emulator.wait_for(lambda: bot_messages(emulator, thread.id), what="the first answer")
        await send_voice(emulator, thread.id, emulator.member, seconds=4.0)
        await emulator.send_message(thread.id, emulator.member, "Second, typed.")
        await emulator.wait_for(
            lambda: any(m.content == "About the typed one." for m in bot_messages(emulator, thread.id)),
            timeout=ANSWER_TIMEOUT,
            what="both answers",
        )
    speaker = emulator.member.global_name or emulator.member.username
    assert [(m["role"], m["content"]) for m in fake_openai.requests_to(CHAT)[-1].json["messages"][-3:]] == [
        ("user", f"{speaker} (voice message): First, spoken."),
        ("assistant", "About the voice message."),
        ("user", f"{speaker}: Second, typed."),
    ]
