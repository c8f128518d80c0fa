"""A scheduler: one daemon thread that runs callbacks at given times.

Every deadline (origin and peer timeouts, the `sim` origin's latency) is a heap
entry here rather than a sleeping thread, so ten thousand pending fetches cost
ten thousand small objects, not ten thousand threads. Callbacks run one after
another on the timer thread: they must be quick and must not block.

Whoever needs deadlines is handed a Scheduler, as `sched` is handed a
`timefunc` and asyncio code a loop; `time` is the clock it keeps.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("collapsed_forwarding.timers")

ROUND_FLUSH = 256  # timers of one round run inside one `around()` at most


class Timer:
    """A scheduled call; `cancel()` is cheap and safe from any thread."""

    __slots__ = ("when", "seq", "fn", "args", "scheduler")

    def __init__(self, when: float, seq: int, fn: Callable[..., Any] | None, args: tuple[Any, ...],
                 scheduler: Scheduler) -> None:
        self.when, self.seq, self.fn, self.args, self.scheduler = when, seq, fn, args, scheduler

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        # Drop the references too: a cancelled timer waits in the heap until
        # its time (or the next compaction), and must keep nothing alive meanwhile.
        if self.fn is not None:
            self.fn, self.args = None, ()
            self.scheduler.cancelled += 1


class Scheduler:
    """Runs `fn(*args)` `delay` seconds from now, on one lazily started thread.

    `around` wraps each round of callbacks that come due together; the node
    makes it its output batch, so the messages they send share one flush.
    """

    def __init__(self, time: Callable[[], float] = time.monotonic,
                 around: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        self.time, self.around = time, around
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        lock = threading.Lock()  # guards the heap, _round_due and the thread's start
        self._wake = threading.Condition(lock)  # the timer thread waits on it for the next time
        self._caught_up = threading.Condition(lock)  # catch_up waits on it for a round's end
        self._round_due: float | None = None  # the due time of the round being run, if one is
        self._thread: threading.Thread | None = None
        self.cancelled = 0  # cancelled timers still in the heap (a racy count is fine: it only paces compaction)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(self.time() + delay, next(self._seq), fn, args, self)
        with self._wake:
            if self.cancelled > 64 and 2 * self.cancelled > len(self._heap):
                self._compact()
            heapq.heappush(self._heap, timer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
                self._thread.start()
            if self._heap[0] is timer:
                self._wake.notify()
        return timer

    def overdue(self) -> float:
        """Seconds by which the earliest timer not yet run is past its time (0 if none is): how
        far behind the timer thread runs. A round being run counts: its timers have left the heap
        but not yet been called. Read without the lock, so racy: a gauge, not a count."""
        heap, due = self._heap, self._round_due
        try:
            due = heap[0].when if due is None else min(due, heap[0].when)
        except IndexError:
            if due is None:
                return 0.0
        return max(0.0, self.time() - due)

    def catch_up(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until every timer due now has been run.

        The node's handler thread calls this when the deadlines run late. Under the GIL
        a busy handler thread lets the timer thread run only between its switch intervals,
        so under a flood of requests a timeout could be answered seconds after it fell due.
        Waiting here hands the timer thread the interpreter for as long as it needs."""
        end = self.time() + timeout
        with self._wake:
            while (self._round_due is not None or (self._heap and self._heap[0].when <= self.time())) \
                    and (left := end - self.time()) > 0:
                self._caught_up.wait(left)

    def _compact(self) -> None:
        """Under the lock: drop the cancelled timers, once they are half the heap
        (every settled fetch cancels its deadline), so the heap stays the size of
        what is still pending. Linear, and paid for by as many cancellations."""
        self._heap = [timer for timer in self._heap if timer.fn is not None]
        heapq.heapify(self._heap)
        self.cancelled = 0

    def _run(self) -> None:
        while True:
            with self._wake:
                self._round_due = None
                while not self._heap or self._heap[0].when > self.time():
                    self._caught_up.notify_all()
                    wait = self._heap[0].when - self.time() if self._heap else None
                    self._wake.wait(None if wait is None else min(wait, threading.TIMEOUT_MAX))  # no overflow
                now, due = self.time(), []
                self._round_due = self._heap[0].when
                while self._heap and self._heap[0].when <= now:
                    due.append(heapq.heappop(self._heap))
            for start in range(0, len(due), ROUND_FLUSH):  # (a round of thousands would hold back the first's)
                with self.around():
                    for timer in due[start:start + ROUND_FLUSH]:
                        self._call(timer)

    @staticmethod
    def _call(timer: Timer) -> None:
        fn, args = timer.fn, timer.args
        if fn is None:
            timer.scheduler.cancelled -= 1
            return
        timer.fn, timer.args = None, ()
        try:
            fn(*args)
        except Exception:  # one bad callback must not stop every later deadline
            log.exception("timer callback %r failed", fn)


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """The scheduler a library user gets when none is passed in: one per
    process, made on first use, never replaced."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scheduler()
        return _default
