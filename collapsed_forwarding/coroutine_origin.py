"""An `async def fetch(key)` origin, run as a non-blocking one (`start_fetch`).

The proxy asks a non-blocking origin with `start_fetch(key, done)` and waits
for `done(value_or_exception)`; no thread waits meanwhile. Here the fetch is a
task on an event loop: the loop of the task that started it, or, for a fetch
started by a thread (a sync `get` sharing the proxy), the loop last seen or
given. The task is the flight's, not any waiter's: cancelling a waiting task
leaves it running, and it is cancelled only at the flight's deadline (its
waiters have had OriginTimeout by then) or when its loop shuts down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from .errors import OriginTimeout, OriginUnavailable

Fetch = Callable[[Hashable], Awaitable[Any]]
Done = Callable[[Any], None]


class CoroutineOrigin:
    """`start_fetch(key, done)` over `fetch`, an `async def fetch(key) -> value`
    that raises KeyError when the key does not exist. `timeout`: seconds after
    which the fetch is cancelled (the proxy's own deadline, which has already
    answered its waiters). `loop`: where fetches started off any loop run,
    until a fetch is started on a loop, which then takes its place."""

    def __init__(self, fetch: Fetch, timeout: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.fetch, self.timeout, self.loop = fetch, timeout, loop
        self.running: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks

    def start_fetch(self, key: Hashable, done: Done) -> None:
        running = asyncio._get_running_loop()
        if running is not None:  # started by a task (aget): the fetch runs on its loop
            self.loop = running
            self._spawn(key, done)
            return
        loop = self.loop
        if loop is None or loop.is_closed():
            raise RuntimeError("no event loop to run the async def backend on: give the proxy loop=, or let a task "
                               "await aget() first")
        loop.call_soon_threadsafe(self._spawn, key, done)

    def _spawn(self, key: Hashable, done: Done) -> None:
        task = asyncio.get_running_loop().create_task(self._fetch(key, done))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _fetch(self, key: Hashable, done: Done) -> None:
        task = asyncio.current_task()
        assert task is not None
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            task.cancel()

        deadline = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            result = await self.fetch(key)
        except asyncio.CancelledError:
            if expired:  # our own deadline: the task ends normally, its waiters told why
                done(OriginTimeout(f"origin fetch took longer than {self.timeout}s"))
                return
            done(OriginUnavailable("the origin fetch was cancelled (its event loop is shutting down?)"))
            raise
        except BaseException as exc:
            done(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            done(result)
        finally:
            deadline.cancel()
