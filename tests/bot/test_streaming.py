"""The per-channel edit throttle that keeps streamed answers under Discord's rate limit."""

from bot.render import split_message
from bot.streaming import RATE_WINDOW_SECONDS, EditThrottle, StreamingReply


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

    def __init__(self, content: str) -> None:
        self.content = content
        self.edits: list[str] = []

    async def edit(self, *, content: str) -> "Message":
        self.edits.append(content)
        self.content = content
        return self


class Channel:
    """A channel that keeps what is posted in it."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, content: str, **_: object) -> Message:
        self.sent.append(Message(content))
        return self.sent[-1]


def closed_throttle() -> EditThrottle:
    """A throttle that allows no intermediate edit for a long while."""
    clock = Clock()
    throttle = EditThrottle(interval=1000.0, clock=clock)
    throttle.note_edit(1)
    return throttle


async def test_the_first_message_and_the_final_text_are_never_held_back_by_the_throttle() -> None:
    channel = Channel()
    reply = StreamingReply(channel, 1, closed_throttle())  # type: ignore[arg-type]
    await reply.update("Hel")
    await reply.update("Hello, wor")  # throttled: shown later, if at all
    await reply.finish("Hello, world.")
    assert [m.content for m in channel.sent] == ["Hello, world."]
    assert channel.sent[0].edits == ["Hello, world."]


async def test_a_growing_answer_continues_in_a_new_message_before_2000_characters() -> None:
    channel = Channel()
    clock = Clock()
    reply = StreamingReply(channel, 1, EditThrottle(clock=clock))  # type: ignore[arg-type]
    text = "\n".join(f"line {i}: " + "x" * 60 for i in range(60))
    for end in range(100, len(text), 500):
        clock.now += 10  # every update may be shown
        await reply.update(text[:end])
        assert all(len(m.content) <= 2000 for m in channel.sent)
    await reply.finish(text)
    assert [m.content for m in channel.sent] == split_message(text)
    assert len(channel.sent) == 3
