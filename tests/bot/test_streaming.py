"""The per-channel edit throttle that keeps streamed answers under Discord's rate limit."""

import asyncio
import gc

import pytest

from bot.render import split_message
from bot.streaming import RATE_WINDOW_SECONDS, TYPING_DELAY_SECONDS, EditThrottle, StreamingReply


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_quiet_channel_may_edit_at_once() -> None:
    assert EditThrottle(clock=Clock()).wait_time(1) == 0


def test_edits_are_at_least_an_interval_apart_per_channel() -> None:
    clock = Clock()
    throttle = EditThrottle(interval=1.0, clock=clock)
    throttle.note_edit(1)
    clock.now += 0.25
    assert throttle.wait_time(1) == 0.75
    assert throttle.wait_time(2) == 0  # other channels are not held up


def test_one_write_of_the_window_is_kept_for_the_final_edit() -> None:
    clock = Clock()
    throttle = EditThrottle(interval=1.0, clock=clock)
    for _ in range(4):
        throttle.note_edit(1)
        clock.now += 1.0
    # Four writes in the last 5 s: a fifth intermediate edit would leave no room for the final one.
    assert throttle.wait_time(1) == RATE_WINDOW_SECONDS - 4.0
    clock.now += 1.0
    assert throttle.wait_time(1) == 0


class Message:
    """A posted message that records its edits."""

    def __init__(self, message_id: int, content: str) -> None:
        self.id = message_id
        self.content = content
        self.edits: list[str] = []


class Surface:
    """A reply surface in memory: what is posted, edited and typed, in order."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.calls: list[str] = []

    async def send(self, text: str, *, first: bool) -> Message:
        self.calls.append("send (first)" if first else "send")
        self.sent.append(Message(len(self.sent) + 1, text))
        return self.sent[-1]

    async def edit(self, message: Message, text: str) -> Message:  # type: ignore[override]
        self.calls.append("edit")
        message.edits.append(text)
        message.content = text
        return message

    async def typing(self) -> None:
        self.calls.append("typing")


def closed_throttle() -> EditThrottle:
    """A throttle that allows no intermediate edit for a long while."""
    clock = Clock()
    throttle = EditThrottle(interval=1000.0, clock=clock)
    throttle.note_edit(1)
    return throttle


async def test_the_first_message_and_the_final_text_are_never_held_back_by_the_throttle() -> None:
    surface = Surface()
    reply = StreamingReply(surface, 1, closed_throttle())
    await reply.update("Hel")
    await reply.update("Hello, wor")  # throttled: shown later, if at all
    assert reply.message_ids == (1,)
    await reply.finish("Hello, world.")
    await reply.close()
    assert [m.content for m in surface.sent] == ["Hello, world."]
    assert surface.sent[0].edits == ["Hello, world."]
    assert surface.calls == ["send (first)", "edit"]


async def test_a_growing_answer_continues_in_a_new_message_before_2000_characters() -> None:
    surface = Surface()
    clock = Clock()
    reply = StreamingReply(surface, 1, EditThrottle(clock=clock))
    text = "\n".join(f"line {i}: " + "x" * 60 for i in range(60))
    for end in range(100, len(text), 500):
        clock.now += 10  # every update may be shown
        await reply.update(text[:end])
        assert all(len(m.content) <= 2000 for m in surface.sent)
    await reply.finish(text)
    assert [m.content for m in surface.sent] == split_message(text)
    assert len(surface.sent) == 3
    assert surface.calls.count("send (first)") == 1


async def test_what_is_about_to_be_shown_is_handed_over_first() -> None:
    surface = Surface()
    clock = Clock()
    seen_before_shown: list[tuple[str, int]] = []

    async def before_show(text: str) -> None:
        seen_before_shown.append((text, len(surface.calls)))

    reply = StreamingReply(surface, 1, EditThrottle(clock=clock), before_show=before_show)
    await reply.update("One")
    clock.now += 10
    await reply.update("One two")
    await reply.update("One two")  # unchanged: nothing to show, nothing handed over
    await reply.finish("One two three.")
    # Each intermediate text is handed over before the request that shows it; the final text is the
    # caller's to store before it calls finish().
    assert seen_before_shown == [("One", 0), ("One two", 1)]
    assert surface.calls == ["send (first)", "edit", "edit"]


async def test_a_quick_answer_costs_no_typing_request() -> None:
    surface = Surface()
    reply = StreamingReply(surface, 1, EditThrottle())
    reply.start_typing()
    await reply.update("Quick.")
    await reply.finish("Quick.")
    await asyncio.sleep(TYPING_DELAY_SECONDS + 0.1)
    assert surface.calls == ["send (first)"]


async def test_a_slow_answer_shows_the_typing_indicator_until_text_arrives() -> None:
    surface = Surface()
    reply = StreamingReply(surface, 1, EditThrottle())
    reply.start_typing()
    await asyncio.sleep(TYPING_DELAY_SECONDS + 0.1)
    await reply.finish("At last.")
    assert surface.calls == ["typing", "send (first)"]


class FailingEdits(Surface):
    """A surface whose edits fail, as Discord's do when a message was deleted meanwhile."""

    async def edit(self, message: Message, text: str) -> Message:  # type: ignore[override]
        self.calls.append("edit (failed)")
        raise RuntimeError("edit refused")


async def test_a_delayed_edit_that_fails_is_logged_and_its_exception_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unretrieved: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    surface = FailingEdits()
    reply = StreamingReply(surface, 1, EditThrottle(interval=0.05))
    await reply.update("One")
    await reply.update("One two")  # too soon after the first: shown by a delayed edit, which fails
    await asyncio.sleep(0.2)
    await reply.close()
    del reply
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert surface.calls == ["send (first)", "edit (failed)"]
    assert "An intermediate edit failed in channel 1" in caplog.text
    assert unretrieved == []
