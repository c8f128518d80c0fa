"""A blocking origin, `backend(key) -> value`, adapted to flights.

The flight's leader calls it inline, in its caller's thread, as Go's
singleflight and every peer do: no hand-off on the miss path. Waiters still
leave at the flight's deadline. A call made for no waiting caller (a
background refresh, or `request()`'s leader, which must not block) runs in a
worker thread (see `workers.py`). A call that outlives its flight's deadline
is handed back to the owner (`returned_late`) when it finally returns.
"""

from __future__ import annotations

from collections.abc import Callable
from threading import get_ident
from typing import Any

from .awaitables import NEVER_AWAITABLE, awaitable_refused
from .flight import Flight
from .workers import shared_workers

Backend = Callable[[Any], Any]


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

    def lead(self, flight: Flight) -> Any:
        """Call the backend in this thread, then settle the flight with its outcome:
        None if that settled it, or what returned_late made of the outcome if the
        deadline settled it first. What the call raised that is no Exception is
        raised here, once the waiters are released with an error."""
        flight.calling = True
        result = self._call_backend(flight)
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

    def _call_backend(self, flight: Flight) -> Any:
        """What backend(key) returned, or the exception it raised. The flight
        records this thread as its caller: a get of its key from inside the
        call (a backend that asks the cache) would wait on itself."""
        flight.caller = get_ident()
        try:
            result = self.backend(flight.key)
        except BaseException as exc:
            return exc
        return result if type(result) in NEVER_AWAITABLE else awaitable_refused(result)

    def _call(self, flight: Flight) -> None:
        result = self._call_backend(flight)
        self._settle(flight, result, returned_late=self._returned_late)
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # it ends this thread, which reports it as any thread does
