"""Threads for blocking origin calls, shared by every proxy of a process.

A blocking backend (`backend(key) -> value`) needs a thread while it runs; the
flight's leader must not be that thread, or it could not return at its deadline
when the origin hangs. So calls run here: on an idle thread if one is waiting,
else on one more.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Workers:
    """Threads for blocking origin calls: an idle one is reused, else one more is
    started, so a call never waits for another to end (one may hang). A thread
    idle for `idle` seconds ends, so a burst leaves nothing behind; a call that
    raises what is no Exception ends its thread, which reports it as any thread does."""

    def __init__(self, idle: float = 5.0) -> None:
        self.idle = idle
        self._tasks: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self._waiting = 0  # threads waiting for a task, not yet promised one
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._waiting:
                self._waiting -= 1
                self._tasks.put((fn, args))
                return
        threading.Thread(target=self._run, args=(fn, args), name="fetch", daemon=True).start()

    def _run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        while True:
            fn(*args)
            with self._lock:
                self._waiting += 1
            try:
                fn, args = self._tasks.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:  # a task may have been promised to a waiting thread meanwhile: take it
                    try:
                        fn, args = self._tasks.get_nowait()
                    except queue.Empty:
                        self._waiting -= 1
                        return


_workers: Workers | None = None
_workers_lock = threading.Lock()


def shared_workers() -> Workers:
    """The threads every proxy of the process runs its blocking calls in: made on
    first use, so idle threads are shared rather than kept per proxy."""
    global _workers
    with _workers_lock:
        if _workers is None:
            _workers = Workers()
        return _workers
