"""The default policy with its split frozen at FROZEN_SPLIT (the window's share; 0.01 unless set), for
`python3 bench/variants.py bench/policy_variants/frozen_split.py`: which fixed split a trace wants.

    FROZEN_SPLIT=0.3 python3 bench/variants.py bench/policy_variants/frozen_split.py shifting

The window's own ARC (its protected part) is frozen too, at none: the ghosts move nothing, and there is no
split trial.
"""

from __future__ import annotations

import os

from collapsed_forwarding import tinylfu


class AdaptiveTinyLfuPolicy(tinylfu.AdaptiveTinyLfuPolicy):
    def __init__(self, max_entries: int, max_weight: int | None = None) -> None:
        super().__init__(max_entries, max_weight, adaptive=False)  # (no split trial, no ghost moves)
        self._window_share = float(os.environ.get("FROZEN_SPLIT", "0.01"))

    def _learn(self, hashed: int) -> None:
        pass
