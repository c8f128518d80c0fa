"""The lock-free hit: a fresh entry served with one dict read, one clock read, one append.

Every change to an entry is made under the proxy's lock by replacing its tuple
whole, so the one read of it is the moment the request is served. The hit
appends its key to the hit log (list.append is atomic, with or without the
GIL); the owner folds the log into its counters and its eviction policy under
the lock, oldest first, before anything reads either, and at the latest once
it holds HIT_LOG_LIMIT keys. The work per hit is the same whatever the policy.

Both are closures over pre-bound methods, as functools.lru_cache builds its
wrapper, which spares a hit several attribute lookups.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from .answer import Answer, Entry

HIT_LOG_LIMIT = 1024  # hits recorded without the lock before they are folded in under it

EntryOf = Callable[[Hashable], "Entry | None"]


def make_get(entry_of: EntryOf, clock: Callable[[], float], log: list[Hashable], fold: Callable[[], None],
             miss: Callable[[Hashable, float | None, float | None], Any]) -> Callable[..., Any]:
    """`get(key, ttl=None, timeout=None)`: the fresh entry's value, else `miss(key, ttl, timeout)`."""
    record = log.append

    # (timeout is not keyword-only here, as in the method: that costs a hit 12 ns)
    def get(key: Hashable, ttl: float | None = None, timeout: float | None = None) -> Any:
        entry = entry_of(key)
        if entry is not None and clock() < entry[1]:
            record(key)
            if len(log) >= HIT_LOG_LIMIT:
                fold()
            return entry[0]
        return miss(key, ttl, timeout)

    return get


def make_aget(entry_of: EntryOf, clock: Callable[[], float], log: list[Hashable], fold: Callable[[], None],
              ask: Callable[[Hashable, float | None, float | None, bool], Answer | Awaitable[Answer]],
              ) -> Callable[..., Any]:
    """`aget(key, ttl=None, timeout=None)`, a coroutine function: `get`'s hit
    written out again in its body (a call into `get` would cost an awaited hit a
    tenth of its time), else the Answer `ask(key, ttl, timeout, False)` gives now or later."""
    record = log.append

    async def aget(key: Hashable, ttl: float | None = None, timeout: float | None = None) -> Any:
        entry = entry_of(key)
        if entry is not None and clock() < entry[1]:
            record(key)
            if len(log) >= HIT_LOG_LIMIT:
                fold()
            return entry[0]
        answer = ask(key, ttl, timeout, False)
        if not isinstance(answer, Answer):
            answer = await answer  # (ask is a plain function: a waiting aget makes one coroutine, not two)
        return answer.result()

    return aget


def make_hit(entry_of: EntryOf, clock: Callable[[], float], log: list[Hashable],
             fold: Callable[[], None]) -> Callable[[Hashable], Answer | None]:
    """`hit(key)`: the fresh entry's Answer, else None (and nothing counted)."""
    record = log.append

    def hit(key: Hashable) -> Answer | None:
        entry = entry_of(key)
        if entry is not None and clock() < entry[1]:
            record(key)
            if len(log) >= HIT_LOG_LIMIT:
                fold()
            return Answer(entry[0], None, "hit", entry[1])
        return None

    return hit
