"""The entries a proxy holds, the eviction policy that bounds them, and their size.

The store is a plain dict, key -> Entry (see `answer.py`), so the lock-free hit
is one dict read; which keys stay is the Policy's business (`policy.py`), told
of every fill, every hit (folded in from the hit log) and every drop. Both
bounds hold after every fill: at most `max_entries` entries and, if
`max_bytes` is set, at most that many bytes, as `size_of(key, value)` counts
them. Everything but `entries.get` is called under the proxy's lock.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from typing import Any

from .answer import Entry, Missing
from .policy import DEFAULT_POLICY, POLICIES, Policy, PolicyFactory

SizeOf = Callable[[Hashable, Any], int]


def shallow_size(key: Hashable, value: Any) -> int:
    """The default `size_of`: sys.getsizeof of the key plus that of the value.
    Right for str and bytes values (the usual cached thing); shallow for
    containers, which a user who caches them should weigh with their own size_of."""
    return sys.getsizeof(key) + sys.getsizeof(value)


def policy_factory(policy: str | PolicyFactory | None) -> PolicyFactory:
    """A policy's name in POLICIES, a factory `(max_entries, max_weight) -> Policy`, or None for the default."""
    if policy is None:
        return POLICIES[DEFAULT_POLICY]
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {sorted(POLICIES)}, not {policy!r}")
        return POLICIES[policy]
    if not callable(policy):
        raise TypeError(f"policy must be a name or a factory, not {type(policy).__name__}")
    return policy


class Store:
    """Entries bounded by count and bytes, evicted as the policy says."""

    def __init__(self, max_entries: int, max_bytes: int | None = None, size_of: SizeOf | None = None,
                 policy: str | PolicyFactory | None = None) -> None:
        self.entries: dict[Hashable, Entry] = {}  # never replaced: the hit path and the counters hold it
        self.policy: Policy = policy_factory(policy)(max_entries, max_bytes)
        self.size_of = size_of or shallow_size
        self.max_entries, self.max_bytes = max_entries, max_bytes

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: Hashable, entry: Entry) -> list[Hashable]:
        """Store `entry`; the keys evicted to keep both bounds, `key` itself
        among them if the policy would not keep it (its request is still answered)."""
        value = entry[0]
        weight = self.size_of(key, None if type(value) is Missing else value)
        entries = self.entries
        held = key in entries
        entries[key] = entry
        victims = self.policy.resize(key, weight) if held else self.policy.admit(key, weight)
        for victim in victims:
            entries.pop(victim, None)
        return victims

    def touch(self, key: Hashable) -> None:
        """A request served from the key's entry under the lock."""
        self.policy.touch_many([key])

    def touch_many(self, keys: list[Hashable]) -> None:
        if keys:
            self.policy.touch_many(keys)

    def pop(self, key: Hashable) -> None:
        """Drop the key's entry, if any (an invalidate)."""
        if self.entries.pop(key, None) is not None:
            self.policy.discard(key)

    def bytes_held(self) -> int:
        return self.policy.weight()
