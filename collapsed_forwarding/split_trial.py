"""Miniature copies of the cache that try the window's split a step either side of it.

Why: the ghosts (see tinylfu) move the split within a few misses, but they
only say which side lately lost a key, not whether the cache would hit more
with the split elsewhere. On traces they were not tuned on they push it to
an end and keep it there: beside a loop they close the window, where
recency and frequency mix they open it to the whole cache. A direct
measure of the hit ratio is needed beside them, as Caffeine's hill
climber is one; but a hill climber compares the cache with its own past,
and a workload that changes over time fools it.

So three small copies of the policy run side by side, on a hashed sample
of the keys: miniature simulation (Waldspurger et al., USENIX ATC 2017).
Each holds SHADOW_ENTRIES keys and sees that many of every capacity's
worth of distinct keys, so each is the cache in small. Their splits are a
step apart on GRID, around the real split. After each period of
SHADOW_ENTRIES sampled requests, the real split moves to a neighbour that
hit more than the middle, if one did, and the copies are placed around
wherever the ghosts and that move left it. The ghosts still move it between
periods: on a short trace or a small cache the copies see too little to say.

Costs: a sample test (one tuple hash) for each request the policy is told
of once the cache evicts, and three policy operations on a sampled one. A
cache of up to 4,096 entries samples a sixteenth of its keys; one of 100,000
a quarter of a percent. Memory: three small policies of about 200 KB each
(a third of it a sketch's smallest table), made once the cache evicts.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0)  # fine near 0: W-TinyLFU's
# own split (1%) is there, and frequency-heavy traffic wants the window within a few percent of it
SHADOW_ENTRIES = 256  # each copy's size: a period of this many sampled requests tells the splits apart
_MOST_SAMPLED = 1 / 16  # of the keys: a small cache's copies are a sixteenth of its size, not all of it
# (a quarter gave the same hit ratios, within 0.4 points summed over each group, at 4 times the cost)
_SALT = 0x5BD1E995  # the sample is a hash of (key, salt): hash(int) is the int itself, no sample at all
_HASH_BITS = 0xFFFFFFFF


class Shadow(Protocol):
    """A copy of the policy whose split is set from outside."""

    def __contains__(self, key: object) -> bool: ...

    def admit(self, key: Hashable, weight: int) -> list[Hashable]: ...

    def touch_many(self, keys: list[Hashable]) -> None: ...

    def set_window_share(self, share: float) -> None: ...


class SplitTrial:
    """Three copies of the policy, their splits GRID steps around the real one, and their hits this period."""

    __slots__ = ("_make", "_shadows", "_entries", "_threshold", "_step", "_hits", "_seen")

    def __init__(self, capacity: int, share: float, make: Callable[[int], Shadow]) -> None:
        self._make = make
        self._shadows: tuple[Shadow, ...] = ()
        self._entries = 0
        self._threshold = 0
        self._step = nearest_step(share)
        self._hits = [0, 0, 0]
        self._seen = 0
        self.resize(capacity)

    def resize(self, capacity: int) -> None:
        """For a cache of `capacity` entries: its sample, and copies of the size that sample fills (made
        anew at the next sampled request, if that size changed: none are made until one comes)."""
        capacity = max(capacity, 1)
        entries = max(1, min(SHADOW_ENTRIES, int(capacity * _MOST_SAMPLED)))
        self._threshold = entries * (_HASH_BITS + 1) // capacity
        if entries != self._entries:
            self._entries = entries
            self._shadows = ()

    def in_sample(self, key: Hashable) -> bool:
        return hash((key, _SALT)) & _HASH_BITS < self._threshold

    def sample(self, keys: Sequence[Hashable]) -> list[Hashable]:
        """Those of `keys` in the sample, in order."""
        threshold = self._threshold
        return [key for key in keys if hash((key, _SALT)) & _HASH_BITS < threshold]

    def see(self, key: Hashable, share: float) -> float | None:
        """A request for a sampled `key`, told to each copy, while the real split is `share`. At a
        period's end: the split to move to, if a neighbouring one hit more; else None."""
        if not self._shadows:
            self._shadows = tuple(self._make(self._entries) for _ in range(3))
            self._place()
        hits = self._hits
        for i, shadow in enumerate(self._shadows):
            if key in shadow:
                shadow.touch_many([key])
                hits[i] += 1
            else:
                shadow.admit(key, 1)
        self._seen += 1
        if self._seen < self._entries:
            return None
        step = better_step(self._step, hits)
        moved = GRID[step] if step != self._step else None
        self._step = nearest_step(share if moved is None else moved)
        self._place()
        return moved

    def _place(self) -> None:
        """The copies' splits around the current step (the outer ones held to GRID's ends), and a new period."""
        for shadow, at in zip(self._shadows, (self._step - 1, self._step, self._step + 1), strict=True):
            shadow.set_window_share(GRID[max(0, min(len(GRID) - 1, at))])
        self._hits = [0, 0, 0]
        self._seen = 0


def better_step(step: int, hits: Sequence[int]) -> int:
    """A step toward whichever neighbour hit more than the middle (hits: lower, middle, higher); ties stay."""
    lower, middle, higher = hits
    if lower > middle and lower >= higher and step > 0:
        return step - 1
    if higher > middle and higher > lower and step < len(GRID) - 1:
        return step + 1
    return step


def nearest_step(share: float) -> int:
    """The GRID step nearest `share`."""
    return min(range(len(GRID)), key=lambda step: abs(GRID[step] - share))
