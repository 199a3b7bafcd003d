"""Counting tokens for the context window: tiktoken where its vocabulary loads, an estimate elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# o200k_base serves the gpt-4o, gpt-4.1, gpt-5 and o-series families. encode_ordinary: text that looks
# like a special token ("<|endoftext|>") is counted as text instead of raising.
ENCODING_NAME = "o200k_base"
# Chat formatting costs a few tokens per message beyond its text (role, separators).
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    """A deliberately generous estimate (one token per 3 bytes of UTF-8) for when tiktoken cannot load."""
    return len(text.encode()) // 3 + 1


class TokenCounter:
    """Counts tokens of chat messages; starts on the estimate and switches to tiktoken once it loads."""

    def __init__(self) -> None:
        self._encode: Callable[[str], list[int]] | None = None

    @property
    def exact(self) -> bool:
        """Whether counts come from tiktoken rather than the estimate."""
        return self._encode is not None

    def load_vocabulary(self) -> None:
        """Try to load tiktoken's vocabulary (it downloads it on first use, so offline this fails); blocking."""
        try:
            import tiktoken

            self._encode = tiktoken.get_encoding(ENCODING_NAME).encode_ordinary
        except Exception as exc:  # any failure (no network, no package) means the estimate is used
            log.warning(
                "Token counts are estimated: tiktoken could not load %s (%s)", ENCODING_NAME, type(exc).__name__
            )

    def count(self, text: str) -> int:
        """Tokens in `text` as one chat message, including the per-message overhead."""
        if self._encode is None:
            return estimate_tokens(text) + TOKENS_PER_MESSAGE
        return len(self._encode(text)) + TOKENS_PER_MESSAGE
