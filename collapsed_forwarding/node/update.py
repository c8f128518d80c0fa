"""A write or cas of one key, as a client or another node asked for it, and what the owner knows of a key."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CacheError, KeyMissing, PreconditionFailed
from ..keys import canonical, wire_key
from .wire import Body

UpdateDone = Callable[[CacheError | None], None]
ReadDone = Callable[[Any], None]  # a value, or a CacheError
ReadReply = Callable[[Any, float], None]  # a value or a CacheError, and the lease granted with it
ABSENT: Any = object()  # the owner knows the key does not exist


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
    blocked: list[tuple[ReadReply, str | None]] = field(default_factory=list)  # reads waiting for the update
    fetches: dict[int, list[tuple[ReadDone, str | None]]] = field(default_factory=dict)  # gen -> waiters
    next_private: int | None = None  # while uncertain: the fetch (gen) that goes when the one out is back
    leases: dict[str, float] = field(default_factory=dict)  # holder -> when its lease ends (our clock)
    get_holders: set[str] = field(default_factory=set)
    uncertain_until: float = 0.0
    write_at: float | None = None  # queued updates start then (our clock), when the last lease has ended

    def idle(self, now: float) -> bool:
        """Nothing under way and no lease to honour: it may be forgotten (its get holders told first)."""
        return not (self.busy or self.updates or self.blocked or self.fetches
                    or any(end > now for end in self.leases.values()))


def cas_outcome(value: Any, cas: Update) -> CacheError | None:
    """A cas against a known value: its error, or None if it applies."""
    if value is ABSENT:
        return KeyMissing("key does not exist")
    if canonical(value) != canonical(cas.from_):
        return PreconditionFailed(f"expected {cas.from_!r}, but the value is {value!r}")
    return None


def answer_all(outcomes: list[tuple[UpdateDone, CacheError | None]], error: CacheError | None) -> None:
    for done, own in outcomes:
        done(error if error is not None else own)


def result_of(value: Any) -> Any:
    return KeyMissing("key does not exist") if value is ABSENT else value
