"""Try a variant of the eviction policy on every cell of the hitratio part, before touching the library.

    python3 bench/variants.py FILE [TRACE ...]

FILE is a Python file that defines either `AdaptiveTinyLfuPolicy(max_entries, max_weight)` (a subclass of
`collapsed_forwarding.tinylfu`'s, as in bench/policy_variants/) or `replay(keys, size) -> float`,
the percent of requests that hit. The variant is replayed over the hitratio part's traces and sizes (the tuned
ones and the held-out ones; or only the TRACEs named), two processes at a time, against libCacheSim's figures
saved in results/hitratio.json. It prints every cell, marks those outside the goal, and sums ours minus the best
of the five for each group: a change that wins a cell by losing points in sum is a worse policy on traces we do
not have. Not a part of run.py: it writes nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType

from common import BENCH, load
from hitratio import FIVE, HELD_OUT, outside_goal, replay_policy, trace


def variant(path: str) -> ModuleType:
    """The module at `path`; its folder goes on the import path, so a variant may import its neighbours."""
    if str(Path(path).parent) not in sys.path:
        sys.path.insert(0, str(Path(path).parent))
    spec = importlib.util.spec_from_file_location("variant", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def replay(path: str, name: str, size: int) -> float:
    module, keys = variant(path), trace(name)
    if hasattr(module, "replay"):
        return float(module.replay(keys, size))
    return replay_policy(keys, size, module.AdaptiveTinyLfuPolicy)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    path, only = str(Path(argv[0]).resolve()), set(argv[1:])
    reference = load(BENCH, "hitratio")["reference"]
    cells = [(key, key.split()[0], int(key.split()[1])) for key in reference if not only or key.split()[0] in only]
    with ProcessPoolExecutor(2) as pool:
        ours = list(pool.map(replay, [path] * len(cells), [name for _, name, _ in cells], [s for _, _, s in cells]))
    totals: dict[str, list[float]] = {}
    for (key, name, _), mine in zip(cells, ours, strict=True):
        ref = reference[key]
        best = max(ref[p] for p in FIVE)
        out = outside_goal(mine, ref)
        group = "held-out" if name in HELD_OUT else "tuned"
        total = totals.setdefault(group, [0, 0.0, 0])
        total[0] += out
        total[1] += mine - best
        total[2] += 1
        print(f"{group:8} {key:20} ours {mine:6.2f}  best {best:6.2f}  {mine - best:+6.2f}  "
              f"vs LRU {mine - ref['LRU']:+6.2f}  {'OUT' if out else ''}")
    for group, (missed, gap, count) in totals.items():
        print(f"{group}: {missed:.0f} of {count:.0f} cells outside the goal; ours minus the best, summed: {gap:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
