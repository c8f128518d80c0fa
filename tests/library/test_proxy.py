"""Core behaviour of CollapsedForwardingProxy: collapsing, errors, timeouts,
TTL, LRU, the generation rule, the callback API, and a port of Go's
singleflight test suite (golang.org/x/sync/singleflight/singleflight_test.go,
plus TestForgetUnshared from Go's internal/singleflight)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from support.doubles import WAIT, AsyncBackend, Backend, FakeClock, Recorder, in_thread, outcome, wait_until

from collapsed_forwarding import (
    Answer,
    CacheError,
    CollapsedForwardingProxy,
    KeyMissing,
    OriginTimeout,
    OriginUnavailable,
)


class Panic(BaseException):
    """What a Go panic maps to: a BaseException that is not an Exception."""


def make(backend: object, clock: FakeClock, **options: object) -> CollapsedForwardingProxy:
    """A proxy on the fake clock; flights get a long deadline unless a test says otherwise."""
    options.setdefault("timeout", WAIT)
    return CollapsedForwardingProxy(backend, clock=clock, **options)  # type: ignore[arg-type]


def wait_waiting(proxy: CollapsedForwardingProxy, key: object, count: int) -> None:
    wait_until(lambda: proxy.key_stats(key)["waiting"] == count, f"{count} requests waiting on {key!r}")


def herd(backend: Backend, clock: FakeClock, key: str, size: int,
         result: object) -> tuple[CollapsedForwardingProxy, list[object]]:
    """`size` concurrent gets of `key` on a fresh proxy while the origin holds its one answer, `result`
    (a value or an exception to raise): the proxy, and what each get returned or raised."""
    backend.plan[key].append(result)
    backend.hold(key)
    proxy = make(backend, clock)
    futures = [in_thread(proxy.get, key) for _ in range(size)]
    wait_waiting(proxy, key, size)
    backend.release(key)
    return proxy, [outcome(f) for f in futures]


# -- collapsing ----------------------------------------------------------------


def test_herd_of_200_cold_misses_makes_one_origin_call(backend: Backend, clock: FakeClock) -> None:
    """200 concurrent misses of a cold key: one backend call, 1 miss + 199 collapsed, stats agree."""
    backend.hold("k")
    proxy = make(backend, clock, timeout=30)
    start = threading.Barrier(200, timeout=WAIT)

    def client() -> Answer:
        start.wait()
        return proxy.lookup("k")

    futures = [in_thread(client) for _ in range(200)]
    wait_waiting(proxy, "k", 200)
    backend.wait_entered("k")  # the call runs on a worker thread: it may enter a moment after the 200 wait
    assert backend.calls["k"] == 1
    backend.release("k")
    answers = [f.result(WAIT) for f in futures]

    assert Counter(a.cache for a in answers) == {"miss": 1, "collapsed": 199}
    assert {a.value for a in answers} == {"value-k"}
    assert all(a.error is None for a in answers)
    assert backend.calls["k"] == 1
    stats = proxy.stats()
    assert (stats["requests"], stats["misses"], stats["collapsed"], stats["origin_fetches"]) == (200, 1, 199, 1)
    assert (stats["hits"], stats["errors"], stats["in_flight"], stats["entries"]) == (0, 0, 0, 1)
    assert proxy.lookup("k").cache == "hit"


def test_error_is_shared_by_every_waiter_and_not_cached(backend: Backend, clock: FakeClock) -> None:
    """One failing fetch: every waiter gets an OriginUnavailable (own copy, same __cause__); nothing cached."""
    boom = RuntimeError("origin down")
    proxy, errors = herd(backend, clock, "k", 10, boom)
    assert all(isinstance(e, OriginUnavailable) for e in errors)
    assert all(e.__cause__ is boom for e in errors)
    assert len({id(e) for e in errors}) == 10, "each raise must be a fresh copy"
    assert backend.calls["k"] == 1
    assert not proxy.is_cached("k")
    stats = proxy.stats()
    assert (stats["errors"], stats["origin_errors"]) == (10, 1)

    assert proxy.get("k") == "value-k"  # the failure was not remembered
    assert backend.calls["k"] == 2


def test_key_error_becomes_key_missing_cached_for_negative_ttl(backend: Backend, clock: FakeClock) -> None:
    """KeyError -> KeyMissing (itself a KeyError), served from cache for negative_ttl, then fetched again."""
    backend.missing.add("ghost")
    proxy = make(backend, clock, ttl=60, negative_ttl=2)
    with pytest.raises(KeyMissing) as first:
        proxy.get("ghost")
    assert isinstance(first.value, KeyError)  # code written against a dict catches it
    assert isinstance(first.value.__cause__, KeyError)

    clock.advance(1.9)
    answer = proxy.lookup("ghost")
    assert answer.cache == "hit" and isinstance(answer.error, KeyMissing)
    with pytest.raises(KeyMissing):  # a cached key-does-not-exist still raises from get
        proxy.get("ghost")
    assert proxy.request("ghost", Recorder()).error is not None  # type: ignore[union-attr]
    assert proxy.is_cached("ghost")
    assert backend.calls["ghost"] == 1
    key = proxy.key_stats("ghost")
    assert (key["misses"], key["hits"], key["errors"]) == (1, 3, 4)

    clock.advance(0.2)
    with pytest.raises(KeyMissing):
        proxy.get("ghost")
    assert backend.calls["ghost"] == 2
    assert proxy.stats()["origin_errors"] == 0, "key-does-not-exist is an answer, not an origin failure"


def test_negative_entry_never_outlives_the_ttl(backend: Backend, clock: FakeClock) -> None:
    """A key-does-not-exist answer is cached for min(ttl, negative_ttl)."""
    backend.missing.add("ghost")
    proxy = make(backend, clock, ttl=0.5, negative_ttl=2)
    assert proxy.lookup("ghost").cache == "miss"
    clock.advance(0.5)
    assert proxy.lookup("ghost").cache == "miss"
    assert backend.calls["ghost"] == 2


@pytest.mark.parametrize("crash", [SystemExit(3), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_base_exception_in_backend_reraised_in_leader_and_releases_waiters(
    backend: Backend, clock: FakeClock, crash: BaseException
) -> None:
    """A backend raising a BaseException: the leader re-raises it, waiters get OriginUnavailable, none strand."""
    backend.plan["k"].append(crash)
    backend.hold("k")
    proxy = make(backend, clock)
    leader = in_thread(proxy.get, "k")
    backend.wait_entered("k")
    waiters = [in_thread(proxy.get, "k") for _ in range(5)]
    wait_waiting(proxy, "k", 6)
    backend.release("k")

    assert outcome(leader) is crash
    for waiter in waiters:
        error = outcome(waiter)
        assert isinstance(error, OriginUnavailable) and error.__cause__ is crash
    stats = proxy.stats()
    assert (stats["in_flight"], stats["origin_errors"], stats["misses"], stats["collapsed"]) == (0, 1, 1, 5)
    assert proxy.get("k") == "value-k"


# -- timeouts ----------------------------------------------------------------


def test_hanging_backend_times_out_every_waiter(backend: Backend, clock: FakeClock) -> None:
    """A backend that hangs: waiters get OriginTimeout (code 0) soon after the 0.2 s deadline."""
    backend.hold("k")
    proxy = make(backend, clock, timeout=0.2)
    go = threading.Event()

    def waiter() -> object:
        assert go.wait(WAIT)
        return proxy.get("k")

    waiters = [in_thread(waiter) for _ in range(5)]  # threads exist before the flight starts
    leader = in_thread(proxy.get, "k")
    backend.wait_entered("k")
    started = time.monotonic()
    go.set()
    errors = [outcome(w, timeout=5) for w in waiters]
    elapsed = time.monotonic() - started

    assert all(isinstance(e, OriginTimeout) for e in errors), errors
    assert elapsed < 5
    assert backend.calls["k"] == 1, "the waiters joined the hanging flight"
    assert not leader.done(), "the leader calls the backend itself: it is in the hung call"
    backend.release("k")
    assert outcome(leader) == "value-k"  # what its call finally returned
    assert proxy.is_cached("k"), "the value that came back late is cached (lock_age policy)"
    assert proxy.stats()["origin_errors"] == 1


def test_async_backend_that_never_calls_done_times_out_everyone(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """start_fetch that never calls done: the leader and every waiter get OriginTimeout."""
    proxy = make(async_backend, clock, timeout=0.2)
    recorder = Recorder()
    started = time.monotonic()
    assert proxy.request("k", recorder) is None
    assert proxy.request("k", recorder) is None
    blocking = in_thread(proxy.lookup, "k")  # a blocking waiter too (it may join late on a busy machine)

    answers = recorder.wait(2)
    blocked = blocking.result(WAIT)
    assert time.monotonic() - started < 5
    assert [a.cache for a in answers] == ["miss", "collapsed"]
    assert all(isinstance(a.error, OriginTimeout) for a in answers + [blocked])
    wait_until(lambda: proxy.stats()["in_flight"] == 0, "every flight to be settled")


def test_flight_deadline_releases_callbacks_with_no_blocking_waiter(
        async_backend: AsyncBackend, clock: FakeClock) -> None:
    """Only request() callbacks on a fetch that never answers (the node's case): the flight's own deadline
    timer answers them all with OriginTimeout; nothing else would."""
    proxy = make(async_backend, clock, timeout=0.2)
    recorder = Recorder()
    started = time.monotonic()
    assert [proxy.request("k", recorder) for _ in range(3)] == [None, None, None]
    answers = recorder.wait(3, timeout=5)
    assert time.monotonic() - started < 5
    assert [a.cache for a in answers] == ["miss", "collapsed", "collapsed"]
    assert all(isinstance(a.error, OriginTimeout) for a in answers)
    assert all(thread != threading.get_ident() for thread in recorder.threads)
    stats = proxy.stats()
    assert (stats["in_flight"], stats["origin_errors"], stats["errors"]) == (0, 1, 3)


def test_async_start_fetch_raising_gives_everyone_the_error(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """start_fetch that raises: the leader and every waiter get that error at once, no timeout needed."""
    boom = ConnectionError("refused")
    async_backend.start_error = boom
    async_backend.start_gate = threading.Event()
    proxy = make(async_backend, clock)
    leader = in_thread(proxy.lookup, "k")
    assert async_backend.entered.get(timeout=WAIT) == "k"
    recorder = Recorder()
    assert proxy.request("k", recorder) is None
    waiter = in_thread(proxy.lookup, "k")
    wait_waiting(proxy, "k", 3)
    async_backend.start_gate.set()

    answers = [leader.result(WAIT), waiter.result(WAIT), *recorder.wait(1)]
    assert sorted(a.cache for a in answers) == ["collapsed", "collapsed", "miss"]
    assert all(isinstance(a.error, OriginUnavailable) and a.error.__cause__ is boom for a in answers)
    assert async_backend.started["k"] == 1


def test_async_done_ttl_overrides_the_entry_lifetime(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """done(value, ttl=3) caches the value for 3 s, not the proxy's ttl."""
    proxy = make(async_backend, clock, ttl=60)
    recorder = Recorder()
    proxy.request("k", recorder)
    async_backend.finish("k", "v", ttl=3)
    assert recorder.answers[0].value == "v"
    assert proxy.key_stats("k")["ttl_left"] == 3
    clock.advance(3)
    assert not proxy.is_cached("k")


# -- TTL -------------------------------------------------------------------------


def test_entry_expires_after_ttl_on_the_fake_clock(backend: Backend, clock: FakeClock) -> None:
    """A value is a hit until ttl seconds have passed on the clock, then a miss."""
    proxy = make(backend, clock, ttl=10)
    assert proxy.lookup("k").cache == "miss"
    clock.advance(9.5)
    assert proxy.lookup("k").cache == "hit"
    assert proxy.key_stats("k")["ttl_left"] == 0.5
    clock.advance(0.5)
    assert not proxy.is_cached("k")
    assert proxy.lookup("k").cache == "miss"
    assert backend.calls["k"] == 2


def test_per_request_ttl_sets_the_lifetime_of_the_fill_it_leads(backend: Backend, clock: FakeClock) -> None:
    """lookup(key, ttl=2) caches that fill for 2 s; a hit's ttl argument changes nothing."""
    proxy = make(backend, clock, ttl=60)
    assert proxy.lookup("k", ttl=2).cache == "miss"
    assert proxy.lookup("k", ttl=100).cache == "hit"
    clock.advance(2)
    assert proxy.lookup("k").cache == "miss"
    assert proxy.key_stats("k")["ttl_left"] == 60


def test_ttl_zero_is_collapsed_but_not_cached(backend: Backend, clock: FakeClock) -> None:
    """ttl=0: concurrent misses still share one fetch, but the next request fetches again."""
    backend.hold("k")
    proxy = make(backend, clock, ttl=0)
    futures = [in_thread(proxy.lookup, "k") for _ in range(5)]
    wait_waiting(proxy, "k", 5)
    backend.release("k")
    assert Counter(f.result(WAIT).cache for f in futures) == {"miss": 1, "collapsed": 4}
    assert backend.calls["k"] == 1
    assert not proxy.is_cached("k")
    assert proxy.lookup("k").cache == "miss"
    assert backend.calls["k"] == 2


# -- LRU -------------------------------------------------------------------------


def test_lru_evicts_the_least_recently_used_entry(backend: Backend, clock: FakeClock) -> None:
    """max_entries=3: a hit refreshes recency, so the fourth key evicts the oldest untouched one."""
    proxy = make(backend, clock, max_entries=3, policy="lru")
    for key in "abc":
        proxy.get(key)
    assert proxy.lookup("a").cache == "hit"  # a is now the most recently used
    proxy.get("d")
    assert [proxy.is_cached(k) for k in "abcd"] == [True, False, True, True]
    stats = proxy.stats()
    assert (stats["evictions"], stats["entries"]) == (1, 3)
    assert proxy.lookup("b").cache == "miss"
    assert proxy.stats()["evictions"] == 2 and not proxy.is_cached("c")


def test_entry_with_fetch_in_flight_is_not_evicted(backend: Backend, clock: FakeClock) -> None:
    """An in-flight key survives eviction pressure: later misses of it still join its one fetch."""
    backend.hold("a")
    proxy = make(backend, clock, max_entries=2, policy="lru")  # (the default may refuse a new key)
    first = in_thread(proxy.lookup, "a")
    backend.wait_entered("a")
    for key in "bcd":
        proxy.get(key)
    second = in_thread(proxy.lookup, "a")
    wait_waiting(proxy, "a", 2)
    backend.release("a")
    assert sorted([first.result(WAIT).cache, second.result(WAIT).cache]) == ["collapsed", "miss"]
    assert backend.calls["a"] == 1
    assert proxy.is_cached("a")


def test_new_key_stays_findable_when_every_other_entry_is_in_flight(backend: Backend, clock: FakeClock) -> None:
    """max_entries=1 with 'a' in flight: two concurrent misses of 'b' must still share one fetch."""
    backend.hold("a")
    backend.hold("b")
    proxy = make(backend, clock, max_entries=1)
    a = in_thread(proxy.lookup, "a")
    backend.wait_entered("a")
    b_leader = in_thread(proxy.lookup, "b")
    backend.wait_entered("b")
    recorder = Recorder()
    joined = proxy.request("b", recorder)  # must join b's flight
    waiting_on_b = proxy.key_stats("b")["waiting"]
    backend.release("a")
    backend.release("b")
    assert a.result(WAIT).value == "value-a" and b_leader.result(WAIT).value == "value-b"
    recorder.wait(1)
    assert joined is None
    assert waiting_on_b == 2, "b's flight is not findable: its slot was evicted as it was made"
    assert backend.calls["b"] == 1, "a second concurrent miss of b called the origin again"


def test_new_key_is_cached_when_every_other_entry_is_in_flight(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """max_entries=1 with 'a' in flight: a fill of 'b' is cached, and entries counts it once."""
    proxy = make(async_backend, clock, max_entries=1)
    proxy.request("a", Recorder())
    recorder = Recorder()
    proxy.request("b", recorder)
    async_backend.finish("b", "vb")
    assert recorder.answers[0].value == "vb"
    assert proxy.is_cached("b"), "b's fill went into a slot the cache no longer holds"
    async_backend.finish("a", "va")
    assert proxy.stats()["entries"] == sum(proxy.is_cached(k) for k in "ab"), "entries counts an unreachable slot"


# -- the generation rule (invalidate while in flight) ----------------------------------------


def test_invalidate_during_flight_starts_new_fetch_and_old_result_is_not_cached(
    async_backend: AsyncBackend, clock: FakeClock
) -> None:
    """Requests before invalidate get the old fetch's value; later ones lead a new fetch; old result not cached."""
    proxy = make(async_backend, clock)
    before, after = Recorder(), Recorder()
    assert proxy.request("k", before) is None
    assert proxy.request("k", before) is None
    proxy.invalidate("k")
    assert proxy.request("k", after) is None
    assert async_backend.pending_keys() == ["k", "k"], "the invalidate must make the next miss fetch anew"

    async_backend.finish("k", "old")
    assert sorted((a.value, a.cache) for a in before.answers) == [("old", "collapsed"), ("old", "miss")]
    assert after.answers == []
    assert not proxy.is_cached("k"), "the pre-invalidate fetch must not fill the cache"

    async_backend.finish("k", "new")
    assert [(a.value, a.cache) for a in after.answers] == [("new", "miss")]
    answer = proxy.lookup("k")
    assert (answer.value, answer.cache) == ("new", "hit")


def test_old_fetch_finishing_after_the_new_one_does_not_overwrite_it(
    async_backend: AsyncBackend, clock: FakeClock
) -> None:
    """The pre-invalidate fetch completing last neither replaces the new entry nor joins its requests."""
    proxy = make(async_backend, clock)
    proxy.request("k", Recorder())
    proxy.invalidate("k")
    proxy.request("k", Recorder())
    async_backend.finish("k", "new", newest=True)
    async_backend.finish("k", "old")
    answer = proxy.lookup("k")
    assert (answer.value, answer.cache) == ("new", "hit")
    assert proxy.stats()["in_flight"] == 0


def test_invalidate_drops_a_cached_entry(backend: Backend, clock: FakeClock) -> None:
    """invalidate removes a fresh entry (and is harmless for unknown keys)."""
    proxy = make(backend, clock)
    proxy.invalidate("never-seen")
    proxy.get("k")
    backend.values["k"] = "v2"
    proxy.invalidate("k")
    assert not proxy.is_cached("k")
    assert proxy.stats()["entries"] == 0
    assert proxy.lookup("k").value == "v2"


def test_fetch_and_cache_refetches_even_when_fresh(backend: Backend, clock: FakeClock) -> None:
    """fetch_and_cache goes to the origin although the entry is fresh, and caches the new value for its ttl."""
    proxy = make(backend, clock, ttl=60)
    proxy.get("k")
    backend.values["k"] = "v2"
    assert proxy.fetch_and_cache("k", ttl=5) == "v2"
    assert backend.calls["k"] == 2
    assert proxy.lookup("k").value == "v2"
    assert proxy.key_stats("k")["ttl_left"] == 5


# -- the request() callback API ----------------------------------------------------


def test_request_callbacks_called_once_each_from_another_thread(backend: Backend, clock: FakeClock) -> None:
    """request() on a miss returns None; each on_answer runs once, off the caller's thread, with miss/collapsed."""
    backend.hold("k")
    proxy = make(backend, clock)
    recorders = [Recorder() for _ in range(3)]
    assert [proxy.request("k", r) for r in recorders] == [None, None, None]
    assert proxy.key_stats("k")["waiting"] == 3
    backend.release("k")
    for r in recorders:
        r.wait(1)
    answers = [r.answers[0] for r in recorders]
    assert [a.cache for a in answers] == ["miss", "collapsed", "collapsed"]
    assert {a.value for a in answers} == {"value-k"}
    assert all(r.threads[0] != threading.get_ident() for r in recorders)
    assert proxy.lookup("k").cache == "hit"  # after the flight is over...
    assert [len(r.answers) for r in recorders] == [1, 1, 1]  # ...no callback ran twice


def test_request_hit_answers_immediately_without_callback(backend: Backend, clock: FakeClock) -> None:
    """request() on a fresh entry returns the hit Answer now and never calls on_answer."""
    proxy = make(backend, clock)
    proxy.get("k")
    recorder = Recorder()
    answer = proxy.request("k", recorder)
    assert answer is not None and (answer.value, answer.cache) == ("value-k", "hit")
    proxy.invalidate("k")
    proxy.get("k")  # a whole later flight: still no callback for the hit
    assert recorder.answers == []


def test_failing_callback_does_not_stop_the_others(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """An on_answer that raises is logged; the other callbacks of that flight still run."""
    proxy = make(async_backend, clock)

    def broken(answer: Answer) -> None:
        raise ValueError("callback bug")

    recorder = Recorder()
    proxy.request("k", broken)
    proxy.request("k", recorder)
    async_backend.finish("k", "v")
    assert [a.value for a in recorder.answers] == ["v"]


# -- golang.org/x/sync/singleflight, ported ---------------------------------------------


def test_singleflight_TestDo(clock: FakeClock) -> None:
    """TestDo: Do returns fn's value ≈ get returns the backend's value."""
    proxy = make(lambda key: "bar", clock)
    assert proxy.get("key") == "bar"
    assert proxy.lookup("key").value == "bar"


def test_singleflight_TestDoErr(clock: FakeClock) -> None:
    """TestDoErr: Do returns fn's error ≈ get raises a CacheError caused by that very error, no value."""
    some_err = ValueError("Some error")

    def fn(key: str) -> str:
        raise some_err

    proxy = make(fn, clock)
    answer = proxy.lookup("key")
    assert answer.value is None
    with pytest.raises(CacheError) as raised:
        answer.result()
    assert raised.value.__cause__ is some_err


def test_singleflight_TestDoDupSuppress(backend: Backend, clock: FakeClock) -> None:
    """TestDoDupSuppress: 10 concurrent Do's of one key run fn fewer than 10 times (here: exactly once)."""
    backend.plan["key"].append("bar")
    backend.hold("key")
    proxy = make(backend, clock)
    futures = [in_thread(proxy.get, "key") for _ in range(10)]
    wait_waiting(proxy, "key", 10)
    backend.release("key")
    assert [f.result(WAIT) for f in futures] == ["bar"] * 10
    assert 0 < backend.calls["key"] < 10
    assert backend.calls["key"] == 1


def forgotten_then_fetched_again(proxy: CollapsedForwardingProxy, backend: Backend) -> tuple[Any, Any]:
    """A get of "key" in the air, the key invalidated, and a second get that started its own fetch."""
    first = in_thread(proxy.get, "key")
    backend.wait_entered("key")
    proxy.invalidate("key")
    second = in_thread(proxy.get, "key")
    backend.wait_entered("key")
    return first, second


def test_singleflight_TestForget(backend: Backend, clock: FakeClock) -> None:
    """TestForget: Forget ≈ invalidate; after it a new call runs, and a third call shares the second's result."""
    unblock_first, unblock_second = threading.Event(), threading.Event()
    backend.plan["key"].extend([lambda: unblock_first.wait(WAIT) and 1, lambda: unblock_second.wait(WAIT) and 2, 3])
    proxy = make(backend, clock)
    first, second = forgotten_then_fetched_again(proxy, backend)
    unblock_first.set()
    assert first.result(WAIT) == 1

    third = Recorder()
    assert proxy.request("key", third) is None
    unblock_second.set()
    assert second.result(WAIT) == 2
    assert third.wait(1)[0].value == 2, "the third call must share the second's fetch"
    assert backend.calls["key"] == 2


def test_singleflight_TestForgetUnshared(backend: Backend, clock: FakeClock) -> None:
    """TestForgetUnshared (Go internal/singleflight): ForgetUnshared ≈ invalidate; after it no two fetches
    of the key run together, the first finishing does not unregister the second, the third shares it."""
    first_gate, second_gate = threading.Event(), threading.Event()
    backend.plan["key"].extend([lambda: first_gate.wait(WAIT) and None, lambda: second_gate.wait(WAIT) and 2])
    proxy = make(backend, clock)
    first, second = forgotten_then_fetched_again(proxy, backend)
    third = Recorder()
    assert proxy.request("key", third) is None  # must not start a third fetch
    assert proxy.key_stats("key")["waiting"] == 2

    first_gate.set()
    assert first.result(WAIT) is None
    assert proxy.key_stats("key")["waiting"] == 2, "the first fetch finishing must not unregister the second"
    second_gate.set()
    assert second.result(WAIT) == 2
    assert third.wait(1)[0].value == 2
    assert backend.calls["key"] == 2


def test_singleflight_TestDoChan(clock: FakeClock) -> None:
    """TestDoChan: DoChan's channel ≈ request() with an on_answer callback; it receives the value."""
    proxy = make(lambda key: "bar", clock)
    recorder = Recorder()
    assert proxy.request("key", recorder) is None
    answer = recorder.wait(1)[0]
    assert (answer.value, answer.error, answer.cache) == ("bar", None, "miss")


def test_singleflight_TestPanicDo(backend: Backend, clock: FakeClock) -> None:
    """TestPanicDo: fn panics ≈ backend raises a BaseException; the leader re-raises it, no caller hangs."""
    panic = Panic("invalid memory address or nil pointer dereference")
    proxy, outcomes = herd(backend, clock, "key", 5, panic)
    assert sum(o is panic for o in outcomes) == 1  # the leader
    assert sum(isinstance(o, OriginUnavailable) and o.__cause__ is panic for o in outcomes) == 4
    assert proxy.stats()["in_flight"] == 0


def test_singleflight_TestGoexitDo(backend: Backend, clock: FakeClock) -> None:
    """TestGoexitDo: fn calls runtime.Goexit ≈ backend raises SystemExit (ends its thread); no caller hangs."""
    exit_ = SystemExit()
    _, outcomes = herd(backend, clock, "key", 5, exit_)
    assert sum(o is exit_ for o in outcomes) == 1
    assert all(isinstance(o, OriginUnavailable) for o in outcomes if o is not exit_)


def test_singleflight_TestPanicDoChan(backend: Backend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """TestPanicDoChan: a panic in DoChan's fn crashes loudly ≈ request(): the BaseException is re-raised
    in the fetch thread (reaching threading.excepthook), and the callback still gets an error."""
    panic = Panic("Panicking in DoChan")
    backend.plan["key"].append(panic)
    crashed: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    proxy = make(backend, clock)
    recorder = Recorder()
    assert proxy.request("key", recorder) is None
    answer = recorder.wait(1)[0]
    assert isinstance(answer.error, OriginUnavailable) and answer.error.__cause__ is panic
    wait_until(lambda: crashed != [], "the panic to reach threading.excepthook")
    assert crashed == [panic]


def test_singleflight_TestPanicDoSharedByDoChan(backend: Backend, clock: FakeClock) -> None:
    """TestPanicDoSharedByDoChan: a panicking Do shared by a DoChan ≈ the get leader re-raises, the request()
    waiter's callback gets the error, and its own fn (a second backend call) never runs."""
    panic = Panic("Panicking in Do")
    backend.plan["key"].append(panic)
    backend.plan["key"].append(AssertionError("DoChan unexpectedly executed callback"))
    backend.hold("key")
    proxy = make(backend, clock)
    leader = in_thread(proxy.get, "key")
    backend.wait_entered("key")
    recorder = Recorder()
    assert proxy.request("key", recorder) is None
    backend.release("key")
    assert outcome(leader) is panic
    answer = recorder.wait(1)[0]
    assert answer.cache == "collapsed" and answer.error.__cause__ is panic
    assert backend.calls["key"] == 1


def test_singleflight_ExampleGroup(backend: Backend, clock: FakeClock) -> None:
    """ExampleGroup: two DoChan's of one key share the first fn's result ≈ two request()s: miss + collapsed."""
    backend.plan["key"].extend(["func 1", "func 2"])
    backend.hold("key")
    proxy = make(backend, clock)
    first, second = Recorder(), Recorder()
    proxy.request("key", first)
    proxy.request("key", second)
    backend.release("key")
    res1, res2 = first.wait(1)[0], second.wait(1)[0]
    assert res2.cache == "collapsed"  # Shared: true
    assert res1.value == res2.value == "func 1"


# -- stress ----------------------------------------------------------------------


@pytest.mark.parametrize("max_entries", [100_000, 4])
def test_stress_never_two_concurrent_backend_calls_per_key(backend: Backend, max_entries: int) -> None:
    """8 threads x 300 gets over 20 keys (ttl 0, so each get misses or joins):
    never two origin calls of a key at once."""
    backend.delay = 0.0005  # simulated origin latency, to widen the windows where calls could overlap
    clock = FakeClock()
    proxy = make(backend, clock, ttl=0, max_entries=max_entries)
    keys = [f"k{i}" for i in range(20)]
    start = threading.Barrier(8, timeout=WAIT)

    def worker(seed: int) -> int:
        rng = random.Random(seed)
        start.wait()
        for _ in range(300):
            key = rng.choice(keys)
            assert proxy.get(key) == f"value-{key}"
        return 300

    futures = [in_thread(worker, seed) for seed in range(8)]
    assert sum(f.result(3 * WAIT) for f in futures) == 2400
    assert max(backend.max_active.values()) == 1, dict(backend.max_active)
    stats = proxy.stats()
    assert stats["requests"] == 2400 == stats["hits"] + stats["stale"] + stats["misses"] + stats["collapsed"]
    assert stats["in_flight"] == 0


def test_stress_no_read_after_a_write_sees_an_older_value(clock: FakeClock) -> None:
    """Readers racing a writer (origin write, then invalidate): a get that starts after a write's invalidate
    returned never sees an older value, and no reader sees a key's version go backwards."""
    keys = [f"k{i}" for i in range(5)]
    origin = {key: 0 for key in keys}
    written = {key: 0 for key in keys}  # the newest version whose invalidate has returned
    origin_lock = threading.Lock()

    def fetch(key: str) -> int:
        with origin_lock:
            version = origin[key]
        time.sleep(0.0002)  # simulated latency: lets writes land while fetches are in flight
        return version

    proxy = make(fetch, clock, ttl=60)
    start = threading.Barrier(7, timeout=WAIT)

    def writer() -> int:
        rng = random.Random(99)
        start.wait()
        for version in range(1, 301):
            key = rng.choice(keys)
            with origin_lock:
                origin[key] = version
            proxy.invalidate(key)
            written[key] = version
        return 300

    def reader(seed: int) -> int:
        rng = random.Random(seed)
        seen = {key: 0 for key in keys}
        start.wait()
        for _ in range(500):
            key = rng.choice(keys)
            floor = written[key]
            value = proxy.get(key)
            assert value >= floor, f"{key}: read {value} after version {floor} was written and invalidated"
            assert value >= seen[key], f"{key}: read {value} after having read {seen[key]}"
            seen[key] = value
        return 500

    futures = [in_thread(writer)] + [in_thread(reader, seed) for seed in range(6)]
    assert sum(f.result(3 * WAIT) for f in futures) == 300 + 6 * 500
    assert all(proxy.get(key) == origin[key] for key in keys)
    stats = proxy.stats()
    assert stats["requests"] == stats["hits"] + stats["misses"] + stats["collapsed"] == 3000 + 5


def test_stress_lock_free_hits_keep_counts_exact_and_the_bound(clock: FakeClock) -> None:
    """8 threads of hits (lock-free), misses, evictions and invalidations at once: every request is
    counted exactly once, `entries` matches the keys cached, and no more than max_entries."""
    proxy = CollapsedForwardingProxy(lambda key: f"value-{key}", 60, max_entries=40, clock=clock)
    keys = [f"k{i}" for i in range(50)]
    per_thread = 3000

    def client(seed: int) -> None:
        rand = random.Random(seed)
        for n in range(per_thread):
            key = rand.choice(keys[:45] if n % 2 else keys[:8])  # a hot few, and enough others to evict
            assert proxy.get(key) == f"value-{key}"
            if n % 500 == 0:
                proxy.invalidate(key)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    stats = proxy.stats()
    assert stats["requests"] == 8 * per_thread
    assert stats["requests"] == stats["hits"] + stats["misses"] + stats["collapsed"]
    assert stats["hits"] > 0 and stats["evictions"] > 0
    holding = sum(proxy.is_cached(key) for key in keys)
    assert stats["entries"] == holding <= 40


def test_a_subclass_get_is_not_bypassed(clock: FakeClock) -> None:
    """A subclass that overrides get is called, and super().get still serves hits and misses."""
    calls: list[str] = []

    class Recording(CollapsedForwardingProxy):
        def get(self, key: Any, ttl: float | None = None) -> Any:
            calls.append(key)
            return super().get(key, ttl)

    proxy = Recording(lambda key: f"value-{key}", 60, clock=clock)
    assert [proxy.get("k"), proxy.get("k")] == ["value-k", "value-k"]
    assert calls == ["k", "k"]
    assert (proxy.stats()["misses"], proxy.stats()["hits"]) == (1, 1)
