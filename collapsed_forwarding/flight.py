"""Singleflight: while one call for a key is in the air, every request for
that key waits on it instead of making another, and gets its outcome.

A Flight is settled exactly once, by the origin's answer, by whatever the
call raised, or by its deadline, whichever comes first; later outcomes are
ignored. Every waiter is then woken: a callback, or an Event for a thread
that blocks. What each waiter is given is the owner's business (`settle`).
The state is guarded by the owner's lock, as each field says; the call
itself, and the callbacks, run without it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from .timers import Scheduler, Timer

log = logging.getLogger("collapsed_forwarding.flight")

OnAnswer = Callable[[Any], None]


class Flight:
    """One call to the origin for one key, and the requests waiting on it.

    Guarded by the owner's lock: `waiters`, `callbacks`, `event`, `detached`,
    `calling`, `error`, and the writing of `answers` (once). Set once at the
    start and only read after: `key`, `started`, `ttl`, `led`, `deadline`. Read without the lock
    once settled (the settling thread's lock release, or the Event, orders it):
    `answers`.
    `timer` belongs to whoever launches the flight and whoever settles it.
    `caller` is written once, without the lock, by the thread that calls a
    blocking backend for it; only that same thread's read of it matters.
    """

    __slots__ = ("key", "started", "ttl", "led", "waiters", "callbacks", "event", "answers", "detached", "timer",
                 "calling", "caller", "error", "deadline")

    deadline: float  # when its waiters are released, on the scheduler's clock
    waiters: int  # requests waiting, the one that started it included
    callbacks: list[tuple[OnAnswer, bool]]  # (on_answer, is the leader)
    event: threading.Event | None  # made for the first blocking waiter only
    answers: tuple[Any, Any] | None  # (the leader's, a follower's), once settled
    # The deadline's timer, armed at launch, or, for a blocking leader's flight, only once a callback
    # waits (a blocking waiter times out by itself); cancelled at settle.
    timer: Timer | None
    error: Any  # the error it settled with, for a waiter that takes no stale value instead
    detached: bool  # invalidated: answers its own waiters, but fills nothing and takes no more
    calling: bool  # a blocking backend call for it is running (it may outlive the deadline)
    caller: int  # the ident of the thread that makes that call

    def __init__(self, key: Hashable, started: float, ttl: float, led: bool, deadline: float) -> None:
        # (one store a field, the Nones and Falses chained, and no call: every miss makes a flight)
        self.key = key
        self.started = started
        self.ttl = ttl
        self.led = led
        self.deadline = deadline
        self.waiters = 1 if led else 0
        self.callbacks = []
        self.event = self.answers = self.timer = self.error = None
        self.detached = self.calling = False
        self.caller = 0

    # -- under the owner's lock ------------------------------------------

    def join(self, max_waiters: int) -> bool:
        """One more request waits on it; False (and it does not) if `max_waiters` already do (0: no limit)."""
        if max_waiters and self.waiters >= max_waiters:
            return False
        self.waiters += 1
        return True

    def leave(self) -> None:
        """A request that joined will not wait after all (it would wait on itself)."""
        self.waiters -= 1

    def answer_later(self, on_answer: OnAnswer, leader: bool) -> None:
        """`on_answer(answer)` once it is settled."""
        self.callbacks.append((on_answer, leader))

    def block(self) -> None:
        """A thread will block on it (`wait`): make the Event the settle sets."""
        if self.event is None:
            self.event = threading.Event()

    def alone(self) -> bool:
        """Led, with no one else waiting, and not invalidated: a plain fill."""
        return self.led and self.waiters == 1 and not self.detached

    def followers(self) -> int:
        return self.waiters - self.led

    # -- without the lock ---------------------------------------------------

    def wait(self, now: float, patience: float | None = None) -> bool:
        """Block until settled (`block` made the event); False at the deadline (`now` on the
        scheduler's clock), or after `patience` seconds if that comes first."""
        limit = self.deadline - now if patience is None else min(self.deadline - now, patience)
        return self.event.wait(min(limit, threading.TIMEOUT_MAX))  # type: ignore[union-attr]

    def answer_for(self, leader: bool) -> Any:
        """Once settled: what the leader, or a follower, is given."""
        return self.answers[0 if leader else 1]  # type: ignore[index]


class Flights:
    """The flights in the air, one per key. `settle_locked(flight, result, ttl)`
    is the owner's policy: under the lock, it records the outcome and returns
    the (leader's, follower's) answers."""

    def __init__(self, lock: threading.Lock, scheduler: Scheduler, timeout: float,
                 settle_locked: Callable[[Flight, Any, float | None], tuple[Any, Any]],
                 on_timeout: Callable[[], BaseException]) -> None:
        self.lock, self.scheduler, self.timeout = lock, scheduler, timeout
        self._settle_locked, self._on_timeout = settle_locked, on_timeout
        self.in_air: dict[Hashable, Flight] = {}

    def start(self, key: Hashable, now: float, ttl: float, led: bool, age: float = 0.0) -> Flight:
        """Under the lock: the key's new flight. Launch it once the lock is released. Its
        deadline counts from `age` seconds ago, when the request that starts it was made."""
        self.in_air[key] = flight = Flight(key, now, ttl, led, self.scheduler.time() + self.timeout - age)
        return flight

    def detach(self, key: Hashable) -> None:
        """Under the lock: the key's flight, if any, no longer fills or takes waiters."""
        flight = self.in_air.pop(key, None)
        if flight is not None:
            flight.detached = True

    def land(self, flight: Flight) -> bool:
        """Under the lock, from settle_locked: the key is no longer in the air.
        False if it had been detached (invalidated): then it fills nothing."""
        if flight.detached:
            return False
        if self.in_air.get(flight.key) is flight:
            del self.in_air[flight.key]
        return True

    def arm(self, flight: Flight) -> None:
        """The deadline, at which every waiter is released. (Under the lock too: the timer thread
        takes the lock only to settle, never while holding the scheduler's.)"""
        flight.timer = self.scheduler.call_later(flight.deadline - self.scheduler.time(), self.time_out, flight)

    def launch(self, flight: Flight, call: Callable[[Flight], None]) -> None:
        """Without the lock: arm the deadline, then make the call. Whatever the
        call raises settles the flight, so no waiter is stranded."""
        self.arm(flight)
        try:
            call(flight)
        except BaseException as exc:
            self.settle(flight, exc)
            if not isinstance(exc, Exception):
                raise

    def time_out(self, flight: Flight) -> None:
        self.settle(flight, self._on_timeout())

    def settle(self, flight: Flight, result: Any, ttl: float | None = None,
               returned_late: Callable[[Flight, Any], Any] | None = None) -> Any:
        """Finish `flight` with `result` (a value or an exception), once, and wake its waiters.
        From a blocking call's own thread, `returned_late(flight, result)` is what
        becomes of a result that comes after the flight was settled (its value is returned)."""
        with self.lock:
            if returned_late is not None:
                flight.calling = False
            if flight.answers is not None:
                return None if returned_late is None else returned_late(flight, result)
            flight.answers = leader, follower = self._settle_locked(flight, result, ttl)
            callbacks, flight.callbacks = flight.callbacks, []
            event = flight.event
        timer, flight.timer = flight.timer, None  # no cycle left behind: flight -> timer -> args -> flight
        if timer is not None:
            timer.cancel()
        if event is not None:
            event.set()
        for on_answer, led in callbacks:
            try:
                on_answer(leader if led else follower)
            except Exception:  # one waiter's failure must not cost the others their answers
                log.exception("answer callback failed")
        return None
