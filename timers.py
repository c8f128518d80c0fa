"""One daemon thread that runs callbacks at given times.

Every deadline in the process (origin and peer timeouts, the `sim` origin's
latency) is a heap entry here rather than a sleeping thread, so ten thousand
pending fetches cost ten thousand small lists, not ten thousand threads.
Callbacks run one after another on the timer thread: they must be quick and
must not block.
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

log = logging.getLogger("timers")


class Timer:
    """A scheduled call; `cancel()` is cheap and safe from any thread."""

    __slots__ = ("when", "seq", "fn", "args")

    def __init__(self, when: float, seq: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when, self.seq, self.fn, self.args = when, seq, fn, args

    def __lt__(self, other: Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)

    def cancel(self) -> None:
        self.fn = None  # type: ignore[assignment]  # the heap drops it when it comes due


class Scheduler:
    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        # Wraps each round of callbacks that come due together: the node makes
        # it Node.batch, so the messages they send share one flush.
        self.around: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        timer = Timer(time.monotonic() + delay, next(self._seq), fn, args)
        with self._wake:
            heapq.heappush(self._heap, timer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
                self._thread.start()
            if self._heap[0] is timer:
                self._wake.notify()
        return timer

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0].when > time.monotonic():
                    self._wake.wait(self._heap[0].when - time.monotonic() if self._heap else None)
                now, due = time.monotonic(), []
                while self._heap and self._heap[0].when <= now:
                    due.append(heapq.heappop(self._heap))
            with self.around():
                for timer in due:
                    self._call(timer)

    @staticmethod
    def _call(timer: Timer) -> None:
        fn = timer.fn
        if fn is None:
            return
        try:
            fn(*timer.args)
        except Exception:  # one bad callback must not stop every later deadline
            log.exception("timer callback %r failed", fn)


scheduler = Scheduler()
call_later = scheduler.call_later
