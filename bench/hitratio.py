"""The hitratio part (issue 15): the hit ratio of the store's default policy against libCacheSim's.

On the cache2k traces in bench/traces/ (CC BY 4.0, headissue GmbH, Jens Wilke; the orm traces cut to their
first 1,000,000 requests) and synthetic ones made from a fixed seed (Zipf 0.7 and 1.0, a loop larger than every
cache, Zipf cut by scans), against libCacheSim 0.3.5's LRU, ARC, LIRS, W-TinyLFU, S3-FIFO and Belady (the
optimum) on the same keys, every request counted as libCacheSim counts them. The policy is replayed directly
(a hit is a `touch_many`, a miss an `admit`); the store, which tells it of new keys in batches, makes the same
decisions (tests/library/test_store.py). Goal: on every trace and size, within 1 point of the best of the five,
and never more than 1 point below LRU. libCacheSim's figures are kept in results/hitratio.json and reused, so a
run without libcachesim still makes the whole table; --reference recomputes them.
"""

from __future__ import annotations

import argparse
import lzma
import random
import struct
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import BENCH, load, log, part_main, pyplot, save_plot, section, table

from collapsed_forwarding.policy import DEFAULT_POLICY, POLICIES

REAL = ("web07", "web12", "orm-busy", "orm-night")
SYNTHETIC = ("zipf-0.7", "zipf-1.0", "loop", "zipf-scan")
ORM_LIMIT = 1_000_000  # the orm traces are cut to their first million requests, for speed
SIZES = (500, 1000, 5000, 20000)
REFERENCES = ("LRU", "ARC", "LIRS", "WTinyLFU", "S3FIFO", "Belady")
FIVE = REFERENCES[:5]  # the real policies: Belady needs to know the future


def zipf(rng: random.Random, alpha: float, keys: int, requests: int) -> list[int]:
    weights = [1.0 / (rank ** alpha) for rank in range(1, keys + 1)]
    ids = list(range(keys))
    rng.shuffle(ids)  # popularity unrelated to the key's number
    return rng.choices(ids, weights=weights, k=requests)


def synthetic_trace(name: str, seed: int = 15) -> list[int]:
    """Made from `seed` each time, never stored: Zipf, a loop larger than every cache, Zipf cut by scans."""
    rng = random.Random(seed)
    if name.startswith("zipf-") and name != "zipf-scan":
        return zipf(rng, float(name[5:]), 100_000, 500_000)
    if name == "loop":
        return list(range(25_000)) * 20  # 25,000 keys round and round: LRU keeps none of them
    if name == "zipf-scan":  # every 20,000 popular requests, 5,000 keys never seen before or again
        popular, trace = zipf(rng, 0.9, 50_000, 400_000), []
        for block in range(20):
            trace += popular[block * 20_000:(block + 1) * 20_000]
            trace += range((block + 1) << 24, ((block + 1) << 24) + 5_000)
        return trace
    raise ValueError(f"no trace {name!r}")


def trace(name: str) -> Sequence[int]:
    if name not in REAL:
        return synthetic_trace(name)
    with lzma.open(BENCH / "traces" / f"{name}.trace.xz") as f:
        data = f.read(4 * ORM_LIMIT if name.startswith("orm") else -1)
    return struct.unpack(f">{len(data) // 4}i", data)


def replay_policy(keys: Sequence[int], size: int) -> float:
    """Percent of requests that were hits, with hits handed over one by one as the store folds its hit log."""
    cache = POLICIES[DEFAULT_POLICY](size, None)
    held: set[int] = set()
    hits = 0
    admit, touch = cache.admit, cache.touch_many
    for key in keys:
        if key in held:
            hits += 1
            touch([key])
        else:
            held.add(key)
            held.difference_update(admit(key, 1))
    return 100.0 * hits / len(keys)


def libcachesim_ratios(keys: Sequence[int], size: int) -> dict[str, float]:
    """libCacheSim's hit ratios, each object of size 1, through an oracleGeneral file (Belady needs next use)."""
    import libcachesim as lcs

    next_use, seen = [0] * len(keys), dict[int, int]()
    for i in range(len(keys) - 1, -1, -1):
        next_use[i] = seen.get(keys[i], -1)
        seen[keys[i]] = i
    ids: dict[int, int] = {}
    record = struct.Struct("<IQIq").pack
    with tempfile.NamedTemporaryFile(suffix=".oracleGeneral") as f:
        f.write(b"".join(record(i + 1, ids.setdefault(k, len(ids) + 1), 1, n) for i, (k, n) in
                         enumerate(zip(keys, next_use, strict=True))))
        f.flush()
        ratios = {}
        for name in REFERENCES:
            reader = lcs.TraceReader(f.name, lcs.TraceType.ORACLE_GENERAL_TRACE)
            miss_ratio, _ = getattr(lcs, name)(size).process_trace(reader)
            ratios[name] = round(100.0 * (1.0 - miss_ratio), 2)
    return ratios


def references(names: Sequence[str], sizes: Sequence[int], refresh: bool) -> dict[str, dict[str, float]]:
    """libCacheSim's figures, by "trace size": those of the last real run, the missing ones (or, with
    `refresh`, all) computed."""
    try:
        known: dict[str, dict[str, float]] = load(BENCH, "hitratio")["reference"]
    except (OSError, KeyError):
        known = {}
    for name in names:
        for size in sizes:
            if refresh or f"{name} {size}" not in known:
                log(f"  libCacheSim: {name} at {size:,} entries")
                known[f"{name} {size}"] = libcachesim_ratios(trace(name), size)
    return known


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = args.sizes or ([1000] if args.quick else list(SIZES))
    traces = list(REAL + SYNTHETIC)
    ours: dict[str, float] = {}
    for name in traces:
        keys = trace(name)
        for size in sizes:
            ours[f"{name} {size}"] = round(replay_policy(keys, size), 2)
        log(f"  {name}: replayed at {', '.join(f'{s:,}' for s in sizes)} entries")
    return {"policy": DEFAULT_POLICY, "traces": traces, "sizes": sizes, "ours": ours,
            "reference": references(traces, sizes, args.reference)}


def ratio_table(r: dict[str, Any]) -> str:
    rows = []
    for name in r["traces"]:
        for size in r["sizes"]:
            ours, ref = r["ours"][f"{name} {size}"], r["reference"][f"{name} {size}"]
            best = max(ref[p] for p in FIVE)
            rows.append([name, f"{size:,}", f"{ours:.1f}", *(f"{ref[p]:.1f}" for p in REFERENCES), f"{best:.1f}",
                         f"{ours - best:+.1f}", f"{ours - ref['LRU']:+.1f}"])
    return table(["trace", "entries", "ours", "LRU", "ARC", "LIRS", "W-TinyLFU", "S3-FIFO", "Belady", "best of five",
                  "ours − best", "ours − LRU"], rows)


def plot(r: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    names, sizes = r["traces"], r["sizes"]
    columns = (len(names) + 1) // 2
    fig, axes = plt.subplots(2, columns, figsize=(4 * columns, 8), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        refs = [r["reference"][f"{name} {size}"] for size in sizes]
        for policy in REFERENCES:
            style = dict(color="0.6", linestyle=":") if policy == "Belady" else dict(alpha=0.7, linewidth=1)
            ax.plot(sizes, [ref[policy] for ref in refs], marker=".", label=policy, **style)
        ax.plot(sizes, [r["ours"][f"{name} {size}"] for size in sizes], marker="o", color="black", linewidth=2.2,
                label=f"ours ({r['policy']})")
        ax.set(xscale="log", title=name, xlabel="cache size (entries, log)", ylabel="hit ratio (%)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    save_plot(fig, path, "Hit ratio against cache size: this store's default policy (black) and libCacheSim's",
              "higher is better; Belady (dotted) is the optimum, which knows the future")


def render(r: dict[str, Any], plots: Path) -> str:
    plot(r, plots / "hit_ratio.png")
    return section("Hit ratio of the eviction policies", r, "", __doc__, "Hit ratio, % of requests:",
                   ratio_table(r), "![Hit ratio against cache size, per trace](plots/hit_ratio.png)")


def main(argv: list[str] | None = None) -> int:
    return part_main("hitratio", __doc__, argv, measure, render,
                     ("--sizes", dict(nargs="+", type=int, help="cache sizes, in entries (default "
                                      f"{' '.join(map(str, SIZES))}; 1000 with --quick)")),
                     ("--reference", dict(action="store_true",
                                          help="recompute libCacheSim's figures (pip install libcachesim==0.3.5)")))


if __name__ == "__main__":
    sys.exit(main())
