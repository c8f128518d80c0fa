"""The asyncio face: aget on the same cache, collapsing across tasks
and threads, cancellation that hurts no one, per-call timeouts, misuse refused.

Every test runs its own loop with asyncio.run. Origins are held on asyncio or
threading Events; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from collections.abc import Hashable
from typing import Any

import pytest
from support.doubles import WAIT, Backend, FakeClock, in_thread, outcome, wait_until

from collapsed_forwarding import (
    AsyncCollapsedForwardingProxy,
    CollapsedForwardingProxy,
    KeyMissing,
    OriginTimeout,
    OriginUnavailable,
)


class HeldOrigin:
    """An `async def` origin: each fetch waits for `release()` (if held), counted per key."""

    def __init__(self, held: bool = True) -> None:
        self.calls: Counter[Hashable] = Counter()
        self.cancelled = 0
        self.missing: set[Hashable] = set()
        self.failure: BaseException | None = None
        self.held = held
        self.gate: asyncio.Event | None = None
        self.entered: asyncio.Event | None = None

    def release(self) -> None:
        self.gate = self.gate or asyncio.Event()  # (the fetch may not have begun yet)
        self.gate.set()

    async def __call__(self, key: Hashable) -> Any:
        self.calls[key] += 1
        self.gate = self.gate or asyncio.Event()
        self.entered = self.entered or asyncio.Event()
        self.entered.set()
        try:
            if self.held:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.failure is not None:
            raise self.failure
        if key in self.missing:
            raise KeyError(key)
        return f"value-{key}"


async def until(predicate: Any, what: str) -> None:
    """Let the loop run until `predicate()` (polled once per loop turn), failing after WAIT."""
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0)
    assert predicate(), what


def waiting(proxy: CollapsedForwardingProxy, key: Hashable) -> int:
    return proxy.key_stats(key)["waiting"]


def test_a_herd_of_tasks_makes_one_fetch_and_holds_no_thread() -> None:
    origin = HeldOrigin()

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin)
        origin.held = False
        assert await proxy.aget("warm") == "value-warm"  # the timer thread is started by now
        origin.held = True
        threads = threading.active_count()
        herd = [asyncio.create_task(proxy.aget("k")) for _ in range(1000)]
        await until(lambda: waiting(proxy, "k") == 1000, "every task waiting")
        assert threading.active_count() == threads
        origin.release()
        assert await asyncio.gather(*herd) == ["value-k"] * 1000
        assert origin.calls["k"] == 1
        stats = proxy.key_stats("k")
        assert (stats["misses"], stats["collapsed"], stats["origin_fetches"]) == (1, 999, 1)
        assert (await proxy.alookup("k")).cache == "hit"
        assert await proxy.aget("k") == "value-k"
        assert proxy.key_stats("k")["hits"] == 2
        assert origin.calls["k"] == 1

    asyncio.run(main())


def test_a_herd_over_two_loops_is_answered_on_each_the_leader_as_the_miss_the_rest_as_collapsed() -> None:
    """Followers on one loop share one callback on the flight (the last one, if it is theirs):
    tasks of a second loop, joining in between, get their own, and their answers on their own loop."""
    origin = HeldOrigin()

    async def other_loop(joined: threading.Event) -> list[str]:
        tasks = [asyncio.create_task(proxy.alookup("k")) for _ in range(100)]
        await asyncio.sleep(0)  # every task makes its request
        joined.set()
        answers = await asyncio.gather(*tasks)
        assert {answer.value for answer in answers} == {"value-k"}
        return [answer.cache for answer in answers]

    async def main() -> None:
        first = [asyncio.create_task(proxy.alookup("k")) for _ in range(100)]
        await until(lambda: waiting(proxy, "k") == 100, "the first hundred waiting")
        joined = threading.Event()
        elsewhere = in_thread(asyncio.run, other_loop(joined))
        await until(joined.is_set, "the other loop's tasks waiting")
        assert waiting(proxy, "k") == 200
        second = [asyncio.create_task(proxy.alookup("k")) for _ in range(100)]
        await until(lambda: waiting(proxy, "k") == 300, "a second hundred waiting")
        origin.release()
        answers = await asyncio.gather(*first, *second)
        assert {answer.value for answer in answers} == {"value-k"}
        assert Counter(answer.cache for answer in answers) == Counter({"miss": 1, "collapsed": 199})
        assert Counter(await asyncio.wrap_future(elsewhere)) == Counter({"collapsed": 100})
        assert origin.calls["k"] == 1

    proxy = AsyncCollapsedForwardingProxy(origin)
    asyncio.run(main())


def test_negative_caching_errors_and_freshness_as_for_get() -> None:
    clock, origin = FakeClock(), HeldOrigin(held=False)
    origin.missing.add("gone")

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin, ttl=10, negative_ttl=5, grace=30, clock=clock)
        for _ in range(2):
            with pytest.raises(KeyMissing):
                await proxy.aget("gone")
        assert origin.calls["gone"] == 1  # remembered
        assert await proxy.aget("k") == "value-k"
        clock.advance(11)  # past ttl, within grace: stale now, one refresh in the background
        assert (await proxy.alookup("k")).cache == "stale"
        await until(lambda: origin.calls["k"] == 2 and proxy.is_cached("k"), "the refresh")
        assert (await proxy.alookup("k")).cache == "hit"
        origin.failure = RuntimeError("down")
        with pytest.raises(OriginUnavailable) as caught:
            await proxy.aget("e")
        assert isinstance(caught.value.__cause__, RuntimeError)

    asyncio.run(main())


def test_afetch_and_cache_fetches_past_a_fresh_entry() -> None:
    origin = HeldOrigin(held=False)

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin)
        await proxy.aget("k")
        assert await proxy.afetch_and_cache("k") == "value-k"
        assert origin.calls["k"] == 2

    asyncio.run(main())


def test_cancelling_waiters_leader_included_leaves_the_others_their_answer() -> None:
    origin = HeldOrigin()

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin)
        tasks = [asyncio.create_task(proxy.aget("k")) for _ in range(4)]
        await until(lambda: waiting(proxy, "k") == 4, "four waiters")
        tasks[0].cancel()  # the one that started the fetch
        tasks[2].cancel()
        await asyncio.gather(tasks[0], tasks[2], return_exceptions=True)
        assert tasks[0].cancelled() and tasks[2].cancelled()
        origin.release()
        assert [await tasks[1], await tasks[3]] == ["value-k", "value-k"]
        assert (origin.calls["k"], origin.cancelled) == (1, 0)

    asyncio.run(main())


def test_when_every_waiter_is_gone_the_fetch_still_fills_the_cache() -> None:
    """The rule chosen: the fetch is the flight's; it runs on and fills the cache."""
    origin = HeldOrigin()

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin)
        tasks = [asyncio.create_task(proxy.aget("k")) for _ in range(3)]
        await until(lambda: waiting(proxy, "k") == 3, "three waiters")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert proxy.origin is not None and len(proxy.origin.running) == 1  # still in the air
        origin.release()
        await asyncio.gather(*proxy.origin.running)
        assert proxy.is_cached("k")
        assert (await proxy.alookup("k")).cache == "hit"
        assert (origin.calls["k"], origin.cancelled) == (1, 0)

    asyncio.run(main())


def test_a_per_call_timeout_bounds_one_wait_and_leaves_the_flight_alone() -> None:
    origin = HeldOrigin()

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin, timeout=WAIT)
        patient = asyncio.create_task(proxy.aget("k"))
        await until(lambda: waiting(proxy, "k") == 1, "the leader waiting")
        with pytest.raises(OriginTimeout, match="gave up"):
            await proxy.aget("k", timeout=0.01)
        assert not patient.done()
        origin.release()
        assert await patient == "value-k"
        assert proxy.is_cached("k") and origin.calls["k"] == 1
        with pytest.raises(TypeError):
            await proxy.aget("other", timeout="1")  # type: ignore[arg-type]

    asyncio.run(main())


def test_the_proxy_deadline_answers_every_task_and_cancels_the_fetch() -> None:
    origin = HeldOrigin()

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin, timeout=0.05)
        results = await asyncio.gather(*(proxy.aget("k") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, OriginTimeout) for r in results)
        assert proxy.origin is not None
        await asyncio.gather(*proxy.origin.running)
        assert origin.cancelled == 1 and not proxy.is_cached("k")

    asyncio.run(main())


def test_tasks_and_threads_share_one_flight_whichever_starts_it() -> None:
    origin = HeldOrigin()

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin)  # made on the loop: threads' fetches run on it
        thread_first = in_thread(proxy.get, "t")
        await until(lambda: waiting(proxy, "t") == 1 and origin.entered is not None, "the thread's fetch")
        task = asyncio.create_task(proxy.aget("t"))
        await until(lambda: waiting(proxy, "t") == 2, "the task joining")
        task_first = asyncio.create_task(proxy.aget("a"))
        await until(lambda: waiting(proxy, "a") == 1, "the task's fetch")
        thread_second = in_thread(proxy.get, "a")
        await until(lambda: waiting(proxy, "a") == 2, "the thread joining")
        origin.release()
        assert [await task, await task_first] == ["value-t", "value-a"]
        for future, value in ((thread_first, "value-t"), (thread_second, "value-a")):
            assert await asyncio.wrap_future(future) == value
        assert origin.calls == Counter({"t": 1, "a": 1})

    asyncio.run(main())


def test_a_thread_fetch_with_no_loop_known_fails_clearly() -> None:
    proxy = AsyncCollapsedForwardingProxy(HeldOrigin(held=False))  # made off any loop, no loop= given
    with pytest.raises(OriginUnavailable, match="no event loop"):
        proxy.get("k")


def test_a_sync_get_that_would_block_the_loop_is_refused() -> None:
    origin = HeldOrigin(held=False)

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin)
        with pytest.raises(RuntimeError, match="aget"):
            proxy.get("k")
        await proxy.aget("k")
        assert proxy.get("k") == "value-k"  # a hit does not wait

    asyncio.run(main())


def test_a_blocking_backend_runs_in_a_worker_thread_per_fetch(backend: Backend) -> None:
    """The choice for a sync backend handed to aget: run it as get does, in a worker thread."""
    backend.hold("k")

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(backend)
        tasks = [asyncio.create_task(proxy.aget("k")) for _ in range(200)]
        await until(lambda: waiting(proxy, "k") == 200 and backend.calls["k"] == 1, "the fetch and its waiters")
        backend.release("k")
        assert await asyncio.gather(*tasks) == ["value-k"] * 200
        assert backend.calls["k"] == 1 and threading.get_ident() not in backend.threads

    asyncio.run(main())


async def _fetch(key: Hashable) -> str:
    return f"value-{key}"


class _AsyncCallable:
    async def __call__(self, key: Hashable) -> str:
        return f"value-{key}"


@pytest.mark.parametrize("backend", [_fetch, functools.partial(_fetch), _AsyncCallable()])
def test_the_sync_proxy_refuses_an_async_def_backend_at_once(backend: Any) -> None:
    with pytest.raises(TypeError, match="AsyncCollapsedForwardingProxy"):
        CollapsedForwardingProxy(backend)


def test_a_blocking_backend_that_returns_a_coroutine_fails_that_fetch_and_caches_nothing() -> None:
    proxy = CollapsedForwardingProxy(lambda key: _fetch(key))
    with pytest.raises(OriginUnavailable) as caught:
        proxy.get("k")
    assert isinstance(caught.value.__cause__, TypeError) and not proxy.is_cached("k")


def test_the_sync_get_timeout_bounds_one_wait_and_leaves_the_flight_alone(backend: Backend) -> None:
    backend.hold("k")
    proxy = CollapsedForwardingProxy(backend, timeout=WAIT)
    patient = in_thread(proxy.get, "k")
    backend.wait_entered("k")
    with pytest.raises(OriginTimeout, match="gave up"):
        proxy.get("k", timeout=0.01)
    assert not patient.done()
    backend.release("k")
    assert outcome(patient) == "value-k"
    wait_until(lambda: proxy.is_cached("k"), "the fill")
    assert backend.calls["k"] == 1
    with pytest.raises(ValueError):
        proxy.get("other", timeout=-1)


def test_a_waiter_on_a_closed_loop_costs_the_others_nothing(backend: Backend) -> None:
    """A loop that ends with a task still waiting: the flight's answer reaches everyone else."""
    backend.hold("k")
    proxy = AsyncCollapsedForwardingProxy(backend, timeout=WAIT)

    async def abandoned() -> None:
        asyncio.get_running_loop().create_task(proxy.aget("k"))
        await asyncio.sleep(0)

    asyncio.run(abandoned())  # cancels the waiting task and closes its loop
    thread = in_thread(proxy.get, "k")
    wait_until(lambda: waiting(proxy, "k") == 2, "the thread joining")
    backend.release("k")
    assert outcome(thread) == "value-k"


def test_a_fetch_cancelled_by_its_loop_shutting_down_answers_the_threads_waiting() -> None:
    origin = HeldOrigin()
    started = threading.Event()
    thread_answer: list[Any] = []

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin, timeout=WAIT)
        asyncio.get_running_loop().create_task(proxy.aget("k"))
        await until(lambda: waiting(proxy, "k") == 1, "the task's fetch")
        thread = in_thread(proxy.get, "k")
        await until(lambda: waiting(proxy, "k") == 2, "the thread joining")
        thread_answer.append(thread)
        started.set()

    asyncio.run(main())  # ends with the fetch held: asyncio.run cancels it
    assert started.is_set()
    error = outcome(thread_answer[0])
    assert isinstance(error, OriginUnavailable) and "cancelled" in str(error)
    assert origin.cancelled == 1


def test_max_waiters_sheds_tasks_as_it_sheds_threads() -> None:
    origin = HeldOrigin()

    async def main() -> None:
        proxy = AsyncCollapsedForwardingProxy(origin, max_waiters=2)
        tasks = [asyncio.create_task(proxy.aget("k")) for _ in range(2)]
        await until(lambda: waiting(proxy, "k") == 2, "two waiters")
        assert (await proxy.alookup("k")).cache == "shed"
        origin.release()
        assert await asyncio.gather(*tasks) == ["value-k"] * 2
        assert proxy.stats()["shed"] == 1

    asyncio.run(main())
