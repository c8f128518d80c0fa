"""Adaptive W-TinyLFU: the eviction and admission policy the store keeps by default.

Why this policy: plain LRU keeps whatever came last, so one scan or a loop a
little larger than the cache flushes everything worth keeping. TinyLFU
(Einziger, Friedman, Manes) admits a key into the main area only if it was
asked for more often, lately, than the key it would push out; that defends
against scans and loops and is near optimal on skewed (Zipf) traffic. Recency
bursts, where new keys are reused soon and then forgotten, need the opposite:
a large LRU window in front of the filter. No fixed split fits every workload,
so the window grows or shrinks by hill climbing on the hit ratio, as Caffeine
does: move the split a step, keep moving the same way while the hit ratio rises,
turn back when it falls, take smaller steps as it settles, and start again with
a large step when the hit ratio jumps (the workload changed).

Layout: window (LRU) -> probation (LRU) <-> protected (LRU, 80% of the main area).
A new key enters the window; the window's oldest spills into probation as a
candidate and stays only if the sketch says it is more popular than probation's
oldest (the victim). A hit in probation promotes to protected; protected's
oldest is demoted back to probation.

Memory that the garbage collector never walks: every region is a `_Queue`, two
plain dicts of atoms (the key and an int), which CPython untracks, rather than
an `OrderedDict` (tracked, and 30+ ms a full collection at a million keys).
"""

from __future__ import annotations

from collections.abc import Hashable

from collapsed_forwarding.sketch import FrequencySketch

WINDOW, PROBATION, PROTECTED = 0, 1, 2
_PROTECTED_SHARE = 0.8  # of the main area, as in Caffeine and the W-TinyLFU paper
_INITIAL_WINDOW = 0.01
_STEP = 0.0625  # the hill climber's first and restart step, a share of the capacity
_STEP_DECAY = 0.98  # each step in the same direction shrinks: the split settles
_RESTART = 0.05  # a hit ratio jump this large means a new workload: take big steps again


class _Queue:
    """Keys in the order they were pushed, with O(1) push, remove and pop-oldest.

    A key's position is the sequence number it was pushed with; `_keys` maps
    sequence numbers to keys and `_head` only moves forward over numbers that
    were removed, so each number is stepped over once: O(1) amortised. (A plain
    dict's own order can't do this: `next(iter(d))` rescans its deleted slots.)
    """

    __slots__ = ("_keys", "_head", "_next", "weight")

    def __init__(self) -> None:
        self._keys: dict[int, Hashable] = {}
        self._head = self._next = 0
        self.weight = 0

    def __len__(self) -> int:
        return len(self._keys)

    def push(self, key: Hashable) -> int:
        seq = self._next
        self._keys[seq] = key
        self._next = seq + 1
        return seq

    def remove(self, seq: int) -> None:
        del self._keys[seq]

    def oldest(self) -> Hashable:
        """The oldest key; the queue must not be empty."""
        keys, head = self._keys, self._head
        while head not in keys:
            head += 1
        self._head = head
        return keys[head]


class AdaptiveTinyLfuPolicy:
    """W-TinyLFU with a hill-climbing window; see the module docstring for why."""

    def __init__(self, max_entries: int, max_weight: int | None = None) -> None:
        self.max_entries, self.max_weight = max_entries, max_weight
        self._sketch = FrequencySketch(max_entries)
        self._queues = (_Queue(), _Queue(), _Queue())
        self._where: dict[Hashable, int] = {}  # key -> its queue's sequence number << 2 | region
        self._weights: dict[Hashable, int] = {}
        self._total = 0
        self._window_share = _INITIAL_WINDOW
        self._step = _STEP
        self._hits = self._misses = 0
        self._previous_ratio = 0.0
        self._sample = max(10 * max_entries, 1) if max_entries < 1 << 20 else 10 << 20

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._where

    def admit(self, key: Hashable, weight: int) -> list[Hashable]:
        if key in self._where:
            return self.resize(key, weight)
        self._sketch.add(key)
        self._misses += 1
        self._place(key, WINDOW, weight)
        self._weights[key] = weight
        self._total += weight
        if self._hits + self._misses >= self._sample:
            self._climb()
        return self._evict()

    def resize(self, key: Hashable, weight: int) -> list[Hashable]:
        code = self._where.get(key)
        if code is None:
            return self.admit(key, weight)
        change = weight - self._weights[key]
        self._weights[key] = weight
        self._queues[code & 3].weight += change
        self._total += change
        return self._evict()

    def touch_many(self, keys: list[Hashable]) -> None:
        where, add, queues = self._where, self._sketch.add, self._queues
        for key in keys:
            add(key)
            code = where.get(key)
            if code is None:
                continue
            self._hits += 1
            region = code & 3
            queues[region].remove(code >> 2)
            if region == PROBATION:
                weight = self._weights[key]
                queues[PROBATION].weight -= weight
                queues[PROTECTED].weight += weight
                region = PROTECTED
            where[key] = queues[region].push(key) << 2 | region
        self._demote()
        if self._hits + self._misses >= self._sample:
            self._climb()

    def discard(self, key: Hashable) -> None:
        code = self._where.pop(key, None)
        if code is not None:
            weight = self._weights.pop(key)
            queue = self._queues[code & 3]
            queue.remove(code >> 2)
            queue.weight -= weight
            self._total -= weight

    def weight(self) -> int:
        return self._total

    def _place(self, key: Hashable, region: int, weight: int) -> None:
        queue = self._queues[region]
        queue.weight += weight
        self._where[key] = queue.push(key) << 2 | region

    def _move(self, key: Hashable, region: int) -> None:
        code, weight = self._where[key], self._weights[key]
        source = self._queues[code & 3]
        source.remove(code >> 2)
        source.weight -= weight
        self._place(key, region, weight)

    def _over(self, count: int, weight: int, share: float) -> bool:
        """Whether a region of `count` keys and `weight` exceeds `share` of the capacity."""
        if count > share * self.max_entries:
            return True
        return self.max_weight is not None and weight > share * self.max_weight

    def _demote(self) -> None:
        protected = self._queues[PROTECTED]
        share = _PROTECTED_SHARE * (1.0 - self._window_share)
        while protected._keys and self._over(len(protected), protected.weight, share):
            self._move(protected.oldest(), PROBATION)

    def _evict(self) -> list[Hashable]:
        window, probation, protected = self._queues
        candidates: list[Hashable] = []
        while window._keys and self._over(len(window), window.weight, self._window_share):
            key = window.oldest()
            self._move(key, PROBATION)
            candidates.append(key)
        victims: list[Hashable] = []
        limit = self.max_weight
        while self._where and (len(self._where) > self.max_entries or (limit is not None and self._total > limit)):
            victim = (probation if probation._keys else protected if protected._keys else window).oldest()
            while candidates and candidates[0] not in self._where:
                candidates.pop(0)
            loser = victim
            if candidates and candidates[0] != victim:
                candidate = candidates[0]
                if limit is not None and self._weights[candidate] > limit:
                    loser = candidate
                elif self._sketch.frequency(candidate) <= self._sketch.frequency(victim):
                    loser = candidate
            self.discard(loser)
            victims.append(loser)
        return victims

    def _climb(self) -> None:
        """One hill-climbing step on the window's share, from the last sample's hit ratio."""
        ratio = self._hits / (self._hits + self._misses)
        change = ratio - self._previous_ratio
        step = self._step if change >= 0 else -self._step
        self._window_share = min(1.0, max(0.0, self._window_share + step))
        self._step = (_STEP if step > 0 else -_STEP) if abs(change) >= _RESTART else _STEP_DECAY * step
        self._previous_ratio = ratio
        self._hits = self._misses = 0
        self._demote()
