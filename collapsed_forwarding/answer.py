"""What a request is answered with, and the entries answers are made from.

An entry is a tuple (value, expires, fetch_seconds), replaced whole under the
proxy's lock, so the lock-free hit's one read of it is the moment it is
served. For a remembered key-does-not-exist, value is a `Missing` holding the
expiry, and `expires` is NEVER: the lock-free hit never serves it. A tuple of
atoms is untracked by the garbage collector after its first look, so a
million entries cost a collection little more than a dict of them would.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import CacheError

NEVER = -math.inf

Entry = tuple[Any, float, float]


class Answer:
    """How one request was served: `value` or `error`, and `cache`, one of
    hit, miss, collapsed, stale, shed. `expires` is when the entry it came
    from stops being fresh (on the proxy's clock)."""

    __slots__ = ("value", "error", "cache", "expires")

    def __init__(self, value: Any, error: CacheError | None, cache: str, expires: float = NEVER) -> None:
        self.value, self.error, self.cache, self.expires = value, error, cache, expires

    def result(self) -> Any:
        if self.error is not None:
            raise self.error.again()
        return self.value

    def served_as(self, cache: str) -> Answer:
        return Answer(self.value, self.error, cache, self.expires)

    def __repr__(self) -> str:
        return f"Answer({self.value!r}, {self.error!r}, {self.cache!r})"


class Missing:
    """The value of a remembered key-does-not-exist entry."""

    __slots__ = ("error", "expires")

    def __init__(self, error: CacheError, expires: float) -> None:
        self.error, self.expires = error, expires


def fresh_until(entry: Entry) -> float:
    value = entry[0]
    return value.expires if type(value) is Missing else entry[1]


def answer_of(entry: Entry, cache: str) -> Answer:
    value = entry[0]
    if type(value) is Missing:
        return Answer(None, value.error, cache, value.expires)
    return Answer(value, None, cache, entry[1])


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
