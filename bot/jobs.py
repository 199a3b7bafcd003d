"""One bounded, fair, stoppable place for CPU-heavy work (decoding pictures, converting audio), off the event loop.

A fixed number of worker threads take jobs; each member may have only a few jobs queued or running, the
queue as a whole holds at most so many seconds of estimated work, and the next job is always taken from the
member whose work has run least recently, so one member's files cannot push everyone else's back.

The threads are daemon threads of the runner's own, not `asyncio.to_thread`: `asyncio.run` waits for the
default executor's threads at exit, so a shutdown would wait for a long conversion to end. A daemon thread
never holds up the process; `stop()` fails every waiting caller at once and sets `stopping`, which long jobs
check between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, TypeVarTuple, cast

from bot.errors import UserError
from bot.render import count

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Jobs a member may have queued or running at once: two files in progress is plenty for one person.
DEFAULT_PER_OWNER = 2
# Seconds of estimated work the queue may hold: a little over the dearest single job (three hours of audio),
# so a member who gets in waits at most about a minute and a half behind others on two cores.
DEFAULT_MAX_QUEUED_SECONDS = 180.0


def default_workers() -> int:
    """Worker threads when the owner sets none: two, or one on a single-core host."""
    return max(1, min(2, os.cpu_count() or 1))


class JobsStopped(UserError):
    """The bot is shutting down: work not yet finished is dropped."""

    def __init__(self) -> None:
        super().__init__("🔌 I'm restarting, so I stopped working on that. Please try again in a minute.")


class TooManyJobs(UserError):
    """The member already has as many jobs queued or running as one member may."""

    def __init__(self, limit: int) -> None:
        them = "it" if limit == 1 else "them"
        super().__init__(f"⏳ You already have {count(limit, 'file')} being processed; wait for {them} to finish.")


class QueueFull(UserError):
    """The queue holds as much work as it may, or the job alone is more than it may hold."""

    def __init__(self, wait_seconds: float | None) -> None:
        if wait_seconds is None:
            super().__init__("⏳ That file would take me too long to process. Send a shorter or smaller one.")
        else:
            minutes = max(1, math.ceil(wait_seconds / 60))
            when = "in a minute" if minutes == 1 else f"in {count(minutes, 'minute')}"
            super().__init__(f"⏳ I'm busy with other people's files right now. Please try again {when}.")


@dataclass(eq=False)
class _Job:
    """One submitted call and where its outcome goes; `work` (the call with its bytes) is let go once taken."""

    owner: int
    cost: float
    label: str
    work: Callable[[], object] | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[object] = field(repr=False)
    started: bool = False


class JobRunner:
    """Runs blocking functions in a few daemon worker threads, fairly between members, until stopped."""

    def __init__(
        self,
        *,
        workers: int | None = None,
        per_owner: int = DEFAULT_PER_OWNER,
        max_queued_seconds: float = DEFAULT_MAX_QUEUED_SECONDS,
    ) -> None:
        self.workers = workers if workers is not None else default_workers()
        if self.workers < 1 or per_owner < 1:
            raise ValueError("a job runner needs at least one worker and one job per member")
        self.per_owner = per_owner
        self.max_queued_seconds = max_queued_seconds
        # Set by stop(); jobs that run long check it between steps (see bot.audio).
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        # Everything below is guarded by the lock: workers and the event loop both touch it.
        self._waiting: dict[int, deque[_Job]] = {}  # by owner, in the order members first queued
        self._active: dict[int, int] = {}  # jobs queued or running, by owner
        self._running: dict[int, int] = {}
        self._last_start: dict[int, int] = {}  # when each active owner's latest job started
        self._started: set[_Job] = set()
        self._queued_cost = 0.0
        self._starts = itertools.count()
        self._threads: list[threading.Thread] = []

    @property
    def queued_cost(self) -> float:
        """Seconds of estimated work waiting for a worker."""
        with self._lock:
            return self._queued_cost

    def start(self) -> None:
        """Start the worker threads."""
        if self._threads:
            return
        for number in range(1, self.workers + 1):
            thread = threading.Thread(target=self._work, name=f"jobs-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("Job runner started with %d workers", self.workers)

    def stop(self) -> None:
        """Fail every job not yet finished with JobsStopped, tell running ones to stop, let the workers go.

        Never waits for a running job: its result, if it ever comes, is dropped.
        """
        with self._ready:
            # Set under the lock: a job that sees it and returns cannot settle before its caller hears of the stop.
            self.stopping.set()
            dropped = [job for jobs in self._waiting.values() for job in jobs]
            for job in dropped:
                job.work = None
            dropped += self._started
            for job in dropped:
                _settle(job, None, JobsStopped())
            self._waiting.clear()
            self._queued_cost = 0.0
            self._ready.notify_all()
        if dropped:
            log.info("Job runner stopped; dropped %d unfinished jobs", len(dropped))

    def join(self, timeout: float) -> bool:
        """After stop(): wait up to `timeout` seconds (blocking) for the workers to end; whether they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    async def run(
        self,
        fn: Callable[[*Ts], T],
        *args: *Ts,
        owner: int,
        cost: float,
        label: str,
        paid_for: bool = False,
    ) -> T:
        """Run `fn(*args)` in a worker thread once it is `owner`'s turn and return its result (or raise its error).

        `cost` is the estimated seconds of work. Raises TooManyJobs or QueueFull (both UserError) instead of
        queueing past the limits, unless `paid_for`: work that finishes a request the API was already paid for
        waits its turn but is never refused, which would waste what was paid. Raises JobsStopped once the runner
        is stopping. Cancelling the caller drops the job if it has not started; a started one finishes unobserved.
        """
        loop = asyncio.get_running_loop()
        job = _Job(owner, cost, label, functools.partial(fn, *args), loop, loop.create_future())
        with self._ready:
            self._admit(job, paid_for=paid_for)
            self._waiting.setdefault(owner, deque()).append(job)
            self._active[owner] = self._active.get(owner, 0) + 1
            self._queued_cost += cost
            self._ready.notify()
        try:
            return cast(T, await job.future)
        except asyncio.CancelledError:
            self._withdraw(job)
            raise

    def _admit(self, job: _Job, *, paid_for: bool) -> None:
        """Refuse a job the limits do not let in; called with the lock held."""
        if self.stopping.is_set():
            raise JobsStopped()
        if not self._threads:
            raise RuntimeError("the job runner was never started")
        if paid_for:
            return
        if self._active.get(job.owner, 0) >= self.per_owner:
            raise TooManyJobs(self.per_owner)
        if job.cost > self.max_queued_seconds:
            raise QueueFull(None)
        if self._queued_cost + job.cost > self.max_queued_seconds:
            raise QueueFull(self._queued_cost / self.workers)

    def _withdraw(self, job: _Job) -> None:
        """The caller gave up: drop the job unless a worker has it already."""
        with self._lock:
            if job.started:
                return
            waiting = self._waiting.get(job.owner)
            if waiting is None or job not in waiting:
                return  # stop() dropped it already
            waiting.remove(job)
            if not waiting:
                del self._waiting[job.owner]
            self._queued_cost -= job.cost
            self._release(job.owner)
            job.work = None

    def _release(self, owner: int) -> None:
        """One of `owner`'s jobs is gone; called with the lock held."""
        left = self._active.get(owner, 0) - 1
        if left > 0:
            self._active[owner] = left
        else:
            self._active.pop(owner, None)
            self._last_start.pop(owner, None)  # back to "never started", so an idle member comes first again

    def _work(self) -> None:
        """A worker thread: take the next job, run it, hand back what came of it; until stopping."""
        while (job := self._next_job()) is not None:
            self._execute(job)
        log.debug("Job worker %s done", threading.current_thread().name)

    def _next_job(self) -> _Job | None:
        """The job to run next, waiting for one; None once the runner is stopping."""
        with self._ready:
            while not self._waiting and not self.stopping.is_set():
                self._ready.wait()
            if self.stopping.is_set():
                return None
            # The member with the fewest jobs running, and of those the one whose last job started longest ago.
            owner = min(self._waiting, key=lambda key: (self._running.get(key, 0), self._last_start.get(key, -1)))
            waiting = self._waiting[owner]
            job = waiting.popleft()
            if not waiting:
                del self._waiting[owner]
            self._queued_cost -= job.cost
            self._running[owner] = self._running.get(owner, 0) + 1
            self._last_start[owner] = next(self._starts)
            self._started.add(job)
            job.started = True
            return job

    def _execute(self, job: _Job) -> None:
        """Run one job and settle its future; a method of its own so its bytes and result go when it returns."""
        # Only jobs still waiting lose their work (withdrawn or dropped), so a started one still has it.
        work, job.work = job.work, None
        assert work is not None
        result: object = None
        error: BaseException | None = None
        try:
            result = work()
        except Exception as failure:
            error = failure
        except BaseException as failure:  # e.g. SystemExit raised by a job: still the caller's to hear about
            error = RuntimeError(f"job {job.label!r} ended with {failure!r}")
        finally:
            del work
            with self._lock:
                self._started.discard(job)
                running = self._running.get(job.owner, 0) - 1
                if running > 0:
                    self._running[job.owner] = running
                else:
                    self._running.pop(job.owner, None)
                self._release(job.owner)
        _settle(job, result, error)


def _settle(job: _Job, result: object, error: BaseException | None) -> None:
    """Hand a job's outcome to its caller on the caller's event loop, unless the caller stopped waiting."""

    def deliver() -> None:
        if job.future.done():
            return  # cancelled by its caller, or failed by stop()
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        job.loop.call_soon_threadsafe(deliver)
