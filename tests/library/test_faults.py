"""The library's robustness, as a Python developer would use it.

`from proxy import ...` only: the names every user of the library imports.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future

import pytest
from support.doubles import Backend, FakeClock, in_thread, outcome, wait_until

from proxy import CacheError, CollapsedForwardingProxy, KeyMissing, OriginTimeout, OriginUnavailable

# -- 12. ttl is validated at the call ---------------------------------------------------------------

BAD_TTLS = [("10", TypeError), (b"10", TypeError), ([10], TypeError), (True, TypeError),
            (10**400, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError)]


@pytest.mark.parametrize("ttl, error", BAD_TTLS, ids=[repr(t)[:12] for t, _ in BAD_TTLS])
@pytest.mark.parametrize("call", ["get", "lookup", "fetch_and_cache", "request"])
def test_a_bad_ttl_is_refused_at_the_call_and_leaves_no_trace(backend, call, ttl, error):
    cache = CollapsedForwardingProxy(backend, ttl=60)
    before = cache.stats()
    with pytest.raises(error):
        if call == "request":
            cache.request("k", lambda answer: None, ttl)
        else:
            getattr(cache, call)("k", ttl=ttl)
    assert cache.stats() == before
    assert backend.calls["k"] == 0
    assert cache.get("k") == "value-k" and cache.stats()["in_flight"] == 0


@pytest.mark.parametrize("ttl", [0, 0.5, 10**6, 1e9])
def test_a_good_ttl_is_taken(backend, clock, ttl):
    cache = CollapsedForwardingProxy(backend, ttl=60, clock=clock)
    assert cache.get("k", ttl=ttl) == "value-k"
    assert cache.is_cached("k") == (ttl > 0)


@pytest.mark.parametrize("name, value", [("ttl", "60"), ("ttl", -1), ("timeout", math.nan), ("negative_ttl", -1),
                                         ("grace", "1"), ("max_waiters", 1.5), ("jitter", 1.0)])
def test_bad_proxy_settings_are_refused_at_construction(backend, name, value):
    with pytest.raises((TypeError, ValueError)):
        CollapsedForwardingProxy(backend, **{name: value})


def test_a_timeout_beyond_what_a_thread_can_wait_is_taken(backend):
    """1e10 s is longer than threading.TIMEOUT_MAX; waiters must not fail with OverflowError."""
    cache = CollapsedForwardingProxy(backend, timeout=1e10)
    backend.hold("k")
    leader = in_thread(cache.get, "k")
    backend.wait_entered("k")
    follower = in_thread(cache.get, "k")
    wait_until(lambda: cache.key_stats("k")["waiting"] == 2, "the follower to wait")
    backend.release("k")
    assert outcome(leader) == outcome(follower) == "value-k"


# -- 13. fetch_and_cache's default ttl is the proxy's ----------------------------------------------------


def test_fetch_and_cache_caches_for_the_proxys_ttl_by_default(backend, clock):
    cache = CollapsedForwardingProxy(backend, ttl=5, clock=clock)
    assert cache.fetch_and_cache("k") == "value-k"
    assert cache.key_stats("k")["ttl_left"] == 5
    clock.advance(5.5)
    assert not cache.is_cached("k")
    assert cache.fetch_and_cache("k", ttl=100) == "value-k"  # the keyword still works
    assert cache.key_stats("k")["ttl_left"] == 100
    assert cache.fetch_and_cache("j", 7) == "value-j"  # and so does the position
    assert cache.key_stats("j")["ttl_left"] == 7


# -- 14. any error class is copied for each waiter -------------------------------------------------------


class HttpError(CacheError):
    """A backend's own error, whose __init__ takes other arguments than its message."""

    code = 11

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status, self.reason = status, reason


class KeywordOnlyError(CacheError):
    def __init__(self, *, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@pytest.mark.parametrize("error", [HttpError(503, "busy"), KeywordOnlyError(detail="no")], ids=["positional",
                                                                                                  "keyword-only"])
def test_a_backends_own_error_class_reaches_every_waiter(backend, error):
    cache = CollapsedForwardingProxy(backend, timeout=10)
    backend.plan["k"].append(error)
    backend.hold("k")
    leader = in_thread(cache.get, "k")
    backend.wait_entered("k")
    followers = [in_thread(cache.get, "k") for _ in range(3)]
    wait_until(lambda: cache.key_stats("k")["waiting"] == 4, "the followers to wait")
    backend.release("k")
    raised = [outcome(f) for f in (leader, *followers)]
    assert all(type(e) is type(error) and str(e) == str(error) and e.__dict__ == error.__dict__ for e in raised), \
        raised
    assert len({id(e) for e in raised}) == 4, "one copy per waiter, not one instance raised in four threads"


# -- 15. a hung blocking backend ------------------------------------------------------------------------------
# The leader calls the backend inline, in its caller's thread: that caller stays in a hung call until it
# returns, then gets what it returned. The waiters leave at the deadline with OriginTimeout, and the call
# holds its key (lock_age) until it returns.

TIMEOUT = 0.3


def hung(backend: Backend, **settings) -> tuple[CollapsedForwardingProxy, Future]:
    """A proxy whose backend hangs on "k" until released: the leader's get (still in the call), after a
    follower has timed out at the deadline."""
    cache = CollapsedForwardingProxy(backend, timeout=TIMEOUT, **settings)
    backend.hold("k")
    leader = in_thread(cache.get, "k")
    backend.wait_entered("k")
    started = time.monotonic()
    assert isinstance(outcome(in_thread(cache.get, "k"), timeout=5), OriginTimeout)
    assert time.monotonic() - started < TIMEOUT + 2, "the follower waited on the hung origin"
    assert backend.active["k"] == 1 and not leader.done()
    return cache, leader


def test_the_leader_stays_in_the_hung_call_and_gets_what_it_returns(backend):
    cache, leader = hung(backend)
    backend.values["k"] = "late"
    backend.release("k")
    assert outcome(leader) == "late"
    assert cache.get("k") == "late" and backend.calls["k"] == 1


def test_a_hung_leader_gets_the_error_its_call_finally_raises(backend):
    backend.plan["k"].append(ValueError("broke late"))
    cache, leader = hung(backend)
    backend.release("k")
    error = outcome(leader)
    assert isinstance(error, OriginUnavailable) and isinstance(error.__cause__, ValueError), error
    assert not cache.is_cached("k")


def test_a_blocking_leader_calls_the_backend_in_its_own_thread(backend):
    cache = CollapsedForwardingProxy(backend)
    assert cache.get("k") == "value-k"
    assert backend.threads == [threading.get_ident()]


def test_while_a_call_hangs_requests_fail_fast_and_start_no_second_call(backend):
    cache, _ = hung(backend)
    for _ in range(10):
        answer = cache.request("k", lambda answer: pytest.fail("answered later: it waited"))
        assert answer is not None and isinstance(answer.error, OriginTimeout), answer  # now, not at a deadline
    gets = [in_thread(cache.get, "k") for _ in range(10)]
    assert all(isinstance(outcome(g, timeout=5), OriginTimeout) for g in gets)
    assert backend.calls["k"] == 1 and backend.max_active["k"] == 1
    assert cache.get("other") == "value-other"  # other keys are not held up


def test_the_value_a_hung_call_brings_back_is_cached(backend):
    cache, leader = hung(backend, ttl=60)
    backend.release("k")
    assert outcome(leader) == "value-k"
    assert cache.is_cached("k")
    assert cache.lookup("k").cache == "hit" and cache.get("k") == "value-k"
    assert backend.calls["k"] == 1


def test_after_lock_age_one_more_call_may_start(backend):
    clock = FakeClock(time.monotonic())
    cache = CollapsedForwardingProxy(backend, timeout=TIMEOUT, lock_age=5, clock=clock)
    backend.hold("k")
    first = in_thread(cache.get, "k")
    backend.wait_entered("k")
    assert isinstance(outcome(in_thread(cache.get, "k"), timeout=5), OriginTimeout)  # at the deadline
    clock.advance(4)
    assert isinstance(outcome(in_thread(cache.get, "k"), timeout=5), OriginTimeout)  # at once: the key is held
    assert backend.calls["k"] == 1
    clock.advance(1.5)
    second = in_thread(cache.get, "k")
    backend.wait_entered("k")
    assert backend.calls["k"] == 2
    backend.release("k")
    assert outcome(first) == outcome(second) == "value-k"
    assert cache.is_cached("k")


def test_an_invalidate_stops_a_hung_call_from_filling_the_cache(backend):
    cache, leader = hung(backend)
    cache.invalidate("k")
    backend.values["k"] = "new"
    backend.release("k")
    assert outcome(leader) == "new"  # what its call returned; its caller gets it, but it fills nothing
    assert not cache.is_cached("k")
    assert cache.get("k") == "new"
    assert backend.calls["k"] == 2


def test_a_hung_refresh_serves_stale_within_stale_if_error(backend):
    clock = FakeClock(time.monotonic())
    cache = CollapsedForwardingProxy(backend, ttl=1, timeout=TIMEOUT, stale_if_error=60, clock=clock)
    assert cache.get("k") == "value-k"
    clock.advance(2)
    backend.hold("k")
    leader = in_thread(cache.lookup, "k")
    backend.wait_entered("k")
    assert outcome(in_thread(cache.lookup, "k"), timeout=5).cache == "stale"  # at the deadline
    for _ in range(3):
        answer = outcome(in_thread(cache.lookup, "k"), timeout=5)
        assert (answer.cache, answer.value) == ("stale", "value-k")
    assert backend.calls["k"] == 2 and not leader.done()
    backend.release("k")
    assert outcome(leader).value == "value-k"


def test_a_hung_call_leaves_the_counters_sane(backend):
    cache, leader = hung(backend)
    assert cache.stats()["in_flight"] == 0
    backend.release("k")
    assert outcome(leader) == "value-k"
    stats = cache.stats()
    assert (stats["in_flight"], stats["entries"], stats["origin_fetches"]) == (0, 1, 1), stats
    assert threading.active_count() < 50


# -- 16. KeyMissing is a KeyError -----------------------------------------------------------------------


def test_key_missing_is_a_key_error_and_says_so_plainly(backend):
    cache = CollapsedForwardingProxy(backend)
    backend.missing.add("gone")
    with pytest.raises(KeyError) as raised:
        cache.get("gone")
    assert isinstance(raised.value, KeyMissing) and isinstance(raised.value, CacheError)
    assert str(raised.value) == "key does not exist"  # not KeyError's quoted repr
    try:
        cache.get("gone")
    except KeyError:  # code written against a dict-like cache
        pass


def test_a_callback_that_joins_a_hung_blocking_leader_is_released_at_the_deadline(backend):
    """The blocking leader's flight arms no timer until a callback waits on it: then it must."""
    cache = CollapsedForwardingProxy(backend, timeout=TIMEOUT)
    backend.hold("k")
    leader = in_thread(cache.get, "k")
    backend.wait_entered("k")
    answers: queue.Queue = queue.Queue()
    assert cache.request("k", answers.put) is None
    answer = answers.get(timeout=5)
    assert isinstance(answer.error, OriginTimeout) and not leader.done()
    backend.release("k")
    assert outcome(leader) == "value-k"
