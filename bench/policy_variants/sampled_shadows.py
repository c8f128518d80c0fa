"""Miniature simulations choose the split (Waldspurger et al., USENIX ATC 2017): evidence for a later change.

The policy's split is set from outside. Three small shadow policies see only a hashed sample of the keys:
SHADOW_ENTRIES (256 unless set) entries each, so that each sees that many out of every capacity's worth of
distinct keys. Their splits are one step apart on GRID, around the real one. After each period of
SHADOW_PERIOD (2 unless set) times SHADOW_ENTRIES sampled requests, the real policy and the shadows move a
step toward whichever neighbour hit more. ARC inside the window stays, and the ghosts no longer move the split.

    SHADOW_ENTRIES=256 SHADOW_PERIOD=1 python3 bench/variants.py bench/policy_variants/sampled_shadows.py

Cost is ignored here. A cache of 500 entries samples half its keys into three shadows; one of 100,000 entries
samples a quarter of a percent.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence

from shadow_split import SplitSetFromOutside, set_splits, touch_or_admit

from collapsed_forwarding.split_trial import GRID, better_step

_SALT = 0x5BD1E995  # the sample is chosen by a hash of the key, mixed: hash(int) is the int itself


def replay(keys: Sequence[Hashable], size: int) -> float:
    """Percent of requests the real policy hit."""
    shadow_entries = min(size, int(os.environ.get("SHADOW_ENTRIES", "256")))
    period = max(int(float(os.environ.get("SHADOW_PERIOD", "2")) * shadow_entries), 1)
    threshold = shadow_entries * (1 << 32) // size
    real, shadows = SplitSetFromOutside(size), [SplitSetFromOutside(shadow_entries) for _ in range(3)]
    step, sampled, hits, counted = 1, 0, [0, 0, 0], 0
    real._window_share = GRID[step]
    set_splits(shadows, step)
    for key in keys:
        counted += touch_or_admit(real, key)
        if hash((key, _SALT)) & 0xFFFFFFFF < threshold:
            for i, shadow in enumerate(shadows):
                hits[i] += touch_or_admit(shadow, key)
            sampled += 1
            if sampled == period:
                step = better_step(step, hits)
                real._window_share = GRID[step]
                set_splits(shadows, step)
                sampled, hits = 0, [0, 0, 0]
    return 100.0 * counted / len(keys)

