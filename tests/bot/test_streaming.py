"""The per-channel edit throttle that keeps streamed answers under Discord's rate limit."""

from bot.streaming import RATE_WINDOW_SECONDS, EditThrottle


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
