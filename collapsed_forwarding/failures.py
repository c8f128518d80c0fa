"""What a cache remembers of fetches that failed or hang, per key.

* a failure, for `error_ttl` seconds: requests get it without a fetch;
* a hung blocking call (one that outlived its deadline), as nginx's
  proxy_cache_lock_age does: until it returns, or until `lock_age` seconds
  after it began, no second call for that key starts, and requests for it
  fail fast with OriginTimeout.

Both are bounded by `max_entries`, the oldest forgotten first. Guarded by the
proxy's lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from .answer import Answer
from .errors import OriginTimeout
from .flight import Flight


class Failures:
    def __init__(self, max_entries: int, lock_age: float) -> None:
        self.max_entries, self.lock_age = max_entries, lock_age
        self.remembered: OrderedDict[Hashable, Answer] = OrderedDict()  # expiring in this order (one error_ttl)
        self.hung: dict[Hashable, Flight] = {}  # keys held by a call that outlived its deadline

    def failing(self, key: Hashable, now: float) -> Answer | None:
        """The key's remembered failure, the expired ones forgotten first (oldest first, so cheap)."""
        failures = self.remembered
        while failures and next(iter(failures.values())).expires <= now:
            failures.popitem(last=False)
        return failures.get(key)

    def busy(self, key: Hashable, now: float) -> bool:
        """A failure is remembered, or a call hangs: no refresh may start."""
        return self.failing(key, now) is not None or key in self.hung

    def remember(self, key: Hashable, failure: Answer) -> None:
        failures = self.remembered
        failures[key] = failure
        failures.move_to_end(key)
        if len(failures) > self.max_entries:
            failures.popitem(last=False)

    def filled(self, key: Hashable) -> None:
        """The key was filled: its failure is forgotten."""
        self.remembered.pop(key, None)

    def forget(self, key: Hashable) -> None:
        """Invalidated: its failure is forgotten, and a hung call's value, if it ever comes, will not fill."""
        self.remembered.pop(key, None)
        self.hung.pop(key, None)

    def hold(self, flight: Flight) -> None:
        """The flight's deadline passed with its blocking call still running: it holds the key."""
        hung = self.hung
        hung[flight.key] = flight
        if len(hung) > self.max_entries:  # keys whose call never came back: forget the oldest
            del hung[next(iter(hung))]

    def hung_error(self, key: Hashable, now: float) -> OriginTimeout | None:
        """What a request for a key held by a hung call fails with, or None if no call
        holds it (past lock_age it lets go: one more call may start, and its value will be ignored)."""
        hung = self.hung.get(key)
        if hung is None:
            return None
        if now - hung.started < self.lock_age:
            return OriginTimeout(f"an origin call for this key has not returned in {now - hung.started:.3g}s")
        del self.hung[key]
        return None

    def returned(self, flight: Flight) -> bool:
        """A hung call came back: True if it still held its key (its value may fill the cache)."""
        if self.hung.get(flight.key) is not flight:
            return False
        del self.hung[flight.key]
        return True
