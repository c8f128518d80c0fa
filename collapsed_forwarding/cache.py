"""A TTL cache in which concurrent misses of one key share one origin fetch.

The first request that misses a key starts a flight (see `flight.py`); every
request for that key that misses while it is in the air waits on it and gets
its outcome, value or error. One lock guards the entries (`store.py`), the
flights and the counters (`counters.py`); the origin is never called while it is held.

Two kinds of origin:

* a blocking callable, ``backend(key) -> value``, that raises ``KeyError`` when
  the key does not exist and anything else when it fails (see `blocking.py`).
* a non-blocking one, an object with ``start_fetch(key, done)``: it starts the
  fetch and later calls ``done(result, ttl=None)`` from any thread, with the
  value or an exception. The node uses this, so no waiting request holds a thread.

Every flight has a deadline (`timeout`): an origin that raises, hangs or never
calls back still releases every waiter, with the error or OriginTimeout.

A hung blocking call (one that outlives its deadline) still holds its key, as
nginx's proxy_cache_lock_age does: until it returns, or until `lock_age`
seconds after it began, no second call for that key starts, and requests for
it fail fast with OriginTimeout (or get the stale entry, within grace or
stale_if_error). If the call then returns a value, the value is cached, unless
the key was invalidated meanwhile.
"""

from __future__ import annotations

import math
import random as _random
import threading
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from .answer import Answer, checked_ttl, fresh_until
from .awaitables import refuse_async_backend
from .blocking import BlockingCalls
from .errors import CacheError, OriginTimeout
from .flight import Flight, Flights, OnAnswer
from .hits import HitLog, make_get, make_hit
from .policy import PolicyFactory
from .state import CacheState, Freshness
from .store import SizeOf, Store
from .timers import Scheduler, default_scheduler

__all__ = ["Answer", "CollapsedForwardingProxy", "checked_ttl"]

Key = Hashable
Value = Any


def check_settings(seconds: dict[str, Any], counts: dict[str, tuple[int, int]], jitter: Any) -> None:
    """Refuse, at construction, a setting no clock or bound can work with."""
    for name, value in seconds.items():
        checked_ttl(value, name)
    for name, (number, low) in counts.items():
        if type(number) is not int:
            raise TypeError(f"{name} must be an int, not {type(number).__name__}")
        if number < low:
            raise ValueError(f"{name} must be at least {low}")
    if type(jitter) not in (int, float):
        raise TypeError(f"jitter must be a number, not {type(jitter).__name__}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")


def check_callables(backend: Any, size_of: SizeOf | None) -> None:
    """Refuse, at construction, a backend or a size_of that every get would fail on."""
    if not callable(backend) and not callable(getattr(backend, "start_fetch", None)):
        raise TypeError("backend must be a callable, backend(key) -> value, or an object with "
                        f"start_fetch(key, done), not {type(backend).__name__}")
    if not callable(getattr(backend, "start_fetch", None)):
        refuse_async_backend(backend)
    if size_of is not None and not callable(size_of):
        raise TypeError(f"size_of must be a callable (key, value) -> int, not {type(size_of).__name__}")


class CollapsedForwardingProxy:
    """A cache in front of `backend` that makes one origin call per key at a time.

    ttl: seconds a value stays fresh; timeout: seconds before a fetch fails with
    OriginTimeout; negative_ttl: seconds a key-does-not-exist is remembered;
    max_entries: entries kept; max_bytes: bytes kept (None: no bound), as
    `size_of(key, value)` counts them (by default sys.getsizeof of the key plus
    that of the value: right for str and bytes, shallow for containers); policy:
    which entries go first when a bound is reached: a name in `policy.POLICIES`
    ("lru" for plain LRU) or a factory `(max_entries, max_bytes) -> Policy`, by
    default the project's own; grace: seconds past expiry an entry is served
    stale while one background fetch refreshes it; stale_if_error: seconds past
    expiry an entry is served stale when its refresh fails; early_refresh:
    XFetch's beta (0 = off); jitter: fraction by which each TTL is randomly
    shortened; error_ttl: seconds a failure is remembered and answered without
    a fetch; max_fetches: the most origin fetches in the air at once (0 = no
    limit): past it a miss that would start one more is shed with Overloaded,
    and no background refresh starts; max_waiters: the most requests that may
    wait on one fetch (0 = no limit); lock_age: seconds a hung blocking call holds its key before one
    more call may start; clock: what TTLs are counted on (by default the
    scheduler's clock, which deadlines are counted on; a test may fake it to
    move TTLs by hand); random: for jitter and XFetch; scheduler: where
    deadlines are kept (by default one shared per process).
    """

    def __init__(
        self,
        backend: Any,
        ttl: float = 60,
        *,
        timeout: float = 1.0,
        negative_ttl: float = 1.0,
        max_entries: int = 100_000,
        max_bytes: int | None = None,
        size_of: SizeOf | None = None,
        policy: str | PolicyFactory | None = None,
        grace: float = 0,
        stale_if_error: float = 0,
        early_refresh: float = 0,
        jitter: float = 0,
        error_ttl: float = 0,
        max_waiters: int = 0,
        max_fetches: int = 0,
        lock_age: float = 5.0,
        clock: Callable[[], float] | None = None,
        random: Callable[[], float] = _random.random,
        scheduler: Scheduler | None = None,
    ) -> None:
        check_settings({"ttl": ttl, "timeout": timeout, "negative_ttl": negative_ttl, "grace": grace,
                        "stale_if_error": stale_if_error, "early_refresh": early_refresh, "error_ttl": error_ttl,
                        "lock_age": lock_age},
                       {"max_entries": (max_entries, 1), "max_waiters": (max_waiters, 0),
                        "max_fetches": (max_fetches, 0),
                        "max_bytes": (1 if max_bytes is None else max_bytes, 1)}, jitter)
        check_callables(backend, size_of)
        self.backend = backend
        self._start_fetch: Callable[..., None] | None = getattr(backend, "start_fetch", None)
        self.ttl, self.timeout, self.max_entries, self.max_bytes = ttl, timeout, max_entries, max_bytes
        self.scheduler = scheduler or default_scheduler()
        self.clock = clock or self.scheduler.time
        # What the lock-free hit compares expiries with: with early refresh on,
        # every hit must take the lock (it may start a refresh), so never.
        self._hit_clock = self.clock if not early_refresh else lambda: math.inf
        self.lock = threading.Lock()  # guards the state, and all but _hit_log, which hits append to without it
        self.flights = Flights(self.lock, self.scheduler, timeout, self._settle_locked, self._timeout_error)
        freshness = Freshness(ttl, negative_ttl, grace, stale_if_error, early_refresh, jitter, error_ttl, random)
        self.store = Store(max_entries, max_bytes, size_of, policy)
        self.state = CacheState(self.store, self.flights, freshness, self.clock, max_waiters, lock_age, max_fetches)
        self._entries = self.store.entries  # the one dict the lock-free hit reads
        self._blocking = None if self._start_fetch else BlockingCalls(backend, self.flights.settle,
                                                                          self.state.returned_late)
        self._hit_log = HitLog(self.lock, self._fold_hits)  # lock-free hits, folded in under the lock
        # what every lock-free hit path is made of (hits.py): get's, hit's and a subclass's own
        self._hit_path = (self._entries, self._hit_clock, self._hit_log)
        self._get = make_get(*self._hit_path, self._miss)
        self._get.__doc__ = CollapsedForwardingProxy.get.__doc__
        self._hit = make_hit(*self._hit_path)
        if type(self).get is CollapsedForwardingProxy.get:  # a subclass's own get is never bypassed
            self.get = self._get  # type: ignore[method-assign]

    # -- the public API -------------------------------------------------

    def get(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Value:
        """The key's value, fetching it if need be; raises CacheError.

        `timeout` (seconds) bounds this caller's wait, below the proxy's own:
        past it the caller gets OriginTimeout, and the fetch goes on for the
        others and still fills the cache. (The leader of a blocking backend's
        fetch is the caller whose thread makes the call: it returns when the
        call does, with what the call returned or raised, even past the
        deadline at which the others got OriginTimeout; see `_settled`.)

        A fresh hit takes no lock: one dict read, one clock read, one append
        (see `hits.py`). Where a subclass does not override `get`, the instance
        answers `get` with that closure directly, sparing one more frame."""
        return self._get(key, ttl, timeout)

    def hit(self, key: Key) -> Answer | None:
        """Lock-free, as `get`'s hit: the Answer of the key's fresh entry (counted
        as a hit), or None, and nothing counted: then ask `request` or `lookup`."""
        return self._hit(key)

    def _miss(self, key: Key, ttl: float | None, timeout: float | None) -> Value:
        """What `get` does when it has no fresh hit (a subclass may refuse to wait)."""
        return self._wait(key, ttl, False, timeout).result()

    def lookup(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Answer:
        """Like `get`, but returns the Answer, which says how it was served."""
        return self._wait(key, ttl, False, timeout)

    def fetch_and_cache(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Value:
        """Fetch the key from the origin now, even if a fresh entry is cached
        (joining a fetch already in flight), cache it for `ttl` (by default
        the proxy's), and return it. If the fetch fails, raise its error: never
        the cached entry, whatever grace or stale_if_error allow a get."""
        return self._wait(key, ttl, True, timeout).result()

    def request(self, key: Key, on_answer: OnAnswer, ttl: float | None = None, *,
                serve_stale: bool = True, force: bool = False, age: float = 0.0) -> Answer | None:
        """Non-blocking: the Answer now if it can be given now, else None and
        `on_answer(answer)` is called once, from another thread, when it can.
        With serve_stale false, `grace` and `stale_if_error` never apply to
        this request: it gets a fresh value or an error (as a `read` must).
        With force, it fetches past a fresh entry, as `fetch_and_cache` does.
        `age`: seconds the request already waited (in a queue, say); a fetch
        it starts times out that much sooner, `timeout` after the request. One
        that waited the whole timeout starts no fetch (nor refresh): it is
        served from the cache or joins the fetch in the air, else gets
        Overloaded now."""
        return self._request(key, ttl, force, serve_stale, age, self._answer_later, on_answer)

    def _request(self, key: Key, ttl: float | None, force: bool, serve_stale: bool, age: float,
                 wait: Callable[[Flight, Any, bool, bool], None], waiter: Any) -> Answer | None:
        """`request`, with `wait(flight, waiter, leader, serve_stale)` called under the
        lock to register a waiter on the flight it must wait on."""
        if ttl is not None:
            ttl = checked_ttl(ttl)
        with self.lock:
            if self._hit_log.keys:
                self._fold_hits()
            answer, flight, launch = self.state.admit(key, ttl, force, serve_stale, age)
            if flight is not None:
                wait(flight, waiter, flight is launch and flight.led, serve_stale)
                if flight.calling and flight.timer is None:  # a blocking leader's flight: it needs its timer now
                    self.flights.arm(flight)
        if launch is not None:
            self._launch(launch)
        return answer

    def _answer_later(self, flight: Flight, on_answer: OnAnswer, leader: bool, serve_stale: bool) -> None:
        """request's registration: one callback on the flight per waiting request."""
        if not serve_stale:
            on_answer = partial(self._unstale, flight, on_answer)
        flight.answer_later(on_answer, leader)

    def is_cached(self, key: Key) -> bool:
        """True while a fresh entry (a value or a key-does-not-exist) is cached."""
        with self.lock:
            entry = self._entries.get(key)
            return entry is not None and self.clock() < fresh_until(entry)

    def invalidate(self, key: Key) -> None:
        """Drop the key's entry. A fetch already in flight still answers the
        requests waiting on it, but neither fills the cache nor takes more."""
        with self.lock:
            self.store.pop(key)
            self.state.failures.forget(key)
            self.flights.detach(key)

    def ttl_left(self, answer: Answer) -> float:
        """Seconds for which `answer`'s entry stays fresh (<= 0 once expired)."""
        return answer.expires - self.clock()

    def stats(self) -> dict[str, int]:
        """Counts since the start; `entries` and `bytes` are what is held now."""
        with self.lock:
            self._fold_hits()
            return {**self.state.counters.summary(len(self.store)), "bytes": self.store.bytes_held()}

    def key_stats(self, key: Key) -> dict[str, Any]:
        """The key's counts since it was last evicted, and what is held for it now."""
        with self.lock:
            self._fold_hits()
            return self.state.key_stats(key)

    def settle(self, flight: Flight, result: Value | BaseException, ttl: float | None = None) -> None:
        """Finish `flight` with the origin's value or error, once; later calls
        (a late answer after the timeout) are ignored. `ttl` overrides the
        entry's lifetime, as a copy of another cache's entry needs."""
        self.flights.settle(flight, result, ttl)

    # -- the lock-free hits -------------------------------------------------

    def _fold_hits(self) -> None:
        """Under the lock: count the lock-free hits and tell the policy of them. (The miss
        paths check `_hit_log.keys` before calling: a call spared on every miss.)"""
        if self._hit_log.keys:
            self.store.touch_many(self.state.counters.count_hits(self._hit_log.take()))

    # -- flights -----------------------------------------------------------

    def _wait(self, key: Key, ttl: float | None, force: bool, timeout: float | None = None) -> Answer:
        if ttl is not None:
            ttl = checked_ttl(ttl)
        patience = None if timeout is None else checked_ttl(timeout, "timeout")
        blocking = self._blocking
        with self.lock:
            if self._hit_log.keys:
                self._fold_hits()
            answer, flight, launch = self.state.admit(key, ttl, force)
            if flight is not None:
                if flight is launch and blocking is not None:
                    flight.calling = True  # (so a callback that joins arms the deadline: see _request)
                elif flight.caller == threading.get_ident():  # in the backend's call for it: it would wait on itself
                    flight.leave()
                    raise RuntimeError(f"the backend asked this cache for {key!r}, the key it is fetching")
                else:
                    flight.block()
        if launch is not None:
            if flight is launch and blocking is not None:  # the leader calls it itself: see _settled
                late = blocking.lead(flight)  # (no timer: blocking waiters time out by themselves)
                if late is not None:
                    return late
                answer = flight.answer_for(True)
                return self._settled(flight, answer, force, True) if force else answer
            self._launch(launch)
        if flight is None:
            return answer  # type: ignore[return-value]
        if not flight.wait(self.scheduler.time(), patience):
            if flight.answers is None and patience is not None and patience < self.timeout:
                return gave_up(patience, led=flight is launch)  # this caller's own limit: the flight goes on
            self.flights.time_out(flight)  # the deadline has passed (no timer was armed, or it is late)
        return self._settled(flight, flight.answer_for(flight is launch), force, flight is launch)

    def _settled(self, flight: Flight, answer: Answer, force: bool, led: bool) -> Answer:
        """fetch_and_cache asked the origin: it gets the fetch's error, never the stale entry.

        The leader of a blocking fetch calls the backend itself, in its
        own thread; the deadline releases the waiters meanwhile. A hung backend:
        this caller stays in the call until it returns, and then gets what it
        returned (or raised), though the waiters got OriginTimeout at the
        deadline and the key stays held (lock_age) until the call returns."""
        if force and answer.cache == "stale":
            return self._origin_error(flight, "miss" if led else "collapsed")
        return answer

    def _launch(self, flight: Flight) -> None:
        """Start the origin fetch for no waiting caller; called without the lock."""
        if self._blocking is None:
            self.flights.launch(flight, lambda f: self._start_fetch(f.key, partial(self.settle, f)))  # type: ignore[misc]
        else:
            self.flights.launch(flight, self._blocking.start)

    def _settle_locked(self, flight: Flight, result: Value | BaseException, ttl: float | None) -> tuple[Answer, Answer]:
        if self._hit_log.keys:
            self._fold_hits()
        return self.state.settle(flight, result, ttl)

    def _timeout_error(self) -> CacheError:
        return OriginTimeout(f"origin fetch took longer than {self.timeout}s")

    def _unstale(self, flight: Flight, on_answer: OnAnswer, answer: Answer) -> None:
        """What a waiter that takes no stale value gets: the fetch's own error
        where the others get the stale entry (and it is counted so)."""
        if answer.cache == "stale":
            answer = self._origin_error(flight, "collapsed")
        on_answer(answer)

    def _origin_error(self, flight: Flight, cache: str) -> Answer:
        with self.lock:
            return self.state.origin_error(flight, cache)


def gave_up(timeout: float, led: bool) -> Answer:
    """What a caller gets whose own `timeout` passed before its fetch settled."""
    error = OriginTimeout(f"gave up waiting after {timeout:g}s (the fetch goes on for the others)")
    return Answer(None, error, "miss" if led else "collapsed")
