"""Counting tokens: tiktoken's vocabulary loads in the background, and counts are estimates until it does."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.tokens import TOKENS_PER_MESSAGE, TokenCounter, estimate_tokens


class SlowVocabulary:
    """Stands in for tiktoken.get_encoding: answers once `arrived` is set, with one token per word."""

    def __init__(self) -> None:
        self.arrived = threading.Event()

    def __call__(self, name: str) -> SlowVocabulary:
        self.arrived.wait()
        return self

    @staticmethod
    def encode_ordinary(text: str) -> list[int]:
        return list(range(len(text.split())))


async def test_the_wait_ends_in_time_and_counts_switch_when_the_vocabulary_arrives(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import tiktoken

    vocabulary = SlowVocabulary()
    monkeypatch.setattr(tiktoken, "get_encoding", vocabulary)
    counter = TokenCounter()
    started = time.monotonic()
    await counter.load_in_background(0.2)
    assert time.monotonic() - started < 1.0
    assert "did not load within" in caplog.text
    text = "three short words"
    assert not counter.exact and counter.count(text) == estimate_tokens(text) + TOKENS_PER_MESSAGE
    vocabulary.arrived.set()
    for _ in range(100):
        if counter.exact:
            break
        await asyncio.sleep(0.01)
    assert counter.count(text) == 3 + TOKENS_PER_MESSAGE
