"""Keeping a model's reasoning out of its answer: `<think>` sections as some servers stream them.

OpenAI's reasoning models never send their reasoning as text, but OpenAI-compatible servers running
open models (DeepSeek-R1, Qwen3, ...) often stream it inside the answer as `<think>...</think>`, or
in a separate `reasoning_content`/`reasoning` field (which the API client simply ignores). A stream
may split a tag anywhere ("<thi" + "nk>"), so the filter holds back what could still become a tag.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
BLANKS = " \t"


class ThinkFilter:
    """Removes `<think>...</think>` sections from streamed text: feed it deltas, get the visible part back.

    A section counts where its `<think>` starts the answer or a line (after spaces at most): that is
    where models put their reasoning, while an answer that mentions the tag ("use `<think>` to ...")
    mentions it mid-line and comes through. A section still open at the end is dropped. Whitespace
    between a section and the start of the visible answer is dropped too; text without a section
    comes through exactly as it was sent.
    """

    def __init__(self) -> None:
        self.saw_reasoning = False
        self._inside = False
        self._pending = ""  # held back: a possible start of a tag (outside) or of the closing tag (inside)
        self._line_start = True  # whether only blanks separate the position from the last newline or the start
        self._shown = False  # whether any visible non-whitespace has been returned
        self._leading = ""  # whitespace before the first visible character, returned once it is known to stay

    def feed(self, delta: str) -> str:
        """The visible text that `delta` completes (possibly empty while a tag may be forming)."""
        text, self._pending = self._pending + delta, ""
        visible: list[str] = []
        while text:
            if self._inside:
                text = self._skip_reasoning(text)
                continue
            start = self._next_tag(text)
            if start < 0:
                visible.append(self._show(text))
                break
            visible.append(self._show(text[:start]))
            rest = text[start:]
            if rest.startswith(OPEN_TAG):
                self._inside = self.saw_reasoning = True
                text = rest[len(OPEN_TAG) :]
            elif OPEN_TAG.startswith(rest):
                self._pending = rest  # "<thi": the next delta tells whether it is a tag
                break
            else:
                visible.append(self._show("<"))
                text = rest[1:]
        return "".join(visible)

    def finish(self) -> str:
        """The visible text still held back when the stream ends (an unfinished section is dropped)."""
        held, self._pending = self._pending, ""
        if self._inside:
            return ""
        tail = self._show(held)
        if not self._shown and not self.saw_reasoning:
            tail, self._leading = self._leading + tail, ""  # a whitespace-only answer stays as it was
        return tail

    def _skip_reasoning(self, text: str) -> str:
        """Drop reasoning up to and including the closing tag; return what follows it."""
        end = text.find(CLOSE_TAG)
        if end < 0:
            self._pending = _partial_tag_at_end(text, CLOSE_TAG)
            return ""
        self._inside = False
        self._line_start = True  # the section stood on its own line, so what follows starts one
        return text[end + len(CLOSE_TAG) :]

    def _next_tag(self, text: str) -> int:
        """Where a `<` that could open a section starts in `text` (at a line start), or -1."""
        position = text.find("<")
        while position >= 0:
            newline = text.rfind("\n", 0, position)
            before = text[newline + 1 : position]
            if not before.strip(BLANKS) and (newline >= 0 or self._line_start):
                return position
            position = text.find("<", position + 1)
        return -1

    def _show(self, text: str) -> str:
        """Account for visible `text` and return what of it to pass on now."""
        if not text:
            return ""
        newline = text.rfind("\n")
        tail_blank = not text[newline + 1 :].strip(BLANKS)
        self._line_start = tail_blank and (newline >= 0 or self._line_start)
        if self._shown:
            return text
        combined = self._leading + text
        stripped = combined.lstrip()
        if not stripped:
            self._leading = combined
            return ""
        self._shown, self._leading = True, ""
        return stripped if self.saw_reasoning else combined


def _partial_tag_at_end(text: str, tag: str) -> str:
    """The longest end of `text` that is a beginning of `tag` ("</thi" of "...</thi"), else ""."""
    for length in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-length:]):
            return text[-length:]
    return ""
