"""The scheduler's gauge of how late it runs, and `catch_up`, with which the node's
handler thread hands it the interpreter when its deadlines run late."""

from __future__ import annotations

import threading
import time

from collapsed_forwarding.timers import ROUND_FLUSH, Scheduler


def blocked_round(scheduler: Scheduler) -> tuple[threading.Event, list[int]]:
    """A round whose one timer runs until the returned event is set; it appends 1 when done."""
    running, release, done = threading.Event(), threading.Event(), []

    def slow() -> None:
        running.set()
        release.wait(30)
        done.append(1)

    scheduler.call_later(0, slow)
    assert running.wait(10)
    return release, done


def test_a_round_being_run_counts_as_overdue_though_its_timers_left_the_heap():
    now = [0.0]
    scheduler = Scheduler(time=lambda: now[0])
    release, done = blocked_round(scheduler)
    now[0] = 5.0
    assert scheduler.overdue() == 5.0
    release.set()
    scheduler.catch_up(30)
    assert done == [1] and scheduler.overdue() == 0.0


def test_catch_up_returns_once_the_round_being_run_is_over():
    now = [0.0]
    scheduler = Scheduler(time=lambda: now[0])
    release, done = blocked_round(scheduler)
    waiter = threading.Thread(target=scheduler.catch_up, args=(30,))
    waiter.start()
    waiter.join(0.05)
    assert waiter.is_alive(), "catch_up returned while a round was still being run"
    release.set()
    waiter.join(10)
    assert not waiter.is_alive() and done == [1]


def test_catch_up_gives_up_after_its_timeout():
    scheduler = Scheduler()
    release, done = blocked_round(scheduler)
    scheduler.catch_up(0.01)
    assert done == [], "the round is still being run: catch_up returned at its timeout"
    release.set()


def test_catch_up_does_not_wait_for_timers_not_yet_due():
    now = [0.0]
    scheduler = Scheduler(time=lambda: now[0])
    scheduler.call_later(60, lambda: None)
    started = time.monotonic()
    scheduler.catch_up(30)
    assert time.monotonic() - started < 10
    assert scheduler.overdue() == 0.0


def test_a_large_round_is_flushed_every_round_flush_timers():
    now = [0.0]
    flushes: list[int] = []
    ran: list[int] = []

    class Around:
        def __enter__(self) -> None:
            flushes.append(len(ran))

        def __exit__(self, *exc: object) -> None:
            pass

    scheduler = Scheduler(time=lambda: now[0], around=Around)
    release, _ = blocked_round(scheduler)  # holds the timer thread while the big round is laid out
    count = 2 * ROUND_FLUSH + 1
    for n in range(count):
        scheduler.call_later(0, ran.append, n)
    flushes.clear()
    release.set()
    scheduler.catch_up(30)
    assert ran == list(range(count))
    assert flushes == [0, ROUND_FLUSH, 2 * ROUND_FLUSH]
