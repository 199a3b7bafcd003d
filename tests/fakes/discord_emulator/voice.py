"""Discord's rules for voice messages a bot sends (JSON error codes 50159-50162 and 50173).

A voice message carries flag IS_VOICE_MESSAGE (1 << 13), no other content (50159), exactly one audio
attachment (50160) whose `attachments[]` entry has `duration_secs` and `waveform` (50161), needs Send
Voice Messages but not Attach Files (50173), and can never be edited (50162). The waveform is base64 of
at most 256 one-byte samples; one that is not base64 or is longer is answered as Discord's clients have
seen it answered: 400 Invalid Form Body, attachments.N: ATTACHMENT_METADATA_INVALID (community-reported;
Discord documents no code for it).
"""

from __future__ import annotations

import mimetypes

from .errors import DiscordHTTPError, field_error, invalid_form
from .models import EmuFile, Json, decode_waveform

MAX_WAVEFORM_SAMPLES = 256
EXTRA_CONTENT_KEYS = ("content", "embeds", "components", "sticker_ids", "poll")

# The messages are Discord's own (docs: Opcodes and Status Codes, JSON Error Codes).
VOICE_EXTRA_CONTENT = DiscordHTTPError(400, 50159, "Voice messages do not support additional content.", violation=True)
VOICE_SINGLE_AUDIO = DiscordHTTPError(400, 50160, "Voice messages must have a single audio attachment.", violation=True)
VOICE_METADATA = DiscordHTTPError(400, 50161, "Voice messages must have supporting metadata.", violation=True)
VOICE_EDIT = DiscordHTTPError(400, 50162, "Voice messages cannot be edited.", violation=True)
# A permission the server's admins may withhold: the bot must cope, so this is not a violation.
VOICE_FORBIDDEN = DiscordHTTPError(403, 50173, "You cannot send voice messages in this channel.")


def check_voice_message(body: Json, files: dict[int, EmuFile]) -> None:
    """Raise Discord's error for a voice message it would refuse (the permission is checked apart)."""
    if any(body.get(key) for key in EXTRA_CONTENT_KEYS):
        raise VOICE_EXTRA_CONTENT
    items: list[Json] = body.get("attachments") or []
    if len(files) != 1 or len(items) > 1:
        raise VOICE_SINGLE_AUDIO
    ((index, file),) = files.items()
    if not _is_audio(file):
        raise VOICE_SINGLE_AUDIO
    item = next((entry for entry in items if str(entry.get("id")) == str(index)), {})
    if item.get("duration_secs") is None or not item.get("waveform"):
        raise VOICE_METADATA
    samples = decode_waveform(item["waveform"])
    if samples is None or len(samples) > MAX_WAVEFORM_SAMPLES:
        error = field_error("ATTACHMENT_METADATA_INVALID", "Attachment metadata is invalid")
        raise invalid_form({"attachments": {"0": error}})


def _is_audio(file: EmuFile) -> bool:
    # discord.py uploads every file as application/octet-stream; Discord then goes by the file name.
    content_type = file.content_type or mimetypes.guess_type(file.filename)[0] or ""
    return content_type.startswith("audio/")
