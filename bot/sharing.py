"""What a Discord message shares with the conversation: its attachments, read, and the message it replies to.

Discord-facing (it downloads attachments and fetches referenced messages); the reading itself is
bot/attachments', run in the job runner. What it gives the engine is Discord-free: a Shared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import discord

from bot.attachments import (
    AttachmentLimits,
    Kind,
    PlannedFile,
    ReadAttachments,
    SharedFile,
    classify,
    plan_attachments,
    read_attachments,
)
from bot.config import Settings
from bot.conversation import Replied, Shared
from bot.jobs import JobRunner
from bot.models import model_matches
from bot.store import Picture

log = logging.getLogger(__name__)

KB = 1_000
# Reading a turn's files (decoding pictures, a PDF's pages) must not keep the conversation waiting long.
READ_SECONDS = 20.0
# Estimated CPU seconds, for the job runner's queue: a picture is decoded and re-encoded, a text only decoded.
PICTURE_CPU_SECONDS = 0.5
TEXT_CPU_SECONDS = 0.05
# A message replied to is quoted at most this long (it is context, not the question).
MAX_QUOTE_CHARS = 2_000


class Sharing:
    """Turns a message's attachments and reply into what the engine puts in a turn."""

    def __init__(self, settings: Settings, jobs: JobRunner) -> None:
        self._settings = settings
        self._jobs = jobs
        self.limits = AttachmentLimits(
            max_pictures=settings.max_pictures_per_turn,
            max_file_chars=settings.max_file_kb * KB,
            max_turn_chars=settings.max_turn_files_kb * KB,
            max_download_bytes=settings.max_download_bytes,
        )

    def sees_pictures(self, model: str) -> bool:
        """Whether the model takes pictures (VISION_MODELS)."""
        return model_matches(model, self._settings.vision_models)

    async def gather(self, attachments: Sequence[discord.Attachment], *, model: str, owner: int) -> Shared:
        """Read what the attachments give the model (pictures, texts), and notes on what they do not."""
        files = [a for a in attachments if not a.is_voice_message()]
        if not files:
            return Shared()
        shared = [SharedFile(a.filename, a.content_type, a.size) for a in files]
        plan = plan_attachments(shared, self.limits, vision=self.sees_pictures(model))
        downloads: list[tuple[PlannedFile, bytes]] = []
        notes = list(plan.notes)
        for planned in plan.read:
            try:
                downloads.append((planned, await files[planned.index].read()))
            except discord.HTTPException:
                notes.append(f"I couldn't download `{planned.filename}` from Discord.")
        read = await self._read(downloads, owner, notes)
        return Shared(pictures=self._pictures(read), texts=read.texts, notes=(*notes, *read.notes))

    async def replied(self, message: discord.Message, *, model: str, owner: int) -> Replied | None:
        """The message this one replies to, with its pictures; None when there is none or it cannot be read."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        target = reference.resolved
        if target is None:
            try:
                target = await message.channel.fetch_message(reference.message_id)
            except discord.HTTPException:
                return None  # deleted, or the bot may not read it: the turn is answered without it
        if not isinstance(target, discord.Message):
            return None  # a DeletedReferencedMessage
        pictures = [a for a in target.attachments if _is_picture(a)]
        shared = await self.gather(pictures, model=model, owner=owner) if pictures else Shared()
        return Replied(
            message_id=target.id,
            author_name=target.author.display_name,
            by_bot=target.author.bot,
            text=target.content[:MAX_QUOTE_CHARS],
            pictures=shared.pictures,
        )

    async def _read(self, downloads: list[tuple[PlannedFile, bytes]], owner: int, notes: list[str]) -> ReadAttachments:
        if not downloads:
            return ReadAttachments()
        cost = sum(PICTURE_CPU_SECONDS if p.kind is Kind.PICTURE else TEXT_CPU_SECONDS for p, _ in downloads)
        deadline = time.monotonic() + READ_SECONDS
        try:
            return await self._jobs.run(
                self._read_within, downloads, deadline, owner=owner, cost=cost, label="attachments"
            )
        except Exception as error:  # the queue is full, or the bot is stopping: the text is still answered
            log.info("Could not read the attachments of user %s: %s", owner, error)
            notes.append(f"I couldn't read the attached files: {error}")
            return ReadAttachments()

    def _read_within(self, downloads: list[tuple[PlannedFile, bytes]], deadline: float) -> ReadAttachments:
        """read_attachments, stopping at the deadline or when the bot stops (blocking: in a worker)."""
        return read_attachments(downloads, self.limits, deadline=deadline, stopping=self._jobs.stopping.is_set)

    def _pictures(self, read: ReadAttachments) -> tuple[Picture, ...]:
        fixed = self._settings.picture_tokens
        return tuple(Picture(p.filename, p.mime_type, fixed or p.tokens, p.data) for p in read.pictures)


def _is_picture(attachment: discord.Attachment) -> bool:
    return classify(attachment.filename, attachment.content_type) is Kind.PICTURE
