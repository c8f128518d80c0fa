"""The cache's state behind its lock, and the rules by which it answers.

`admit` decides what a request gets now (a hit, a stale entry, a remembered
failure, a place in a flight, or a new flight to launch); `settle` records a
fetch's outcome (fill, remembered failure, hung call) and says what its
waiters get. Both run under the proxy's lock, and neither calls the origin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

from .answer import NEVER, Answer, Entry, Missing, answer_of, fresh_until
from .counters import COUNTER_OF, Counters, KeyCounts
from .errors import CacheError, KeyMissing, Overloaded, as_cache_error
from .failures import Failures
from .flight import Flight, Flights
from .store import Store

Key = Hashable
Admitted = tuple[Answer | None, Flight | None, Flight | None]


class Freshness:
    """How long answers stay good: the proxy's TTL settings (see CollapsedForwardingProxy)."""

    def __init__(self, ttl: float, negative_ttl: float, grace: float, stale_if_error: float, early_refresh: float,
                 jitter: float, error_ttl: float, random: Callable[[], float]) -> None:
        self.ttl, self.negative_ttl, self.grace, self.stale_if_error = ttl, negative_ttl, grace, stale_if_error
        self.early_refresh, self.jitter, self.error_ttl, self.random = early_refresh, jitter, error_ttl, random


class CacheState:
    """The entries, failures, flights and counters of one proxy, and its rules."""

    def __init__(self, store: Store, flights: Flights, freshness: Freshness, clock: Callable[[], float],
                 max_waiters: int, lock_age: float, max_fetches: int = 0) -> None:
        self.store, self.flights, self.fresh, self.clock = store, flights, freshness, clock
        self.max_waiters, self.max_fetches = max_waiters, max_fetches
        self.failures = Failures(store.max_entries, lock_age)
        self.counters = Counters(store.max_entries, store.entries, flights.in_air, self.failures.remembered)
        self._shed = Answer(None, Overloaded(f"more than {max_waiters} requests already wait on this key"), "shed")
        self._shed_fetch = Answer(None, Overloaded(f"{max_fetches} origin fetches are already in the air"), "shed")
        self._shed_late = Answer(None, Overloaded("this request waited out the fetch timeout already: it may join a "
                                                  "fetch in the air but start none"), "shed")

    # -- what a request gets ------------------------------------------------

    def admit(self, key: Key, ttl: float | None, force: bool, serve_stale: bool = True, age: float = 0.0) -> Admitted:
        """(answer now, or the flight to wait on) and the flight to launch once the lock is released.
        A fetch it starts has its deadline counted from `age` seconds ago, when the request was made;
        one made the whole timeout ago starts none, not even a refresh: without a fetch in the air
        to join, it is shed."""
        now, fresh = self.clock(), self.fresh
        start = age < self.flights.timeout
        entry = self.store.entries.get(key)
        if entry is not None:
            self.store.touch(key)
            if not force:
                until = fresh_until(entry)
                if now < until:
                    refresh = self._early_refresh(key, entry, now) if fresh.early_refresh and start else None
                    return self._serve(key, answer_of(entry, "hit")), None, refresh
                if serve_stale and now < until + fresh.grace:
                    quiet = not start or self._quiet(key, now)
                    refresh = None if quiet else self._start(key, fresh.ttl, now, led=False)
                    return self._serve(key, answer_of(entry, "stale")), None, refresh
        failures = self.failures
        if failures.remembered or failures.hung:  # (the usual miss skips both calls)
            failure = failures.failing(key, now)
            if failure is not None and not force:
                return self._serve(key, self.stale_or(key, failure, now) if serve_stale else failure), None, None
            hung = failures.hung_error(key, now)
            if hung is not None:  # one call per key: fail fast meanwhile
                failed = Answer(None, hung, "hit")
                return self._serve(key, self.stale_or(key, failed, now) if serve_stale else failed), None, None
        flight = self.flights.in_air.get(key)
        if flight is not None:
            if not flight.join(self.max_waiters):
                return self._serve(key, self._shed), None, None
            return None, flight, None
        if not start or 0 < self.max_fetches <= len(self.flights.in_air):  # (_at_fetch_cap, written out)
            shed = self._shed_fetch if start else self._shed_late
            return self._serve(key, self.stale_or(key, shed, now) if serve_stale else shed), None, None
        flight = self._start(key, fresh.ttl if ttl is None else ttl, now, led=True, age=age)
        return None, flight, flight

    def _at_fetch_cap(self) -> bool:
        return 0 < self.max_fetches <= len(self.flights.in_air)

    def stale_or(self, key: Key, answer: Answer, now: float) -> Answer:
        """The stale entry instead of a failure, within stale_if_error of its expiry."""
        entry = self.store.entries.get(key)
        if entry is not None and now < fresh_until(entry) + self.fresh.stale_if_error:
            return answer_of(entry, "stale")
        return answer

    def _serve(self, key: Key, answer: Answer) -> Answer:
        self.counters.served(key, answer.cache, answer.error is not None)
        return answer

    def _quiet(self, key: Key, now: float) -> bool:
        """No refresh may start: one is in the air, a failure is remembered, or a call hangs."""
        return key in self.flights.in_air or self.failures.busy(key, now) or self._at_fetch_cap()

    def _early_refresh(self, key: Key, entry: Entry, now: float) -> Flight | None:
        """XFetch (Vattani et al., VLDB 2015): refresh before expiry with a
        probability that rises as expiry nears and with the fetch's cost."""
        if self._quiet(key, now):
            return None
        fresh = self.fresh
        if now - entry[2] * fresh.early_refresh * math.log(1.0 - fresh.random()) < fresh_until(entry):
            return None
        return self._start(key, fresh.ttl, now, led=False)

    def _start(self, key: Key, ttl: float, now: float, led: bool, age: float = 0.0) -> Flight:
        totals = self.counters.totals
        totals["origin_fetches"] += 1
        totals["in_flight"] += 1
        if not led:
            totals["refreshes"] += 1
        return self.flights.start(key, now, ttl, led, age)

    # -- what a fetch's outcome does ------------------------------------------

    def settle(self, flight: Flight, result: Any, ttl: float | None) -> tuple[Answer, Answer]:
        """Record the outcome; (the leader's answer, a follower's)."""
        key, counters = flight.key, self.counters
        if flight.waiters == 1 and flight.led and not flight.detached and not isinstance(result, BaseException) \
                and key not in self.store.entries and key not in counters.key_counts \
                and key not in counters.hit_counts:
            # The usual miss: a value for a new key, and no one but its leader waiting. Nothing is
            # counted per key: a plain fill is what a key without counts stands for. (Not detached:
            # it is still the key's flight in the air.)
            totals = counters.totals
            totals["in_flight"] -= 1
            totals["misses"] += 1
            del self.flights.in_air[key]
            now = self.clock()
            answer = self.fill(key, result, None, flight.ttl if ttl is None else ttl, now - flight.started, now,
                               "miss")
            return answer, answer
        error = as_cache_error(result) if isinstance(result, BaseException) else None
        value = None if error is not None else result
        now, key = self.clock(), flight.key
        self.counters.totals["in_flight"] -= 1
        answered = error is None or isinstance(error, KeyMissing)  # key-does-not-exist is an answer
        plain = error is None and flight.alone() and key not in self.store.entries \
            and not self.counters.has_counts(key)
        counts = None if plain else self.counters.counts_of(key)  # before the fill, which would make it look plain
        flight.error = error
        landed = self.flights.land(flight)
        if landed and answered:
            follower = self.fill(key, value, error, flight.ttl if ttl is None else ttl, now - flight.started, now)
        else:
            follower = Answer(value, error, "collapsed")
        if landed and not answered:
            follower = self.stale_or(key, follower, now)
            if flight.calling:  # the deadline passed with the call still running: it holds the key
                self.failures.hold(flight)
            if self.fresh.error_ttl:
                self.failures.remember(key, Answer(value, error, "hit", now + self.fresh.error_ttl))
        leader = follower if follower.cache == "stale" else follower.served_as("miss")
        if counts is None:  # a plain fill's counts are what an entry with no KeyCounts stands for
            self.counters.totals["misses"] += 1
        else:
            self._count_flight(flight, counts, leader, follower, answered, now)
        return leader, follower

    def returned_late(self, flight: Flight, result: Any) -> Answer:
        """A hung call came back: what it brought, as its leader's caller gets it.
        Its value fills the cache, if the call still holds its key (see Failures)."""
        error = as_cache_error(result) if isinstance(result, BaseException) else None
        answer = Answer(None if error else result, error, "miss")
        if self.failures.returned(flight) and (error is None or isinstance(error, KeyMissing)):
            now = self.clock()
            filled = self.fill(flight.key, answer.value, error, flight.ttl, now - flight.started, now)
            answer = filled.served_as("miss")
        return answer

    def _count_flight(self, flight: Flight, counts: KeyCounts, leader: Answer, follower: Answer, answered: bool,
                      now: float) -> None:
        count = self.counters.count
        counts.origin_fetches += 1  # type: ignore[attr-defined]  # (the total was counted at the start)
        counts.last_fetch_s = now - flight.started
        if not answered:
            count(counts, "origin_errors")
        if flight.led:
            count(counts, COUNTER_OF[leader.cache])
        count(counts, COUNTER_OF[follower.cache], flight.followers())
        if follower.error is not None:
            count(counts, "errors", flight.waiters)

    def key_stats(self, key: Key) -> dict[str, Any]:
        entry = self.store.entries.get(key)
        fields, fetch_s = self.counters.key_fields(key, entry)
        flight = self.flights.in_air.get(key)
        if flight is not None:  # a fetch's counts land when it settles; this one has been sent
            fields["origin_fetches"] += 1
        now = self.clock()
        until = NEVER if entry is None else fresh_until(entry)
        cached = now < until
        return {**fields, "waiting": flight.waiters if flight else 0, "cached": cached,
                "ttl_left": round(until - now, 6) if cached else None,
                "last_fetch_s": None if fetch_s is None else round(fetch_s, 6)}

    def origin_error(self, flight: Flight, cache: str) -> Answer:
        """The fetch's own error for a waiter that was given the stale entry, counted as `cache`."""
        counters = self.counters
        counts = counters.counts_of(flight.key)
        counters.count(counts, "stale", -1)
        counters.count(counts, COUNTER_OF[cache])
        counters.count(counts, "errors")
        return Answer(None, flight.error, cache)

    def fill(self, key: Key, value: Any, error: CacheError | None, ttl: float, fetch_seconds: float,
             now: float, cache: str = "collapsed") -> Answer:
        """Cache the origin's answer; evict what the policy says. The answer (served as
        `cache`) is given even if the policy would not keep it."""
        fresh = self.fresh
        if error is not None:
            ttl = min(ttl, fresh.negative_ttl)
        elif fresh.jitter:
            ttl *= 1.0 - fresh.jitter * fresh.random()
        expires = now + ttl
        if error is not None:
            entry: Entry = (Missing(error, expires), NEVER, fetch_seconds)
        else:
            entry = (value, expires, fetch_seconds)
        if self.failures.remembered:
            self.failures.filled(key)
        victims = self.store.put(key, entry)
        if victims:
            self.counters.totals["evictions"] += len(victims)
            for victim in victims:
                self.counters.forget(victim)
        return Answer(value, error, cache, expires)
