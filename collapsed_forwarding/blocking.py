"""A blocking origin, `backend(key) -> value`, adapted to flights.

The flight's leader calls it inline, in its caller's thread, as Go's
singleflight and every peer do: no hand-off on the miss path. Waiters still
leave at the flight's deadline. A call made for no waiting caller (a
background refresh, or `request()`'s leader, which must not block) runs in a
worker thread (see `workers.py`). A call that outlives its flight's deadline
is handed back to the owner (`returned_late`) when it finally returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .awaitables import awaitable_refused
from .flight import Flight
from .workers import shared_workers

Backend = Callable[[Any], Any]


class _Fetching(threading.local):
    """The keys this thread's backend calls are fetching, outermost first
    (a leader calls inline, so a backend that gets another key nests calls)."""

    def __init__(self) -> None:
        self.keys: list[Any] = []


class BlockingCalls:
    """Runs `backend(key)` for a flight and settles it with what the call returned or raised.

    settle(flight, result, returned_late=...): Flights.settle, called without the
    lock; returned_late(flight, result), under the lock, for a call that returned
    after its flight was settled, says what the leader's caller gets then.
    """

    def __init__(self, backend: Backend, settle: Callable[..., Any],
                 returned_late: Callable[[Flight, Any], Any]) -> None:
        self.backend = backend
        self._settle, self._returned_late = settle, returned_late
        self._workers = shared_workers()  # the threads background calls run in
        self._fetching = _Fetching()

    def fetching_here(self, key: Any) -> bool:
        """Whether this thread is inside the backend's call for `key`: a get of it would wait on itself."""
        return key in self._fetching.keys

    def lead(self, flight: Flight) -> Any:
        """Call the backend in this thread, then settle the flight with its outcome:
        None if that settled it, or what returned_late made of the outcome if the
        deadline settled it first. What the call raised that is no Exception is
        raised here, once the waiters are released with an error."""
        flight.calling = True
        result = self._call_backend(flight.key)
        late = self._settle(flight, result, returned_late=self._returned_late)
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
        return late

    def start(self, flight: Flight) -> None:
        """Start the call in a worker thread: no caller waits in it."""
        flight.calling = True
        try:
            self._workers.submit(self._call, flight)
        except BaseException:
            flight.calling = False
            raise

    def _call_backend(self, key: Any) -> Any:
        """What backend(key) returned, or the exception it raised."""
        keys = self._fetching.keys
        keys.append(key)
        try:
            return awaitable_refused(self.backend(key))
        except BaseException as exc:
            return exc
        finally:
            keys.pop()

    def _call(self, flight: Flight) -> None:
        result = self._call_backend(flight.key)
        self._settle(flight, result, returned_late=self._returned_late)
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # it ends this thread, which reports it as any thread does
