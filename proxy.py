"""A TTL cache in which concurrent misses of one key share one origin fetch.

The first request that misses a key starts a *flight*: one call to the origin.
Every request for that key that misses while the flight is in the air waits on
it instead of calling the origin again, and gets its outcome, value or error.
One lock guards the slots (cache entries, their in-flight fetch and counters);
the origin is never called while it is held.

Two kinds of origin:

* a blocking callable, ``backend(key) -> value`` that raises ``KeyError`` when
  the key does not exist and anything else when it fails. A blocking ``get``
  that leads a flight calls it in its own thread, as Go's singleflight does.
* a non-blocking one, an object with ``start_fetch(key, done)``: it starts the
  fetch and later calls ``done(result, ttl=None)`` from any thread, with the
  value or an exception. The node uses this, so no waiting request holds a
  thread.

Every flight has a deadline (`timeout`): an origin that raises, hangs or never
calls back still releases every waiter, with the error or OriginTimeout.
"""

from __future__ import annotations

import itertools
import logging
import math
import random as _random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from functools import partial
from typing import Any

import timers

log = logging.getLogger("proxy")

Key = Hashable
Value = Any
OnAnswer = Callable[["Answer"], None]
NEVER = -math.inf


class CacheError(Exception):
    """An answer that is an error; `code` is its Maelstrom error code."""

    code = 11

    def again(self) -> CacheError:
        """A copy to raise in one more thread: raising one shared instance
        everywhere would chain every waiter's traceback onto it."""
        err = type(self)(*self.args)
        err.__cause__ = self.__cause__
        return err


class OriginTimeout(CacheError):
    code = 0


class KeyMissing(CacheError):
    code = 20


class OriginUnavailable(CacheError):
    code = 11


class Overloaded(CacheError):
    code = 11


def as_cache_error(exc: BaseException) -> CacheError:
    """What waiters see of whatever the origin raised."""
    if isinstance(exc, CacheError):
        return exc
    err: CacheError
    if isinstance(exc, KeyError):
        err = KeyMissing("key does not exist")
    elif isinstance(exc, Exception):
        err = OriginUnavailable(f"origin failed: {exc!r}")
    else:
        err = OriginUnavailable(f"origin fetch crashed: {exc!r}")
    err.__cause__ = exc
    return err


class Answer:
    """How one request was served: `value` or `error`, and `cache`, one of
    hit, miss, collapsed, stale, shed. `expires` is when the entry it came
    from stops being fresh (on the proxy's clock)."""

    __slots__ = ("value", "error", "cache", "expires")

    def __init__(self, value: Value, error: CacheError | None, cache: str, expires: float = NEVER) -> None:
        self.value, self.error, self.cache, self.expires = value, error, cache, expires

    def result(self) -> Value:
        if self.error is not None:
            raise self.error.again()
        return self.value

    def served_as(self, cache: str) -> Answer:
        return Answer(self.value, self.error, cache, self.expires)

    def __repr__(self) -> str:
        return f"Answer({self.value!r}, {self.error!r}, {self.cache!r})"


COUNTERS = ("hits", "stale", "misses", "collapsed", "shed", "errors", "origin_fetches", "origin_errors")
COUNTER_OF = {"hit": "hits", "stale": "stale", "miss": "misses", "collapsed": "collapsed", "shed": "shed"}


def _value_of(counter: itertools.count[int]) -> int:
    return int(repr(counter)[6:-1])  # "count(N)": the one way to read a count without advancing it


class _Counters:
    """Request counters. Hits served on the lock-free path are counted by
    `next(fast_hits)`, atomic in CPython, and added to `hits` when read."""

    __slots__ = (*COUNTERS, "fast_hits")

    hits: int
    stale: int
    misses: int
    collapsed: int
    shed: int
    errors: int
    origin_fetches: int
    origin_errors: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.fast_hits = itertools.count()

    def counts(self) -> dict[str, int]:
        counts = {name: getattr(self, name) for name in COUNTERS}
        counts["hits"] += _value_of(self.fast_hits)
        return {"requests": sum(counts[COUNTER_OF[c]] for c in COUNTER_OF), **counts}


class _Totals(_Counters):
    __slots__ = ("entries", "in_flight", "evictions", "refreshes")

    def __init__(self) -> None:
        super().__init__()
        self.entries = self.in_flight = self.evictions = self.refreshes = 0


class _Slot(_Counters):
    """A key's cache entry, its remembered failure, its fetch in flight, its counters."""

    __slots__ = ("answer", "fast", "failure", "flight", "fetch_seconds")

    def __init__(self) -> None:
        super().__init__()
        self.answer: Answer | None = None  # last value or key-does-not-exist, served as a hit until it expires
        self.fast: Answer | None = None  # `answer`, when a hit on it needs no more thought than its expiry
        self.failure: Answer | None = None  # last origin failure, remembered until it expires (error_ttl)
        self.flight: Flight | None = None
        self.fetch_seconds: float | None = None

    @property
    def fresh_until(self) -> float:
        return NEVER if self.answer is None else self.answer.expires

    @property
    def failure_until(self) -> float:
        return NEVER if self.failure is None else self.failure.expires


class Flight:
    """One origin fetch and the requests waiting on it."""

    __slots__ = ("key", "slot", "ttl", "started", "led", "waiters", "callbacks",
                 "event", "answers", "detached", "timer")

    def __init__(self, key: Key, slot: _Slot, ttl: float, started: float, led: bool) -> None:
        self.key, self.slot, self.ttl, self.started, self.led = key, slot, ttl, started, led
        self.waiters = int(led)  # requests waiting, the leader included
        self.callbacks: list[tuple[OnAnswer, bool]] = []
        self.event: threading.Event | None = None  # made for the first blocking waiter; callbacks need none
        self.answers: tuple[Answer, Answer] | None = None  # (the leader's, a follower's), once settled
        self.detached = False  # invalidated: must neither fill the cache nor take new waiters
        self.timer: timers.Timer | None = None


class CollapsedForwardingProxy:
    def __init__(
        self,
        backend: Any,
        ttl: float = 60,
        *,
        timeout: float = 1.0,
        negative_ttl: float = 1.0,
        max_entries: int = 100_000,
        grace: float = 0,
        stale_if_error: float = 0,
        early_refresh: float = 0,
        jitter: float = 0,
        error_ttl: float = 0,
        max_waiters: int = 0,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.backend = backend
        self._start_fetch: Callable[..., None] | None = getattr(backend, "start_fetch", None)
        self.ttl, self.timeout, self.negative_ttl, self.max_entries = ttl, timeout, negative_ttl, max_entries
        self.grace, self.stale_if_error, self.early_refresh = grace, stale_if_error, early_refresh
        self.jitter, self.error_ttl, self.max_waiters = jitter, error_ttl, max_waiters
        self.clock, self.random = clock, random
        self.lock = threading.Lock()
        self.slots: OrderedDict[Key, _Slot] = OrderedDict()  # least recently used first
        self.totals = _Totals()
        self._shed = Answer(None, Overloaded(f"more than {max_waiters} requests already wait on this key"), "shed")
        self.get = self._fast_get()  # type: ignore[method-assign]

    # -- the public API -------------------------------------------------

    def get(self, key: Key, ttl: float | None = None) -> Value:
        """The key's value, fetching it if need be; raises CacheError.
        (Each instance answers through the same thing, made faster: _fast_get.)"""
        return self.lookup(key, ttl).result()

    def _fast_get(self) -> Callable[..., Value]:
        """`get` as a closure over pre-bound methods, as functools.lru_cache
        builds its wrapper: a hit costs one Python frame and takes no lock.

        Each step of a hit is one operation that CPython performs atomically under the GIL
        (dict get, attribute read, move_to_end, next on a count), and every
        change to a slot is made under the lock: the one read of `slot.fast`
        is the moment the request is served, as if it had taken the lock."""
        slot_of, touch, clock, hits, wait = self.slots.get, self.slots.move_to_end, self.clock, \
            self.totals.fast_hits, self._wait

        def get(key: Key, ttl: float | None = None) -> Value:
            slot = slot_of(key)
            if slot is not None:
                answer = slot.fast
                if answer is not None and clock() < answer.expires:
                    try:
                        touch(key)
                    except KeyError:  # evicted a moment ago: the answer was fresh all the same
                        pass
                    next(slot.fast_hits)
                    next(hits)
                    return answer.value
            return wait(key, ttl, force=False).result()

        get.__doc__ = CollapsedForwardingProxy.get.__doc__
        return get

    def lookup(self, key: Key, ttl: float | None = None) -> Answer:
        """Like `get`, but returns the Answer, which says how it was served."""
        return self._wait(key, ttl, force=False)

    def fetch_and_cache(self, key: Key, ttl: float | None = 60) -> Value:
        """Fetch the key from the origin now, even if a fresh entry is cached
        (joining a fetch already in flight), cache it for `ttl`, return it."""
        return self._wait(key, ttl, force=True).result()

    def request(self, key: Key, on_answer: OnAnswer, ttl: float | None = None) -> Answer | None:
        """Non-blocking: the Answer now if it can be given now, else None and
        `on_answer(answer)` is called once, from another thread, when it can."""
        with self.lock:
            answer, flight, launch = self._admit(key, ttl, force=False)
            if flight is not None:
                flight.callbacks.append((on_answer, flight is launch and flight.led))
        if launch is not None:
            self._launch(launch)
        return answer

    def is_cached(self, key: Key) -> bool:
        """True while a fresh entry (a value or a key-does-not-exist) is cached."""
        with self.lock:
            slot = self.slots.get(key)
            return slot is not None and self.clock() < slot.fresh_until

    def invalidate(self, key: Key) -> None:
        """Drop the key's entry. A fetch already in flight still answers the
        requests waiting on it, but neither fills the cache nor takes more."""
        with self.lock:
            slot = self.slots.get(key)
            if slot is None:
                return
            if slot.answer is not None:
                self.totals.entries -= 1
            slot.answer = slot.fast = slot.failure = None
            if slot.flight is not None:
                slot.flight.detached = True
                slot.flight = None

    def ttl_left(self, answer: Answer) -> float:
        """Seconds for which `answer`'s entry stays fresh (<= 0 once expired)."""
        return answer.expires - self.clock()

    def stats(self) -> dict[str, int]:
        with self.lock:
            t = self.totals
            return {**t.counts(), "entries": t.entries, "in_flight": t.in_flight,
                    "evictions": t.evictions, "refreshes": t.refreshes}

    def key_stats(self, key: Key) -> dict[str, Any]:
        with self.lock:
            slot = self.slots.get(key) or _Slot()
            now = self.clock()
            cached = now < slot.fresh_until
            return {**slot.counts(), "waiting": slot.flight.waiters if slot.flight else 0,
                    "cached": cached, "ttl_left": round(slot.fresh_until - now, 6) if cached else None,
                    "last_fetch_s": None if slot.fetch_seconds is None else round(slot.fetch_seconds, 6)}

    # -- admission: what a request gets, decided under the lock ------------

    def _admit(self, key: Key, ttl: float | None, force: bool) -> tuple[Answer | None, Flight | None, Flight | None]:
        """(answer now, or the flight to wait on) and the flight to launch once the lock is released."""
        now = self.clock()
        slot = self.slots.get(key)
        if slot is None:
            slot = self._new_slot(key)
        else:
            self.slots.move_to_end(key)
            if now < slot.fresh_until and not force:  # the hit path: keep it short
                answer: Answer = slot.answer  # type: ignore[assignment]
                slot.hits += 1
                self.totals.hits += 1
                if answer.error is not None:
                    self._count(slot, "errors", 1)
                return answer, None, self._early_refresh(key, slot, now) if self.early_refresh else None
        if not force and slot.answer is not None and now < slot.fresh_until + self.grace:
            quiet = slot.flight is not None or now < slot.failure_until  # one refresh at a time; none while failing
            refresh = None if quiet else self._start(key, slot, self.ttl, now, led=False)
            return self._serve(slot, slot.answer.served_as("stale")), None, refresh
        if not force and slot.failure is not None and now < slot.failure_until:
            return self._serve(slot, self._stale_or(slot, slot.failure, now)), None, None
        flight = slot.flight
        if flight is not None:
            if self.max_waiters and flight.waiters >= self.max_waiters:
                return self._serve(slot, self._shed), None, None
            flight.waiters += 1
            return None, flight, None
        flight = self._start(key, slot, self.ttl if ttl is None else ttl, now, led=True)
        return None, flight, flight

    def _serve(self, slot: _Slot, answer: Answer) -> Answer:
        self._count(slot, COUNTER_OF[answer.cache], 1)
        if answer.error is not None:
            self._count(slot, "errors", 1)
        return answer

    def _stale_or(self, slot: _Slot, answer: Answer, now: float) -> Answer:
        """The stale entry instead of a failure, within stale_if_error of its expiry."""
        if slot.answer is not None and now < slot.fresh_until + self.stale_if_error:
            return slot.answer.served_as("stale")
        return answer

    def _early_refresh(self, key: Key, slot: _Slot, now: float) -> Flight | None:
        """XFetch (Vattani et al., VLDB 2015): refresh before expiry with a
        probability that rises as expiry nears and with the fetch's cost."""
        beta = self.early_refresh
        if slot.flight is not None or now < slot.failure_until:
            return None
        delta = slot.fetch_seconds or 0.0
        if now - delta * beta * math.log(1.0 - self.random()) < slot.fresh_until:
            return None
        return self._start(key, slot, self.ttl, now, led=False)

    def _start(self, key: Key, slot: _Slot, ttl: float, now: float, led: bool) -> Flight:
        slot.flight = flight = Flight(key, slot, ttl, now, led)
        self._count(slot, "origin_fetches", 1)
        self.totals.in_flight += 1
        if not led:
            self.totals.refreshes += 1
        return flight

    def _new_slot(self, key: Key) -> _Slot:
        # Room first, then the new slot: lock-free hits may reorder the others
        # meanwhile, and a slot just made must not be the one evicted.
        excess = len(self.slots) + 1 - self.max_entries
        for _ in range(len(self.slots)):
            if excess <= 0:
                break
            old_key, old = self.slots.popitem(last=False)
            if old.flight is not None:  # keep it findable, or its next miss would start a second fetch
                self.slots[old_key] = old
                continue
            excess -= 1
            if old.answer is not None:
                self.totals.entries -= 1
                self.totals.evictions += 1
        self.slots[key] = slot = _Slot()
        return slot

    def _count(self, slot: _Slot, counter: str, n: int) -> None:
        setattr(slot, counter, getattr(slot, counter) + n)
        setattr(self.totals, counter, getattr(self.totals, counter) + n)

    # -- flights -----------------------------------------------------------

    def _wait(self, key: Key, ttl: float | None, force: bool) -> Answer:
        with self.lock:
            answer, flight, launch = self._admit(key, ttl, force)
            if flight is not None and flight.event is None:
                flight.event = threading.Event()
        if launch is not None:
            self._launch(launch, inline=flight is launch and self._start_fetch is None)
        if flight is None:
            return answer  # type: ignore[return-value]
        if not flight.event.wait(self.timeout):  # type: ignore[union-attr]
            self._time_out(flight)  # the timer thread is late; the flight's deadline has passed
        return flight.answers[0 if flight is launch else 1]  # type: ignore[index]

    def _launch(self, flight: Flight, inline: bool = False) -> None:
        """Start the origin fetch; called without the lock."""
        flight.timer = timers.call_later(self.timeout, self._time_out, flight)
        if self._start_fetch is not None:
            self._guarded(flight, self._start_fetch, flight.key, partial(self.settle, flight))
        elif inline:
            self._call_backend(flight)
        else:
            threading.Thread(target=self._call_backend, args=(flight,), name="fetch", daemon=True).start()

    def _call_backend(self, flight: Flight) -> None:
        self._guarded(flight, lambda: self.settle(flight, self.backend(flight.key)))

    def _guarded(self, flight: Flight, fn: Callable[..., None], *args: Any) -> None:
        """Run fn; whatever it raises settles the flight, so no waiter is stranded."""
        try:
            fn(*args)
        except BaseException as exc:
            self.settle(flight, exc)
            if not isinstance(exc, Exception):
                raise

    def _time_out(self, flight: Flight) -> None:
        self.settle(flight, OriginTimeout(f"origin fetch took longer than {self.timeout}s"))

    def settle(self, flight: Flight, result: Value | BaseException, ttl: float | None = None) -> None:
        """Finish `flight` with the origin's value or error, once; later calls
        (a late answer after the timeout) are ignored. `ttl` overrides the
        entry's lifetime, as a copy of another cache's entry needs."""
        error = as_cache_error(result) if isinstance(result, BaseException) else None
        with self.lock:
            if flight.answers is not None:
                return
            callbacks = self._settle_locked(flight, None if error else result, error, ttl)
            event = flight.event
        if flight.timer is not None:
            flight.timer.cancel()
        if event is not None:
            event.set()
        assert flight.answers is not None  # set by _settle_locked
        leader, follower = flight.answers
        for on_answer, led in callbacks:
            try:
                on_answer(leader if led else follower)
            except Exception:
                log.exception("answer callback failed")

    def _settle_locked(self, flight: Flight, value: Value, error: CacheError | None,
                       ttl: float | None) -> Iterable[tuple[OnAnswer, bool]]:
        now = self.clock()
        slot = flight.slot
        self.totals.in_flight -= 1
        answered = error is None or isinstance(error, KeyMissing)  # key-does-not-exist is an answer
        if not answered:
            self._count(slot, "origin_errors", 1)
        follower = Answer(value, error, "collapsed")
        if not flight.detached:
            slot.flight = None
            slot.fetch_seconds = now - flight.started
            if answered:
                follower = self._fill(slot, value, error, ttl if ttl is not None else flight.ttl, now)
            else:
                follower = self._stale_or(slot, follower, now)
                if self.error_ttl:
                    slot.failure = Answer(value, error, "hit", now + self.error_ttl)
        leader = follower if follower.cache == "stale" else follower.served_as("miss")
        flight.answers = (leader, follower)
        followers = flight.waiters - flight.led
        if flight.led:
            self._count(slot, COUNTER_OF[leader.cache], 1)
        self._count(slot, COUNTER_OF[follower.cache], followers)
        if follower.error is not None:
            self._count(slot, "errors", flight.waiters)
        callbacks, flight.callbacks = flight.callbacks, []
        return callbacks

    def _fill(self, slot: _Slot, value: Value, error: CacheError | None, ttl: float, now: float) -> Answer:
        if error is not None:
            ttl = min(ttl, self.negative_ttl)
        elif self.jitter:
            ttl *= 1.0 - self.jitter * self.random()
        if slot.answer is None:
            self.totals.entries += 1
        slot.answer = Answer(value, error, "hit", now + ttl)
        slot.fast = slot.answer if error is None and not self.early_refresh else None
        slot.failure = None
        return slot.answer.served_as("collapsed")
