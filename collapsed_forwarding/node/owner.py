"""The owner's side of leases: what it knows of each key it owns, and the reads it answers from that.

Another node forwards its reads of a key (`cf_read`) to the key's owner, whose
copy is the register: it answers from it, with a lease that ends no later than
the queued updates start (`owner_updates.py` runs the updates, on this table
and under its lock). While an update is at the origin reads wait, no lease is
granted, and no fetch sent before fills anything; a read the copy cannot
answer shares a fetch of the origin. After an update of unknown outcome, and
for `settle` seconds after a start, the owner caches nothing and grants
nothing (docs/protocol.md, "Restarts"). A key forgotten to make room in the
table has its `get` copies elsewhere dropped first.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from ..errors import CacheError, KeyMissing
from ..keys import wire_key
from .update import ABSENT, Owned, ReadReply, result_of
from .wire import Body, Wire

MIN_LEASE = 0.005  # seconds: a lease shorter than this (one ending with the wait for the others) is not granted
Result = Any  # a value, or a CacheError
ReadDone = Callable[[Result], None]


class OwnerKeys:
    """The keys this node owns, and reads of them (see the module's docstring)."""

    def __init__(self, wire: Wire, origin: Any, *, lease: float, drift: float, peer_timeout: float,
                 settle: float, clock: Callable[[], float], max_keys: int) -> None:
        self.wire, self.origin, self.clock = wire, origin, clock
        self.lease, self.peer_timeout = lease, peer_timeout
        # How long, on our clock, a holder's lease of `lease` seconds on its clock may last.
        self.stretch = 1 + drift
        self.lease_record = lease * self.stretch
        self.max_keys = max_keys
        self.started = clock()
        self.settled_at = self.started + settle  # an update a previous incarnation sent has landed by then
        # One lock for the table, whichever side changes it: reads here, updates in owner_updates.py.
        self.lock = threading.Lock()
        self.owned: dict[Hashable, Owned] = {}  # guarded by lock
        self.counts: Counter[str] = Counter()  # guarded by lock

    # -- requests ----------------------------------------------------------------------------

    def read(self, key: Hashable, reply: Callable[[Result, float], None], src: str | None) -> None:
        """A read at the owner (`src` None) or a holder's `cf_read`; `reply(result, lease)`."""
        with self.lock:
            self.counts["reads_owned"] += 1
            state = self.entry(key)
            if state.busy:
                state.blocked.append((reply, src))
                return
            now = self.clock()
            if state.known and now >= state.uncertain_until:
                value, lease = state.value, self._grant(state, src, now)
            else:
                self._join_fetch(key, state, (lambda result: reply(result, 0.0), src), now)
                return
        reply(result_of(value), lease)

    def lease_with_answer(self, key: Hashable, src: str, asked: float) -> tuple[Any, float] | None:
        """(value, lease) for the reply to `src`'s update of key, which came at `asked` and is now
        answered: what a `cf_read` would get now, or None when it would get no lease."""
        with self.lock:
            state = self.owned.get(key)
            now = self.clock()
            if state is None or state.busy or not state.known or now < state.uncertain_until:
                return None
            lease = self._grant(state, src, now, asked)
            return (state.value, lease) if lease > 0 else None

    def note_get_holder(self, key: Hashable, src: str) -> int:
        """A node asked us for a `get` of key: it may cache it. Returns the key's generation,
        for `changed_since` when the answer goes out."""
        with self.lock:
            state = self.entry(key)
            state.get_holders.add(src)
            return state.gen

    def changed_since(self, key: Hashable, gen: int) -> bool:
        """Has an update of key started since `gen` (or is one under way)? Then what a `get`
        fetched meanwhile may predate it, and the asker must not keep it."""
        with self.lock:
            state = self.owned.get(key)
            return state is None or state.busy or state.gen != gen

    def forget(self, key: Hashable) -> None:
        """Forget what we know of key (the origin may have changed behind our back)."""
        with self.lock:
            state = self.owned.get(key)
            if state is not None and not state.busy:
                state.known = False
                state.gen += 1

    def stats(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    # -- the table ---------------------------------------------------------------------------

    def entry(self, key: Hashable) -> Owned:
        """Under the lock: key's record, made (room made first) if there is none."""
        state = self.owned.get(key)
        if state is None:
            if len(self.owned) >= self.max_keys:
                self._forget_idle_keys()
            state = self.owned[key] = Owned(uncertain_until=self.settled_at)
        return state

    def _forget_idle_keys(self) -> None:
        """Under the lock: make room (a tenth of max_keys). A forgotten key's get copies elsewhere
        are dropped now, since no update of it will know to drop them."""
        now = self.clock()
        # A key made afresh is uncertain until settled_at: one uncertain for longer is kept, or its
        # update of unknown outcome would be forgotten while it may still land.
        fresh = max(now, self.settled_at)
        forgettable = [k for k, s in self.owned.items() if s.idle(now) and s.uncertain_until <= fresh]
        for key in forgettable[: max(1, self.max_keys // 10)]:
            for holder in self.owned.pop(key).get_holders - {self.wire.node_id}:
                self.wire.rpc(holder, {"type": "cf_revoke", "key": wire_key(key)}, _ignore, self.peer_timeout)

    # -- reads -------------------------------------------------------------------------------

    def _grant(self, state: Owned, src: str | None, now: float, asked: float | None = None) -> float:
        """Under the lock: a lease for src's request, granted now; the seconds to send it. Counted
        from when the request came (`asked`, else now): the asker counts it from when it sent
        that, earlier, so a request that waited here keeps its `--lease` seconds from now."""
        if src is None or self.lease <= 0 or state.value is ABSENT:
            return 0.0
        since = now if asked is None else min(asked, now)
        lease = (now - since) + self.lease
        if state.write_at is not None:
            # Updates wait for the leases to end: one granted now ends with them, so it holds none back.
            lease = min(lease, (state.write_at - since) / self.stretch)
        if since + lease * self.stretch - now < MIN_LEASE:
            return 0.0
        state.leases[src] = max(state.leases.get(src, 0.0), since + lease * self.stretch)
        self.counts["leases_granted"] += 1
        return math.floor(lease * 1e6) / 1e6  # (rounded down: never longer than recorded)

    def _join_fetch(self, key: Hashable, state: Owned, waiter: tuple[ReadDone, str | None], now: float) -> None:
        """Under the lock. Share a fetch sent in this generation. While uncertain (the value may
        change at any moment then) a read takes only a fetch sent after it came, cached nowhere:
        one at a time, so the reads that come while one is out share the next."""
        if now < state.uncertain_until:
            if state.next_private is not None:
                state.fetches[state.next_private].append(waiter)
                return
            gen = -1 - len(state.fetches)  # a private one: never cached
            while gen in state.fetches:
                gen -= 1
            state.fetches[gen] = [waiter]
            if any(g < 0 for g in state.fetches if g != gen):  # one is out: this one goes when it is back
                state.next_private = gen
                return
        else:
            gen = state.gen
            if gen in state.fetches:
                state.fetches[gen].append(waiter)
                return
            state.fetches[gen] = [waiter]
        self._send_fetch(key, gen)

    def answer_blocked(self, key: Hashable, state: Owned, now: float, *, leased: bool) -> list[Callable[[], None]]:
        """Under the lock, no update under way: the reads that waited for one, answered from the copy
        (each node's with a lease if `leased`) or sent to a fetch. Returns what to call once the lock
        is released."""
        later: list[Callable[[], None]] = []
        blocked, state.blocked = state.blocked, []
        for reader, src in blocked:
            if state.known and now >= state.uncertain_until:
                later.append(partial(reader, result_of(state.value), self._grant(state, src, now) if leased else 0.0))
            else:
                self._join_fetch(key, state, (partial(_without_lease, reader), src), now)
        return later

    def _send_fetch(self, key: Hashable, gen: int) -> None:
        self.wire.scheduler.call_later(0, self.origin.start_fetch, key,
                                       lambda result: self._fetched(key, gen, result))

    def _fetched(self, key: Hashable, gen: int, result: Result) -> None:
        with self.lock:
            state = self.entry(key)
            waiters = state.fetches.pop(gen, [])
            if gen < 0 and state.next_private is not None:
                self._send_fetch(key, state.next_private)
                state.next_private = None
            now = self.clock()
            cacheable = gen == state.gen and not state.busy and now >= state.uncertain_until
            if cacheable and not isinstance(result, CacheError):
                state.known, state.value = True, result
            elif cacheable and isinstance(result, KeyMissing):
                state.known, state.value = True, ABSENT
        for done, _src in waiters:
            done(result)


def _ignore(_reply: Body | None) -> None:
    pass


def _without_lease(reply: ReadReply, result: Result) -> None:
    reply(result, 0.0)
