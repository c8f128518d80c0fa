"""The lock-free hit: a fresh entry served with one dict read, one clock read, one append.

Every change to an entry is made under the proxy's lock by replacing its tuple
whole, so the one read of it is the moment the request is served. The hit
appends its key to the hit log (list.append is atomic, with or without the
GIL); the owner folds the log into its counters and its eviction policy under
the lock, oldest first, before anything reads either. The work per hit is the
same whatever the policy.

The closures hold the dict, the clock and the log's list themselves, which
spares a hit several attribute lookups. They append with `keys.append(key)`,
not through a bound method kept aside: CPython 3.11 turns that call on a list
into an in-place append, about 2 ns (1.5%) less a hit. They read the dict
by subscript, catching KeyError, not with `.get`: a method call costs a hit
about 8 ns (4%), and the raise a miss about as much, a fiftieth of a miss.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from .answer import Answer, Entry

FOLD_EVERY = 0.001  # seconds: a hit folds the log in once this long has passed since the last fold

Entries = dict[Hashable, Entry]


class HitLog:
    """The keys hit without the lock, oldest first, and when a hit next folds them in.

    A hit whose clock reading is at or past `due` folds the log in, so the log
    holds at most about FOLD_EVERY seconds of hits (some 15,000 keys at
    CPython's top speed, in any number of threads). A clock compare costs a hit
    less than a length check: a fifth of a dict lookup. Misses, `stats` and
    every other locked path fold it too; a clock that stands still (a test's)
    leaves the folding to them."""

    __slots__ = ("keys", "due", "_lock", "_fold")

    def __init__(self, lock: threading.Lock, fold: Callable[[], None]) -> None:
        self.keys: list[Hashable] = []  # appended to without the lock; always this one list
        self.due = -math.inf  # read without the lock: a late or early fold is harmless
        self._lock, self._fold = lock, fold  # fold: under the lock

    def fold(self, now: float) -> None:
        """From a hit: fold the log in, unless the lock is held (its holder may be
        this very caller; the next hit tries again), and the next fold a little later."""
        if self._lock.acquire(blocking=False):
            try:
                self.due = now + FOLD_EVERY
                self._fold()
            finally:
                self._lock.release()

    def take(self) -> list[Hashable]:
        """Under the lock: the keys logged so far, oldest first, and the log without them."""
        keys = self.keys
        n = len(keys)
        taken = keys[:n]
        del keys[:n]  # appends made since the slice stay for the next fold
        return taken


def make_get(entries: Entries, clock: Callable[[], float], log: HitLog,
             miss: Callable[[Hashable, float | None, float | None], Any]) -> Callable[..., Any]:
    """`get(key, ttl=None, timeout=None)`: the fresh entry's value, else `miss(key, ttl, timeout)`."""
    keys = log.keys

    # (timeout is not keyword-only here, as in the method: that costs a hit 12 ns)
    def get(key: Hashable, ttl: float | None = None, timeout: float | None = None) -> Any:
        try:
            entry = entries[key]
        except KeyError:
            return miss(key, ttl, timeout)
        now = clock()
        if now < entry[1]:
            keys.append(key)
            if now >= log.due:
                log.fold(now)
            return entry[0]
        return miss(key, ttl, timeout)

    return get


def make_aget(entries: Entries, clock: Callable[[], float], log: HitLog,
              ask: Callable[[Hashable, float | None, float | None, bool], Answer | Awaitable[Answer]],
              ) -> Callable[..., Any]:
    """`aget(key, ttl=None, timeout=None)`, a coroutine function: `get`'s hit
    written out again in its body (a call into `get` would cost an awaited hit a
    tenth of its time), else the Answer `ask(key, ttl, timeout, False)` gives now or later."""
    keys = log.keys

    async def aget(key: Hashable, ttl: float | None = None, timeout: float | None = None) -> Any:
        try:
            entry = entries[key]
        except KeyError:
            pass
        else:
            now = clock()
            if now < entry[1]:
                keys.append(key)
                if now >= log.due:
                    log.fold(now)
                return entry[0]
        answer = ask(key, ttl, timeout, False)
        if not isinstance(answer, Answer):
            answer = await answer  # (ask is a plain function: a waiting aget makes one coroutine, not two)
        return answer.result()

    return aget


def make_hit(entries: Entries, clock: Callable[[], float], log: HitLog) -> Callable[[Hashable], Answer | None]:
    """`hit(key)`: the fresh entry's Answer, else None (and nothing counted)."""
    keys = log.keys

    def hit(key: Hashable) -> Answer | None:
        try:
            entry = entries[key]
        except KeyError:
            return None
        now = clock()
        if now < entry[1]:
            keys.append(key)
            if now >= log.due:
                log.fold(now)
            return Answer(entry[0], None, "hit", entry[1])
        return None

    return hit
