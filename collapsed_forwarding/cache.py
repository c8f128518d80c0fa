"""A TTL cache in which concurrent misses of one key share one origin fetch.

The first request that misses a key starts a flight (see `flight.py`); every
request for that key that misses while it is in the air waits on it and gets
its outcome, value or error. One lock guards the entries, the flights and the
counters; the origin is never called while it is held.

Two kinds of origin:

* a blocking callable, ``backend(key) -> value``, that raises ``KeyError`` when
  the key does not exist and anything else when it fails. It is called in a
  worker thread (see `workers.py`), so the ``get`` that leads the flight
  waits on it like every other waiter, and returns at the deadline even if the
  origin hangs.
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

Memory and the garbage collector: an entry is a plain tuple of atoms, which
the collector stops tracking after its first look, and per-key counters exist
only for keys that have something to count beyond the one miss that filled
them. So a million entries cost the collector, and the process, little more
than a dict of them would.
"""

from __future__ import annotations

import math
import random as _random
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from .awaitables import awaitable_refused, refuse_async_backend
from .errors import CacheError, KeyMissing, OriginTimeout, Overloaded, as_cache_error
from .flight import Flight, Flights, OnAnswer
from .timers import Scheduler, default_scheduler
from .workers import shared_workers

Key = Hashable
Value = Any
NEVER = -math.inf
HIT_LOG_LIMIT = 1024  # hits recorded without the lock before they are folded in under it


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


class _Missing:
    """The value of a remembered key-does-not-exist entry."""

    __slots__ = ("error", "expires")

    def __init__(self, error: CacheError, expires: float) -> None:
        self.error, self.expires = error, expires


# An entry is a tuple (value, expires, fetch_seconds), replaced whole under the
# lock. For a remembered key-does-not-exist, value is a _Missing holding the
# expiry, and `expires` is NEVER: the lock-free hit in `get` never serves it.
Entry = tuple[Any, float, float]

COUNTER_OF = {"hit": "hits", "stale": "stale", "miss": "misses", "collapsed": "collapsed", "shed": "shed"}
KEY_COUNTERS = ("hits", "stale", "misses", "collapsed", "shed", "errors", "origin_fetches", "origin_errors")


class KeyCounts:
    """A key's counters, made when it has more to count than the miss that filled it."""

    __slots__ = (*KEY_COUNTERS, "last_fetch_s")

    def __init__(self, plain_fill: bool = False) -> None:
        for name in KEY_COUNTERS:
            setattr(self, name, 0)
        self.last_fetch_s: float | None = None  # how long the last fetch took, whatever its outcome
        if plain_fill:  # what an entry with no KeyCounts stands for
            self.misses = self.origin_fetches = 1  # type: ignore[attr-defined]

    def counts(self) -> dict[str, int]:
        counts = {name: getattr(self, name) for name in KEY_COUNTERS}
        return {"requests": sum(counts[c] for c in COUNTER_OF.values()), **counts}


class CollapsedForwardingProxy:
    """A cache in front of `backend` that makes one origin call per key at a time.

    ttl: seconds a value stays fresh; timeout: seconds before a fetch fails with
    OriginTimeout; negative_ttl: seconds a key-does-not-exist is remembered;
    max_entries: entries kept, the least recently used evicted first;
    grace: seconds past expiry an entry is served stale while one background
    fetch refreshes it; stale_if_error: seconds past expiry an entry is served
    stale when its refresh fails; early_refresh: XFetch's beta (0 = off);
    jitter: fraction by which each TTL is randomly shortened; error_ttl: seconds
    a failure is remembered and answered without a fetch; max_waiters: the most
    requests that may wait on one fetch (0 = no limit); lock_age: seconds a hung
    blocking call holds its key before one more call may start; clock: what TTLs are
    counted on (by default the scheduler's clock, which deadlines are counted
    on; a test may fake it to move TTLs by hand); random: for jitter and XFetch;
    scheduler: where deadlines are kept (by default one shared per process).
    """

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
        lock_age: float = 5.0,
        clock: Callable[[], float] | None = None,
        random: Callable[[], float] = _random.random,
        scheduler: Scheduler | None = None,
    ) -> None:
        for name, seconds in (("ttl", ttl), ("timeout", timeout), ("negative_ttl", negative_ttl), ("grace", grace),
                              ("stale_if_error", stale_if_error), ("early_refresh", early_refresh),
                              ("error_ttl", error_ttl), ("lock_age", lock_age)):
            checked_ttl(seconds, name)
        for name, number, low in (("max_entries", max_entries, 1), ("max_waiters", max_waiters, 0)):
            if type(number) is not int:
                raise TypeError(f"{name} must be an int, not {type(number).__name__}")
            if number < low:
                raise ValueError(f"{name} must be at least {low}")
        if type(jitter) not in (int, float):
            raise TypeError(f"jitter must be a number, not {type(jitter).__name__}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")
        self.lock_age = lock_age
        self.backend = backend
        self._start_fetch: Callable[..., None] | None = getattr(backend, "start_fetch", None)
        if self._start_fetch is None:
            refuse_async_backend(backend)
        self.ttl, self.timeout, self.negative_ttl, self.max_entries = ttl, timeout, negative_ttl, max_entries
        self.grace, self.stale_if_error, self.early_refresh = grace, stale_if_error, early_refresh
        self.jitter, self.error_ttl, self.max_waiters = jitter, error_ttl, max_waiters
        self.scheduler = scheduler or default_scheduler()
        self.clock = clock or self.scheduler.time
        self.random = random
        # What the lock-free hit compares expiries with: with early refresh on,
        # every hit must take the lock (it may start a refresh), so never.
        self._hit_clock = self.clock if not early_refresh else lambda: math.inf
        self.lock = threading.Lock()  # guards everything below but _hit_log, which only grows without it
        self.flights = Flights(self.lock, self.scheduler, timeout, self._settle_locked, self._timeout_error)
        self._entries: OrderedDict[Key, Entry] = OrderedDict()  # least recently used first
        # For keys with more to count than the one miss that filled them; those of
        # keys no longer held are swept once they are many (_sweep_counts).
        self._key_counts: dict[Key, KeyCounts] = {}
        # Lock-free hits, folded in per key: a plain int each, not a KeyCounts, so
        # a million keys that have been hit add nothing for the collector to scan
        # (a KeyCounts each made a full collection 150 ms at 1,000,000 keys).
        self._hit_counts: dict[Key, int] = {}
        self._failures: OrderedDict[Key, Answer] = OrderedDict()  # remembered for error_ttl
        self._hung: dict[Key, Flight] = {}  # blocking calls past their deadline, holding their key (lock_age)
        self._workers = shared_workers()  # the threads blocking calls run in
        # Lock-free hits append their key here (list.append is atomic, with or
        # without the GIL); they are folded into counters and LRU order under
        # the lock, oldest first, before anything reads either.
        self._hit_log: list[Key] = []
        self._totals = dict.fromkeys((*KEY_COUNTERS, "in_flight", "evictions", "refreshes"), 0)
        self._shed = Answer(None, Overloaded(f"more than {max_waiters} requests already wait on this key"), "shed")
        self._get = self._make_get()
        if type(self).get is CollapsedForwardingProxy.get:  # a subclass's own get is never bypassed
            self.get = self._get  # type: ignore[method-assign]

    # -- the public API -------------------------------------------------

    def get(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Value:
        """The key's value, fetching it if need be; raises CacheError.

        `timeout` (seconds) bounds this caller's wait, below the proxy's own:
        past it the caller gets OriginTimeout, and the fetch goes on for the
        others and still fills the cache.

        A fresh hit takes no lock: one dict read, one clock read, one append.
        Every change to an entry is made under the lock by replacing its tuple
        whole, so the one read of it is the moment the request is served."""
        return self._get(key, ttl, timeout=timeout)

    def _make_get(self, miss: Callable[[Key, float | None, float | None], Any] | None = None) -> Callable[..., Value]:
        """The one definition of `get`: a closure over pre-bound methods, as
        functools.lru_cache builds its wrapper, which spares a hit five attribute
        lookups (220 ns against the floor's 80 ns as a plain method, where the
        goal is 2x: bench/scale.py). Where a subclass does not override `get`,
        the instance answers `get` with it directly, sparing one more frame.

        `miss(key, ttl, timeout)` answers what is no fresh hit: by default it
        waits for the value; the asyncio face (aio.py) passes its own, so that
        its hits are served by this same lock-free path."""
        entry_of, hit_clock, log, fold = self._entries.get, self._hit_clock, self._hit_log, self._fold_hits_locked
        record, wait = log.append, self._wait
        if miss is None:
            def miss(key: Key, ttl: float | None, timeout: float | None) -> Value:
                return wait(key, ttl, False, timeout).result()

        # (timeout is not keyword-only here, as in the method: that costs a hit 12 ns)
        def get(key: Key, ttl: float | None = None, timeout: float | None = None) -> Value:
            entry = entry_of(key)
            if entry is not None and hit_clock() < entry[1]:
                record(key)
                if len(log) >= HIT_LOG_LIMIT:
                    fold()
                return entry[0]
            return miss(key, ttl, timeout)

        get.__doc__ = CollapsedForwardingProxy.get.__doc__
        return get

    def _fold_hits_locked(self) -> None:
        with self.lock:
            self._fold_hits()

    def lookup(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Answer:
        """Like `get`, but returns the Answer, which says how it was served."""
        return self._wait(key, ttl, False, timeout)

    def fetch_and_cache(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Value:
        """Fetch the key from the origin now, even if a fresh entry is cached
        (joining a fetch already in flight), cache it for `ttl` (by default
        the proxy's), and return it."""
        return self._wait(key, ttl, True, timeout).result()

    def request(self, key: Key, on_answer: OnAnswer, ttl: float | None = None, *,
                serve_stale: bool = True, force: bool = False) -> Answer | None:
        """Non-blocking: the Answer now if it can be given now, else None and
        `on_answer(answer)` is called once, from another thread, when it can.
        With serve_stale false, `grace` and `stale_if_error` never apply to
        this request: it gets a fresh value or an error (as a `read` must).
        With force, it fetches past a fresh entry, as `fetch_and_cache` does."""
        ttl = checked_ttl(ttl)
        with self.lock:
            answer, flight, launch = self._admit(key, ttl, force=force, serve_stale=serve_stale)
            if flight is not None:
                if not serve_stale:
                    on_answer = partial(self._unstale, flight, on_answer)
                flight.callbacks.append((on_answer, flight is launch and flight.led))
        if launch is not None:
            self._launch(launch)
        return answer

    def is_cached(self, key: Key) -> bool:
        """True while a fresh entry (a value or a key-does-not-exist) is cached."""
        with self.lock:
            entry = self._entries.get(key)
            return entry is not None and self.clock() < _fresh_until(entry)

    def invalidate(self, key: Key) -> None:
        """Drop the key's entry. A fetch already in flight still answers the
        requests waiting on it, but neither fills the cache nor takes more."""
        with self.lock:
            self._entries.pop(key, None)
            self._failures.pop(key, None)
            self._hung.pop(key, None)  # its value, if it ever comes, was fetched before this
            self.flights.detach(key)

    def ttl_left(self, answer: Answer) -> float:
        """Seconds for which `answer`'s entry stays fresh (<= 0 once expired)."""
        return answer.expires - self.clock()

    def stats(self) -> dict[str, int]:
        with self.lock:
            self._fold_hits()
            t = self._totals
            return {"requests": sum(t[c] for c in COUNTER_OF.values()), **{c: t[c] for c in KEY_COUNTERS},
                    "entries": len(self._entries), "in_flight": t["in_flight"], "evictions": t["evictions"],
                    "refreshes": t["refreshes"]}

    def key_stats(self, key: Key) -> dict[str, Any]:
        with self.lock:
            self._fold_hits()
            entry = self._entries.get(key)
            counts = self._key_counts.get(key)
            fields = (counts or KeyCounts(plain_fill=self._filled_plainly(key, entry))).counts()
            lock_free = self._hit_counts.get(key, 0)
            fields["hits"] += lock_free
            fields["requests"] += lock_free
            fetch_s = counts.last_fetch_s if counts is not None else None if entry is None else entry[2]
            flight = self.flights.in_air.get(key)
            if flight is not None:  # a fetch's counts land when it settles; this one has been sent
                fields["origin_fetches"] += 1
            now = self.clock()
            fresh_until = NEVER if entry is None else _fresh_until(entry)
            cached = now < fresh_until
            return {**fields, "waiting": flight.waiters if flight else 0, "cached": cached,
                    "ttl_left": round(fresh_until - now, 6) if cached else None,
                    "last_fetch_s": None if fetch_s is None else round(fetch_s, 6)}

    # -- admission: what a request gets, decided under the lock ------------

    def _admit(self, key: Key, ttl: float | None, force: bool,
               serve_stale: bool = True) -> tuple[Answer | None, Flight | None, Flight | None]:
        """(answer now, or the flight to wait on) and the flight to launch once the lock is released."""
        self._fold_hits()
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            if not force:
                fresh_until = _fresh_until(entry)
                if now < fresh_until:
                    refresh = self._early_refresh(key, entry, now) if self.early_refresh else None
                    return self._serve(key, _answer(entry, "hit")), None, refresh
                if serve_stale and now < fresh_until + self.grace:
                    quiet = key in self.flights.in_air or key in self._failing(now) or key in self._hung
                    refresh = None if quiet else self._start(key, self.ttl, now, led=False)
                    return self._serve(key, _answer(entry, "stale")), None, refresh
        failure = self._failing(now).get(key)
        if failure is not None and not force:
            return self._serve(key, self._stale_or(key, failure, now) if serve_stale else failure), None, None
        hung = self._hung.get(key)
        if hung is not None:
            if now - hung.started < self.lock_age:  # one call per key: fail fast meanwhile
                error = OriginTimeout(f"an origin call for this key has not returned in {now - hung.started:.3g}s")
                failed = Answer(None, error, "hit")
                return self._serve(key, self._stale_or(key, failed, now) if serve_stale else failed), None, None
            del self._hung[key]  # past lock_age: one more call may start; the hung one's value will be ignored
        flight = self.flights.in_air.get(key)
        if flight is not None:
            if self.max_waiters and flight.waiters >= self.max_waiters:
                return self._serve(key, self._shed), None, None
            flight.waiters += 1
            return None, flight, None
        flight = self._start(key, self.ttl if ttl is None else ttl, now, led=True)
        return None, flight, flight

    def _serve(self, key: Key, answer: Answer) -> Answer:
        counts = self._counts_of(key)
        self._count(counts, COUNTER_OF[answer.cache])
        if answer.error is not None:
            self._count(counts, "errors")
        return answer

    def _failing(self, now: float) -> OrderedDict[Key, Answer]:
        """The remembered failures, the expired ones forgotten first (oldest first, so cheap)."""
        failures = self._failures
        while failures and next(iter(failures.values())).expires <= now:
            failures.popitem(last=False)
        return failures

    def _unstale(self, flight: Flight, on_answer: OnAnswer, answer: Answer) -> None:
        """What a waiter that takes no stale value gets: the fetch's own error
        where the others get the stale entry (and it is counted so)."""
        if answer.cache == "stale":
            with self.lock:
                counts = self._counts_of(flight.key)
                self._count(counts, "stale", -1)
                self._count(counts, "collapsed")
                self._count(counts, "errors")
            answer = Answer(None, flight.error, "collapsed")
        on_answer(answer)

    def _stale_or(self, key: Key, answer: Answer, now: float) -> Answer:
        """The stale entry instead of a failure, within stale_if_error of its expiry."""
        entry = self._entries.get(key)
        if entry is not None and now < _fresh_until(entry) + self.stale_if_error:
            return _answer(entry, "stale")
        return answer

    def _early_refresh(self, key: Key, entry: Entry, now: float) -> Flight | None:
        """XFetch (Vattani et al., VLDB 2015): refresh before expiry with a
        probability that rises as expiry nears and with the fetch's cost."""
        if key in self.flights.in_air or key in self._failing(now) or key in self._hung:
            return None
        if now - entry[2] * self.early_refresh * math.log(1.0 - self.random()) < _fresh_until(entry):
            return None
        return self._start(key, self.ttl, now, led=False)

    def _start(self, key: Key, ttl: float, now: float, led: bool) -> Flight:
        self._totals["origin_fetches"] += 1
        self._totals["in_flight"] += 1
        if not led:
            self._totals["refreshes"] += 1
        return self.flights.start(key, now, ttl, led)

    # -- counters ----------------------------------------------------------

    def _counts_of(self, key: Key) -> KeyCounts:
        counts = self._key_counts.get(key)
        if counts is None:
            self._sweep_counts()
            entry = self._entries.get(key)
            self._key_counts[key] = counts = KeyCounts(plain_fill=self._filled_plainly(key, entry))
            if entry is not None:
                counts.last_fetch_s = entry[2]
        return counts

    def _filled_plainly(self, key: Key, entry: Entry | None) -> bool:
        """Whether the key's counts so far are what a plain fill stands for (one
        miss, one fetch): it has an entry, or had one when it was last hit."""
        return entry is not None or key in self._hit_counts

    def _count(self, counts: KeyCounts, counter: str, n: int = 1) -> None:
        setattr(counts, counter, getattr(counts, counter) + n)
        self._totals[counter] += n

    def _forget_counts(self, key: Key) -> None:
        """An evicted key's counters start again from zero."""
        self._key_counts.pop(key, None)
        self._hit_counts.pop(key, None)

    def _sweep_counts(self) -> None:
        """Keep the counters of keys the cache no longer holds (a failed fetch, an
        invalidated entry) bounded: past twice max_entries of them, drop them all,
        in one sweep whose cost is spread over as many creations."""
        if len(self._key_counts) > 2 * self.max_entries + len(self.flights.in_air):
            held = self._entries.keys() | self.flights.in_air.keys() | self._failures.keys()
            self._key_counts = {key: counts for key, counts in self._key_counts.items() if key in held}
        if len(self._hit_counts) > 2 * self.max_entries:
            self._hit_counts = {key: n for key, n in self._hit_counts.items() if key in self._entries}

    def _fold_hits(self) -> None:
        """Under the lock: count the lock-free hits and move their keys to the LRU's end."""
        log = self._hit_log
        n = len(log)
        if not n:
            return
        hits = log[:n]
        del log[:n]  # appends made since the slice stay for the next fold
        touch, entries, hit_counts = self._entries.move_to_end, self._entries, self._hit_counts
        times = Counter(hits)  # counted in C: a hot key costs the loop below once, not once per hit
        # Each key once, in the order of its last hit: the same LRU order as a move per hit.
        for key in reversed(dict.fromkeys(reversed(hits))):
            if key in entries:  # (an evicted key's counters start again from zero)
                hit_counts[key] = hit_counts.get(key, 0) + times[key]
                touch(key)
        self._totals["hits"] += n
        self._sweep_counts()

    # -- flights -----------------------------------------------------------

    def _wait(self, key: Key, ttl: float | None, force: bool, timeout: float | None = None) -> Answer:
        ttl = checked_ttl(ttl)
        patience = self.timeout if timeout is None else min(checked_ttl(timeout, "timeout") or 0.0, self.timeout)
        with self.lock:
            answer, flight, launch = self._admit(key, ttl, force)
            if flight is not None and flight.event is None:
                flight.event = threading.Event()
        if launch is not None:
            self._launch(launch, leader_waits=flight is launch)
        if flight is None:
            return answer  # type: ignore[return-value]
        if not flight.wait(min(patience, threading.TIMEOUT_MAX)):
            if patience < self.timeout:  # this caller's own limit: the flight is the others' business
                return gave_up(patience, led=flight is launch)
            self.flights.time_out(flight)  # the timer thread is late; the flight's deadline has passed
        if flight is launch and flight.crash is not None:
            raise flight.crash  # what the call raised that is no Exception goes on in its leader's thread
        return flight.answers[0 if flight is launch else 1]  # type: ignore[index]

    def _launch(self, flight: Flight, leader_waits: bool = False) -> None:
        """Start the origin fetch; called without the lock."""
        if self._start_fetch is not None:
            self.flights.launch(flight, lambda f: self._start_fetch(f.key, partial(self.settle, f)))  # type: ignore[misc]
        else:
            flight.calling = True
            self.flights.launch(flight, partial(self._start_call, leader_waits=leader_waits))

    def _start_call(self, flight: Flight, leader_waits: bool) -> None:
        """A blocking call runs in a thread of its own, so every waiter, the leader too, can leave at the deadline."""
        try:
            self._workers.submit(self._call_backend, flight, leader_waits)
        except BaseException:
            flight.calling = False
            raise

    def _call_backend(self, flight: Flight, leader_waits: bool) -> None:
        try:
            result = awaitable_refused(self.backend(flight.key))
        except BaseException as exc:
            result = exc
            if not isinstance(exc, Exception):
                flight.crash = exc  # (a blocking leader raises it; else it ends this thread, as before)
        with self.lock:
            flight.calling = False
            late = flight.answers is not None
            if late:
                self._returned_late(flight, result)
        if not late:
            self.settle(flight, result)
        if flight.crash is not None and (late or not leader_waits):  # (no leader waits for it any more)
            raise flight.crash

    def _returned_late(self, flight: Flight, result: Value | BaseException) -> None:
        """Under the lock: a hung call came back. Its value fills the cache, if it still holds its key."""
        if self._hung.get(flight.key) is not flight:
            return
        del self._hung[flight.key]
        error = as_cache_error(result) if isinstance(result, BaseException) else None
        if error is None or isinstance(error, KeyMissing):
            now = self.clock()
            self._fill(flight.key, None if error else result, error, flight.ttl, now - flight.started, now)

    def _timeout_error(self) -> CacheError:
        return OriginTimeout(f"origin fetch took longer than {self.timeout}s")

    def settle(self, flight: Flight, result: Value | BaseException, ttl: float | None = None) -> None:
        """Finish `flight` with the origin's value or error, once; later calls
        (a late answer after the timeout) are ignored. `ttl` overrides the
        entry's lifetime, as a copy of another cache's entry needs."""
        self.flights.settle(flight, result, ttl)

    def _settle_locked(self, flight: Flight, result: Value | BaseException, ttl: float | None) -> tuple[Answer, Answer]:
        self._fold_hits()
        error = as_cache_error(result) if isinstance(result, BaseException) else None
        value = None if error is not None else result
        now, key = self.clock(), flight.key
        self._totals["in_flight"] -= 1
        answered = error is None or isinstance(error, KeyMissing)  # key-does-not-exist is an answer
        plain = error is None and flight.led and flight.waiters == 1 and key not in self._key_counts \
            and key not in self._entries and key not in self._hit_counts and not flight.detached
        counts = None if plain else self._counts_of(key)  # before the fill, which would make it look plain
        follower = Answer(value, error, "collapsed")
        flight.error = error
        if not flight.detached:
            self.flights.land(flight)
            if answered:
                follower = self._fill(key, value, error, flight.ttl if ttl is None else ttl, now - flight.started, now)
            else:
                follower = self._stale_or(key, follower, now)
                if flight.calling:  # the deadline passed with the call still running: it holds the key
                    self._hold_hung(flight)
                if self.error_ttl:
                    self._remember_failure(key, Answer(value, error, "hit", now + self.error_ttl))
        leader = follower if follower.cache == "stale" else follower.served_as("miss")
        if counts is None:  # a plain fill's counts are what an entry with no KeyCounts stands for
            self._totals["misses"] += 1
        else:
            self._count_flight(flight, counts, leader, follower, answered)
        return leader, follower

    def _count_flight(self, flight: Flight, counts: KeyCounts, leader: Answer, follower: Answer,
                      answered: bool) -> None:
        counts.origin_fetches += 1  # type: ignore[attr-defined]  # (the total was counted at the start)
        counts.last_fetch_s = self.clock() - flight.started
        if not answered:
            self._count(counts, "origin_errors")
        if flight.led:
            self._count(counts, COUNTER_OF[leader.cache])
        self._count(counts, COUNTER_OF[follower.cache], flight.waiters - flight.led)
        if follower.error is not None:
            self._count(counts, "errors", flight.waiters)

    def _fill(self, key: Key, value: Value, error: CacheError | None, ttl: float, fetch_seconds: float,
              now: float) -> Answer:
        if error is not None:
            ttl = min(ttl, self.negative_ttl)
        elif self.jitter:
            ttl *= 1.0 - self.jitter * self.random()
        expires = now + ttl
        if error is not None:
            entry: Entry = (_Missing(error, expires), NEVER, fetch_seconds)
        else:
            entry = (value, expires, fetch_seconds)
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        self._failures.pop(key, None)
        while len(entries) > self.max_entries:
            old_key, _ = entries.popitem(last=False)
            self._totals["evictions"] += 1
            self._forget_counts(old_key)
        return Answer(value, error, "collapsed", expires)

    def _hold_hung(self, flight: Flight) -> None:
        hung = self._hung
        hung[flight.key] = flight
        if len(hung) > self.max_entries:  # keys whose call never came back: forget the oldest
            del hung[next(iter(hung))]

    def _remember_failure(self, key: Key, failure: Answer) -> None:
        self._failures[key] = failure
        self._failures.move_to_end(key)
        if len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)


def _fresh_until(entry: Entry) -> float:
    value = entry[0]
    return value.expires if type(value) is _Missing else entry[1]


def _answer(entry: Entry, cache: str) -> Answer:
    value = entry[0]
    if type(value) is _Missing:
        return Answer(None, value.error, cache, value.expires)
    return Answer(value, None, cache, entry[1])


def gave_up(timeout: float, led: bool) -> Answer:
    """What a caller gets whose own `timeout` passed before its fetch settled."""
    error = OriginTimeout(f"gave up waiting after {timeout:g}s (the fetch goes on for the others)")
    return Answer(None, error, "miss" if led else "collapsed")


def checked_ttl(ttl: Any, name: str = "ttl") -> float | None:
    """A number of seconds (a request's own ttl, or a setting), refused at the call
    if it is no number a clock can count in, so a bad one costs its caller, not the herd."""
    if ttl is None:
        return None
    if type(ttl) not in (int, float):
        raise TypeError(f"{name} must be a number of seconds, not {type(ttl).__name__}")
    if not 0 <= ttl < 1e15:  # beyond that, a float clock cannot add it meaningfully (and 10**400 overflows)
        raise ValueError(f"{name} must be between 0 and 1e15 seconds, not {str(ttl)[:50]}")
    return float(ttl)
