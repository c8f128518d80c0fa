"""The entries a proxy holds, the eviction policy that bounds them, and their size.

The store is a plain dict, key -> Entry (see `answer.py`), so the lock-free hit
is one dict read; which keys stay is the Policy's business (`policy.py`), told
of every fill, every hit (folded in from the hit log) and every drop. Both
bounds hold after every fill: at most `max_entries` entries and, if
`max_bytes` is set, at most that many bytes, as `size_of(key, value)` counts
them. Everything but `entries.get` is called under the proxy's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from sys import getsizeof
from typing import Any

from .answer import Entry, Missing
from .policy import DEFAULT_POLICY, POLICIES, Policy, PolicyFactory

SizeOf = Callable[[Hashable, Any], int]

TELL_EVERY = 32  # new keys the policy is told of at once, at most


def shallow_size(key: Hashable, value: Any) -> int:
    """The default `size_of`: sys.getsizeof of the key plus that of the value.
    Right for str and bytes values (the usual cached thing); shallow for
    containers, which a user who caches them should weigh with their own size_of."""
    return getsizeof(key) + getsizeof(value)


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
    """Entries bounded by count and bytes, evicted as the policy says.

    New keys are told to the policy a few at a time (`TELL_EVERY`), as
    Caffeine buffers writes: a batch costs the policy less per key than one
    call each. The policy still sees every event in order, and both bounds
    still hold after every fill: a fill that would break one, and anything
    else the policy is told or asked, first tells it of the keys waiting.
    Only while the cache fills, though: once the policy has evicted, it may
    evict at any admission (tinylfu turns away keys seen once), so each new
    key is told at once and its victims go with it."""

    def __init__(self, max_entries: int, max_bytes: int | None = None, size_of: SizeOf | None = None,
                 policy: str | PolicyFactory | None = None) -> None:
        self.entries: dict[Hashable, Entry] = {}  # never replaced: the hit path and the counters hold it
        self.policy: Policy = policy_factory(policy)(max_entries, max_bytes)
        self.size_of = size_of or shallow_size
        self.max_entries, self.max_bytes = max_entries, max_bytes
        # keys stored but not yet told to the policy, oldest first, with their weights
        self._new_keys: list[Hashable] = []
        self._new_weights: list[int] = []
        self._new_weight = 0
        self._has_evicted = False  # once true, new keys are told one at a time (see the class docstring)
        self._admit_many: Callable[[list[Hashable], list[int]], list[Hashable]] = \
            getattr(self.policy, "admit_many", None) or self._admit_each

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: Hashable, entry: Entry) -> list[Hashable]:
        """Store `entry`; the keys evicted to keep both bounds, `key` itself
        among them if the policy would not keep it (its request is still answered)."""
        value = entry[0]
        if type(value) is Missing:
            value = None
        size_of = self.size_of
        if size_of is shallow_size:  # (the default written out: every fill runs this)
            # A str's own __sizeof__ is what getsizeof gives it (a str has no collector header to add),
            # at a fifth of the cost: getsizeof parses its argument as a tuple and keywords.
            weight = (key.__sizeof__() if type(key) is str else getsizeof(key)) \
                + (value.__sizeof__() if type(value) is str else getsizeof(value))
        else:
            weight = size_of(key, value)
        entries = self.entries
        if key in entries:
            entries[key] = entry
            return self._tell_policy() + self._evicted(self.policy.resize(key, weight))
        entries[key] = entry
        new_keys = self._new_keys
        if self._has_evicted or len(entries) > self.max_entries \
                or self.max_bytes is not None and self.policy.weight() + self._new_weight + weight > self.max_bytes:
            # over a bound (a full cache: every miss), or a cache that has evicted: the policy decides now,
            # once told of the keys before it
            victims = self._tell_policy() if new_keys else []
            return victims + self._evicted(self.policy.admit(key, weight))
        new_keys.append(key)
        self._new_weights.append(weight)
        self._new_weight += weight
        return self._tell_policy() if len(new_keys) >= TELL_EVERY else []

    def _tell_policy(self) -> list[Hashable]:
        """Tell the policy of the keys stored since it was last told; the keys it evicts.
        (Only a fill can break a bound, and it tells at once: told at any other
        time, the policy evicts nothing.)"""
        keys = self._new_keys
        if not keys:
            return []
        weights = self._new_weights
        self._new_keys, self._new_weights, self._new_weight = [], [], 0
        return self._evicted(self._admit_many(keys, weights))

    def _admit_each(self, keys: list[Hashable], weights: list[int]) -> list[Hashable]:
        admit = self.policy.admit
        return [victim for key, weight in zip(keys, weights, strict=True) for victim in admit(key, weight)]

    def _evicted(self, victims: list[Hashable]) -> list[Hashable]:
        if victims:
            self._has_evicted = True
            for victim in victims:
                self.entries.pop(victim, None)
        return victims

    def touch(self, key: Hashable) -> None:
        """A request served from the key's entry under the lock."""
        self.touch_many([key])

    def touch_many(self, keys: list[Hashable]) -> None:
        if keys:
            self._tell_policy()
            self.policy.touch_many(keys)

    def pop(self, key: Hashable) -> None:
        """Drop the key's entry, if any (an invalidate)."""
        if self.entries.pop(key, None) is not None:
            self._tell_policy()
            self.policy.discard(key)

    def bytes_held(self) -> int:
        return self.policy.weight() + self._new_weight
