"""Text read aloud in Discord: /speak, the Speak menu, and answers followed by the same answer as a voice message.

The speech service the Bot holds (`bot.speaker`). It passes the gate for the characters to be spoken, has the speech
endpoint read the text (bot/speech.py), encodes the recording in the job runner, posts it as a voice message, or as
an .ogg file where voice messages are not allowed (bot/voice_message.py), and records what was spoken.
`after_answer` is what the chat and transcription cogs call once a turn has its text answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import discord

from bot.access import Admission, Gate, parent_id_of, role_ids_of
from bot.api import OpenAIClient
from bot.audio import CONVERT_CPU_PER_SECOND
from bot.config import Settings, VoiceReplies
from bot.conversation import Question
from bot.errors import GENERIC_FAILURE, ApiError, ApiErrorKind, UserError
from bot.jobs import JobRunner
from bot.replies import describe_error
from bot.speech import (
    BUDGET_MARGIN,
    SPEAKING_CHARS_PER_SECOND,
    RunBlocking,
    SpokenAnswer,
    cut_note,
    speakable_text,
    synthesize,
)
from bot.voice_message import Delivery, SpeakingChannel, can_send_voice_messages, deliver_spoken_answer
from bot.voice_recording import VoiceRecording

log = logging.getLogger(__name__)

# The voices of OpenAI's speech models (FACTS.md), offered as suggestions; other servers have voices of their own.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
MAX_SUGGESTIONS = 25  # Discord takes at most 25 autocomplete choices
FAILED_NOTE = "-# I couldn't speak this answer: {}"
NO_WAY_TO_POST = "🔒 I need the Send Voice Messages permission here (or Attach Files, to post the recording as a file)."


class NothingToRead(UserError):
    """The text holds nothing a voice could read: only code, links, mentions or symbols."""

    def __init__(self) -> None:
        super().__init__("🔇 There is nothing there to read aloud: no words, only code, links or symbols.")


class VoiceRefused(UserError):
    """The speech server refused a voice a member chose."""

    def __init__(self, voice: str) -> None:
        super().__init__(
            f"🗣️ The speech service refused the voice `{voice}`. Pick one it offers, or leave `voice` out "
            "for the bot's own."
        )


@dataclass(frozen=True)
class Asker:
    """Who asks for speech, and where: what the gate and the model settings go by."""

    user_id: int
    role_ids: tuple[int, ...]
    guild_id: int | None
    channel_id: int | None
    parent_id: int | None = None

    @classmethod
    def of(cls, user: discord.abc.User, channel: object, guild_id: int | None) -> Asker:
        """The member (or DM user) asking in a channel or thread."""
        channel_id = channel.id if isinstance(channel, discord.abc.Snowflake) else None
        return cls(user.id, tuple(role_ids_of(user)), guild_id, channel_id, parent_id_of(channel))


def wants_voice_reply(mode: VoiceReplies, *, spoken: bool) -> bool:
    """Whether an answer also comes as a voice message: always, never, or ("spoken") when the turn was spoken."""
    return mode == "always" or (mode == "spoken" and spoken)


def planned_characters(text: str, max_seconds: float) -> int:
    """The characters reading `text` aloud will send: its speakable words, up to what fills the length limit."""
    # As synthesize asks for text: the time to fill at the usual speaking rate, with its margin.
    most = math.ceil(max_seconds * SPEAKING_CHARS_PER_SECOND * BUDGET_MARGIN)
    return min(len(speakable_text(text)), most)


def voice_suggestions(configured: str, typed: str) -> list[str]:
    """Voices to offer while a member types one: the bot's own first, then OpenAI's, those matching what is typed."""
    typed = typed.strip().lower()
    voices = dict.fromkeys((configured, *OPENAI_VOICES))
    return [voice for voice in voices if typed in voice.lower()][:MAX_SUGGESTIONS]


def posting_permissions(channel: discord.abc.Messageable) -> tuple[bool, bool]:
    """Whether the bot may send (voice messages, files) in a channel, from its permissions there.

    A DM allows both; a channel whose permissions the bot cannot know is tried as a file, and Discord decides.
    """
    if not isinstance(channel, SpeakingChannel):
        return False, True
    if isinstance(channel, discord.DMChannel | discord.GroupChannel | discord.PartialMessageable):
        return can_send_voice_messages(channel), True
    return can_send_voice_messages(channel), channel.permissions_for(channel.guild.me).attach_files


class Speaker:
    """Reads text aloud as voice messages; one per process, shared by the speech, chat and transcription cogs."""

    def __init__(self, *, settings: Settings, gate: Gate, api: OpenAIClient, jobs: JobRunner) -> None:
        self._settings = settings
        self._gate = gate
        self._api = api
        self._jobs = jobs

    async def admit(self, text: str, asker: Asker, *, counts_as_request: bool = True) -> Admission:
        """Pass the gate for the characters `text` takes to say; NothingToRead when it has no words.

        `counts_as_request=False` for the spoken half of an answer already counted as a chat request.
        """
        characters = planned_characters(text, self._settings.max_speech_seconds)
        if not characters:
            raise NothingToRead()
        return await self._gate.admit(
            "speech",
            user_id=asker.user_id,
            role_ids=asker.role_ids,
            guild_id=asker.guild_id,
            channel_id=asker.channel_id,
            parent_id=asker.parent_id,
            characters=characters,
            counts_as_request=counts_as_request,
        )

    async def synthesize(
        self, text: str, admission: Admission, asker: Asker, *, voice: str | None = None
    ) -> SpokenAnswer:
        """Read `text` aloud with the speech model chosen here and record the characters sent.

        Raises ApiError when the speech endpoint fails, VoiceRefused when it refuses a `voice` the member chose.
        """
        model = await self._gate.model_for("speech", asker.guild_id, asker.channel_id, parent_id=asker.parent_id)
        try:
            spoken = await synthesize(
                self._api,
                text,
                model=model,
                voice=voice or self._settings.tts_voice,
                instructions=self._settings.tts_instructions,
                max_seconds=self._settings.max_speech_seconds,
                run_blocking=self._encoder(asker.user_id, admission.held),
                stopping=self._jobs.stopping,
            )
        except ApiError as error:
            if voice is not None and error.kind is ApiErrorKind.BAD_REQUEST:
                raise VoiceRefused(voice) from error
            raise
        await admission.spend(model, speech_characters=spoken.characters)
        log.info(
            "Spoke %d characters (%.1f s) for user %s", spoken.characters, spoken.recording.duration_secs, asker.user_id
        )
        return spoken

    async def deliver(
        self,
        channel: discord.abc.Messageable,
        spoken: SpokenAnswer,
        *,
        can_send_voice: bool,
        reference: discord.Message | None = None,
    ) -> Delivery:
        """Post the recording (a voice message, else an .ogg file with why), and under it the note of a cut."""
        delivery = await deliver_spoken_answer(
            channel, spoken.recording, can_send_voice=can_send_voice, reference=reference
        )
        if spoken.cut:
            await channel.send(cut_note(self._settings.max_speech_seconds))
        return delivery

    async def after_answer(
        self,
        question: Question,
        answer: str | None,
        *,
        channel: discord.abc.Messageable,
        author: discord.abc.User,
        reply_to: discord.Message | None = None,
    ) -> None:
        """Follow a text answer with the same answer as a voice message, where VOICE_REPLIES asks for one.

        Never raises: the text answer is there already. A spoken reply that fails (a budget, the speech endpoint,
        Discord) says why in a short note under it, replying to `reply_to` when given.
        """
        if not answer:
            return
        try:
            if await self._wanted(question, answer, author):
                await self._speak_answer(question, answer, channel, author, reply_to)
        except Exception as error:
            await _note_failure(channel, reply_to, error)

    async def _wanted(self, question: Question, answer: str, author: discord.abc.User) -> bool:
        """Whether this answer gets a voice message: the mode here, the speech switch and roles, words to say.

        A member without a speech role, or a channel with speech off, gets none and no note each time.
        """
        gate = self._gate
        where = (question.guild_id, question.channel_id)
        mode = await gate.voice_replies_here(*where, parent_id=question.parent_id)
        if not wants_voice_reply(mode, spoken=question.spoken):
            return False
        if not await gate.enabled_here("speech", *where, parent_id=question.parent_id, user_id=author.id):
            return False
        if not gate.roles_allow("speech", role_ids_of(author)):
            return False
        return bool(speakable_text(answer))

    async def _speak_answer(
        self,
        question: Question,
        answer: str,
        channel: discord.abc.Messageable,
        author: discord.abc.User,
        reply_to: discord.Message | None,
    ) -> None:
        can_voice, can_attach = posting_permissions(channel)
        if not (can_voice or can_attach):
            raise UserError(NO_WAY_TO_POST)  # said before anything is paid for
        asker = Asker(
            question.author_id, tuple(role_ids_of(author)), question.guild_id, question.channel_id, question.parent_id
        )
        async with await self.admit(answer, asker, counts_as_request=False) as admission:
            spoken = await self.synthesize(answer, admission, asker)
        await self.deliver(channel, spoken, can_send_voice=can_voice, reference=reply_to)

    def _encoder(self, owner: int, characters: float) -> RunBlocking:
        """Run the encoding in the job runner, in the member's turn; never refused, the speech is paid for."""
        cost = characters / SPEAKING_CHARS_PER_SECOND * CONVERT_CPU_PER_SECOND

        async def run(work: Callable[[], VoiceRecording]) -> VoiceRecording:
            return await self._jobs.run(work, owner=owner, cost=cost, label="speech", paid_for=True)

        return run


async def _note_failure(channel: discord.abc.Messageable, reply_to: discord.Message | None, error: Exception) -> None:
    """Say in one short line under the text answer why it was not spoken."""
    words = describe_error(error)
    if words is None:
        log.error("Speaking an answer in channel %s failed", getattr(channel, "id", None), exc_info=error)
        words = GENERIC_FAILURE
    else:
        log.info("An answer was not spoken: %s", error)
    note = FAILED_NOTE.format(" ".join(words.split()))  # a subtext line ends at the first line break
    try:
        if reply_to is not None:
            await channel.send(note, reference=reply_to.to_reference(fail_if_not_exists=False), mention_author=False)
        else:
            await channel.send(note)
    except discord.HTTPException:
        log.warning("Could not say why an answer was not spoken", exc_info=True)
