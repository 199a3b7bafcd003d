"""Reading a turn's downloaded attachments at once: pictures prepared, texts within the turn's allowance, notes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.attachments.kinds import (
    AttachmentLimits,
    Kind,
    PlannedFile,
    UnusableAttachment,
    describe_unreadable,
    out_of_time,
    quoted,
)
from bot.attachments.pdf import read_pdf
from bot.attachments.pictures import SeenPicture, prepare_picture
from bot.attachments.text import SharedText, read_text_file
from bot.chat_messages import ContentPart, TextPart


@dataclass(frozen=True)
class ReadAttachments:
    """What a turn's attachments give the model, and notes for the person about what they do not."""

    pictures: tuple[SeenPicture, ...] = ()
    texts: tuple[SharedText, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def picture_tokens(self) -> int:
        """What the pictures cost in the context window."""
        return sum(picture.tokens for picture in self.pictures)

    def parts(self, text: str) -> list[ContentPart]:
        """A user message's parts: its text and the files' texts in one text part, then the pictures."""
        body = "\n\n".join([text, *(shared.render() for shared in self.texts)]) if self.texts else text
        return [TextPart(body), *(picture.part() for picture in self.pictures)]


def read_attachments(
    downloads: Sequence[tuple[PlannedFile, bytes]],
    limits: AttachmentLimits,
    *,
    deadline: float | None = None,
    stopping: Callable[[], bool] | None = None,
) -> ReadAttachments:
    """Prepare the pictures and read the texts of downloaded attachments, in order; blocking (run it in a worker).

    Texts share the turn's allowance: each file gets at most `max_file_chars`, all together at most
    `max_turn_chars`. A deadline (time.monotonic()) or stop request ends the work between files and
    between PDF pages; what is left is named in a note.
    """
    pictures: list[SeenPicture] = []
    texts: list[SharedText] = []
    notes: list[str] = []
    room = limits.max_turn_chars
    for planned, data in downloads:
        if out_of_time(deadline, stopping):
            notes.append(f"I ran out of time before reading {quoted(planned.filename)}.")
            continue
        try:
            if planned.kind is Kind.PICTURE:
                picture = prepare_picture(data, planned.filename)
                pictures.append(picture)
                notes.extend(picture.notes)
                continue
            shared = _read_text(planned, data, min(limits.max_file_chars, room), limits, deadline, stopping)
        except UnusableAttachment as unusable:
            notes.append(unusable.note)
            continue
        room -= shared.kept_chars
        texts.append(shared)
        if (note := shared.note()) is not None:
            notes.append(note)
    return ReadAttachments(tuple(pictures), tuple(texts), tuple(notes))


def _read_text(
    planned: PlannedFile,
    data: bytes,
    allowance: int,
    limits: AttachmentLimits,
    deadline: float | None,
    stopping: Callable[[], bool] | None,
) -> SharedText:
    name = quoted(planned.filename)
    if allowance <= 0:
        raise UnusableAttachment(
            f"There was no room left for {name}: I read {limits.max_turn_chars:,} characters of files per message "
            "at most."
        )
    if planned.kind is Kind.PDF:
        return read_pdf(data, planned.filename, allowance, deadline=deadline, stopping=stopping)
    if planned.kind is Kind.TEXT:
        return read_text_file(data, planned.filename, allowance)
    raise UnusableAttachment(describe_unreadable(planned.filename))  # plan_attachments never plans these
