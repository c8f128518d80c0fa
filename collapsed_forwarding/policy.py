"""Which keys a bounded store keeps: the eviction (and admission) policy.

A policy knows keys and their weights, never values. The store calls it under
its own lock only, and evicts what it is told to.

Beware a plain dict used as a queue: `next(iter(d))` after many deletions at
the front scans every deleted slot, so evicting that way costs O(n) per key
(measured: 67 us per eviction at 1,000,000 keys). OrderedDict's
`popitem(last=False)` is O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Protocol

from .tinylfu import AdaptiveTinyLfuPolicy


class Policy(Protocol):
    """Keeps at most `max_entries` keys and, if `max_weight` is set, at most that total weight.

    A policy may also have `admit_many(keys, weights) -> victims`: `admit` of
    each key in turn (distinct keys, none held), with the same outcome, for
    less. The store calls it where it exists, else `admit` for each key."""

    def admit(self, key: Hashable, weight: int) -> list[Hashable]:
        """A key not held was just stored with `weight`: the keys to evict now
        until both bounds hold, which may include `key` itself (not admitted)."""
        ...

    def resize(self, key: Hashable, weight: int) -> list[Hashable]:
        """A held key's value was replaced, and now weighs `weight`: the keys to evict now."""
        ...

    def touch_many(self, keys: list[Hashable]) -> None:
        """Hits, oldest first, folded in from the lock-free hit log; keys not held are ignored."""
        ...

    def discard(self, key: Hashable) -> None:
        """The store dropped `key` itself (invalidated); nothing if it is not held."""
        ...

    def weight(self) -> int:
        """The total weight held."""
        ...


PolicyFactory = Callable[[int, "int | None"], Policy]


class LruPolicy:
    """Least recently used: an OrderedDict in use order."""

    def __init__(self, max_entries: int, max_weight: int | None = None) -> None:
        self.max_entries, self.max_weight = max_entries, max_weight
        self._weights: OrderedDict[Hashable, int] = OrderedDict()  # least recently used first
        self._total = 0

    def admit(self, key: Hashable, weight: int) -> list[Hashable]:
        self._weights[key] = weight
        self._total += weight
        return self._evict()

    def resize(self, key: Hashable, weight: int) -> list[Hashable]:
        weights = self._weights
        self._total += weight - weights.get(key, 0)
        weights[key] = weight
        weights.move_to_end(key)
        return self._evict()

    def touch_many(self, keys: list[Hashable]) -> None:
        weights, touch = self._weights, self._weights.move_to_end
        for key in keys:
            if key in weights:
                touch(key)

    def discard(self, key: Hashable) -> None:
        self._total -= self._weights.pop(key, 0)

    def weight(self) -> int:
        return self._total

    def _evict(self) -> list[Hashable]:
        weights, victims = self._weights, []
        limit = self.max_weight
        while weights and (len(weights) > self.max_entries or (limit is not None and self._total > limit)):
            key, weight = weights.popitem(last=False)
            self._total -= weight
            victims.append(key)
        return victims


POLICIES: dict[str, PolicyFactory] = {"lru": LruPolicy, "tinylfu": AdaptiveTinyLfuPolicy}
DEFAULT_POLICY = "tinylfu"
