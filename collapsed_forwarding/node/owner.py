"""The owner's side of leases: it serializes every update of its keys, and its copy is the register.

Another node forwards its write or cas (`cf_update`) and its reads (`cf_read`)
to the owner. Updates run one at a time: before one goes to the origin, the
owner waits until every lease it granted has run out (holders are sent nothing:
the wait costs no message), and has every node that keeps a `get` copy drop it
(`cf_revoke`); while an update is at the origin reads wait, no lease is
granted, and no fetch sent before fills anything. The updates queued behind one
are decided in order and sent as one write (`_batch`), after a pause of a
lease's length in which every node may take a lease on the value just written.
The owner answers reads from its copy, with a lease that ends no later than the
queued updates start; an update its copy decides (a cas that does not match, a
write of the value held) is answered at once, linearized before those queued.
After an update of unknown outcome, and for `settle` seconds after a start, it
caches nothing and grants nothing; no update starts before `lease * (1 +
drift)` seconds after a start (docs/protocol.md, "Restarts").
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, Protocol

from ..errors import CacheError, KeyMissing, PreconditionFailed
from ..keys import canonical, wire_key
from .update import ABSENT, Owned, ReadReply, Update, UpdateDone, answer_all, cas_outcome, result_of
from .wire import Body, Wire, after_replies

MIN_LEASE = 0.005  # seconds: a lease shorter than this (one ending with the wait for the others) is not granted
Result = Any  # a value, or a CacheError
ReadDone = Callable[[Result], None]


class Invalidates(Protocol):
    """The node's cache, as the owner sees it: an entry it can drop."""

    def invalidate(self, key: Hashable) -> Any: ...


class OwnerKeys:
    """read / write / cas of the keys this node owns (see the module's docstring)."""

    def __init__(self, wire: Wire, origin: Any, cache: Invalidates, *, lease: float, drift: float,
                 peer_timeout: float, settle: float, clock: Callable[[], float], max_keys: int) -> None:
        self.wire, self.origin, self.cache, self.clock = wire, origin, cache, clock
        self.lease, self.peer_timeout, self.settle = lease, peer_timeout, settle
        # How long, on our clock, a holder's lease of `lease` seconds on its clock may last.
        self.stretch = 1 + drift
        self.lease_record = lease * self.stretch
        self.max_keys = max_keys
        self.counts: Counter[str] = Counter()
        started = clock()
        self.settled_at = started + settle  # an update a previous incarnation sent has landed by then
        self.writes_from = started + self.lease_record  # a lease a previous incarnation granted has ended
        self.owned: dict[Hashable, Owned] = {}
        # Updates that came before writes_from, in arrival order; None once it has passed.
        self._held: list[tuple[Hashable, Update, UpdateDone]] | None = [] if self.lease_record > 0 else None
        self._lock = threading.Lock()

    # -- requests ----------------------------------------------------------------------------

    def read(self, key: Hashable, reply: Callable[[Result, float], None], src: str | None) -> None:
        """A read at the owner (`src` None) or a holder's `cf_read`; `reply(result, lease)`."""
        with self._lock:
            self.counts["reads_owned"] += 1
            state = self._owned(key)
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

    def update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        with self._lock:
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
        with self._lock:
            held, self._held = self._held or [], None
        for key, update, done in held:
            self._start(key, update, done)

    def _start(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        with self._lock:
            state = self._owned(key)
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
        with self._lock:
            state = self._owned(key)
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

    def lease_with_answer(self, key: Hashable, src: str, asked: float) -> tuple[Any, float] | None:
        """(value, lease) for the reply to `src`'s update of key, which came at `asked` and is now
        answered: what a `cf_read` would get now, or None when it would get no lease."""
        with self._lock:
            state = self.owned.get(key)
            now = self.clock()
            if state is None or state.busy or not state.known or now < state.uncertain_until:
                return None
            lease = self._grant(state, src, now, asked)
            return (state.value, lease) if lease > 0 else None

    def note_get_holder(self, key: Hashable, src: str) -> int:
        """A node asked us for a `get` of key: it may cache it. Returns the key's generation,
        for `changed_since` when the answer goes out."""
        with self._lock:
            state = self._owned(key)
            state.get_holders.add(src)
            return state.gen

    def changed_since(self, key: Hashable, gen: int) -> bool:
        """Has an update of key started since `gen` (or is one under way)? Then what a `get`
        fetched meanwhile may predate it, and the asker must not keep it."""
        with self._lock:
            state = self.owned.get(key)
            return state is None or state.busy or state.gen != gen

    def forget(self, key: Hashable) -> None:
        """Forget what we know of key (the origin may have changed behind our back)."""
        with self._lock:
            state = self.owned.get(key)
            if state is not None and not state.busy:
                state.known = False
                state.gen += 1

    def stats(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    # -- the table ---------------------------------------------------------------------------

    def _owned(self, key: Hashable) -> Owned:
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
        with self._lock:
            state = self._owned(key)
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

    # -- updates -----------------------------------------------------------------------------

    def _next_update(self, key: Hashable, state: Owned) -> list[Callable[[], None]]:
        """Under the lock: start the next update, answering at once each cas the copy decides.
        Returns what to call once the lock is released."""
        # Reads that came during the last update go first: a stream of updates must not starve them.
        later = self.answer_blocked(key, state, self.clock(), leased=False)
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
            with self._lock:
                self.counts["revokes_sent"] += 1
            self.wire.rpc(target, {"type": "cf_revoke", "key": wire_key(key)}, acknowledged, max(wait, 0.001))

    def _write_origin(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        update.send(self.origin, key, lambda error: self._written(key, update, done, error))

    def _written(self, key: Hashable, update: Update, done: UpdateDone, error: CacheError | None) -> None:
        self.cache.invalidate(key)  # anything a `get` fetched meanwhile
        with self._lock:
            state = self._owned(key)
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
        later += self.answer_blocked(key, state, now, leased=True)
        if state.updates:
            state.write_at = None
            # The pause is for the leases: none is granted on a value not known, or not yet settled.
            leasable = state.known and state.value is not ABSENT and now >= state.uncertain_until
            later += self._wait_for_leases(key, state, at_least=self.lease_record if leasable else 0.0)
        return later


def _ignore(_reply: Body | None) -> None:
    pass


def _without_lease(reply: ReadReply, result: Result) -> None:
    reply(result, 0.0)
