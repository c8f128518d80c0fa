"""The proxy's counters: totals, and per-key counts for the keys that need them.

Everything here is guarded by the proxy's lock. Per-key counts exist only for
keys with more to count than the one miss that filled them: a plain fill is
what an entry with no KeyCounts stands for, and lock-free hits are kept as a
plain int per key. So a million keys, each filled once and hit, add nothing
for the garbage collector to scan (a KeyCounts each made a full collection
150 ms at 1,000,000 keys).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from typing import Any

COUNTER_OF = {"hit": "hits", "stale": "stale", "miss": "misses", "collapsed": "collapsed", "shed": "shed"}
KEY_COUNTERS = ("hits", "stale", "misses", "collapsed", "shed", "errors", "origin_fetches", "origin_errors")
TOTALS = (*KEY_COUNTERS, "in_flight", "evictions", "refreshes")


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


class Counters:
    """Totals and per-key counts. `entries`, `in_air` and `failures` are the
    proxy's own maps (read, never changed here): a key they hold keeps its counts."""

    def __init__(self, max_entries: int, entries: Mapping[Hashable, Any], in_air: Mapping[Hashable, Any],
                 failures: Mapping[Hashable, Any]) -> None:
        self.max_entries = max_entries
        self._entries, self._in_air, self._failures = entries, in_air, failures
        self.totals = dict.fromkeys(TOTALS, 0)
        # For keys with more to count than the one miss that filled them; those of
        # keys no longer held are swept once they are many (_sweep).
        self.key_counts: dict[Hashable, KeyCounts] = {}
        # Lock-free hits, folded in per key: a plain int each, not a KeyCounts.
        self.hit_counts: dict[Hashable, int] = {}

    def counts_of(self, key: Hashable) -> KeyCounts:
        counts = self.key_counts.get(key)
        if counts is None:
            self._sweep()
            entry = self._entries.get(key)
            self.key_counts[key] = counts = KeyCounts(plain_fill=self.filled_plainly(key, entry))
            if entry is not None:
                counts.last_fetch_s = entry[2]
        return counts

    def filled_plainly(self, key: Hashable, entry: Any) -> bool:
        """Whether the key's counts so far are what a plain fill stands for (one
        miss, one fetch): it has an entry, or had one when it was last hit."""
        return entry is not None or key in self.hit_counts

    def has_counts(self, key: Hashable) -> bool:
        return key in self.key_counts or key in self.hit_counts

    def count(self, counts: KeyCounts, counter: str, n: int = 1) -> None:
        setattr(counts, counter, getattr(counts, counter) + n)
        self.totals[counter] += n

    def served(self, key: Hashable, cache: str, failed: bool) -> None:
        """One request answered now, as `cache` (hit, stale, shed...), with an error or not."""
        counts = self.counts_of(key)
        self.count(counts, COUNTER_OF[cache])
        if failed:
            self.count(counts, "errors")

    def forget(self, key: Hashable) -> None:
        """An evicted key's counters start again from zero."""
        self.key_counts.pop(key, None)
        self.hit_counts.pop(key, None)

    def count_hits(self, hits: list[Hashable]) -> list[Hashable]:
        """Count lock-free hits (oldest first); the keys still held, each once,
        in the order of its last hit: what the eviction policy is told of."""
        entries, hit_counts = self._entries, self.hit_counts
        first, n = hits[0], len(hits)
        if hits.count(first) == n:  # one hot key, the common case of a full log: no dict per hit
            times: dict[Hashable, int] = {first: n}
        else:
            times = Counter(reversed(hits))  # counted in C, keys in the order of their last hit, newest first
        keys = [key for key in reversed(times) if key in entries]  # (an evicted key's counts start again)
        for key in keys:
            hit_counts[key] = hit_counts.get(key, 0) + times[key]
        self.totals["hits"] += n
        self._sweep()
        return keys

    def key_fields(self, key: Hashable, entry: Any) -> tuple[dict[str, int], float | None]:
        """The key's counts (lock-free hits included), and how long its last fetch took."""
        counts = self.key_counts.get(key)
        fields = (counts or KeyCounts(plain_fill=self.filled_plainly(key, entry))).counts()
        lock_free = self.hit_counts.get(key, 0)
        fields["hits"] += lock_free
        fields["requests"] += lock_free
        fetch_s = counts.last_fetch_s if counts is not None else None if entry is None else entry[2]
        return fields, fetch_s

    def summary(self, entries: int) -> dict[str, int]:
        t = self.totals
        return {"requests": sum(t[c] for c in COUNTER_OF.values()), **{c: t[c] for c in KEY_COUNTERS},
                "entries": entries, "in_flight": t["in_flight"], "evictions": t["evictions"],
                "refreshes": t["refreshes"]}

    def _sweep(self) -> None:
        """Keep the counters of keys the cache no longer holds (a failed fetch, an
        invalidated entry) bounded: past twice max_entries of them, drop them all,
        in one sweep whose cost is spread over as many creations."""
        if len(self.key_counts) > 2 * self.max_entries + len(self._in_air):
            held = self._entries.keys() | self._in_air.keys() | self._failures.keys()
            self.key_counts = {key: counts for key, counts in self.key_counts.items() if key in held}
        if len(self.hit_counts) > 2 * self.max_entries:
            self.hit_counts = {key: n for key, n in self.hit_counts.items() if key in self._entries}
