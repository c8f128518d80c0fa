"""Adaptive W-TinyLFU: the eviction and admission policy the store keeps by default.

Why this policy: plain LRU keeps whatever came last, so one scan, or a loop a
little larger than the cache, flushes everything worth keeping. TinyLFU
(Einziger, Friedman, Manes) lets a key into the main area only if it was asked
for more often, lately, than the key it would push out: that resists scans and
loops and is near optimal on skewed (Zipf) traffic. Recency bursts, where new
keys are reused soon and then forgotten, want the opposite: a large LRU window
in front of the filter. No fixed split fits every workload (a 1% window loses
over 20 points to LRU on some database traces), so the split adapts.

How it adapts: by ARC's evidence, applied to W-TinyLFU's two areas. Each area
remembers the hashes of keys it lately evicted (a "ghost"). A miss on a key the
window lately lost says a larger window would have hit: the window grows by
half an entry. A miss on a key the main area lately lost says the opposite: it
shrinks. Unlike a hill climber sampling the hit ratio, this reacts within a few
misses of a change, even on short traces and small caches. One guard keeps
loops from fooling it, as they fool ARC: a window ghost counts only if fewer
requests than the capacity passed since it was evicted, when even a cache that
was all window would have kept it; a loop a little larger than the cache never
qualifies, so the filter keeps its stable part.

And by a direct measure beside them. The ghosts say only which side lately
lost a key, not whether the cache would hit more with the split elsewhere, and
on traces they were not tuned on they push it to an end and keep it there. So
three small copies of the policy, fed a hashed sample of the keys, try the
split a step either side of the real one (`split_trial`); after each period
the split moves to a neighbour that hit more. The copies start once the cache
evicts: until then no split matters, and under a byte bound the entries the
sample is sized by are not known.

The window is ARC itself in small: when recency wins and the window takes most
of the cache, a plain LRU window would leave the cache no better than LRU. So
a key hit while in the window moves to the window's protected part (ARC's T2,
the keys seen twice), away from the stream of keys seen once, and the split
between the two parts adapts by ARC's rule: a ghost hit on a key the window
lost after a hit there grows the protected part by one entry of the window; on
a key it lost unhit, shrinks it. It starts at none: a plain LRU window.

Layout: window (LRU <- protected LRU, at most 80% of the window) -> probation
(LRU) <-> protected (LRU, 80% of the main area). A new key enters the window
(or, while the cache fills and there is nothing to compete for, probation: the
window would only pass it on); the window's oldest (of its LRU part, else of
its protected part) spills into probation as a candidate and stays only if the
sketch says it is more popular than probation's oldest (the victim); ties keep
the victim, and a candidate seen only once lately (a one-hit wonder, which
TinyLFU's doorkeeper filters) never wins: one sighting is no evidence. A window
that shrank spills more candidates than an admission evicts; those no victim
was compared with stay only if seen more than once. A hit
in probation promotes to protected; protected's oldest is demoted back to
probation, and the window's protected oldest back to the window's LRU part.

Memory that the garbage collector never walks: every region and ghost is a
`_Queue`, plain dicts of atoms (keys, ints), which CPython untracks, rather
than an `OrderedDict` (always tracked: 30+ ms a full collection at a million keys).
"""

from __future__ import annotations

from collections.abc import Hashable

from .sketch import FrequencySketch
from .split_trial import SplitTrial

WINDOW, PROBATION, PROTECTED, WINDOW_PROTECTED = 0, 1, 2, 3  # a key's region: its number & _REGION
_REGION = 3
_STRIDE = 4  # a queue's numbers step by this from its region's own: a key's number says where it is
_PROMOTED = (WINDOW_PROTECTED, PROTECTED, PROTECTED, WINDOW_PROTECTED)  # where a hit moves a key, by region
_PROTECTED_SHARE = 0.8  # of the main area, as in Caffeine and the W-TinyLFU paper; the most of the window too
_INITIAL_WINDOW = 0.01  # TinyLFU's recommended start: mostly frequency, until the ghosts say otherwise
_ONCE = 1  # a candidate must have been seen more often than this lately to displace a key
_STEP_ENTRIES = 0.5  # the split moves this many entries a ghost hit: one hit alone barely moves it


class _Queue:
    """Keys in the order they were pushed, with O(1) push, remove and pop-oldest.

    A key's position is the number it was pushed with; `_keys` maps numbers to
    keys and `_head` only moves forward over numbers that were removed, so each
    number is stepped over once: O(1) amortised. (A plain dict's own order can't
    do this: `next(iter(d))` rescans its deleted slots.) Numbers go up by _STRIDE
    from the queue's `region`, so a number alone says which queue holds it, and
    the policy's map of keys to positions can hold the very int objects this
    queue's map does: one int a key, not two.
    """

    __slots__ = ("_keys", "_head", "_next", "weight")

    def __init__(self, region: int = 0) -> None:
        self._keys: dict[int, Hashable] = {}
        self._head = self._next = region
        self.weight = 0

    def __len__(self) -> int:
        return len(self._keys)

    def push(self, key: Hashable) -> int:
        seq = self._next
        self._keys[seq] = key
        self._next = seq + _STRIDE
        return seq

    def remove(self, seq: int) -> None:
        del self._keys[seq]

    def oldest(self) -> Hashable:
        """The oldest key; the queue must not be empty."""
        keys, head = self._keys, self._head
        while head not in keys:
            head += _STRIDE
        self._head = head
        return keys[head]


class _Ghost:
    """Hashes (not keys: nothing kept alive) of keys lately evicted from one side of the cache.

    A miss on a key still remembered here says that side was too small: ARC's
    signal, asked of the window and the main area instead of ARC's two lists.
    """

    __slots__ = ("_queue", "_seqs", "_times", "limit")

    def __init__(self, limit: int) -> None:
        self._queue = _Queue()
        self._seqs: dict[int, int] = {}
        self._times: dict[int, int] = {}  # each one's stamp: when it was evicted (in requests), and how
        self.limit = limit

    def add(self, hashed: int, stamp: int) -> None:
        """Remember `hashed` with `stamp`: when it was evicted, and how (the owner's encoding)."""
        self.take(hashed)
        self._seqs[hashed] = self._queue.push(hashed)
        self._times[hashed] = stamp
        if len(self._seqs) > self.limit:
            self._forget_oldest()

    def resize(self, limit: int) -> None:
        self.limit = limit
        while len(self._seqs) > limit:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        oldest: int = self._queue.oldest()  # type: ignore[assignment]
        self._queue.remove(self._seqs.pop(oldest))
        del self._times[oldest]

    def take(self, hashed: int) -> int | None:
        """The stamp `hashed` was evicted with, forgetting it; None if it is not remembered."""
        seq = self._seqs.pop(hashed, None)
        if seq is None:
            return None
        self._queue.remove(seq)
        return self._times.pop(hashed)


class AdaptiveTinyLfuPolicy:
    """W-TinyLFU whose window adapts by ghost hits and by a trial of its neighbours; see the module
    docstring for why."""

    def __init__(self, max_entries: int, max_weight: int | None = None, *, adaptive: bool = True) -> None:
        """`adaptive=False`: the split stays where `set_window_share` puts it (the trial's copies)."""
        self.max_entries, self.max_weight = max_entries, max_weight
        self._sketch = FrequencySketch(max_entries)
        self._queues = tuple(_Queue(region) for region in (WINDOW, PROBATION, PROTECTED, WINDOW_PROTECTED))
        self._where: dict[Hashable, int] = {}  # key -> its number in its queue (see _Queue)
        # keys hit while in the window, until they leave the cache or reach the main area's protected part:
        # if the window loses one (it may still, as a candidate in probation), its ghost says it was hit there
        # (a dict: CPython never untracks a set)
        self._hit_in_window: dict[Hashable, None] = {}
        self._weights: dict[Hashable, int] = {}
        self._total = 0
        self._window_share = _INITIAL_WINDOW
        self._window_protected = 0.0  # share of the window; none at first: the window is plain LRU
        # The entries it holds once full: max_entries, unless a byte bound binds first (see _fit_capacity)
        self._capacity = max_entries
        self._step = _STEP_ENTRIES / max_entries
        self._window_ghost, self._main_ghost = _Ghost(max_entries), _Ghost(max_entries)
        self._clock = 0  # requests seen, to date ghosts
        self._trial = SplitTrial(max_entries, _INITIAL_WINDOW, _copy) if adaptive else None

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._where

    def admit(self, key: Hashable, weight: int) -> list[Hashable]:
        where = self._where
        if key in where:
            return self.resize(key, weight)
        self._sketch.add(key)
        self._clock += 1
        if self._window_ghost._seqs or self._main_ghost._seqs:  # (their __len__ is a Python call)
            self._learn(hash(key))  # (a cache with ghosts has evicted: it is not filling; its sketch is grown)
            trial = self._trial
            if trial is not None and trial.in_sample(key):
                self._try(trial, key)
        else:
            if len(where) >= self._sketch.fits:
                self._sketch.grow(len(where) + 1)
            if self._filling(1, weight):
                self._place(key, PROBATION, weight)
                self._weights[key] = weight
                self._total += weight
                return []
        window = self._queues[WINDOW]
        window.weight += weight
        where[key] = window.push(key)
        self._weights[key] = weight
        self._total += weight
        return self._evict()

    def _filling(self, count: int, weight: int) -> bool:
        """Whether `count` more keys of `weight` fit with nothing evicted, in a cache that has
        evicted nothing lately (no ghost). While it fills, new keys go straight into probation:
        with no one to compete with, the window would only pass them on there, one by one."""
        if self._window_ghost._seqs or self._main_ghost._seqs:
            return False
        limit = self.max_weight
        return len(self._where) + count <= self.max_entries and (limit is None or self._total + weight <= limit)

    def resize(self, key: Hashable, weight: int) -> list[Hashable]:
        seq = self._where.get(key)
        if seq is None:
            return self.admit(key, weight)
        change = weight - self._weights[key]
        self._weights[key] = weight
        self._queues[seq & _REGION].weight += change
        self._total += change
        return self._evict()

    def admit_many(self, keys: list[Hashable], weights: list[int]) -> list[Hashable]:
        """`admit` of each key in turn, with the same outcome. While the cache fills (see
        `_filling`), all but the last go into probation at once, in the order `admit` would put them:
        each map is extended in C (dict.update), not key by key."""
        first = len(keys) - 1  # (the last is admitted alone: it may be the one that must evict)
        head, head_weights = keys[:first], weights[:first]
        added = sum(head_weights)
        if not first or not self._filling(first, added):
            return [victim for key, weight in zip(keys, weights, strict=True) for victim in self.admit(key, weight)]
        if len(self._where) + first > self._sketch.fits:
            self._sketch.grow(len(self._where) + first)
        self._sketch.add_many(head)
        self._clock += first
        probation = self._queues[PROBATION]
        seq = probation._next
        seqs = list(range(seq, seq + first * _STRIDE, _STRIDE))  # (a list: both maps hold the same ints)
        probation._keys.update(zip(seqs, head, strict=True))
        self._where.update(zip(head, seqs, strict=True))
        self._weights.update(zip(head, head_weights, strict=True))
        probation._next = seq + first * _STRIDE
        probation.weight += added
        self._total += added
        return self.admit(keys[first], weights[first])

    def touch_many(self, keys: list[Hashable]) -> None:
        where, queues, weights, hit_in_window = self._where, self._queues, self._weights, self._hit_in_window
        self._clock += len(keys)
        self._sketch.add_many(keys)  # a hit logged for a key since evicted still says it is popular
        for key in keys:
            seq = where.get(key)
            if seq is None:
                continue
            region = seq & _REGION
            queues[region].remove(seq)
            target = _PROMOTED[region]
            if target != region:
                weight = weights[key]
                queues[region].weight -= weight
                queues[target].weight += weight
                if target == WINDOW_PROTECTED:
                    hit_in_window[key] = None
                elif hit_in_window:  # into the main area's protected part, which the window can't lose
                    hit_in_window.pop(key, None)
            where[key] = queues[target].push(key)
        self._demote()
        self._demote_window()
        if self._trial is not None and (self._window_ghost._seqs or self._main_ghost._seqs):  # (see admit)
            for key in self._trial.sample(keys):
                self._try(self._trial, key)

    def discard(self, key: Hashable) -> None:
        seq = self._where.pop(key, None)
        if seq is not None:
            weight = self._weights.pop(key)
            queue = self._queues[seq & _REGION]
            queue.remove(seq)
            queue.weight -= weight
            self._total -= weight
            self._hit_in_window.pop(key, None)

    def weight(self) -> int:
        return self._total

    def set_window_share(self, share: float) -> None:
        """Give the window `share` of the capacity (0 to 1); the rest is the main area's. The window
        spills at the next key admitted, and the protected parts shrink to fit at the next hits told:
        nothing moves now, so a split set while a batch is admitted leaves the order `admit` gives."""
        self._window_share = share

    def _place(self, key: Hashable, region: int, weight: int) -> None:
        queue = self._queues[region]
        queue.weight += weight
        self._where[key] = queue.push(key)

    def _move(self, key: Hashable, region: int) -> None:
        seq, weight = self._where[key], self._weights[key]
        source = self._queues[seq & _REGION]
        source.remove(seq)
        source.weight -= weight
        self._place(key, region, weight)

    def _over(self, count: int, weight: int, share: float) -> bool:
        """Whether a region of `count` keys and `weight` exceeds `share` of the capacity."""
        if count > share * self.max_entries:
            return True
        return self.max_weight is not None and weight > share * self.max_weight

    def _demote_window(self) -> None:
        """Keep the window's protected part to its share of the window: its oldest go back to the
        window's LRU part, still marked as hit there."""
        protected = self._queues[WINDOW_PROTECTED]
        share = self._window_protected * self._window_share
        while protected._keys and self._over(len(protected._keys), protected.weight, share):  # (no __len__ call)
            self._move(protected.oldest(), WINDOW)

    def _demote(self) -> None:
        protected = self._queues[PROTECTED]
        share = _PROTECTED_SHARE * (1.0 - self._window_share)
        while protected._keys and self._over(len(protected._keys), protected.weight, share):
            self._move(protected.oldest(), PROBATION)

    def _evict(self) -> list[Hashable]:
        """Spill the window's overflow into probation as candidates, then evict until both bounds hold:
        each round, the less popular of the oldest candidate and probation's oldest goes. Then turn away
        the candidates no round compared that were seen only once lately (see _turn_away)."""
        candidates, limit = self._spill(self._queues[WINDOW]), self.max_weight
        if len(self._where) <= self.max_entries and (limit is None or self._total <= limit):
            return self._turn_away(candidates) if candidates else []  # (no candidate while the cache fills)
        victims = self._evict_over(candidates)
        return victims + self._turn_away(candidates) if len(candidates) > 1 else victims

    def _turn_away(self, candidates: list[Hashable]) -> list[Hashable]:
        """Evict the candidates still in probation that were seen only once lately, even under both
        bounds (so a cache that has evicted may evict at any admission; the store tells such a cache of
        each new key at once). A window that shrank spills more keys than an admission evicts, and the
        rest would enter the main area unopposed: a key seen once there would take a place it could never
        win against probation's oldest (TinyLFU's doorkeeper). Beside a loop, letting them in cost 3
        points of hit ratio (loop-mix at 5,000)."""
        where, frequency, turned = self._where, self._sketch.frequency, []
        for key in candidates:
            seq = where.get(key)
            if seq is not None and seq & _REGION == PROBATION and frequency(key) <= _ONCE:
                self._forget(key, window_lost=True)
                turned.append(key)
        return turned

    def _spill(self, window: _Queue) -> list[Hashable]:
        """Move the window's oldest keys into probation until it fits its share: the candidates. Its
        LRU part goes first, then, if that is empty, its protected part. (_Queue's push, remove,
        oldest and len written out for the LRU part: this runs on every miss.)"""
        probation, protected = self._queues[PROBATION], self._queues[WINDOW_PROTECTED]
        where, weights, candidates = self._where, self._weights, []
        window_keys, protected_keys, probation_keys = window._keys, protected._keys, probation._keys
        head, share, limit = window._head, self._window_share, self.max_weight
        most = share * self.max_entries
        while window_keys and (len(window_keys) + len(protected_keys) > most
                               or limit is not None and window.weight + protected.weight > share * limit):
            while head not in window_keys:
                head += _STRIDE
            key = window_keys.pop(head)
            weight = weights[key]
            window.weight -= weight
            probation.weight += weight
            seq = probation._next
            probation_keys[seq] = key
            probation._next = seq + _STRIDE
            where[key] = seq
            candidates.append(key)
        window._head = head
        while protected_keys and (len(protected_keys) > most or limit is not None and protected.weight > share * limit):
            key = protected.oldest()
            self._move(key, PROBATION)
            candidates.append(key)
        return candidates

    def _evict_over(self, candidates: list[Hashable]) -> list[Hashable]:
        window, probation, protected, window_protected = self._queues
        where, victims, limit = self._where, [], self.max_weight
        while where and (len(where) > self.max_entries or (limit is not None and self._total > limit)):
            victim = (probation or protected or window or window_protected).oldest()
            while candidates and candidates[0] not in where:
                candidates.pop(0)
            loser = victim
            if candidates and candidates[0] != victim:
                candidate = candidates[0]
                too_heavy = limit is not None and self._weights[candidate] > limit
                if too_heavy or self._sketch.frequency(candidate) <= max(self._sketch.frequency(victim), _ONCE):
                    loser = candidate
            window_lost = loser is not victim or where[loser] & _REGION in (WINDOW, WINDOW_PROTECTED)
            self._forget(loser, window_lost)
            victims.append(loser)
        if abs(len(where) - self._capacity) * 8 > self._capacity:  # (not at every heavy key's coming)
            self._fit_capacity(len(where))
        return victims

    def _forget(self, key: Hashable, window_lost: bool) -> None:
        """Evict `key`, remembering it in the ghost of the side that lost it."""
        if window_lost:
            self._window_ghost.add(hash(key), self._clock << 1 | (key in self._hit_in_window))
        else:
            self._main_ghost.add(hash(key), self._clock)
        self.discard(key)

    def _fit_capacity(self, entries: int) -> None:
        """Size what follows the cache's capacity in entries (the split's step, the ghosts and the
        window ghost's age limit, the sketch's sample) to the entries it holds after evicting. Under an
        entry bound that is max_entries; a byte bound that binds first holds fewer, and a policy sized
        for max_entries would learn and forget as slowly as a cache that many times larger. (The loop
        trace under a byte bound that holds 5,000 of its keys, max_entries 100,000: 5.4% of requests
        hit when sized for max_entries; 18.6%, as with max_entries 5,000, when sized for what it holds.)"""
        self._capacity = entries = max(entries, 1)
        self._step = _STEP_ENTRIES / entries
        self._window_ghost.resize(entries)
        self._main_ghost.resize(entries)
        self._sketch.resize(entries)
        if self._trial is not None:
            self._trial.resize(entries)

    def _learn(self, hashed: int) -> None:
        """A miss on a key lately evicted: move the split toward the side that lost it (unless the split is
        set from outside: a trial's copy), and ARC's rule inside the window."""
        trial = self._trial
        stamp = self._window_ghost.take(hashed)  # when it was evicted << 1 | whether it was hit in the window
        if stamp is not None:
            if stamp >> 1 >= self._clock - self._capacity:  # else a loop longer than the cache: no evidence
                self._learn_window(stamp & 1)
                if trial is not None:
                    self._window_share = min(1.0, self._window_share + self._step)
                    self._demote()
        elif self._main_ghost.take(hashed) is not None and trial is not None:
            self._window_share = max(0.0, self._window_share - self._step)

    def _try(self, trial: SplitTrial, key: Hashable) -> None:
        """A request for a sampled key: the trial's copies see it, and may move the split."""
        share = trial.see(key, self._window_share)
        if share is not None:
            self.set_window_share(share)

    def _learn_window(self, was_hit: int) -> None:
        """ARC's rule inside the window: a key it lost after a hit there says its protected part was
        too small; one it lost unhit, that its LRU part was. One entry of the window a ghost hit."""
        step = 1.0 / max(1.0, self._window_share * self._capacity)
        if was_hit:
            self._window_protected = min(_PROTECTED_SHARE, self._window_protected + step)
        else:
            self._window_protected = max(0.0, self._window_protected - step)
            self._demote_window()


def _copy(entries: int) -> AdaptiveTinyLfuPolicy:
    """One of the split trial's copies: the policy in small, its split set by the trial."""
    return AdaptiveTinyLfuPolicy(entries, adaptive=False)
