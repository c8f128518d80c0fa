"""Linearizable read, write and cas on a cluster: the owner serializes, others hold leases.

Every key has one owner (forwarding.owner). The owner's side is in two:
`owner.py` answers reads from its copy, which is the register, and grants the
leases; `owner_updates.py` serializes every update. `holder.py` is the other
nodes' side (they read through the owner and keep a copy only under a lease).
This class sends each request to its side, and is the one path by which a key
is dropped on this node (`cf_drop` and `cf_revoke` alike).

On one node none of this is used. The time each rule relies on, and the clocks
it trusts, are in docs/protocol.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from .holder import HolderKeys, ReadDone
from .owner import OwnerKeys, Result
from .owner_updates import Invalidates, OwnerUpdates
from .update import Update, UpdateDone
from .wire import Wire

STATS = ("reads_leased", "reads_forwarded", "reads_direct", "reads_owned", "leases_granted", "revokes_sent",
         "updates_forwarded", "cas_answered_locally", "updates_unchanged", "updates_batched",
         "updates_held_after_start", "drops")


def lease_clock() -> float:
    """Seconds on a clock that keeps counting while the machine is suspended (CLOCK_BOOTTIME on
    Linux), so a lease cannot outlive a suspend; elsewhere the monotonic clock."""
    return time.clock_gettime(BOOTTIME)


BOOTTIME = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


class LinearKeys:
    """read / write / cas for a node of a cluster (see the module's docstring)."""

    def __init__(self, wire: Wire, origin: Any, owner_of: Callable[[Hashable], str], cache: Invalidates, *,
                 lease: float, drift: float, peer_timeout: float, origin_timeout: float, settle: float,
                 max_keys: int = 100_000,
                 clock: Callable[[], float] = lease_clock) -> None:
        self.wire, self.owner_of, self.cache = wire, owner_of, cache
        self.owner = OwnerKeys(wire, origin, lease=lease, drift=drift, peer_timeout=peer_timeout,
                               settle=settle, clock=clock, max_keys=max_keys)
        self.owner_updates = OwnerUpdates(self.owner, origin, cache, peer_timeout=peer_timeout, settle=settle)
        # A forwarded update is given as long as the owner may take: the hops there and back, the
        # wait after its start, the write it queued behind (the origin) and the lease's length the
        # queue waits after it, the revocations (a get holder's peer timeout, or a lease), the origin.
        # Giving up sooner helps no one: the client learns nothing more from error 0 than from its own
        # timeout, and on a slow network a reply that came in time would have been thrown away.
        record = lease * (1 + drift)
        self.update_timeout = peer_timeout + record + (origin_timeout + record) + max(record, peer_timeout) \
            + origin_timeout
        self.holder = HolderKeys(wire, origin, owner_of, peer_timeout=peer_timeout,
                                 update_timeout=lambda: self.update_timeout, clock=clock, max_keys=max_keys)

    def _mine(self, key: Hashable) -> bool:
        return self.owner_of(key) == self.wire.node_id

    # -- the node's requests ----------------------------------------------------------------

    def read(self, key: Hashable, done: ReadDone) -> None:
        if self._mine(key):
            self.owner.read(key, lambda result, _lease: done(result), None)
        else:
            self.holder.read(key, done)

    def update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        if self._mine(key):
            self.owner_updates.update(key, update, done)
        else:
            self.holder.update(key, update, done)

    # -- messages from other nodes ----------------------------------------------------------

    def cf_read(self, key: Hashable, src: str, reply: Callable[[Result, float], None]) -> None:
        self.owner.read(key, reply, src)

    def cf_update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        self.owner_updates.update(key, update, done)

    def lease_with_answer(self, key: Hashable, src: str, asked: float) -> tuple[Any, float] | None:
        return self.owner.lease_with_answer(key, src, asked)

    def clock(self) -> float:
        return self.owner.clock()

    def drop(self, key: Hashable) -> None:
        """`cf_drop`, `cf_revoke` or `invalidate`: forget key here (the origin may have changed
        behind our back): our leased copy, what the owner knows of it, the cache's entry."""
        self.holder.drop(key)
        self.owner.forget(key)
        self.cache.invalidate(key)

    def note_get_holder(self, key: Hashable, src: str) -> int:
        return self.owner.note_get_holder(key, src)

    def changed_since(self, key: Hashable, gen: int) -> bool:
        return self.owner.changed_since(key, gen)

    def stats(self) -> dict[str, int]:
        counts = self.owner.stats() + self.owner_updates.stats() + self.holder.stats()
        return {name: counts[name] for name in STATS}
