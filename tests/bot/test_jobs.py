"""The job runner: bounded threads, per-member limits, fair order, a bounded queue, stopping and cancelling."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.jobs import JobRunner, JobsStopped, QueueFull, TooManyJobs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def runners() -> AsyncIterator[Callable[..., JobRunner]]:
    """Started runners made with the given settings, stopped after the test."""
    made: list[JobRunner] = []

    def make(**options: object) -> JobRunner:
        runner = JobRunner(**options)  # type: ignore[arg-type]
        runner.start()
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.stop()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most 5 s) for something a worker thread does."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - set in a worker thread, where no asyncio.Event can be set
            await asyncio.sleep(0.005)


class Blocker:
    """A job that runs until released, so a test decides when a worker is free again."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self, value: str = "done") -> str:
        self.started.set()
        self.release.wait(10)
        self.finished.set()
        return value


async def test_a_job_returns_its_result_and_raises_its_error(runners: Callable[..., JobRunner]) -> None:
    runner = runners()
    assert await runner.run(sum, [1, 2, 3], owner=1, cost=0.1, label="sum") == 6
    with pytest.raises(ValueError, match="invalid literal"):
        await runner.run(int, "seven", owner=1, cost=0.1, label="parse")


async def test_never_more_jobs_run_at_once_than_there_are_workers(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=2, per_owner=10)
    lock = threading.Lock()
    running, most = 0, 0

    def job(number: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.03)
        with lock:
            running -= 1
        return number

    jobs = [runner.run(job, number, owner=number % 3, cost=0.1, label="job") for number in range(8)]
    assert await asyncio.gather(*jobs) == list(range(8))
    assert most == 2


async def test_a_member_past_the_limit_is_refused_in_plain_words(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1)
    blocker = Blocker()
    first = asyncio.ensure_future(runner.run(blocker, owner=7, cost=1, label="one"))
    second = asyncio.ensure_future(runner.run(str, "queued", owner=7, cost=1, label="two"))
    await until(blocker.started.is_set)
    with pytest.raises(TooManyJobs) as refused:
        await runner.run(str, "third", owner=7, cost=1, label="three")
    assert str(refused.value) == "⏳ You already have 2 files being processed; wait for them to finish."
    others = asyncio.ensure_future(runner.run(str, "someone else", owner=8, cost=1, label="other"))
    blocker.release.set()
    assert await asyncio.gather(first, second, others) == ["done", "queued", "someone else"]
    assert await runner.run(str, "again", owner=7, cost=1, label="later") == "again"  # the slots came back


async def test_a_members_many_jobs_do_not_push_another_members_job_back(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1, per_owner=10)
    order: list[str] = []
    blocker = Blocker()

    def job(name: str) -> None:
        order.append(name)

    hers = [asyncio.ensure_future(runner.run(blocker, "a1", owner=1, cost=1, label="a1"))]
    await until(blocker.started.is_set)
    hers += [asyncio.ensure_future(runner.run(job, f"a{n}", owner=1, cost=1, label="a")) for n in range(2, 6)]
    await asyncio.sleep(0)
    his = asyncio.ensure_future(runner.run(job, "b1", owner=2, cost=1, label="b1"))
    await asyncio.sleep(0.02)
    blocker.release.set()
    await asyncio.gather(*hers, his)
    # B's one job waited for the one of A's already running, not for A's four others.
    assert order == ["b1", "a2", "a3", "a4", "a5"]


async def test_the_queue_refuses_work_past_its_estimated_seconds(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1, max_queued_seconds=10)
    blocker = Blocker()
    running = asyncio.ensure_future(runner.run(blocker, owner=1, cost=9, label="running"))
    await until(blocker.started.is_set)  # a running job no longer counts as queued
    queued = asyncio.ensure_future(runner.run(str, "queued", owner=2, cost=6, label="queued"))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as refused:
        await runner.run(str, "late", owner=3, cost=6, label="late")
    assert str(refused.value) == "⏳ I'm busy with other people's files right now. Please try again in a minute."
    with pytest.raises(QueueFull, match="would take me too long to process"):
        await runner.run(str, "huge", owner=3, cost=11, label="huge")
    blocker.release.set()
    assert await asyncio.gather(running, queued) == ["done", "queued"]


async def test_work_finishing_a_paid_request_is_never_refused(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1, per_owner=1, max_queued_seconds=1)
    blocker = Blocker()
    running = asyncio.ensure_future(runner.run(blocker, owner=1, cost=1, label="running"))
    await until(blocker.started.is_set)
    paid = asyncio.ensure_future(runner.run(str, "fitted", owner=1, cost=5, label="fit", paid_for=True))
    await asyncio.sleep(0.02)
    blocker.release.set()
    assert await asyncio.gather(running, paid) == ["done", "fitted"]


async def test_stop_fails_waiting_callers_at_once_and_running_jobs_see_it(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1)
    saw_stop = threading.Event()

    def long_job() -> None:
        if runner.stopping.wait(10):
            saw_stop.set()

    running = asyncio.ensure_future(runner.run(long_job, owner=1, cost=1, label="long"))
    queued = asyncio.ensure_future(runner.run(str, "never", owner=2, cost=1, label="queued"))
    await until(lambda: runner.queued_cost == 1)
    started = time.monotonic()
    runner.stop()
    for caller in (running, queued):
        with pytest.raises(JobsStopped, match="I'm restarting"):
            await caller
    assert time.monotonic() - started < 0.5
    await until(saw_stop.is_set)
    with pytest.raises(JobsStopped):
        await runner.run(str, "after", owner=3, cost=1, label="after")


async def test_a_caller_that_gives_up_drops_its_queued_job(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1, per_owner=1)
    blocker = Blocker()
    ran = threading.Event()
    running = asyncio.ensure_future(runner.run(blocker, owner=1, cost=1, label="running"))
    await until(blocker.started.is_set)
    queued = asyncio.ensure_future(runner.run(ran.set, owner=2, cost=1, label="abandoned"))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert runner.queued_cost == 0
    following = asyncio.ensure_future(runner.run(str, "next", owner=2, cost=1, label="next"))  # its slot is free
    blocker.release.set()
    assert await asyncio.gather(running, following) == ["done", "next"]
    assert not ran.is_set()


async def test_a_running_job_whose_caller_gave_up_finishes_unobserved(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1, per_owner=1)
    blocker = Blocker()
    caller = asyncio.ensure_future(runner.run(blocker, owner=1, cost=1, label="running"))
    await until(blocker.started.is_set)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(TooManyJobs):  # it still runs, so it still counts
        await runner.run(str, "second", owner=1, cost=1, label="second")
    blocker.release.set()
    await until(blocker.finished.is_set)
    while True:  # the slot comes back once the worker has let go of the job, a moment after it returned
        try:
            assert await runner.run(str, "second", owner=1, cost=1, label="second") == "second"
            break
        except TooManyJobs:
            await asyncio.sleep(0.005)


class Payload:
    """Stands for a job's bytes: unlike bytes it can be watched with a weak reference."""


async def test_a_finished_jobs_input_is_let_go(runners: Callable[..., JobRunner]) -> None:
    runner = runners(workers=1)
    payload = Payload()
    watched = weakref.ref(payload)
    assert await runner.run(id, payload, owner=1, cost=1, label="job") == id(payload)
    del payload
    gc.collect()
    assert watched() is None  # the idle worker and the runner hold nothing of it


SLEEPER = textwrap.dedent(
    """
    import asyncio, signal, time
    from bot.jobs import JobRunner, JobsStopped

    async def main() -> None:
        runner = JobRunner(workers=1)
        runner.start()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.stop)
        job = asyncio.ensure_future(runner.run(time.sleep, 60, owner=1, cost=60, label="sleep"))
        await asyncio.sleep(0.2)
        print("sleeping", flush=True)
        try:
            await job
        except JobsStopped:
            print("stopped", flush=True)

    asyncio.run(main())
    """
)


def test_the_process_exits_while_a_job_is_still_running() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SLEEPER],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "sleeping\n"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 2
        assert process.stdout.read() == "stopped\n"
    finally:
        process.kill()
        process.wait()
