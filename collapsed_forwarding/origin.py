"""What stands behind the cache: the two shapes of origin, and the in-process `SimOrigin`.

A blocking origin is a callable, `backend(key) -> value`, that raises KeyError
when the key does not exist and anything else when it fails. A non-blocking
one has `start_fetch(key, done)`: it starts the fetch and later calls
`done(result, ttl=None)` once, from any thread, with the value or an
exception, so no thread waits on it.

An origin that can also be written (`Writable`) has `write` and `cas`, which
call `done(None)` on success, else `done(error)`. Keys are cache keys (see
`keys.cache_key`).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

from .errors import CacheError, OriginTimeout, OriginUnavailable, PreconditionFailed
from .keys import canonical
from .timers import Scheduler, default_scheduler

Done = Callable[..., None]  # done(result, ttl=None): a value, or an exception
WriteDone = Callable[[CacheError | None], None]
BlockingOrigin = Callable[[Hashable], Any]


@runtime_checkable
class FetchingOrigin(Protocol):
    """A non-blocking origin: the fetch is started, and answered through `done`."""

    def start_fetch(self, key: Hashable, done: Done) -> None: ...


class Writable(Protocol):
    """An origin that takes writes, as the node's `write` and `cas` need."""

    def start_fetch(self, key: Hashable, done: Done) -> None: ...

    def write(self, key: Hashable, value: Any, done: WriteDone) -> None: ...

    def cas(self, key: Hashable, from_: Any, to: Any, done: WriteDone) -> None: ...


Origin = BlockingOrigin | FetchingOrigin


class SimOrigin:
    """Every key exists, as "value-" + key, until written; each fetch takes
    `latency` seconds and fails with probability `error_rate`."""

    def __init__(self, latency: float = 0.05, error_rate: float = 0.0, timeout: float = float("inf"),
                 rand: Callable[[], float] = random.random, scheduler: Scheduler | None = None) -> None:
        self.latency, self.error_rate, self.timeout, self.rand = latency, error_rate, timeout, rand
        self.scheduler = scheduler or default_scheduler()
        self._written: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def value(self, key: Hashable) -> Any:
        with self._lock:
            return self._value(key)

    def _value(self, key: Hashable) -> Any:
        if key in self._written:
            return self._written[key]
        return "value-" + (key if type(key) is str else key[0])  # type: ignore[index,operator]

    def __call__(self, key: Hashable) -> Any:
        """The blocking form, for CollapsedForwardingProxy(SimOrigin()) in a program's own threads."""
        time.sleep(self.latency)
        return self._fetch(key)

    def _fetch(self, key: Hashable) -> Any:
        if self.error_rate and self.rand() < self.error_rate:
            raise OriginUnavailable("the sim origin failed (--sim-error-rate)")
        return self.value(key)

    def start_fetch(self, key: Hashable, done: Done) -> None:
        if self.latency >= self.timeout:
            error = OriginTimeout(f"origin fetch took longer than {self.timeout}s")
            self.scheduler.call_later(self.timeout, done, error)
        elif self.latency > 0:
            self.scheduler.call_later(self.latency, self._answer, key, done)
        else:  # a fetch that takes no time is answered now, without a round through the timer thread
            self._answer(key, done)

    def _answer(self, key: Hashable, done: Done) -> None:
        try:
            value = self._fetch(key)
        except OriginUnavailable as error:
            done(error)
        else:
            done(value)

    def write(self, key: Hashable, value: Any, done: WriteDone) -> None:
        with self._lock:
            self._written[key] = value
        done(None)

    def cas(self, key: Hashable, from_: Any, to: Any, done: WriteDone) -> None:
        with self._lock:
            current = self._value(key)
            matches = canonical(current) == canonical(from_)
            if matches:
                self._written[key] = to
        done(None if matches else PreconditionFailed(f"expected {from_!r}, but the value is {current!r}"))
