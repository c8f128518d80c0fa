"""Linearizable read, write and cas on a cluster: the owner serializes, others hold leases.

Every key has one owner (cluster.owner). For `read`, `write` and `cas`:

* **The owner serializes every update of its keys.** Another node forwards its
  write or cas (`cf_update`); the owner runs them one at a time. Before an
  update goes to the origin, every node that may serve the key from a copy is
  told to drop it (`cf_revoke`), and the owner waits for each to acknowledge
  or for its lease to run out. While an update is under way no lease is
  granted, reads at the owner wait for it, and no fetch started before it
  fills anything.
* **The owner's copy is the register.** As nothing else writes the origin, the
  owner knows the value after each update it made (write_ok: the value written;
  cas_ok: its `to`) and after each read it made with no update since. It
  answers reads from that copy, and a cas whose `from` does not match (or a
  key known to be missing) at once, with error 22 (or 20), as lin-kv would.
  Its reads of the origin are shared only by reads that arrived while no
  update started since the read was sent.
* **Another node reads through the owner** (`cf_read`), and keeps what it is
  sent only under a lease: `lease` seconds counted on its own clock from when
  it asked, so it expires before the owner's record of it does. The owner
  grants a lease only to a node that has read the key more than once since
  the key's last update, so a key written as often as it is read costs no
  revocations. A copy is dropped by a `cf_revoke` of that key; a lease granted
  in a reply that crossed a `cf_revoke` is not used.
* **A node that cannot reach the owner** reads the origin itself, caches
  nothing it read that way, and for a while (`2 * peer_timeout`) does not wait
  on that owner for reads. Its writes still go to the owner: if the owner does
  not answer, the outcome is unknown (error 0, timeout).
* **An update whose outcome is unknown** (the origin did not answer) may still
  land later: for `10 * origin_timeout` the owner then caches nothing of that
  key, grants no lease and reads the origin afresh for each read.

`get` keeps the cache (cache.py): the owner remembers which nodes asked it for
a key (`cf_fetch`) and drops their entries with the same `cf_revoke` before
each update, and its own before and after. A copy fetched from the origin
while the owner could not be reached lives at most `lease` seconds.

On one node none of this is used.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..errors import CacheError, KeyMissing, OriginTimeout, PreconditionFailed
from ..keys import canonical, wire_key
from .codes import reply_result
from .wire import Body, Wire, after_replies

log = logging.getLogger("collapsed_forwarding.leases")

ABSENT: Any = object()  # the owner knows the key does not exist
LEASE_AFTER_READS = 2  # a node gets a lease on its second read of a key since the key's last update
MARGIN = 0.005  # seconds the owner adds to its record of a lease (clock rates may differ a little)
Result = Any  # a value, or a CacheError
ReadDone = Callable[[Result], None]
UpdateDone = Callable[[CacheError | None], None]
# What an owner's error passes on as it is: its origin's answers (0, 11, 20; 22 for a cas) and an
# update's unknown outcome (13); any other code is 11, or for an update 13 unless it is definite.
OWNER_READ_ERRORS = frozenset({0, 11, 13, 20})
OWNER_UPDATE_ERRORS = frozenset({0, 11, 13, 20, 22})


@dataclass
class Update:
    kind: str  # "write" or "cas"
    value: Any = None  # write
    from_: Any = None  # cas
    to: Any = None  # cas

    def body(self, key: Hashable) -> Body:
        if self.kind == "write":
            return {"type": "cf_update", "key": wire_key(key), "kind": "write", "value": self.value}
        return {"type": "cf_update", "key": wire_key(key), "kind": "cas", "from": self.from_, "to": self.to}

    @property
    def written(self) -> Any:
        return self.value if self.kind == "write" else self.to

    def send(self, origin: Any, key: Hashable, done: UpdateDone) -> None:
        """Make this update at the origin (its write or its cas); `done(error or None)`."""
        if self.kind == "write":
            origin.write(key, self.value, done)
        else:
            origin.cas(key, self.from_, self.to, done)


@dataclass
class Owned:
    """A key this node owns."""

    known: bool = False
    value: Any = None  # ABSENT: known missing
    busy: bool = False  # an update is revoking copies or at the origin
    gen: int = 0  # bumped when an update starts: a fetch sent before it fills nothing
    updates: deque[tuple[Update, UpdateDone]] = field(default_factory=deque)
    blocked: list[tuple[ReadDone, str | None]] = field(default_factory=list)  # reads waiting for the update
    fetches: dict[int, list[tuple[ReadDone, str | None]]] = field(default_factory=dict)  # gen -> waiters
    leases: dict[str, float] = field(default_factory=dict)  # holder -> when its lease ends (our clock)
    get_holders: set[str] = field(default_factory=set)
    reads: Counter[str] = field(default_factory=Counter)  # reads per node since the last update
    uncertain_until: float = 0.0

    def idle(self, now: float) -> bool:
        """Nothing under way and no lease to honour: it may be forgotten (its get holders told first)."""
        return not (self.busy or self.updates or self.blocked or self.fetches
                    or any(end > now for end in self.leases.values()))


@dataclass
class Held:
    """A key another node owns: our leased copy."""

    value: Any = None
    expires: float = 0.0  # our clock
    revokes: int = 0  # cf_revoke messages seen for it


class LinearKeys:
    """read / write / cas for a node of a cluster (see the module's docstring)."""

    def __init__(self, wire: Wire, origin: Any, owner_of: Callable[[Hashable], str], *, lease: float,
                 peer_timeout: float, origin_timeout: float, drop_get: Callable[[Hashable], None],
                 max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.wire, self.origin, self.owner_of = wire, origin, owner_of
        self.lease, self.peer_timeout, self.origin_timeout = lease, peer_timeout, origin_timeout
        self.drop_get, self.max_keys, self.clock = drop_get, max_keys, clock
        self.owned: dict[Hashable, Owned] = {}
        self.held: dict[Hashable, Held] = {}
        self.suspect_until: dict[str, float] = {}  # owner -> until when reads skip it
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    # -- the node's requests ----------------------------------------------------------------

    def read(self, key: Hashable, done: ReadDone) -> None:
        if self.owner_of(key) == self.wire.node_id:
            self._owner_read(key, lambda result, _lease: done(result), None)
        else:
            self._holder_read(key, done)

    def update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        owner_id = self.owner_of(key)
        if owner_id == self.wire.node_id:
            self._owner_update(key, update, done)
            return
        with self._lock:
            self._drop_copy(key)  # ours is about to be stale
            self.counts["updates_forwarded"] += 1
        self.wire.rpc(owner_id, update.body(key), lambda reply: done(self._update_result(reply)),
                      self.peer_timeout + self.lease)

    # -- messages from other nodes ----------------------------------------------------------

    def cf_read(self, key: Hashable, src: str, reply: Callable[[Result, float], None]) -> None:
        self._owner_read(key, reply, src)

    def cf_update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        self._owner_update(key, update, done)

    def cf_revoke(self, key: Hashable) -> None:
        with self._lock:
            self._drop_copy(key)
            held = self.held.get(key)
            if held is not None:
                held.revokes += 1
        self.drop_get(key)

    def note_get_holder(self, key: Hashable, src: str) -> int:
        """A node asked us (the owner) for a `get` of key: it may cache it. Returns the key's
        generation, for `changed_since` when the answer goes out."""
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

    def invalidate(self, key: Hashable) -> None:
        """`invalidate`: forget what we know of key (the origin may have changed behind our back)."""
        with self._lock:
            self._drop_copy(key)
            state = self.owned.get(key)
            if state is not None and not state.busy:
                state.known = False
                state.gen += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            names = ("reads_leased", "reads_forwarded", "reads_direct", "reads_owned", "leases_granted",
                     "revokes_sent", "updates_forwarded", "cas_answered_locally")
            return {name: self.counts[name] for name in names}

    # -- the owner ---------------------------------------------------------------------------

    def _owned(self, key: Hashable) -> Owned:
        state = self.owned.get(key)
        if state is None:
            if len(self.owned) >= self.max_keys:
                self._forget_idle_keys()
            state = self.owned[key] = Owned()
        return state

    def _forget_idle_keys(self) -> None:
        """Under the lock: make room (a tenth of max_keys). A forgotten key's get copies elsewhere
        are dropped now, since no update of it will know to drop them."""
        now = self.clock()
        for key in [k for k, s in self.owned.items() if s.idle(now)][: max(1, self.max_keys // 10)]:
            for holder in self.owned.pop(key).get_holders - {self.wire.node_id}:
                self.wire.rpc(holder, {"type": "cf_revoke", "key": wire_key(key)}, _ignore, self.peer_timeout)

    def _owner_read(self, key: Hashable, reply: Callable[[Result, float], None], src: str | None) -> None:
        with self._lock:
            self.counts["reads_owned"] += 1
            state = self._owned(key)
            if src is not None:
                state.reads[src] += 1
            if state.busy:
                state.blocked.append((lambda result: reply(result, 0.0), src))
                return
            now = self.clock()
            if state.known and now >= state.uncertain_until:
                value, lease = state.value, self._grant(state, src, now)
            else:
                self._join_fetch(key, state, (lambda result: reply(result, 0.0), src), now)
                return
        reply(_result(value), lease)

    def _grant(self, state: Owned, src: str | None, now: float) -> float:
        if src is None or self.lease <= 0 or state.reads[src] < LEASE_AFTER_READS or state.value is ABSENT:
            return 0.0
        state.leases[src] = now + self.lease + MARGIN
        self.counts["leases_granted"] += 1
        return self.lease

    def _join_fetch(self, key: Hashable, state: Owned, waiter: tuple[ReadDone, str | None], now: float) -> None:
        """Under the lock. Share a fetch sent in this generation; none while uncertain (the value
        may change at any moment then, so a read must not take one sent before it came)."""
        if now < state.uncertain_until:
            gen = -1 - len(state.fetches)  # a private one: never shared, never cached
            while gen in state.fetches:
                gen -= 1
        else:
            gen = state.gen
            if gen in state.fetches:
                state.fetches[gen].append(waiter)
                return
        state.fetches[gen] = [waiter]
        self.wire.scheduler.call_later(0, self.origin.start_fetch, key,
                                       lambda result: self._fetched(key, gen, result))

    def _fetched(self, key: Hashable, gen: int, result: Result) -> None:
        with self._lock:
            state = self._owned(key)
            waiters = state.fetches.pop(gen, [])
            now = self.clock()
            cacheable = gen == state.gen and not state.busy and now >= state.uncertain_until
            if cacheable and not isinstance(result, CacheError):
                state.known, state.value = True, result
            elif cacheable and isinstance(result, KeyMissing):
                state.known, state.value = True, ABSENT
        for done, _src in waiters:
            done(result)

    def _owner_update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        with self._lock:
            state = self._owned(key)
            state.updates.append((update, done))
            if state.busy:
                return
            answers = self._next_update(key, state)
        for answer in answers:
            answer()

    def _next_update(self, key: Hashable, state: Owned) -> list[Callable[[], None]]:
        """Under the lock: start the next update, answering at once each cas the copy decides.
        Returns what to call once the lock is released."""
        later: list[Callable[[], None]] = []
        # Reads that came during the last update go first: a stream of updates must not starve them.
        now = self.clock()
        blocked, state.blocked = state.blocked, []
        for reader, src in blocked:
            if state.known and now >= state.uncertain_until:
                later.append(partial(reader, _result(state.value)))
            else:
                self._join_fetch(key, state, (reader, src), now)
        while state.updates:
            update, done = state.updates.popleft()
            decided = self._decide_locally(state, update)
            if decided is not None:
                self.counts["cas_answered_locally"] += 1
                later.append(partial(done, decided))
                continue
            state.busy, state.known = True, False
            state.gen += 1
            now = self.clock()
            holders = {h: end for h, end in state.leases.items() if end > now}
            get_holders = state.get_holders - {self.wire.node_id}
            state.leases, state.get_holders = {}, set()
            state.reads.clear()
            later.append(partial(self._revoke_then_write, key, update, done, holders, get_holders))
            return later
        state.busy = False
        return later

    def _decide_locally(self, state: Owned, update: Update) -> CacheError | None:
        if update.kind != "cas" or not state.known or self.clock() < state.uncertain_until:
            return None
        if state.value is ABSENT:
            return KeyMissing("key does not exist")
        if canonical(state.value) != canonical(update.from_):
            return PreconditionFailed(f"expected {update.from_!r}, but the value is {state.value!r}")
        return None

    def _revoke_then_write(self, key: Hashable, update: Update, done: UpdateDone,
                           holders: dict[str, float], get_holders: set[str]) -> None:
        """Drop every copy (acknowledged, or its lease run out), then write to the origin."""
        self.drop_get(key)
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
        self.drop_get(key)  # anything a `get` fetched meanwhile
        with self._lock:
            state = self._owned(key)
            if error is None:
                state.known, state.value = True, update.written
            elif isinstance(error, KeyMissing):
                state.known, state.value = True, ABSENT
            elif not isinstance(error, PreconditionFailed):  # unknown: it may still land
                state.uncertain_until = self.clock() + 10 * self.origin_timeout
            state.gen += 1
            answers = self._next_update(key, state)
        done(error)
        for answer in answers:
            answer()

    # -- another node's keys ------------------------------------------------------------------

    def _drop_copy(self, key: Hashable) -> None:
        held = self.held.get(key)
        if held is not None:
            held.value, held.expires = None, 0.0

    def _holder_read(self, key: Hashable, done: ReadDone) -> None:
        owner_id = self.owner_of(key)
        with self._lock:
            now = self.clock()
            held = self.held.get(key)
            if held is not None and held.expires > now:
                self.counts["reads_leased"] += 1
                value = held.value
            elif self.suspect_until.get(owner_id, 0.0) > now:
                self.counts["reads_direct"] += 1
                value = None
                held = None
            else:
                self.counts["reads_forwarded"] += 1
                if held is None:
                    if len(self.held) >= self.max_keys:
                        for stale in [k for k, h in self.held.items() if h.expires <= now][: self.max_keys // 10 + 1]:
                            del self.held[stale]
                    held = self.held[key] = Held()
                asked = (held, held.revokes)  # a lease counts only if neither changed meanwhile
                self.wire.rpc(owner_id, {"type": "cf_read", "key": wire_key(key)},
                              lambda reply: self._read_reply(key, owner_id, now, asked, done, reply),
                              self.peer_timeout)
                return
        if held is not None:
            done(_result(value))
        else:
            self.origin.start_fetch(key, done)  # a direct read: shared with no one, cached nowhere

    def _read_reply(self, key: Hashable, owner_id: str, sent: float, asked: tuple[Held, int], done: ReadDone,
                    reply: Body | None) -> None:
        if reply is None:
            with self._lock:
                self.suspect_until[owner_id] = self.clock() + 2 * self.peer_timeout
                self.counts["reads_direct"] += 1
            self.origin.start_fetch(key, done)
            return
        lease = reply.get("lease", 0)
        result: Result = reply_result(reply, "cf_read_ok", f"owner {owner_id}", OWNER_READ_ERRORS, value=True)
        with self._lock:
            self.suspect_until.pop(owner_id, None)
            held = self.held.get(key)
            # (a lease of 10**400 would overflow: a number a clock can count, or none)
            usable = type(lease) in (int, float) and 0 < lease < 1e15 and not isinstance(result, CacheError)
            if usable and held is asked[0] and held.revokes == asked[1]:
                held.value, held.expires = result, sent + float(lease)
        done(result)

    def _update_result(self, reply: Body | None) -> CacheError | None:
        if reply is None:
            return OriginTimeout("the key's owner did not answer: the update may or may not have happened")
        return reply_result(reply, "cf_update_ok", "the key's owner", OWNER_UPDATE_ERRORS, update=True)


def _ignore(_reply: Body | None) -> None:
    pass


def _result(value: Any) -> Result:
    return KeyMissing("key does not exist") if value is ABSENT else value
