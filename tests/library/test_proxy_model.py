"""A model-based property test: drive the proxy with a synchronous origin and
compare every answer with a tiny model of the cache.

The model is an LRU-ordered dict of key -> (value or MISSING, expires) or None.
As in the proxy, a key keeps its place (and its counters) after an invalidate,
with no entry; a new key beyond `max_entries` evicts the least recently used.
Operations: get (with an optional per-request ttl), origin write and origin
delete (each followed by an invalidate, as the node's write does), a bare
invalidate, and advancing the fake clock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from support.doubles import FakeClock

from collapsed_forwarding import CollapsedForwardingProxy, KeyMissing

TTL, NEGATIVE_TTL, MAX_ENTRIES = 5.0, 1.5, 3
KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
MISSING: Any = object()  # the model's key-does-not-exist


class ProxyModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.origin: dict[str, str] = {"a": "a0", "b": "b0", "c": "c0"}  # d and e do not exist yet
        self.fetches = 0
        self.proxy = CollapsedForwardingProxy(self.fetch, ttl=TTL, negative_ttl=NEGATIVE_TTL,
                                              max_entries=MAX_ENTRIES, clock=self.clock,
                                              policy="lru")  # the model keeps LRU order
        self.model: OrderedDict[str, tuple[Any, float]] = OrderedDict()  # the entries, least recently used first
        self.counts = {"hits": 0, "misses": 0, "evictions": 0, "origin_fetches": 0}
        self.versions = 0

    def fetch(self, key: str) -> str:
        self.fetches += 1
        if key not in self.origin:
            raise KeyError(key)
        return self.origin[key]

    # -- operations ---------------------------------------------------------

    @rule(key=KEYS, ttl=st.sampled_from([None, None, 0.0, 2.0, 8.0]))
    def get(self, key: str, ttl: float | None) -> None:
        answer = self.proxy.lookup(key, ttl)
        now = self.clock()
        if key in self.model:
            self.model.move_to_end(key)
        entry = self.model.get(key)
        if entry is not None and now < entry[1]:
            expected = (entry[0], "hit")
            self.counts["hits"] += 1
        else:
            truth = self.origin.get(key, MISSING)
            lifetime = TTL if ttl is None else ttl
            if truth is MISSING:
                lifetime = min(lifetime, NEGATIVE_TTL)
            self.model[key] = (truth, now + lifetime)
            if len(self.model) > MAX_ENTRIES:
                self.model.popitem(last=False)
                self.counts["evictions"] += 1
            expected = (truth, "miss")
            self.counts["misses"] += 1
            self.counts["origin_fetches"] += 1

        if answer.error is not None:
            assert isinstance(answer.error, KeyMissing), answer
            got = (MISSING, answer.cache)
        else:
            got = (answer.value, answer.cache)
        assert got == expected, f"get({key!r}) at t={now}: got {got}, model says {expected}"

    @rule(key=KEYS)
    def origin_write(self, key: str) -> None:
        self.versions += 1
        self.origin[key] = f"{key}{self.versions}"
        self._invalidate(key)

    @rule(key=KEYS)
    def origin_delete(self, key: str) -> None:
        self.origin.pop(key, None)
        self._invalidate(key)

    @rule(key=KEYS)
    def invalidate(self, key: str) -> None:
        self._invalidate(key)

    @rule(seconds=st.sampled_from([0.5, 1.0, 1.5, 2.0, 5.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def _invalidate(self, key: str) -> None:
        self.proxy.invalidate(key)
        self.model.pop(key, None)

    # -- invariants -------------------------------------------------------------

    @invariant()
    def cached_keys_agree(self) -> None:
        now = self.clock()
        for key in ["a", "b", "c", "d", "e"]:
            entry = self.model.get(key)
            assert self.proxy.is_cached(key) == (entry is not None and now < entry[1]), key

    @invariant()
    def stats_agree(self) -> None:
        stats = self.proxy.stats()
        assert self.fetches == self.counts["origin_fetches"]
        for name, count in self.counts.items():
            assert stats[name] == count, name
        assert stats["requests"] == stats["hits"] + stats["misses"]
        assert stats["stale"] == stats["collapsed"] == stats["shed"] == stats["in_flight"] == 0
        assert stats["entries"] == len(self.model) <= MAX_ENTRIES


ProxyModel.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
TestProxyModel = ProxyModel.TestCase
