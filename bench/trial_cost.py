"""What the split trial (collapsed_forwarding/split_trial.py) costs a full cache, in one process.

    python3 bench/trial_cost.py [--turns 40] [SIZE ...]

Two proxies of SIZE entries (500, 1,000, 5,000 and 100,000 unless named), filled with twice that many keys,
one of them with its policy's trial taken out (its split then stays put; the ghosts' moves that go with the
trial cost a few ns). They take turns, who goes first alternating, at two loads:
* a miss that evicts: 5,000 new keys a turn, every get a miss in a full cache;
* a Zipf mix: 40,000 gets of keys drawn from a Pareto(0.8) law (popular keys hit, the tail misses and evicts).
It prints ns per get with and without the trial, and the ratio turn by turn as a median with its min–max.
The costs part's measures do not see the trial at all: their caches never evict, and copies start only
once a cache evicts. Not a part of run.py: it writes nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from common import med, med_range, ratios

from proxy import CollapsedForwardingProxy

Get = Callable[[str], Any]


def full_proxy(size: int, trial: bool) -> Get:
    proxy = CollapsedForwardingProxy(lambda key: "value-" + key, 3600, max_entries=size)
    if not trial:
        proxy.store.policy._trial = None  # type: ignore[attr-defined]
    for n in range(2 * size):
        proxy.get(f"fill-{n}")
    return proxy.get


def ns_per_get(get: Get, keys: Sequence[str]) -> float:
    began = time.perf_counter()
    for key in keys:
        get(key)
    return (time.perf_counter() - began) / len(keys) * 1e9


def measure(size: int, turns: int) -> dict[str, dict[str, list[float]]]:
    """ns per get of each load, with and without the trial, turn by turn."""
    gets = {"with": full_proxy(size, True), "without": full_proxy(size, False)}
    rng = random.Random(1)
    mixes = [[f"zipf-{int(rng.paretovariate(0.8))}" for _ in range(40_000)] for _ in range(4)]
    out: dict[str, dict[str, list[float]]] = {load: {"with": [], "without": []} for load in ("miss", "zipf")}
    for turn in range(turns):
        new_keys = [f"new-{turn}-{n}" for n in range(5_000)]
        for name in ("with", "without") if turn % 2 else ("without", "with"):
            out["miss"][name].append(ns_per_get(gets[name], new_keys))
            out["zipf"][name].append(ns_per_get(gets[name], mixes[turn % len(mixes)]))
    return out


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[500, 1_000, 5_000, 100_000])
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args(argv)
    print("| entries | load | ns a get, with the trial | without | with / without, median (min–max) |")
    print("|---:|---|---:|---:|---|")
    for size in args.sizes:
        for load, runs in measure(size, args.turns).items():
            ratio = ratios(runs["with"], runs["without"])
            name = "a miss that evicts" if load == "miss" else "Zipf 0.8 mix"
            print(f"| {size:,} | {name} | {med(runs['with']):,.0f} | {med(runs['without']):,.0f} | "
                  f"{med_range(ratio, 2)} |", flush=True)
    print(f"({args.turns} turns a row)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
