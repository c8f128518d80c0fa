"""The freshness and overload knobs: grace, stale_if_error, early_refresh
(XFetch), jitter, error_ttl, max_waiters; key_stats; the stats invariant.

Time is a FakeClock and randomness a FakeRandom; the origin is mostly an
AsyncBackend whose fetches the test completes, so background refreshes are
deterministic.
"""

from __future__ import annotations

import math
import time

import pytest
from support.doubles import WAIT, AsyncBackend, Backend, FakeClock, FakeRandom, Recorder, in_thread, wait_until

from collapsed_forwarding import (
    Answer,
    CollapsedForwardingProxy,
    KeyMissing,
    OriginTimeout,
    OriginUnavailable,
    Overloaded,
)


def make(backend: object, clock: FakeClock, **options: object) -> CollapsedForwardingProxy:
    options.setdefault("timeout", WAIT)
    options.setdefault("ttl", 10)
    return CollapsedForwardingProxy(backend, clock=clock, **options)  # type: ignore[arg-type]


def fill(proxy: CollapsedForwardingProxy, origin: AsyncBackend, key: str, value: object,
         clock: FakeClock | None = None, takes: float = 0.0) -> Answer:
    """Lead a fetch of `key` that takes `takes` seconds on the fake clock and returns `value`."""
    recorder = Recorder()
    assert proxy.request(key, recorder) is None
    if clock is not None:
        clock.advance(takes)
    origin.finish(key, value)
    return recorder.answers[0]


def in_grace(origin: AsyncBackend, clock: FakeClock) -> CollapsedForwardingProxy:
    """A proxy (ttl 10 s, grace 5 s) whose entry "k" expired 1 s ago: served stale, its refresh in flight."""
    proxy = make(origin, clock, ttl=10, grace=5)
    fill(proxy, origin, "k", "v1")
    clock.advance(11)
    assert proxy.lookup("k").cache == "stale"
    return proxy


def assert_invariant(proxy: CollapsedForwardingProxy) -> None:
    stats = proxy.stats()
    assert stats["requests"] == stats["hits"] + stats["stale"] + stats["misses"] + stats["collapsed"] + stats["shed"]


# -- grace -------------------------------------------------------------------------


def test_grace_serves_stale_at_once_with_exactly_one_refresh(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """Expired but within grace: 'stale' with the old value at once, one background refresh, then 'hit'."""
    proxy = make(async_backend, clock, ttl=10, grace=5)
    fill(proxy, async_backend, "k", "v1")
    clock.advance(11)
    answers = [proxy.lookup("k") for _ in range(3)]
    recorder = Recorder()
    answers.append(proxy.request("k", recorder))  # type: ignore[arg-type]
    assert [(a.value, a.cache) for a in answers] == [("v1", "stale")] * 4
    assert async_backend.pending_keys() == ["k"], "exactly one refresh for all the stale requests"
    stats = proxy.stats()
    assert (stats["stale"], stats["refreshes"], stats["origin_fetches"], stats["in_flight"]) == (4, 1, 2, 1)

    async_backend.finish("k", "v2")
    answer = proxy.lookup("k")
    assert (answer.value, answer.cache) == ("v2", "hit")
    assert proxy.key_stats("k")["ttl_left"] == 10
    assert recorder.answers == [], "a stale answer given at once gets no callback"
    assert_invariant(proxy)


def test_grace_refresh_with_blocking_backend_runs_in_background(backend: Backend, clock: FakeClock) -> None:
    """With a blocking backend the grace refresh runs on another thread; the stale request does not wait."""
    proxy = make(backend, clock, ttl=10, grace=5)
    proxy.get("k")
    backend.values["k"] = "v2"
    backend.hold("k")
    clock.advance(11)
    stale = in_thread(proxy.lookup, "k").result(WAIT)  # would block until release if the refresh ran inline
    assert (stale.value, stale.cache) == ("value-k", "stale")
    backend.wait_entered("k")  # the first fill
    backend.wait_entered("k")  # the refresh, still held while the stale answer was already given
    assert backend.calls["k"] == 2
    backend.release("k")
    wait_until(lambda: proxy.is_cached("k"), "the background refresh to fill the cache")
    assert (proxy.lookup("k").value, backend.calls["k"]) == ("v2", 2)


def test_grace_refresh_failure_serves_stale_until_grace_runs_out(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """A failed grace refresh: stale keeps serving (retrying the refresh) until grace ends, then a normal miss."""
    proxy = in_grace(async_backend, clock)
    async_backend.finish("k", RuntimeError("refresh failed"))
    assert not proxy.is_cached("k")

    clock.advance(2)  # 13 s after the fill: still within ttl + grace
    answer = proxy.lookup("k")
    assert (answer.value, answer.cache, answer.error) == ("v1", "stale", None)
    async_backend.finish("k", RuntimeError("refresh failed again"))

    clock.advance(2.5)  # 15.5 s: grace is over
    recorder = Recorder()
    assert proxy.request("k", recorder) is None
    async_backend.finish("k", "v3")
    assert [(a.value, a.cache) for a in recorder.answers] == [("v3", "miss")]
    assert proxy.stats()["origin_errors"] == 2
    assert_invariant(proxy)


def test_request_past_grace_joins_the_refresh_in_flight(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """Once grace has run out, a request waits on the refresh already in flight instead of fetching again."""
    proxy = in_grace(async_backend, clock)
    clock.advance(5)
    recorder = Recorder()
    assert proxy.request("k", recorder) is None
    assert async_backend.started["k"] == 2
    async_backend.finish("k", "v2")
    assert [(a.value, a.cache) for a in recorder.answers] == [("v2", "collapsed")]


def test_invalidate_during_grace_refresh_stops_it_refilling(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """invalidate while a grace refresh is in flight: the refresh's value does not refill the cache."""
    proxy = in_grace(async_backend, clock)
    proxy.invalidate("k")
    async_backend.finish("k", "v-before-invalidate")
    assert not proxy.is_cached("k")
    assert proxy.stats()["entries"] == 0
    recorder = Recorder()
    assert proxy.request("k", recorder) is None, "no stale value survives an invalidate"
    async_backend.finish("k", "v2")
    assert [(a.value, a.cache) for a in recorder.answers] == [("v2", "miss")]


# -- stale_if_error ------------------------------------------------------------------------


def test_stale_if_error_serves_stale_when_the_fetch_fails(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """Expired entry, failed fetch, within stale_if_error: every waiter gets the old value as 'stale'."""
    proxy = make(async_backend, clock, ttl=10, stale_if_error=30)
    fill(proxy, async_backend, "k", "v1")
    clock.advance(15)
    recorder = Recorder()
    assert proxy.request("k", recorder) is None
    assert proxy.request("k", recorder) is None
    async_backend.finish("k", RuntimeError("origin down"))
    assert [(a.value, a.cache, a.error) for a in recorder.answers] == [("v1", "stale", None)] * 2
    stats = proxy.stats()
    assert (stats["stale"], stats["errors"], stats["origin_errors"]) == (2, 0, 1)
    assert_invariant(proxy)


def test_stale_if_error_covers_a_timed_out_fetch(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """A fetch that never answers (timeout=0.2) within stale_if_error: the waiter gets the stale value."""
    proxy = make(async_backend, clock, ttl=10, stale_if_error=30, timeout=0.2)
    fill(proxy, async_backend, "k", "v1")
    clock.advance(15)
    started = time.monotonic()
    answer = in_thread(proxy.lookup, "k").result(WAIT)
    assert (answer.value, answer.cache) == ("v1", "stale")
    assert time.monotonic() - started < 5


def test_stale_if_error_window_ends(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """Past expiry + stale_if_error, a failed fetch gives its error."""
    proxy = make(async_backend, clock, ttl=10, stale_if_error=30)
    fill(proxy, async_backend, "k", "v1")
    clock.advance(40)
    recorder = Recorder()
    proxy.request("k", recorder)
    async_backend.finish("k", RuntimeError("origin down"))
    answer = recorder.answers[0]
    assert answer.cache == "miss" and isinstance(answer.error, OriginUnavailable)


def test_stale_if_error_does_not_hide_key_does_not_exist(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """key-does-not-exist is an answer, not a failure: it replaces the stale value."""
    proxy = make(async_backend, clock, ttl=10, stale_if_error=30)
    fill(proxy, async_backend, "k", "v1")
    clock.advance(15)
    recorder = Recorder()
    proxy.request("k", recorder)
    async_backend.finish("k", KeyError("k"))
    assert isinstance(recorder.answers[0].error, KeyMissing)
    assert isinstance(proxy.lookup("k").error, KeyMissing)


# -- early refresh (XFetch) ------------------------------------------------------------


def test_early_refresh_follows_the_xfetch_rule(clock: FakeClock, rand: FakeRandom) -> None:
    """A hit refreshes in the background exactly when now - delta*beta*ln(1-random()) >= expiry."""
    cases = 0
    for beta in (0.5, 1.0, 2.0):
        for age in (0.0, 4.0, 7.0, 9.0, 9.9):
            for r in (0.0, 0.3, 0.6, 0.9, 0.99, 0.999999):
                origin = AsyncBackend()
                proxy = make(origin, clock, ttl=10, early_refresh=beta, random=rand)
                fill(proxy, origin, "k", "v1", clock, takes=2.0)  # delta = 2 s on the fake clock
                expiry = clock() + 10
                clock.advance(age)
                reach = clock() - 2.0 * beta * math.log(1.0 - r)
                if abs(reach - expiry) < 1e-6:
                    continue  # too close to call in floating point
                rand.value = r
                answer = proxy.lookup("k")
                assert (answer.value, answer.cache) == ("v1", "hit")
                refreshed = reach >= expiry
                assert origin.started["k"] == 1 + refreshed, (beta, age, r)
                assert proxy.stats()["refreshes"] == refreshed
                cases += 1
    assert cases > 80


def test_early_refresh_refreshes_once_and_counts(
        async_backend: AsyncBackend, clock: FakeClock, rand: FakeRandom) -> None:
    """An early refresh: the hit answers 'hit', one refresh runs (counted in refreshes and origin_fetches)."""
    proxy = make(async_backend, clock, ttl=10, early_refresh=1.0, random=rand)
    fill(proxy, async_backend, "k", "v1", clock, takes=2.0)
    assert proxy.key_stats("k")["last_fetch_s"] == 2.0
    clock.advance(9)
    rand.value = 0.99  # 2 * -ln(0.01) = 9.2 s of reach: refresh
    assert [proxy.lookup("k").cache for _ in range(3)] == ["hit"] * 3
    assert async_backend.started["k"] == 2, "hits during the refresh start no other"
    stats = proxy.stats()
    assert (stats["refreshes"], stats["origin_fetches"], stats["hits"]) == (1, 2, 3)
    assert (proxy.key_stats("k")["hits"], proxy.key_stats("k")["origin_fetches"]) == (3, 2)
    async_backend.finish("k", "v2")
    answer = proxy.lookup("k")
    assert (answer.value, answer.cache) == ("v2", "hit")
    assert proxy.key_stats("k")["ttl_left"] == 10
    assert_invariant(proxy)


def test_early_refresh_never_fires_for_an_instant_fetch(async_backend: AsyncBackend, clock: FakeClock,
                                                        rand: FakeRandom) -> None:
    """delta = 0 (the fetch took no time): XFetch never refreshes before expiry, whatever random() says."""
    proxy = make(async_backend, clock, ttl=10, early_refresh=5.0, random=rand)
    fill(proxy, async_backend, "k", "v1")
    clock.advance(9.99)
    rand.value = 0.999999
    assert proxy.lookup("k").cache == "hit"
    assert async_backend.started["k"] == 1


def test_invalidate_during_early_refresh_stops_it_refilling(async_backend: AsyncBackend, clock: FakeClock,
                                                            rand: FakeRandom) -> None:
    """invalidate while an early refresh is in flight: its value does not refill the cache."""
    proxy = make(async_backend, clock, ttl=10, early_refresh=1.0, random=rand)
    fill(proxy, async_backend, "k", "v1", clock, takes=2.0)
    clock.advance(9)
    rand.value = 0.99
    proxy.lookup("k")
    assert async_backend.started["k"] == 2
    proxy.invalidate("k")
    async_backend.finish("k", "v-before-invalidate")
    assert not proxy.is_cached("k")


# -- jitter ------------------------------------------------------------------------


@pytest.mark.parametrize(("jitter", "r", "lifetime"), [(0.5, 0.4, 8.0), (0.2, 0.5, 9.0), (0.5, 0.0, 10.0)])
def test_jitter_shortens_the_ttl_by_jitter_times_random(backend: Backend, clock: FakeClock, rand: FakeRandom,
                                                         jitter: float, r: float, lifetime: float) -> None:
    """With random() = r, a value's ttl becomes ttl * (1 - jitter * r)."""
    rand.value = r
    proxy = make(backend, clock, ttl=10, jitter=jitter, random=rand)
    proxy.get("k")
    assert proxy.key_stats("k")["ttl_left"] == pytest.approx(lifetime)
    clock.advance(lifetime - 0.01)
    assert proxy.lookup("k").cache == "hit"
    clock.advance(0.02)
    assert proxy.lookup("k").cache == "miss"


# -- error_ttl ----------------------------------------------------------------------


def test_error_ttl_remembers_a_failure(backend: Backend, clock: FakeClock) -> None:
    """Within error_ttl after a failure, requests get the same error at once as a hit, with no fetch."""
    boom = RuntimeError("origin down")
    backend.plan["k"].append(boom)
    proxy = make(backend, clock, ttl=10, error_ttl=5)
    first = proxy.lookup("k")
    assert first.cache == "miss" and isinstance(first.error, OriginUnavailable)
    clock.advance(4.9)
    again = proxy.lookup("k")
    assert again.cache == "hit" and isinstance(again.error, OriginUnavailable)
    with pytest.raises(OriginUnavailable) as raised:
        proxy.get("k")
    assert raised.value.__cause__ is boom
    assert backend.calls["k"] == 1
    stats = proxy.key_stats("k")
    assert (stats["hits"], stats["misses"], stats["errors"], stats["origin_errors"]) == (2, 1, 3, 1)

    clock.advance(0.1)
    assert (proxy.lookup("k").value, backend.calls["k"]) == ("value-k", 2)
    assert_invariant(proxy)


def test_error_ttl_remembers_a_timeout(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """A timed-out fetch is a failure too: within error_ttl its OriginTimeout is served without a fetch."""
    proxy = make(async_backend, clock, error_ttl=5, timeout=0.2)
    assert isinstance(in_thread(proxy.lookup, "k").result(WAIT).error, OriginTimeout)
    answer = proxy.lookup("k")
    assert answer.cache == "hit" and isinstance(answer.error, OriginTimeout)
    assert async_backend.started["k"] == 1


def test_error_ttl_serves_stale_within_stale_if_error(backend: Backend, clock: FakeClock) -> None:
    """A remembered failure on an expired entry within stale_if_error: stale value, no fetch."""
    proxy = make(backend, clock, ttl=10, error_ttl=5, stale_if_error=30)
    proxy.get("k")
    clock.advance(11)
    backend.plan["k"].append(RuntimeError("origin down"))
    assert (proxy.lookup("k").value, proxy.lookup("k").cache) == ("value-k", "stale")
    clock.advance(1)
    answer = proxy.lookup("k")
    assert (answer.value, answer.cache, answer.error) == ("value-k", "stale", None)
    assert backend.calls["k"] == 2


def test_a_successful_fetch_forgets_a_remembered_failure(backend: Backend, clock: FakeClock) -> None:
    """A success (here fetch_and_cache) ends the remembered failure: once that value expires, the next
    request fetches again instead of replaying the old error."""
    backend.plan["k"].append(RuntimeError("origin down"))
    proxy = make(backend, clock, error_ttl=5)
    assert proxy.lookup("k").error is not None
    assert proxy.fetch_and_cache("k", ttl=1) == "value-k"
    clock.advance(2)  # the value has expired; the failure would still be remembered until t=5
    answer = proxy.lookup("k")
    assert (answer.value, answer.error, answer.cache) == ("value-k", None, "miss")
    assert backend.calls["k"] == 3


def test_invalidate_forgets_a_remembered_failure(backend: Backend, clock: FakeClock) -> None:
    """invalidate drops a remembered failure too: the next request fetches."""
    backend.plan["k"].append(RuntimeError("origin down"))
    proxy = make(backend, clock, error_ttl=5)
    assert proxy.lookup("k").error is not None
    proxy.invalidate("k")
    assert proxy.lookup("k").value == "value-k"


# -- max_fetches -----------------------------------------------------------------------


def test_max_fetches_sheds_a_miss_that_would_start_one_more(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """max_fetches=2: two keys in the air; a miss of a third is shed at once (Overloaded), a request
    for a key in the air still joins its fetch, and once one lands a new key may start again."""
    proxy = make(async_backend, clock, max_fetches=2, timeout=30)
    first, second, joined = Recorder(), Recorder(), Recorder()
    assert proxy.request("a", first) is None and proxy.request("b", second) is None
    shed = proxy.request("c", Recorder())
    assert shed is not None and shed.cache == "shed" and isinstance(shed.error, Overloaded)
    assert proxy.request("a", joined) is None, "joining a fetch in the air starts none"
    async_backend.finish("a", "va")
    assert [(a.value, a.cache) for a in joined.answers] == [("va", "collapsed")]
    assert proxy.request("c", Recorder()) is None, "one fetch landed: room for one more"
    stats = proxy.stats()
    assert (stats["shed"], stats["origin_fetches"]) == (1, 3)
    assert_invariant(proxy)


def test_max_fetches_serves_the_stale_entry_and_skips_its_refresh(async_backend: AsyncBackend,
                                                                   clock: FakeClock) -> None:
    """At the cap, an entry within grace is served stale and no refresh starts."""
    proxy = make(async_backend, clock, max_fetches=1, ttl=10, grace=5, timeout=30)
    fill(proxy, async_backend, "k", "v1")
    assert proxy.request("other", Recorder()) is None  # the one fetch allowed
    clock.advance(11)
    assert proxy.lookup("k").cache == "stale"
    assert async_backend.started["k"] == 1, "no refresh past the cap"


# -- a request that already waited (age) ---------------------------------------------------


def test_a_request_that_waited_out_the_timeout_is_served_joins_or_is_shed(async_backend: AsyncBackend,
                                                                         clock: FakeClock) -> None:
    """age=timeout: a fresh hit is served, a fetch in the air is joined, and a miss with
    none in the air is shed at once, Overloaded, without calling the origin."""
    proxy = make(async_backend, clock)
    fill(proxy, async_backend, "cached", "v")
    assert proxy.request("flying", Recorder()) is None  # a fetch in the air
    hit = proxy.request("cached", Recorder(), age=WAIT)
    assert hit is not None and (hit.value, hit.cache) == ("v", "hit")
    joined = Recorder()
    assert proxy.request("flying", joined, age=WAIT) is None
    shed = proxy.request("cold", Recorder(), age=WAIT)
    assert shed is not None and shed.cache == "shed" and isinstance(shed.error, Overloaded)
    assert async_backend.started == {"cached": 1, "flying": 1}
    async_backend.finish("flying", "f")
    assert [(a.value, a.cache) for a in joined.answers] == [("f", "collapsed")]
    assert_invariant(proxy)


def test_the_fetch_of_a_request_that_waited_times_out_that_much_sooner(async_backend: AsyncBackend,
                                                                        clock: FakeClock) -> None:
    proxy = make(async_backend, clock, timeout=30)
    assert proxy.request("fresh", Recorder()) is None
    assert proxy.request("aged", Recorder(), age=12) is None
    in_air = proxy.flights.in_air
    assert 11.9 < in_air["fresh"].deadline - in_air["aged"].deadline <= 12.0


def test_a_request_that_waited_out_the_timeout_is_served_stale_without_a_refresh(async_backend: AsyncBackend,
                                                                                clock: FakeClock) -> None:
    proxy = make(async_backend, clock, ttl=10, grace=5)
    fill(proxy, async_backend, "k", "v1")
    clock.advance(11)
    stale = proxy.request("k", Recorder(), age=WAIT)
    assert stale is not None and (stale.value, stale.cache) == ("v1", "stale")
    assert async_backend.started["k"] == 1, "no refresh started"


# -- max_waiters -----------------------------------------------------------------------


def test_max_waiters_sheds_the_sixth_request(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """max_waiters=5: a leader and 4 waiters; the 6th gets Overloaded (code 11) at once, counted as shed."""
    proxy = make(async_backend, clock, max_waiters=5, timeout=30)
    recorders = [Recorder() for _ in range(5)]
    assert [proxy.request("k", r) for r in recorders] == [None] * 5
    shed = proxy.request("k", Recorder())
    assert shed is not None and shed.cache == "shed"
    assert isinstance(shed.error, Overloaded)
    blocking = in_thread(proxy.get, "k")  # must not wait on the flight either
    assert isinstance(blocking.exception(5), Overloaded)
    key = proxy.key_stats("k")
    assert (key["shed"], key["waiting"], key["errors"]) == (2, 5, 2)

    async_backend.finish("k", "v")
    answers = [r.answers[0] for r in recorders]
    assert [(a.value, a.cache) for a in answers] == [("v", "miss")] + [("v", "collapsed")] * 4
    stats = proxy.stats()
    assert (stats["requests"], stats["shed"], stats["origin_fetches"]) == (7, 2, 1)
    assert_invariant(proxy)


def test_max_waiters_do_not_limit_hits(backend: Backend, clock: FakeClock) -> None:
    """max_waiters bounds waiters on a fetch, not requests: hits are never shed."""
    proxy = make(backend, clock, max_waiters=1)
    proxy.get("k")
    assert [proxy.lookup("k").cache for _ in range(5)] == ["hit"] * 5


# -- key_stats and the invariant ---------------------------------------------------------


def test_key_stats_of_a_never_seen_key(backend: Backend, clock: FakeClock) -> None:
    """A key never seen: zero counters, cached False, ttl_left and last_fetch_s None."""
    proxy = make(backend, clock)
    assert proxy.key_stats("nope") == {
        "requests": 0, "hits": 0, "stale": 0, "misses": 0, "collapsed": 0, "shed": 0, "errors": 0,
        "origin_fetches": 0, "origin_errors": 0, "waiting": 0, "cached": False, "ttl_left": None,
        "last_fetch_s": None,
    }


def test_key_stats_fields_after_a_mixed_history(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """key_stats counts one key's requests by kind, its fetches and failures, waiters, and its entry."""
    proxy = make(async_backend, clock, ttl=10, grace=5)
    leader, follower = Recorder(), Recorder()
    proxy.request("k", leader)
    proxy.request("k", follower)
    assert proxy.key_stats("k")["waiting"] == 2
    clock.advance(1.5)
    async_backend.finish("k", "v1")  # fill at t=1.5, fresh until 11.5
    proxy.lookup("k")  # hit
    clock.advance(12)  # t=13.5: within grace
    proxy.lookup("k")  # stale, starts a refresh
    async_backend.finish("k", RuntimeError("down"))  # refresh fails (0 s)
    proxy.request("other", Recorder())  # another key does not count here
    assert proxy.key_stats("k") == {
        "requests": 4, "hits": 1, "stale": 1, "misses": 1, "collapsed": 1, "shed": 0, "errors": 0,
        "origin_fetches": 2, "origin_errors": 1, "waiting": 0, "cached": False, "ttl_left": None,
        "last_fetch_s": 0.0,
    }
    clock.advance(10)
    proxy.request("k", Recorder())
    clock.advance(0.25)
    async_backend.finish("k", "v2")
    stats = proxy.key_stats("k")
    assert (stats["cached"], stats["ttl_left"], stats["last_fetch_s"], stats["misses"]) == (True, 10.0, 0.25, 2)


def test_stats_invariant_over_a_mixed_workload(async_backend: AsyncBackend, clock: FakeClock) -> None:
    """requests == hits + stale + misses + collapsed + shed, whatever the mix of outcomes."""
    proxy = make(async_backend, clock, ttl=10, grace=5, max_waiters=2, error_ttl=1)
    for key in ("a", "b"):
        proxy.request(key, Recorder())
        proxy.request(key, Recorder())
        proxy.request(key, Recorder())  # shed
    async_backend.finish("a", "va")
    async_backend.finish("b", RuntimeError("down"))
    proxy.lookup("a")  # hit
    proxy.lookup("b")  # remembered failure: hit
    clock.advance(12)
    proxy.lookup("a")  # stale
    async_backend.finish("a", "va2")
    stats = proxy.stats()
    assert (stats["hits"], stats["stale"], stats["misses"], stats["collapsed"], stats["shed"]) == (2, 1, 2, 2, 2)
    assert stats["requests"] == 9
    assert_invariant(proxy)


def test_a_request_that_takes_no_stale_value_gets_a_fresh_one_or_the_error(
        async_backend: AsyncBackend, clock: FakeClock) -> None:
    """serve_stale=False (what a node's `read` asks): grace does not serve the expired entry, the request waits
    on the fetch; stale_if_error does not hide that fetch's error, though the get beside it is served stale."""
    proxy = make(async_backend, clock, ttl=10, grace=60, stale_if_error=60)
    fill(proxy, async_backend, "k", "v1", clock)
    clock.advance(11)
    fresh_only, stale_ok = Recorder(), Recorder()
    assert proxy.request("k", fresh_only, serve_stale=False) is None  # waits: no stale answer for it
    assert proxy.request("k", stale_ok).cache == "stale"  # type: ignore[union-attr]
    async_backend.finish("k", RuntimeError("down"))
    (answer,) = fresh_only.wait(1)
    assert isinstance(answer.error, OriginUnavailable) and answer.value is None
    assert proxy.request("k", Recorder()).value == "v1"  # type: ignore[union-attr]  # get: stale, as before
    stats = proxy.stats()
    assert stats["requests"] == stats["hits"] + stats["stale"] + stats["misses"] + stats["collapsed"]
    assert stats["errors"] == 1
