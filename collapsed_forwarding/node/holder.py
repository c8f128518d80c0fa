"""The holder's side of leases: reads of another node's keys, and our leased copies of them.

A node reads another node's key through its owner (`cf_read`) and keeps what it
is sent only under a lease: the seconds the owner granted, counted on its own
clock from when it asked, so it expires before the owner's record of it does.
While the lease lasts the owner starts no update of the key, so the copy also
answers a cas that does not match it and a write of the value it holds; any
other update is forwarded to the owner (`cf_update`), and the copy dropped. A
copy is dropped by `drop` (a `cf_revoke` or `cf_drop` of that key); a lease
granted in a reply that crossed a drop is not used. A node that cannot reach
the owner reads the origin itself, caches nothing it read that way, and for a
while (`2 * peer_timeout`) does not wait on that owner for reads. Its writes
still go to the owner: if the owner does not answer, the outcome is unknown
(error 0).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import CacheError, OriginTimeout
from ..keys import canonical, too_deep, wire_key
from .codes import reply_result
from .update import Update, cas_outcome
from .wire import Body, Wire

Result = Any  # a value, or a CacheError
ReadDone = Callable[[Result], None]
UpdateDone = Callable[[CacheError | None], None]
# What an owner's error passes on as it is: its origin's answers (0, 11, 20; 22 for a cas) and an
# update's unknown outcome (13); any other code is 11, or for an update 13 unless it is definite.
OWNER_READ_ERRORS = frozenset({0, 11, 13, 20})
OWNER_UPDATE_ERRORS = frozenset({0, 11, 13, 20, 22})


@dataclass
class Held:
    """A key another node owns: our leased copy."""

    value: Any = None
    expires: float = 0.0  # our clock
    drops: int = 0  # cf_revoke / cf_drop messages seen for it


class HolderKeys:
    """Reads and updates of keys another node owns (see the module's docstring)."""

    def __init__(self, wire: Wire, origin: Any, owner_of: Callable[[Hashable], str], *, peer_timeout: float,
                 update_timeout: Callable[[], float], clock: Callable[[], float], max_keys: int) -> None:
        self.wire, self.origin, self.owner_of = wire, origin, owner_of
        self.peer_timeout, self.update_timeout, self.clock = peer_timeout, update_timeout, clock
        self.max_keys = max_keys
        self.counts: Counter[str] = Counter()
        self.held: dict[Hashable, Held] = {}
        self.suspect_until: dict[str, float] = {}  # owner -> until when reads skip it
        # key -> the reads waiting for the next direct read of the origin, while one is out
        self.direct: dict[Hashable, list[ReadDone]] = {}
        self._lock = threading.Lock()

    def drop(self, key: Hashable) -> None:
        """Our copy of key is no longer to be served, and a lease in a reply now in flight is not used."""
        with self._lock:
            self._drop_copy(key)
            self.counts["drops"] += 1

    def stats(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def update(self, key: Hashable, update: Update, done: UpdateDone) -> None:
        """Answer a write or cas from our leased copy if it decides it, else forward it to the key's owner."""
        owner_id = self.owner_of(key)
        with self._lock:
            answer = self._answer_from_lease(key, update)
            if answer is None:
                self._drop_copy(key)  # ours is about to be stale
                self.counts["updates_forwarded"] += 1
                now = self.clock()
                held = self._held_for(key, now)
                asked = (held, held.drops)  # the owner's reply may bring a lease: see _keep
        if answer is not None:
            done(answer[0])
            return
        self.wire.rpc(owner_id, update.body(key),
                      lambda reply: self._update_reply(key, now, asked, done, reply), self.update_timeout())

    def _update_reply(self, key: Hashable, sent: float, asked: tuple[Held, int], done: UpdateDone,
                      reply: Body | None) -> None:
        result = _update_result(reply)
        if reply is not None and "value" in reply and not too_deep(reply["value"]):
            with self._lock:
                self._keep(key, sent, asked, reply["value"], reply.get("lease", 0))
        done(result)

    def _held_for(self, key: Hashable, now: float) -> Held:
        """Under the lock: our entry for key, made (room made first) if there is none."""
        held = self.held.get(key)
        if held is None:
            if len(self.held) >= self.max_keys:
                for stale in [k for k, h in self.held.items() if h.expires <= now][: self.max_keys // 10 + 1]:
                    del self.held[stale]
            held = self.held[key] = Held()
        return held

    def _keep(self, key: Hashable, sent: float, asked: tuple[Held, int], value: Any, lease: Any) -> None:
        """Under the lock: keep value under the lease the owner granted with it, counted from when we
        asked, unless a drop (or our own update) came since we asked: then the lease is not used."""
        held = self.held.get(key)
        # (a lease of 10**400 would overflow: a number a clock can count, or none)
        usable = type(lease) in (int, float) and 0 < lease < 1e15
        if usable and held is asked[0] and held.drops == asked[1]:
            held.value, held.expires = value, sent + float(lease)

    def _answer_from_lease(self, key: Hashable, update: Update) -> tuple[CacheError | None] | None:
        """Under the lock: (the outcome,) of an update our leased copy decides, or None. While the
        lease lasts the owner starts no update of the key, so its value is ours until then, and this
        update is linearized now, before any still on its way to the owner."""
        held = self.held.get(key)
        if held is None or held.expires <= self.clock():
            return None
        if update.kind == "cas" and (refused := cas_outcome(held.value, update)) is not None:
            self.counts["cas_answered_locally"] += 1
            return (refused,)
        if canonical(update.written) == canonical(held.value):
            self.counts["updates_unchanged"] += 1
            return (None,)
        return None

    def _drop_copy(self, key: Hashable) -> None:
        held = self.held.get(key)
        if held is not None:
            held.value, held.expires = None, 0.0
            held.drops += 1

    def read(self, key: Hashable, done: ReadDone) -> None:
        owner_id = self.owner_of(key)
        with self._lock:
            now = self.clock()
            held = self.held.get(key)
            if held is not None and held.expires > now:
                self.counts["reads_leased"] += 1
                value = held.value
            elif self.suspect_until.get(owner_id, 0.0) > now:
                value = None
                held = None
            else:
                self.counts["reads_forwarded"] += 1
                held = self._held_for(key, now)
                asked = (held, held.drops)  # a lease counts only if neither changed meanwhile
                self.wire.rpc(owner_id, {"type": "cf_read", "key": wire_key(key)},
                              lambda reply: self._read_reply(key, owner_id, now, asked, done, reply),
                              self.peer_timeout)
                return
        if held is not None:
            done(value)
        else:
            self._read_direct(key, done)

    def _read_direct(self, key: Hashable, done: ReadDone) -> None:
        """Read the origin ourselves, the owner out of reach, and cache nothing so read. A read takes
        only a fetch sent after it came: one at a time, so the reads that come while one is out
        share the next."""
        with self._lock:
            self.counts["reads_direct"] += 1
            waiting = self.direct.get(key)
            if waiting is not None:
                waiting.append(done)
                return
            self.direct[key] = []
        self.origin.start_fetch(key, partial(self._read_directly, key, [done]))

    def _read_directly(self, key: Hashable, waiters: list[ReadDone], result: Result) -> None:
        with self._lock:
            following = self.direct.pop(key, [])
            if following:
                self.direct[key] = []
        for done in waiters:
            done(result)
        if following:
            self.origin.start_fetch(key, partial(self._read_directly, key, following))

    def _read_reply(self, key: Hashable, owner_id: str, sent: float, asked: tuple[Held, int], done: ReadDone,
                    reply: Body | None) -> None:
        if reply is None:
            with self._lock:
                self.suspect_until[owner_id] = self.clock() + 2 * self.peer_timeout
            self._read_direct(key, done)
            return
        lease = reply.get("lease", 0)
        result: Result = reply_result(reply, "cf_read_ok", f"owner {owner_id}", OWNER_READ_ERRORS, value=True)
        with self._lock:
            self.suspect_until.pop(owner_id, None)
            if not isinstance(result, CacheError):
                self._keep(key, sent, asked, result, lease)
        done(result)


def _update_result(reply: Body | None) -> CacheError | None:
    if reply is None:
        return OriginTimeout("the key's owner did not answer: the update may or may not have happened")
    return reply_result(reply, "cf_update_ok", "the key's owner", OWNER_UPDATE_ERRORS, update=True)
