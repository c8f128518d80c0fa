"""Telling an `async def` origin from a blocking one, so that a blocking proxy
refuses it at once instead of caching the coroutine it returns.

A blocking proxy calls `backend(key)` and caches what comes back. Handed an
`async def` function, it would cache a coroutine object, and the second
`await` of it would fail far from the cause; so the constructor refuses such a
backend, and a call that still returns an awaitable (a plain function that
forwards to an `async def` one) fails that fetch with a TypeError.
"""

from __future__ import annotations

import inspect
from typing import Any

# A caller checks a result's type against this before `awaitable_refused`: it spares the usual value
# isawaitable's abc check and the call (exact types only, as a subclass may define __await__).
NEVER_AWAITABLE = frozenset({str, bytes, int, float, bool, type(None), dict, list, tuple})
ASYNC_HINT = "use collapsed_forwarding.AsyncCollapsedForwardingProxy and `await proxy.aget(key)`"


def is_async_callable(fn: Any) -> bool:
    """An `async def` function, method or partial of one, or an object whose `__call__` is one."""
    return inspect.iscoroutinefunction(fn) or (callable(fn) and inspect.iscoroutinefunction(type(fn).__call__))


def refuse_async_backend(backend: Any) -> None:
    """Raise TypeError if `backend`, about to be called as a blocking function, is an `async def` one."""
    if is_async_callable(backend):
        raise TypeError(f"{backend!r} is an async def function: a blocking proxy would cache the coroutine it "
                        f"returns, not its value; {ASYNC_HINT}")


def awaitable_refused(result: Any) -> Any:
    """What a blocking backend returned, or a TypeError in its place if it is awaitable
    (closed first if a coroutine, so that it is not reported as never awaited)."""
    if not inspect.isawaitable(result):
        return result
    if inspect.iscoroutine(result):
        result.close()
    return TypeError(f"the backend returned {type(result).__name__} object, which a blocking proxy cannot wait "
                     f"for; {ASYNC_HINT}")
