"""Counting tokens for the context window: tiktoken where its vocabulary loads, an estimate elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# o200k_base serves the gpt-4o, gpt-4.1, gpt-5 and o-series families. encode_ordinary: text that looks
# like a special token ("<|endoftext|>") is counted as text instead of raising.
ENCODING_NAME = "o200k_base"
# Chat formatting costs a few tokens per message beyond its text (role, separators).
TOKENS_PER_MESSAGE = 4
# tiktoken downloads its vocabulary without a timeout: behind a firewall that drops packets that takes minutes.
# The bot never waits for it; past this it says the counts stay estimates until the vocabulary arrives.
VOCABULARY_TIMEOUT_SECONDS = 30.0


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
            log.info("Token counts come from tiktoken's %s", ENCODING_NAME)
        except Exception as exc:  # any failure (no network, no package) means the estimate is used
            log.warning(
                "Token counts are estimated: tiktoken could not load %s (%s)", ENCODING_NAME, type(exc).__name__
            )

    async def load_in_background(self, wait_seconds: float = VOCABULARY_TIMEOUT_SECONDS) -> None:
        """Load the vocabulary in a daemon thread (exit never waits for it) and wait up to `wait_seconds` for it;
        counts are estimates until it is there, however long that takes."""
        loop = asyncio.get_running_loop()
        loaded: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not loaded.done():
                loaded.set_result(None)

        def load() -> None:
            self.load_vocabulary()
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting any more
                loop.call_soon_threadsafe(finished)

        threading.Thread(target=load, name="tiktoken-vocabulary", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(loaded), wait_seconds)
        except TimeoutError:
            log.warning(
                "tiktoken's vocabulary did not load within %.0f s; token counts are estimated until it does",
                wait_seconds,
            )

    def count(self, text: str) -> int:
        """Tokens in `text` as one chat message, including the per-message overhead."""
        if self._encode is None:
            return estimate_tokens(text) + TOKENS_PER_MESSAGE
        return len(self._encode(text)) + TOKENS_PER_MESSAGE
