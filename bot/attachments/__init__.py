"""What people share in a conversation, made ready for the model: pictures, text files, PDFs, and notes.

Everything works on bytes and strings, without Discord. The flow for one message:
`plan_attachments` (before downloading: what to read, what to name in a note), then the caller
downloads the planned files, then `read_attachments` (blocking: in a worker thread, with a deadline)
gives the pictures, the texts and the notes. The pieces are usable alone: `prepare_picture`,
`read_text_file`, `read_pdf`, `render_shared_text`, `describe_unreadable`.
"""

from bot.attachments.kinds import (
    AttachmentLimits,
    AttachmentPlan,
    Kind,
    PlannedFile,
    SharedFile,
    UnusableAttachment,
    classify,
    describe_unreadable,
    plan_attachments,
)
from bot.attachments.pdf import NoTextLayer, read_pdf
from bot.attachments.pictures import SeenPicture, UnusablePicture, fitted_size, picture_tokens, prepare_picture
from bot.attachments.reading import ReadAttachments, read_attachments
from bot.attachments.text import SharedText, cut_text, decode_text, read_text_file, render_shared_text

__all__ = [
    "AttachmentLimits",
    "AttachmentPlan",
    "Kind",
    "NoTextLayer",
    "PlannedFile",
    "ReadAttachments",
    "SeenPicture",
    "SharedFile",
    "SharedText",
    "UnusableAttachment",
    "UnusablePicture",
    "classify",
    "cut_text",
    "decode_text",
    "describe_unreadable",
    "fitted_size",
    "picture_tokens",
    "plan_attachments",
    "prepare_picture",
    "read_attachments",
    "read_pdf",
    "read_text_file",
    "render_shared_text",
]
