"""The store's bounds and policy: max_bytes with size_of, the policy option, and a fill the policy rejects."""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Hashable

import pytest
from support.doubles import FakeClock

from collapsed_forwarding import CollapsedForwardingProxy
from collapsed_forwarding.hits import FOLD_EVERY
from collapsed_forwarding.policy import POLICIES, LruPolicy
from collapsed_forwarding.store import Store, shallow_size


def sized(key: Hashable, value: object) -> int:
    return len(str(key)) + len(str(value))


def test_max_bytes_evicts_until_the_bytes_bound_holds() -> None:
    proxy = CollapsedForwardingProxy(lambda key: "x" * 10, max_bytes=30, size_of=sized, clock=FakeClock(),
                                     policy="lru")
    for key in ("a", "b"):
        proxy.get(key)
    assert proxy.stats()["bytes"] == 22 and proxy.stats()["entries"] == 2
    proxy.get("c")  # 33 bytes: the least recently used goes
    stats = proxy.stats()
    assert (stats["entries"], stats["bytes"], stats["evictions"]) == (2, 22, 1)
    assert not proxy.is_cached("a") and proxy.is_cached("b") and proxy.is_cached("c")


def test_the_entry_bound_still_holds_under_a_bytes_bound() -> None:
    proxy = CollapsedForwardingProxy(lambda key: "v", max_entries=2, max_bytes=10**9, size_of=sized,
                                     clock=FakeClock(), policy="lru")
    for key in ("a", "b", "c"):
        proxy.get(key)
    assert proxy.stats()["entries"] == 2 and not proxy.is_cached("a")


def test_a_value_too_big_to_keep_is_still_answered() -> None:
    calls: list[str] = []

    def backend(key: str) -> str:
        calls.append(key)
        return "y" * 100

    proxy = CollapsedForwardingProxy(backend, max_bytes=50, size_of=sized, clock=FakeClock())
    assert proxy.get("big") == "y" * 100  # the request gets its value; the store does not keep it
    assert not proxy.is_cached("big") and proxy.stats()["bytes"] == 0
    assert proxy.get("big") == "y" * 100 and calls == ["big", "big"]


def test_a_replaced_value_is_weighed_again() -> None:
    values = {"k": "short"}
    proxy = CollapsedForwardingProxy(lambda key: values[key], max_bytes=1000, size_of=sized, clock=FakeClock())
    proxy.get("k")
    values["k"] = "a much longer value"
    proxy.fetch_and_cache("k")
    assert proxy.stats()["bytes"] == sized("k", "a much longer value")
    proxy.invalidate("k")
    assert proxy.stats()["bytes"] == 0


def test_the_default_size_is_sys_getsizeof_of_key_and_value() -> None:
    proxy = CollapsedForwardingProxy(lambda key: "value-" + key, clock=FakeClock())
    proxy.get("k")
    assert proxy.stats()["bytes"] == shallow_size("k", "value-k") > 0


class Named(str):
    def __sizeof__(self) -> int:
        return 7


@pytest.mark.parametrize("key", ["k", "", "clé", "日本", Named("n"), (1, "a"), 12, b"k"])
@pytest.mark.parametrize("value", ["value", "", "é" * 100, "日本", "\U0001f600", Named("v"), b"bytes", 3.5,
                                   (1, 2), [1, 2], {"a": 1}, None, int])
def test_the_default_size_is_sys_getsizeof_of_any_key_and_value(key: Hashable, value: object) -> None:
    proxy = CollapsedForwardingProxy(lambda key: value, clock=FakeClock())
    proxy.get(key)
    assert proxy.stats()["bytes"] == sys.getsizeof(key) + sys.getsizeof(value)


@pytest.mark.parametrize("policy", ["lru", LruPolicy, None])
def test_the_policy_option_takes_a_name_or_a_factory(policy: object) -> None:
    proxy = CollapsedForwardingProxy(lambda key: "v", max_entries=2, policy=policy, clock=FakeClock())  # type: ignore[arg-type]
    proxy.get("a")
    proxy.get("b")
    proxy.get("a")  # a hit, folded into the policy before the next fill
    proxy.get("c")
    if policy is not None:  # plain LRU: b was used least recently
        assert proxy.is_cached("a") and not proxy.is_cached("b")
    assert proxy.stats()["entries"] == 2


def test_a_factory_policy_is_told_of_fills_hits_and_drops() -> None:
    told: list[tuple[str, object]] = []

    class Spy(LruPolicy):
        def admit(self, key: Hashable, weight: int) -> list[Hashable]:
            told.append(("admit", key))
            return super().admit(key, weight)

        def touch_many(self, keys: list[Hashable]) -> None:
            told.append(("touch", list(keys)))
            super().touch_many(keys)

        def discard(self, key: Hashable) -> None:
            told.append(("discard", key))
            super().discard(key)

    proxy = CollapsedForwardingProxy(lambda key: "v", policy=Spy, clock=FakeClock())
    proxy.get("a")
    proxy.get("a")  # a lock-free hit, logged
    proxy.stats()  # folds the log
    proxy.invalidate("a")
    assert told == [("admit", "a"), ("touch", ["a"]), ("discard", "a")]


def test_hits_alone_are_folded_in_each_time_the_clock_passes_fold_every() -> None:
    folds: list[list[Hashable]] = []

    class Spy(LruPolicy):
        def touch_many(self, keys: list[Hashable]) -> None:
            folds.append(list(keys))
            super().touch_many(keys)

    clock = FakeClock()
    proxy = CollapsedForwardingProxy(lambda key: "v", ttl=60, policy=Spy, clock=clock)
    proxy.get("a")  # the miss
    for _ in range(1000):  # the first hit folds the log in; the others, within FOLD_EVERY, wait in it
        proxy.get("a")
    assert folds == [["a"]]
    clock.advance(FOLD_EVERY)
    proxy.get("a")  # no miss, no stats: a hit alone folds the 1,000 in
    assert folds == [["a"], ["a"]] and proxy.stats()["hits"] == 1001


@pytest.mark.parametrize("option, value, error", [("policy", "fifo-ish", ValueError), ("policy", 3, TypeError),
                                                  ("max_bytes", 0, ValueError), ("max_bytes", 1.5, TypeError),
                                                  ("size_of", 3, TypeError)])
def test_bad_store_options_are_refused(option: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        CollapsedForwardingProxy(lambda key: "v", **{option: value})  # type: ignore[arg-type]


def test_hit_answers_a_fresh_entry_without_the_lock_and_counts_it() -> None:
    clock = FakeClock()
    proxy = CollapsedForwardingProxy(lambda key: "v", ttl=10, clock=clock)
    assert proxy.hit("k") is None and proxy.stats()["requests"] == 0  # nothing cached, nothing counted
    proxy.get("k")
    with proxy.lock:  # held: a hit must not need it
        answer = proxy.hit("k")
    assert answer is not None and (answer.value, answer.cache, proxy.ttl_left(answer)) == ("v", "hit", 10)
    assert (proxy.stats()["hits"], proxy.key_stats("k")["hits"]) == (1, 1)
    clock.advance(11)
    assert proxy.hit("k") is None


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("weighed", [False, True])
def test_keys_told_to_the_policy_in_batches_are_kept_and_evicted_as_if_told_one_at_a_time(
        policy: str, weighed: bool) -> None:
    """The store tells its policy of new keys TELL_EVERY at a time; a policy told of each
    at once, with the same hits and drops in the same order, must hold the same keys throughout.
    Many small stores, so that many fill up, and are first over a bound, within a batch."""
    rng = random.Random(15)
    for _ in range(200):
        max_entries = rng.randrange(2, 80)
        max_bytes = rng.randrange(60, 2_000) if weighed else None
        store = Store(max_entries, max_bytes, lambda key, value: len(value), policy)
        alone = POLICIES[policy](max_entries, max_bytes)
        held: set[Hashable] = set()
        for step in range(300):
            key = int(rng.paretovariate(0.8)) % 200 if step % 3 else 200 + step  # popular keys, and a scan
            action = rng.random()
            if key in store.entries and action < 0.5:
                store.touch_many([key])
                alone.touch_many([key])
            elif key in store.entries and action < 0.55:
                store.pop(key)
                alone.discard(key)
                held.discard(key)
            else:
                value = "v" * rng.randrange(1, 60)
                store.put(key, (value, math.inf, 0.0))
                victims = alone.resize(key, len(value)) if key in held else alone.admit(key, len(value))
                held.add(key)
                held.difference_update(victims)  # (the key itself among them, if not admitted)
            assert set(store.entries) == held, f"step {step}"
        assert store.bytes_held() == alone.weight()
