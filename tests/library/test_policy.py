"""The eviction policies: bounds, victims, bookkeeping, determinism."""

from __future__ import annotations

import gc
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collapsed_forwarding.policy import DEFAULT_POLICY, POLICIES
from collapsed_forwarding.tinylfu import PROBATION, PROTECTED, WINDOW, WINDOW_PROTECTED, AdaptiveTinyLfuPolicy

NAMES = sorted(POLICIES)
operations = st.lists(st.tuples(st.sampled_from(["admit", "touch", "discard", "resize"]),
                                st.integers(0, 30), st.integers(1, 9)), max_size=300)


def run(policy_name: str, ops: list[tuple[str, int, int]], max_entries: int, max_weight: int | None) -> None:
    """Drives a policy against a model of what it holds, checking every promise on the way.
    admit only for keys not held, resize only for held ones: the store's contract."""
    policy = POLICIES[policy_name](max_entries, max_weight)
    held: dict[int, int] = {}
    for op, key, weight in ops:
        if op == "touch":
            policy.touch_many([key, key + 1])
            continue
        if op == "discard":
            policy.discard(key)
            held.pop(key, None)
        else:
            if op == "resize" and key not in held:
                continue
            victims = list(policy.resize(key, weight) if key in held else policy.admit(key, weight))
            held[key] = weight
            assert len(set(victims)) == len(victims)
            for victim in victims:
                assert victim in held, "a victim is a key the policy held"
                del held[victim]
        assert len(held) <= max_entries
        assert policy.weight() == sum(held.values())
        assert set(getattr(policy, "_hit_in_window", ())) <= set(held), "marks only on keys held"
        if max_weight is not None:
            assert policy.weight() <= max_weight


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150, deadline=None)
@given(ops=operations, max_entries=st.integers(1, 12), max_weight=st.one_of(st.none(), st.integers(1, 40)))
def test_bounds_and_victims_hold_whatever_the_calls(name: str, ops: list[tuple[str, int, int]], max_entries: int,
                                                     max_weight: int | None) -> None:
    run(name, ops, max_entries, max_weight)


def test_the_default_is_the_adaptive_tinylfu() -> None:
    assert POLICIES[DEFAULT_POLICY] is AdaptiveTinyLfuPolicy


def test_a_key_heavier_than_the_capacity_is_turned_away_alone() -> None:
    """LRU would flush everything older first; the admission filter turns the heavy key away instead."""
    policy = AdaptiveTinyLfuPolicy(10, 100)
    assert list(policy.admit("small", 5)) == []
    assert "big" in list(policy.admit("big", 101))
    assert policy.weight() == 5


@pytest.mark.parametrize("name", NAMES)
def test_discard_and_resize_keep_the_weight(name: str) -> None:
    policy = POLICIES[name](10, None)
    policy.admit("a", 3)
    policy.admit("b", 4)
    policy.resize("a", 10)
    assert policy.weight() == 14
    policy.discard("b")
    policy.discard("b")  # twice, or a key never held, changes nothing
    policy.discard("never")
    assert policy.weight() == 10


def replay(keys: list[int], size: int) -> list[list[int]]:
    policy = AdaptiveTinyLfuPolicy(size)
    held: set[int] = set()
    evictions = []
    for key in keys:
        if key in held:
            policy.touch_many([key])
        else:
            victims = list(policy.admit(key, 1))
            held.add(key)
            held.difference_update(victims)
            evictions.append(victims)
    return evictions


def test_the_same_requests_evict_the_same_keys() -> None:
    rng = random.Random(7)
    keys = [int(rng.paretovariate(1.0)) for _ in range(20_000)]
    assert replay(keys, 50) == replay(keys, 50)


def test_a_loop_larger_than_the_cache_keeps_hitting_what_it_holds() -> None:
    """LRU evicts each key just before it comes round again; the frequency filter keeps a stable part."""
    keys = list(range(150)) * 40
    evictions = replay(keys, 100)
    hits = len(keys) - len(evictions)
    assert hits > 0.5 * len(keys)


def test_a_scan_does_not_flush_the_popular_keys() -> None:
    policy = AdaptiveTinyLfuPolicy(100)
    held: set[int] = set()
    for _ in range(20):
        for key in range(50):
            if key in held:
                policy.touch_many([key])
            else:
                held.add(key)
                held.difference_update(policy.admit(key, 1))
    for key in range(1000, 3000):  # each seen once
        held.add(key)
        held.difference_update(policy.admit(key, 1))
    assert len(set(range(50)) & held) >= 48  # one may lose a tie at the window's edge; LRU would keep none


def test_while_the_cache_fills_new_keys_go_straight_into_probation() -> None:
    """With nothing to evict, no key competes with another: a new key skips the window, so a hit
    before the cache is full already protects it. The first key over the bound enters the window."""
    policy = AdaptiveTinyLfuPolicy(100)
    for key in range(100):
        assert policy.admit(key, 1) == []
    assert [len(queue) for queue in policy._queues] == [0, 100, 0, 0]
    policy.touch_many([7])
    assert policy._where[7] & 3 == PROTECTED
    assert policy.admit(100, 1) == [0]  # probation's oldest goes: no candidate yet to compare it with
    assert policy._where[100] & 3 == WINDOW and policy._where[1] & 3 == PROBATION


def full_of_evictions(capacity: int) -> tuple[AdaptiveTinyLfuPolicy, set[int]]:
    """A policy that has filled and evicted (it has ghosts), and the keys it holds."""
    policy, held = AdaptiveTinyLfuPolicy(capacity), set()
    for key in range(3 * capacity):
        held.add(key)
        held.difference_update(policy.admit(key, 1))
    return policy, held


def test_a_hit_in_the_window_moves_the_key_to_the_windows_protected_part_marked_till_the_main_protects_it() -> None:
    policy, _ = full_of_evictions(100)
    policy._window_share, policy._window_protected = 0.5, 0.5  # a window of 50, 25 of them protected
    policy.admit(1000, 1)
    assert policy._where[1000] & 3 == WINDOW
    policy.touch_many([1000])
    assert policy._where[1000] & 3 == WINDOW_PROTECTED and 1000 in policy._hit_in_window
    policy._window_protected = 0.0  # its share gone: back to the window's LRU part, still marked
    policy._demote_window()
    assert policy._where[1000] & 3 == WINDOW and 1000 in policy._hit_in_window
    policy._move(1000, PROBATION)  # (as the window's spill moves it, and it won its duel)
    assert 1000 in policy._hit_in_window
    policy.touch_many([1000])
    assert policy._where[1000] & 3 == PROTECTED and 1000 not in policy._hit_in_window  # the window can't lose it now


@pytest.mark.parametrize("protected_share", [0.0, 0.8])
def test_keys_hit_in_the_window_outlast_a_stream_of_keys_seen_once(protected_share: float) -> None:
    """ARC's T2 inside the window: with a protected part, keys seen twice there stay while a stream of
    new keys passes through; with none, the window is plain LRU and the stream flushes them."""
    policy, held = full_of_evictions(100)
    policy._window_share, policy._window_protected = 1.0, protected_share
    hot = range(5000, 5040)
    for key in hot:
        held.add(key)
        held.difference_update(policy.admit(key, 1))
    policy.touch_many(list(hot))
    for key in range(10_000, 10_300):  # each seen once: no ghost hit, so neither share moves
        held.add(key)
        held.difference_update(policy.admit(key, 1))
    kept = len(set(hot) & held)
    assert kept == (40 if protected_share else 0)


def test_the_window_splits_itself_by_what_it_lost() -> None:
    """A miss on a key the window lost after a hit there grows its protected part by one of its entries;
    on one it lost unhit, shrinks it."""
    policy, _ = full_of_evictions(100)
    policy._window_share = 0.5  # 50 entries
    policy._window_ghost.add(hash(7000), policy._clock << 1 | 1)
    policy.admit(7000, 1)
    assert policy._window_protected == pytest.approx(1 / 50)
    grown, entries = policy._window_protected, policy._window_share * 100  # (the window grew too)
    policy._window_ghost.add(hash(7001), policy._clock << 1)
    policy.admit(7001, 1)
    assert policy._window_protected == pytest.approx(grown - 1 / entries)


def test_its_state_is_invisible_to_the_garbage_collector() -> None:
    policy = AdaptiveTinyLfuPolicy(1000)
    for key in range(2000):
        policy.admit(f"key{key}", 1)
        policy.touch_many([f"key{key // 2}"])
    gc.collect()
    assert not any(gc.is_tracked(container) for container in (policy._where, policy._weights, policy._hit_in_window))
    assert not any(gc.is_tracked(queue._keys) for queue in policy._queues)
    assert not gc.is_tracked(policy._window_ghost._seqs) and not gc.is_tracked(policy._main_ghost._times)


def test_a_byte_bound_of_unit_weights_evicts_as_the_same_entry_bound() -> None:
    """Once a byte bound binds first, the policy sizes its learning by the entries it holds, not by
    max_entries: with every weight 1, its victims are those of an entry bound of the same size."""
    rng = random.Random(7)
    keys = [int(rng.paretovariate(0.8)) if rng.random() < 0.8 else rng.randrange(10**6) for _ in range(30_000)]
    keys += list(range(2 * 10**6, 2 * 10**6 + 300)) * 20  # then a loop larger than the cache
    by_entries, by_bytes = AdaptiveTinyLfuPolicy(200), AdaptiveTinyLfuPolicy(100_000, max_weight=200)
    held: set[int] = set()
    for key in keys:
        if key in held:
            by_entries.touch_many([key])
            by_bytes.touch_many([key])
            continue
        victims = by_entries.admit(key, 1)
        assert by_bytes.admit(key, 1) == victims
        held.add(key)
        held.difference_update(victims)
    assert len(held) == 200


def test_a_shrinking_window_turns_away_the_keys_it_spills_that_were_seen_once() -> None:
    """A window that shrinks spills many keys for one admission: those seen once lately go (TinyLFU's
    doorkeeper), where before they entered the main area unopposed; those seen twice stay."""
    policy = AdaptiveTinyLfuPolicy(100, adaptive=False)
    policy.set_window_share(0.5)
    for key in range(300):
        policy.admit(key, 1)
    in_window = [key for key in range(300) if key in policy and policy._where[key] & 3 == WINDOW]
    assert len(in_window) == 50
    seen_twice = in_window[:10]  # the oldest, spilled first
    policy._sketch.add_many(seen_twice)
    policy.set_window_share(0.01)
    victims = policy.admit(1000, 1)
    assert set(in_window[10:]) <= set(victims)
    assert all(key in policy for key in seen_twice)
    assert len(policy) == 60  # 100, one admitted and one evicted for it, and forty turned away
