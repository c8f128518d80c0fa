"""An offline test of a direct hit-ratio signal for the split, cost ignored: three full policies side by side,
their splits one step apart on GRID; after each period (SHADOW_PERIOD times the capacity in requests; 2 unless
set) the middle one, whose hits are counted, moves to whichever neighbour hit more. ARC inside the window
stays; the ghosts no longer move the split.

    SHADOW_PERIOD=1 python3 bench/variants.py bench/policy_variants/shadow_split.py
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence

from collapsed_forwarding import tinylfu
from collapsed_forwarding.split_trial import GRID, better_step


class SplitSetFromOutside(tinylfu.AdaptiveTinyLfuPolicy):
    """The policy with no adaptation of its split of its own (no ghost moves, no split trial: the library's
    copies for its trial); ARC inside the window stays, as the default does it."""

    def __init__(self, max_entries: int, max_weight: int | None = None) -> None:
        super().__init__(max_entries, max_weight, adaptive=False)


def replay(keys: Sequence[Hashable], size: int) -> float:
    """Percent of requests the middle policy hit."""
    policies = [SplitSetFromOutside(size) for _ in range(3)]
    period = max(int(float(os.environ.get("SHADOW_PERIOD", "2")) * size), 1)
    step, counted = 1, 0
    for start in range(0, len(keys), period):
        set_splits(policies, step)
        hits = [sum(touch_or_admit(policy, key) for key in keys[start:start + period]) for policy in policies]
        counted += hits[1]
        step = better_step(step, hits)
    return 100.0 * counted / len(keys)


def set_splits(policies: Sequence[SplitSetFromOutside], step: int) -> None:
    """The three policies' splits: GRID's steps around `step`, the outer ones held to the grid's ends."""
    for policy, at in zip(policies, (step - 1, step, step + 1), strict=True):
        policy._window_share = GRID[max(0, min(len(GRID) - 1, at))]


def touch_or_admit(policy: SplitSetFromOutside, key: Hashable) -> int:
    """1 if `key` was held (a hit), else 0, having told `policy` of the request either way."""
    if key in policy:
        policy.touch_many([key])
        return 1
    policy.admit(key, 1)
    return 0
