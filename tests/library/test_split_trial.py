"""The split trial: its sample, its periods, and the split it hands the policy."""

from __future__ import annotations

import random
from collections.abc import Hashable

import pytest

from collapsed_forwarding.split_trial import _MOST_SAMPLED, GRID, SHADOW_ENTRIES, SplitTrial, better_step, nearest_step
from collapsed_forwarding.tinylfu import AdaptiveTinyLfuPolicy


class FixedHits:
    """A copy that hits every request once its split is at least `from_share`, and holds nothing else."""

    def __init__(self, from_share: float) -> None:
        self.from_share = from_share
        self.share = -1.0
        self.admitted: list[Hashable] = []

    def __contains__(self, key: object) -> bool:
        return self.share >= self.from_share

    def admit(self, key: Hashable, weight: int) -> list[Hashable]:
        self.admitted.append(key)
        return []

    def touch_many(self, keys: list[Hashable]) -> None:
        pass

    def set_window_share(self, share: float) -> None:
        self.share = share


def test_a_step_goes_toward_the_neighbour_that_hit_more_and_ties_stay() -> None:
    assert better_step(4, [10, 5, 7]) == 3
    assert better_step(4, [7, 5, 10]) == 5
    assert better_step(4, [5, 5, 5]) == 4
    assert better_step(4, [5, 9, 5]) == 4
    assert better_step(4, [8, 5, 8]) == 3  # (a tie of the two sides: the smaller window, the filter's side)
    assert better_step(0, [9, 5, 5]) == 0
    assert better_step(len(GRID) - 1, [5, 5, 9]) == len(GRID) - 1


def test_the_nearest_step() -> None:
    assert nearest_step(0.0) == 0
    assert nearest_step(0.011) == 1
    assert nearest_step(0.4) == GRID.index(0.45)
    assert nearest_step(1.0) == len(GRID) - 1


@pytest.mark.parametrize("capacity", [100, 500, 5_000, 100_000])
def test_the_sample_fills_the_copies_as_the_keys_fill_the_cache(capacity: int) -> None:
    """Each copy holds as many of the sampled keys as the cache holds of all of them: SHADOW_ENTRIES, or a
    sixteenth of a small cache."""
    trial = SplitTrial(capacity, 0.01, FixedHits)
    keys = range(1_000_000)
    expected = max(1, min(SHADOW_ENTRIES, int(capacity * _MOST_SAMPLED))) / capacity * len(keys)
    assert 0.9 * expected < len(trial.sample(keys)) < 1.1 * expected
    assert all(trial.in_sample(key) for key in trial.sample(keys[:5000]))


def test_the_copies_are_made_at_the_first_sampled_request() -> None:
    made: list[int] = []

    def make(entries: int) -> FixedHits:
        made.append(entries)
        return FixedHits(2.0)

    trial = SplitTrial(100_000, 0.01, make)
    assert made == []
    trial.see("key", 0.01)
    assert made == [SHADOW_ENTRIES] * 3
    trial.resize(400)
    trial.see("key", 0.01)
    assert made == [SHADOW_ENTRIES] * 3 + [25] * 3


def test_at_a_period_end_the_split_moves_to_the_neighbour_that_hit_more() -> None:
    copies: list[FixedHits] = []

    def make(entries: int) -> FixedHits:
        copies.append(FixedHits(GRID[5]))  # the higher copy hits; the lower and middle miss
        return copies[-1]

    trial = SplitTrial(160, 0.1, make)  # copies of 10 entries: a period of 10 sampled requests
    assert [trial.see(n, 0.1) for n in range(9)] == [None] * 9
    assert [copy.share for copy in copies] == [GRID[3], GRID[4], GRID[5]]
    assert trial.see(9, 0.1) == GRID[5]
    assert [copy.share for copy in copies] == [GRID[4], GRID[5], GRID[6]]
    assert copies[0].admitted == list(range(10))


def test_with_no_better_neighbour_the_copies_follow_where_the_ghosts_moved_the_split() -> None:
    copies: list[FixedHits] = []

    def make(entries: int) -> FixedHits:
        copies.append(FixedHits(2.0))  # none hits
        return copies[-1]

    trial = SplitTrial(160, 0.1, make)
    assert [trial.see(n, 0.31) for n in range(10)] == [None] * 10
    assert [copy.share for copy in copies] == [GRID[5], GRID[6], GRID[7]]  # around 0.3


def test_a_copy_keeps_the_split_it_is_given() -> None:
    """Ghost hits move an adaptive policy's split; a copy's stays where the trial put it."""
    rng = random.Random(3)
    keys = [rng.randrange(400) for _ in range(20_000)]
    adaptive, copy = AdaptiveTinyLfuPolicy(100), AdaptiveTinyLfuPolicy(100, adaptive=False)
    copy.set_window_share(0.3)
    for policy in (adaptive, copy):
        for key in keys:
            if key in policy:
                policy.touch_many([key])
            else:
                policy.admit(key, 1)
    assert copy._window_share == 0.3
    assert copy._trial is None
    assert adaptive._window_share != 0.01


def test_a_policy_tells_its_copies_only_of_the_sample() -> None:
    rng = random.Random(5)
    keys = [int(rng.paretovariate(0.7)) for _ in range(50_000)]
    policy = AdaptiveTinyLfuPolicy(400)
    for key in keys:
        if key in policy:
            policy.touch_many([key])
        else:
            policy.admit(key, 1)
    trial = policy._trial
    assert trial is not None
    assert len(trial._shadows) == 3
    for copy in trial._shadows:
        assert isinstance(copy, AdaptiveTinyLfuPolicy)
        held = list(copy._where)
        assert 0 < len(held) <= 25  # (a sixteenth of the cache)
        assert all(trial.in_sample(key) for key in held)
