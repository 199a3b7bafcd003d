"""Native Discord voice messages, which discord.py 2.7 can read but not send, and the file to post instead.

A voice message is a message with the voice flag (1 << 13), no content and exactly one Ogg/Opus attachment whose
entry carries `duration_secs` and `waveform` (FACTS.md). discord.py's `File.to_dict()` emits neither field and
`send()` takes no flags, so the message is built here and posted through discord.py's own HTTP client, which
still handles rate limits and retries.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import discord
from discord.http import handle_message_parameters
from discord.utils import MISSING

from bot.voice_recording import VoiceRecording

log = logging.getLogger(__name__)

VOICE_MESSAGE_FILENAME = "voice-message.ogg"
OGG_CONTENT_TYPE = "audio/ogg"
# Discord's refusals of a voice message: 50173 without Send Voice Messages, 50013 any missing permission...
PERMISSION_REFUSALS = frozenset({50173, 50013})
# ...and 50159 (it had content), 50160 (not exactly one audio file), 50161 (no duration or waveform).
FORMAT_REFUSALS = frozenset({50159, 50160, 50161})
NO_PERMISSION_NOTE = (
    "-# I can't send voice messages here (the Send Voice Messages permission is off), "
    "so here is the recording as a file."
)
REFUSED_NOTE = "-# Discord refused the voice message, so here is the recording as a file."
# A spoken answer pings nobody, not even the author of the message it replies to.
NO_PINGS = discord.AllowedMentions.none()

SpeakingChannel = (
    discord.TextChannel
    | discord.Thread
    | discord.VoiceChannel
    | discord.StageChannel
    | discord.DMChannel
    | discord.GroupChannel
    | discord.PartialMessageable
)


class VoiceMessageFile(discord.File):
    """A recording as the single attachment of a voice message: its entry carries duration and waveform."""

    __slots__ = ("duration_secs", "waveform")

    def __init__(self, recording: VoiceRecording, filename: str = VOICE_MESSAGE_FILENAME) -> None:
        super().__init__(io.BytesIO(recording.data), filename)
        self.duration_secs = recording.duration_secs
        self.waveform = recording.waveform

    def to_dict(self, index: int) -> dict[str, Any]:
        """The attachment's entry in `attachments[]`, with the two fields Discord requires of a voice message."""
        return {**super().to_dict(index), "duration_secs": self.duration_secs, "waveform": self.waveform}


@dataclass(frozen=True)
class Delivery:
    """How a spoken answer reached the channel: as a voice message, or as a file with `note` explaining why."""

    message: discord.Message
    as_voice_message: bool
    note: str | None = None


def can_send_voice_messages(channel: SpeakingChannel) -> bool:
    """Whether the bot may send voice messages in the channel, from its permissions there (DMs: always).

    A PartialMessageable in a server knows no permissions and answers False; in an interaction,
    `interaction.app_permissions.send_voice_messages` is the better source.
    """
    if isinstance(channel, discord.DMChannel | discord.GroupChannel):
        return True
    if isinstance(channel, discord.PartialMessageable):
        return channel.guild_id is None
    return channel.permissions_for(channel.guild.me).send_voice_messages


async def send_voice_message(
    channel: discord.abc.Messageable, recording: VoiceRecording, *, reference: discord.Message | None = None
) -> discord.Message:
    """Post the recording as a native voice message (no content, one attachment); raises discord.HTTPException."""
    return await _post(channel, VoiceMessageFile(recording), None, discord.MessageFlags(voice=True), reference)


async def deliver_spoken_answer(
    channel: discord.abc.Messageable,
    recording: VoiceRecording,
    *,
    can_send_voice: bool,
    reference: discord.Message | None = None,
) -> Delivery:
    """Send the recording as a voice message when allowed, else (or when Discord refuses one) as an .ogg file."""
    if not can_send_voice:
        note = NO_PERMISSION_NOTE
    else:
        try:
            return Delivery(await send_voice_message(channel, recording, reference=reference), as_voice_message=True)
        except discord.HTTPException as error:
            if error.code in PERMISSION_REFUSALS:
                note = NO_PERMISSION_NOTE
            elif error.code in FORMAT_REFUSALS:
                log.warning("Discord refused a voice message (%s): %s", error.code, error.text)
                note = REFUSED_NOTE
            else:
                raise
    file = discord.File(io.BytesIO(recording.data), VOICE_MESSAGE_FILENAME)
    message = await _post(channel, file, note, None, reference)
    return Delivery(message, as_voice_message=False, note=note)


async def _post(
    channel: discord.abc.Messageable,
    file: discord.File,
    content: str | None,
    flags: discord.MessageFlags | None,
    reference: discord.Message | None,
) -> discord.Message:
    """POST one Ogg file to the channel with discord.py's HTTP client, as `Messageable.send` would."""
    target = await channel._get_channel()  # opens the DM when `channel` is a user
    state = channel._state
    message_reference = MISSING
    if reference is not None:
        # The answer still arrives when the question was deleted in the meantime.
        message_reference = {**reference.to_message_reference_dict(), "fail_if_not_exists": False}
    with handle_message_parameters(
        content=content if content is not None else MISSING,
        file=file,
        flags=flags if flags is not None else MISSING,
        allowed_mentions=NO_PINGS,
        message_reference=message_reference,
    ) as params:
        for part in params.multipart or ():  # never None when there is a file
            if part["name"].startswith("files["):
                part["content_type"] = OGG_CONTENT_TYPE  # discord.py sends application/octet-stream
        data = await state.http.send_message(target.id, params=params)
    return state.create_message(channel=target, data=data)
