"""The frequency sketch: what it counts, how counts fade, and how its table grows with the cache."""

from __future__ import annotations

import tracemalloc

from collapsed_forwarding.sketch import _CAP, _MIN_WIDTH, _ROWS, FrequencySketch
from collapsed_forwarding.tinylfu import AdaptiveTinyLfuPolicy
from proxy import CollapsedForwardingProxy


def counted(sketch: FrequencySketch, times: dict[str, int]) -> None:
    for key, count in times.items():
        sketch.add_many([key] * count)


def test_it_counts_each_key_up_to_its_cap() -> None:
    sketch = FrequencySketch(1000)
    times = {f"key{n}": n % 20 for n in range(200)}
    counted(sketch, times)
    # a count-min sketch may overcount a key that shares counters, never undercount; 200 keys in a
    # table for 1,000 share none in practice
    assert [sketch.frequency(key) for key in times] == [min(count, _CAP) for count in times.values()]


def test_counts_halve_once_its_sample_of_additions_is_taken() -> None:
    sketch = FrequencySketch(16)  # a sample of 160 additions
    sketch.add_many(["hot"] * 12)
    sketch.add_many(f"other{n}" for n in range(sketch.sample_size - 12 - 1))
    assert sketch.frequency("hot") == 12
    sketch.add("other-last")
    assert sketch.frequency("hot") == 6


def test_growing_keeps_half_of_every_keys_count() -> None:
    sketch = FrequencySketch(200_000)
    times = {f"key{n}": n % 16 for n in range(3000)}
    counted(sketch, times)
    before = {key: sketch.frequency(key) for key in times}
    sketch.grow(100_000)
    assert len(sketch._table) > _ROWS * _MIN_WIDTH
    assert {key: sketch.frequency(key) for key in times} == {key: count >> 1 for key, count in before.items()}


def test_it_never_grows_past_the_width_its_bound_asks_for() -> None:
    sketch = FrequencySketch(50_000)
    sketch.grow(50_000)
    bounded = len(sketch._table)
    sketch.grow(10**9)
    assert len(sketch._table) == bounded > _ROWS * _MIN_WIDTH
    small = FrequencySketch(1000)
    small.grow(10**9)
    assert len(small._table) == _ROWS * _MIN_WIDTH


def test_a_policy_grows_its_sketch_as_it_fills() -> None:
    policy = AdaptiveTinyLfuPolicy(100_000)
    assert len(policy._sketch._table) == _ROWS * _MIN_WIDTH
    keys = [f"key{n}" for n in range(20_000)]
    for start in range(0, len(keys), 32):
        policy.admit_many(keys[start:start + 32], [1] * len(keys[start:start + 32]))
    width = len(policy._sketch._table) // _ROWS
    assert 4 * len(keys) <= width < 8 * len(keys)


def test_a_byte_bound_that_binds_first_sizes_the_sketch_by_the_entries_held() -> None:
    """Its sample between halvings, and its table, are for the 1,000 entries the bytes hold, not for
    the 100,000 the entry bound allows."""
    policy = AdaptiveTinyLfuPolicy(100_000, max_weight=1000)
    assert policy._sketch.sample_size == FrequencySketch(100_000).sample_size
    for n in range(1001):
        policy.admit(f"key{n}", 1)
    assert len(policy) == 1000
    assert policy._sketch.sample_size == FrequencySketch(1000).sample_size < FrequencySketch(100_000).sample_size
    assert len(policy._sketch._table) == _ROWS * _MIN_WIDTH


def test_an_idle_proxy_allowed_many_entries_holds_little() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        proxy = CollapsedForwardingProxy(lambda key: key, max_entries=1_000_000)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert proxy.get("a") == "a"
    assert held < 256 * 1024  # (the sketch for a full million entries is 4 MiB)
