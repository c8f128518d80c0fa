"""The asyncio face of the cache: `await proxy.aget(key)`.

`AsyncCollapsedForwardingProxy` is a `CollapsedForwardingProxy` (same entries,
flights, freshness policies and counters) that tasks await. A fresh hit is the
sync `get`'s own lock-free path, with no Future and no lock. A miss is the
proxy's non-blocking `request()`: the task waits on an asyncio.Future of its
own, which the flight resolves on the task's loop; no thread waits for it.

The origin may be an `async def fetch(key)` (run as a task, see
`coroutine_origin.py`), a non-blocking `start_fetch` one, or a blocking
function, which runs in the proxy's worker threads (a task must not block the
loop, as a sync `get`'s leader does by calling it inline): one thread per fetch,
never one per waiting task.

Cancellation: the fetch belongs to the flight, not to any waiter. Cancelling a
waiting task (or its own `timeout=` passing) ends that task's wait and nothing
else: the others still get the answer, and when every waiter is gone the fetch
still runs to its end and fills the cache (only the proxy's `timeout` cancels it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from .answer import Answer, checked_ttl
from .awaitables import is_async_callable
from .cache import CollapsedForwardingProxy, gave_up
from .coroutine_origin import CoroutineOrigin
from .flight import Flight
from .hits import make_aget

Key = Hashable
Value = Any
_get_running_loop = asyncio._get_running_loop  # the C accessor: None off any loop, never raises
_Future = asyncio.Future  # made directly: loop.create_future() is one more Python call per waiting task


class AsyncCollapsedForwardingProxy(CollapsedForwardingProxy):
    """A CollapsedForwardingProxy that tasks await, and threads may share.

    `backend` may be an `async def fetch(key) -> value` (raising KeyError when
    the key does not exist), anything a CollapsedForwardingProxy takes, or a
    blocking function (run in a worker thread per fetch). `loop`: where an
    `async def` fetch runs when a thread's sync `get` starts it; by default the
    loop running when the proxy is made, or else the last one a task fetched on.
    Every other setting is CollapsedForwardingProxy's.

    Threads may call the sync `get` on the same proxy, and share its flights.
    With an `async def` origin, not a thread that runs an event loop: that
    `get` would block the loop a fetch needs, so where it would wait it raises
    RuntimeError instead (a hit is served).
    """

    def __init__(self, backend: Any, ttl: float = 60, *, loop: asyncio.AbstractEventLoop | None = None,
                 **settings: Any) -> None:
        self.origin: CoroutineOrigin | None = None
        if is_async_callable(backend):
            backend = self.origin = CoroutineOrigin(backend, 0.0, loop or _get_running_loop())
        super().__init__(backend, ttl, **settings)
        if self.origin is not None:
            self.origin.timeout = self.timeout
        self._aget = self._make_aget()
        if type(self).aget is AsyncCollapsedForwardingProxy.aget:  # (as the base does for get)
            self.aget = self._aget  # type: ignore[method-assign]

    async def aget(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Value:
        """The key's value, fetching it if need be; raises CacheError, as `get`.

        `timeout` (seconds) bounds this task's wait, below the proxy's own:
        past it the task gets OriginTimeout, and the fetch goes on for the
        others. Cancelling the task cancels its wait only, never the fetch."""
        return await self._aget(key, ttl, timeout)

    def _make_aget(self) -> Callable[..., Any]:
        """`aget` as a closure: a hit is the lock-free path `get` takes; a miss asks `request`."""
        aget = make_aget(*self._hit_path, self._ask)
        aget.__doc__ = AsyncCollapsedForwardingProxy.aget.__doc__
        return aget

    async def alookup(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Answer:
        """Like `aget`, but returns the Answer, which says how it was served."""
        return await self._answer(key, ttl, timeout, False)

    async def afetch_and_cache(self, key: Key, ttl: float | None = None, *, timeout: float | None = None) -> Value:
        """Fetch the key from the origin now, past a fresh entry (joining a fetch
        already in flight), cache it for `ttl`, and return it, as `fetch_and_cache`."""
        return (await self._answer(key, ttl, timeout, True)).result()

    async def _answer(self, key: Key, ttl: float | None, timeout: float | None, force: bool) -> Answer:
        answer = self._ask(key, ttl, timeout, force)
        return answer if isinstance(answer, Answer) else await answer

    def _ask(self, key: Key, ttl: float | None, timeout: float | None,
             force: bool) -> Answer | asyncio.Future[Answer]:
        """The Answer now, or the Future this task awaits it on."""
        patience = None if timeout is None else checked_ttl(timeout, "timeout")
        waiter: asyncio.Future[Answer] = _Future(loop=asyncio.get_running_loop())
        answer = self._request(key, ttl, force, True, 0.0, _wait_in_herd, waiter)
        if answer is not None:
            return answer
        loop = waiter.get_loop()
        if patience is not None and patience < self.timeout:  # (else the flight's deadline comes first anyway)
            expiry = loop.call_later(patience, _give_up, waiter, patience)
            waiter.add_done_callback(lambda _: expiry.cancel())  # however it ends, cancelled included
        return waiter

    def _miss(self, key: Key, ttl: float | None, timeout: float | None) -> Value:
        """The sync `get`'s miss, which, with an `async def` origin, refuses to wait on an event loop's thread."""
        if self.origin is not None and _get_running_loop() is not None:
            raise RuntimeError("a sync get() on a thread that runs an event loop would block the loop its async def "
                               "backend needs: use `await proxy.aget(key)` there")
        return self._wait(key, ttl, False, timeout).result()


class _Herd:
    """The tasks of one event loop that wait on one flight as followers: one
    callback on the flight for all of them, not one each (a herd of 10,000
    tasks costs 10,000 futures, but not 10,000 callbacks and their calls)."""

    __slots__ = ("loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiters: list[asyncio.Future[Answer]] = []  # appended to under the proxy's lock, until it settles

    def __call__(self, answer: Answer) -> None:
        """The flight's answer, from whichever thread settles it."""
        if _get_running_loop() is self.loop:  # settled on the tasks' own loop (an async def origin)
            _set_results(self.waiters, answer)
            return
        try:
            self.loop.call_soon_threadsafe(_set_results, self.waiters, answer)
        except RuntimeError:  # the loop is closed: no task waits on it any more
            pass


def _wait_in_herd(flight: Flight, waiter: asyncio.Future[Answer], leader: bool, serve_stale: bool) -> None:
    """Under the proxy's lock: `waiter` gets the flight's answer. Followers on one loop share a
    _Herd: the flight's last callback, if a follower's, since a herd's requests come one after another."""
    loop, callbacks = waiter.get_loop(), flight.callbacks
    herd = callbacks[-1][0] if callbacks and not callbacks[-1][1] else None
    if leader or type(herd) is not _Herd or herd.loop is not loop:
        herd = _Herd(loop)
        flight.answer_later(herd, leader)
    herd.waiters.append(waiter)


def _set_results(waiters: list[asyncio.Future[Answer]], answer: Answer) -> None:
    for waiter in waiters:
        if not waiter.done():  # (a cancelled or timed-out waiter is done)
            waiter.set_result(answer)


def _give_up(waiter: asyncio.Future[Answer], timeout: float) -> None:
    if not waiter.done():
        waiter.set_result(gave_up(timeout, led=False))
