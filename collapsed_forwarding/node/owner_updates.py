"""The owner's side of updates: it runs every write and cas of its keys, one at a time per key.

Another node forwards its write or cas (`cf_update`) to the key's owner.
Updates run one at a time: before one goes to the origin, the owner waits
until every lease it granted has run out (holders are sent nothing: the wait
costs no message), and has every node that keeps a `get` copy drop it
(`cf_revoke`). The updates queued behind one are decided in order and sent as
one write (`_batch`), after a pause of a lease's length in which every node may
take a lease on the value just written. An update the owner's copy decides (a
cas that does not match, a write of the value held) is answered at once,
linearized before those queued. No update starts before `lease * (1 + drift)`
seconds after a start, and after one of unknown outcome the key is uncertain
for `settle` seconds (docs/protocol.md, "Restarts"). The reads and leases are
`owner.py`'s, on the same table, under the same lock.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, Protocol

from ..errors import CacheError, KeyMissing, PreconditionFailed
from ..keys import canonical, wire_key
from .owner import OwnerKeys
from .update import ABSENT, Owned, Update, UpdateDone, answer_all, cas_outcome
from .wire import after_replies


class Invalidates(Protocol):
    """The node's cache, as the owner sees it: an entry it can drop."""

    def invalidate(self, key: Hashable) -> Any: ...


class OwnerUpdates:
    """write / cas of the keys this node owns (see the module's docstring)."""

    def __init__(self, keys: OwnerKeys, origin: Any, cache: Invalidates, *, peer_timeout: float,
                 settle: float) -> None:
        self.keys, self.wire, self.clock = keys, keys.wire, keys.clock
        self.origin, self.cache = origin, cache
        self.peer_timeout, self.settle = peer_timeout, settle
        self.lease_record = keys.lease_record
        self.writes_from = keys.started + self.lease_record  # a lease a previous incarnation granted has ended
        self.lock = keys.lock  # the table's: the reads and leases of these keys change it too
        self.counts: Counter[str] = Counter()  # guarded by lock
        # Updates that came before writes_from, in arrival order; None once it has passed. Guarded by lock.
        self._held: list[tuple[Hashable, Update, UpdateDone]] | None = [] if self.lease_record > 0 else None

    # -- requests ----------------------------------------------------------------------------

    def update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        with self.lock:
            if self._held == [] and self.clock() >= self.writes_from:
                self._held = None  # the wait passed with nothing held
            if self._held is not None:  # just started: a lease a previous incarnation granted may be live
                self.counts["updates_held_after_start"] += 1
                if not self._held:
                    self.wire.scheduler.call_later(max(0.0, self.writes_from - self.clock()), self._release_held)
                self._held.append((key, update, done))
                return
        self._start(key, update, done)

    def _release_held(self) -> None:
        """The previous incarnation's leases have ended: start the updates that waited, in order."""
        if self.clock() < self.writes_from:  # (the scheduler's clock ran a little ahead of ours)
            self.wire.scheduler.call_later(self.writes_from - self.clock(), self._release_held)
            return
        with self.lock:
            held, self._held = self._held or [], None
        for key, update, done in held:
            self._start(key, update, done)

    def _start(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        with self.lock:
            state = self.keys.entry(key)
            decided = self._answer_at_once(state, update)
            answers: list[Callable[[], None]]
            if decided is not None:
                answers = [partial(done, decided[0])]
            else:
                state.updates.append((update, done))
                answers = [] if state.busy or state.write_at is not None else self._wait_for_leases(key, state)
        for answer in answers:
            answer()

    def _answer_at_once(self, state: Owned, update: Update) -> tuple[CacheError | None] | None:
        """Under the lock: (the outcome,) of an update the copy decides now, or None. The updates
        queued before it have not happened yet, so it is linearized before them, against the value
        now: a cas whose `from` does not match fails, and an update that writes the value the key
        holds changes nothing (the origin holds it too). Neither needs the origin nor a revocation."""
        if state.busy or not state.known or self.clock() < state.uncertain_until:
            return None
        if update.kind == "cas":
            refused = cas_outcome(state.value, update)
            if refused is not None:
                self.counts["cas_answered_locally"] += 1
                return (refused,)
        if state.value is not ABSENT and canonical(update.written) == canonical(state.value):
            self.counts["updates_unchanged"] += 1
            return (None,)
        return None

    def _wait_for_leases(self, key: Hashable, state: Owned, at_least: float = 0.0) -> list[Callable[[], None]]:
        """Under the lock, updates queued and none under way: they start when every lease has
        ended (no cf_revoke is sent to a lease holder: waiting costs no message), and no later
        lease outlasts that. Returns what to call once the lock is released."""
        now = self.clock()
        state.write_at = max([now + at_least, *state.leases.values()])
        if state.write_at <= now:
            state.write_at = None
            return self._next_update(key, state)
        self.wire.scheduler.call_later(state.write_at - now, self._leases_ended, key)
        return []

    def _leases_ended(self, key: Hashable) -> None:
        with self.lock:
            state = self.keys.entry(key)
            if state.write_at is None or state.busy:
                return
            now = self.clock()
            if now < state.write_at:  # (the scheduler's clock ran a little ahead of ours)
                self.wire.scheduler.call_later(state.write_at - now, self._leases_ended, key)
                return
            state.write_at = None
            answers = self._next_update(key, state)
        for answer in answers:
            answer()

    def stats(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    # -- the pipeline ------------------------------------------------------------------------

    def _next_update(self, key: Hashable, state: Owned) -> list[Callable[[], None]]:
        """Under the lock: start the next update, answering at once each cas the copy decides.
        Returns what to call once the lock is released."""
        # Reads that came during the last update go first: a stream of updates must not starve them.
        later = self.keys.answer_blocked(key, state, self.clock(), leased=False)
        while state.updates:
            update, done = state.updates.popleft()
            decided = self._decide_locally(state, update)
            if decided is not None:
                self.counts["cas_answered_locally"] += 1
                later.append(partial(done, decided))
                continue
            if len(state.updates) and state.known and self.clock() >= state.uncertain_until:
                update, done = self._batch(state, update, done)
            state.busy, state.known = True, False
            state.gen += 1
            now = self.clock()
            holders = {h: end for h, end in state.leases.items() if end > now}
            get_holders = state.get_holders - {self.wire.node_id}
            state.leases, state.get_holders = {}, set()
            later.append(partial(self._revoke_then_write, key, update, done, holders, get_holders))
            return later
        state.busy = False
        return later

    def _decide_locally(self, state: Owned, update: Update) -> CacheError | None:
        if update.kind != "cas" or not state.known or self.clock() < state.uncertain_until:
            return None
        return cas_outcome(state.value, update)

    def _batch(self, state: Owned, first: Update, done: UpdateDone) -> tuple[Update, UpdateDone]:
        """Under the lock, the value known: take every queued update after `first` into one write of
        the value they leave, in queue order (each cas decided against the value before it). They
        are linearized one after another at the moment that write lands, so the origin is asked once
        and the queue drains at once. Every one is answered with the write's outcome: a failure,
        definite or not, says none happened, which is true of a cas refused here too."""
        value = first.written
        outcomes: list[tuple[UpdateDone, CacheError | None]] = [(done, None)]
        while state.updates:
            update, then = state.updates.popleft()
            decided = cas_outcome(value, update) if update.kind == "cas" else None
            if decided is None:
                value = update.written
            outcomes.append((then, decided))
        self.counts["updates_batched"] += len(outcomes) - 1
        return Update("write", value=value), partial(answer_all, outcomes)

    def _revoke_then_write(self, key: Hashable, update: Update, done: UpdateDone,
                           holders: dict[str, float], get_holders: set[str]) -> None:
        """Drop every copy (acknowledged, or its lease run out), then write to the origin."""
        self.cache.invalidate(key)
        targets = set(holders) | get_holders
        acknowledged = after_replies(len(targets), partial(self._write_origin, key, update, done))
        now = self.clock()
        for target in targets:
            wait = max(holders.get(target, 0.0) - now, self.peer_timeout if target in get_holders else 0.0)
            with self.lock:
                self.counts["revokes_sent"] += 1
            self.wire.rpc(target, {"type": "cf_revoke", "key": wire_key(key)}, acknowledged, max(wait, 0.001))

    def _write_origin(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        update.send(self.origin, key, lambda error: self._written(key, update, done, error))

    def _written(self, key: Hashable, update: Update, done: UpdateDone, error: CacheError | None) -> None:
        self.cache.invalidate(key)  # anything a `get` fetched meanwhile
        with self.lock:
            state = self.keys.entry(key)
            if error is None:
                state.known, state.value = True, update.written
            elif isinstance(error, KeyMissing):
                state.known, state.value = True, ABSENT
            elif not isinstance(error, PreconditionFailed):  # unknown: it may still land
                state.uncertain_until = self.clock() + self.settle
            state.gen += 1
            state.busy = False
            answers = self._after_write(key, state)
        done(error)
        for answer in answers:
            answer()

    def _after_write(self, key: Hashable, state: Owned) -> list[Callable[[], None]]:
        """Under the lock, a write just ended: the reads that waited for it are answered (each
        node's with a lease), the queued updates the copy decides are answered, and the rest
        wait for a lease's length: time for every node to take a lease and read from it for
        free, while the updates that come meanwhile join them in one write."""
        later: list[Callable[[], None]] = []
        now = self.clock()
        queued, state.updates = state.updates, deque()
        for update, done in queued:
            decided = self._answer_at_once(state, update)
            if decided is not None:
                later.append(partial(done, decided[0]))
            else:
                state.updates.append((update, done))
        if state.updates:
            state.write_at = now + self.lease_record
        later += self.keys.answer_blocked(key, state, now, leased=True)
        if state.updates:
            state.write_at = None
            # The pause is for the leases: none is granted on a value not known, or not yet settled.
            leasable = state.known and state.value is not ABSENT and now >= state.uncertain_until
            later += self._wait_for_leases(key, state, at_least=self.lease_record if leasable else 0.0)
        return later
