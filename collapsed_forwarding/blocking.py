"""A blocking origin, `backend(key) -> value`, adapted to flights.

The call runs in a worker thread (see `workers.py`), so the `get` that leads
the flight waits on it like every other waiter, and returns at the deadline
even if the origin hangs. A call that outlives its flight's deadline is
handed back to the owner (`returned_late`) when it finally returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .flight import Flight
from .workers import shared_workers

Backend = Callable[[Any], Any]


class BlockingOrigin:
    """Runs `backend(key)` for a flight and settles it with what the call returned or raised.

    settle(flight, result): the owner's settle, called without the lock;
    returned_late(flight, result): under the lock, for a call that returned after its flight was settled.
    """

    def __init__(self, backend: Backend, lock: threading.Lock, settle: Callable[[Flight, Any], None],
                 returned_late: Callable[[Flight, Any], None]) -> None:
        self.backend, self._lock = backend, lock
        self._settle, self._returned_late = settle, returned_late
        self._workers = shared_workers()  # the threads blocking calls run in

    def start(self, flight: Flight, leader_waits: bool = False) -> None:
        """Start the call in a worker thread, so every waiter, the leader too, can leave at the deadline."""
        flight.calling = True
        try:
            self._workers.submit(self._call, flight, leader_waits)
        except BaseException:
            flight.calling = False
            raise

    def _call(self, flight: Flight, leader_waits: bool) -> None:
        try:
            result = self.backend(flight.key)
        except BaseException as exc:
            result = exc
            if not isinstance(exc, Exception):
                flight.crash = exc  # (a blocking leader raises it; else it ends this thread, as before)
        with self._lock:
            flight.calling = False
            late = flight.answers is not None
            if late:
                self._returned_late(flight, result)
        if not late:
            self._settle(flight, result)
        if flight.crash is not None and (late or not leader_waits):  # (no leader waits for it any more)
            raise flight.crash
