#!/usr/bin/env python3
"""Hit ratio of the store's default policy against libCacheSim's, on real and synthetic traces.

    python3 bench/hitratio.py                  # the table (Markdown) and bench/plots/hit_ratio.png
    python3 bench/hitratio.py --sizes 1000     # fewer sizes, for a quick look
    python3 bench/hitratio.py --reference      # recompute libCacheSim's columns (pip install libcachesim==0.3.5)

Every request counts, first ones included, as libCacheSim counts them. The
policy is replayed directly (a hit is a `touch_many`, a miss an `admit`), and
once through `CollapsedForwardingProxy` itself, counting backend calls, to show
both replays agree. libCacheSim's figures are kept in bench/hitratio_reference.json,
so a rerun without it still prints the whole table.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import struct
import sys
import tempfile
from collections.abc import Sequence

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH))

from collapsed_forwarding.policy import DEFAULT_POLICY, POLICIES  # noqa: E402

REFERENCE_FILE = os.path.join(BENCH, "hitratio_reference.json")
PLOT_FILE = os.path.join(BENCH, "plots", "hit_ratio.png")
REAL = ("web07", "web12", "orm-busy", "orm-night")
SYNTHETIC = ("zipf-0.7", "zipf-1.0", "loop", "zipf-scan")
ORM_LIMIT = 1_000_000  # the orm traces are cut to their first million requests, for speed
SIZES = (500, 1000, 5000, 20000)
REFERENCES = ("LRU", "ARC", "LIRS", "WTinyLFU", "S3FIFO", "Belady")
FIVE = REFERENCES[:5]


def real_trace(name: str) -> Sequence[int]:
    with lzma.open(os.path.join(BENCH, "traces", f"{name}.trace.xz")) as f:
        data = f.read(4 * ORM_LIMIT if name.startswith("orm") else -1)
    return struct.unpack(f">{len(data) // 4}i", data)


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
    return real_trace(name) if name in REAL else synthetic_trace(name)


def replay_policy(keys: Sequence[int], size: int, policy: str = DEFAULT_POLICY) -> float:
    """Percent of requests that were hits, with hits handed over one by one as the store folds its hit log."""
    cache = POLICIES[policy](size, None)
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


def replay_library(keys: Sequence[int], size: int) -> float:
    """The same, through the library: every backend call is a miss."""
    from collapsed_forwarding import CollapsedForwardingProxy

    calls = 0

    def backend(key: int) -> int:
        nonlocal calls
        calls += 1
        return key

    proxy = CollapsedForwardingProxy(backend, ttl=1e9, max_entries=size)
    for key in keys:
        proxy.get(key)
    return 100.0 * (len(keys) - calls) / len(keys)


def libcachesim_ratios(keys: Sequence[int], size: int) -> dict[str, float]:
    """libCacheSim's hit ratios, each object of size 1, through an oracleGeneral file (Belady needs next use)."""
    import libcachesim as lcs

    next_use, seen = [0] * len(keys), {}
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
    known: dict[str, dict[str, float]] = {}
    if os.path.exists(REFERENCE_FILE):
        with open(REFERENCE_FILE) as f:
            known = json.load(f)
    missing = [(n, s) for n in names for s in sizes if refresh or f"{n} {s}" not in known]
    for name, size in missing:
        print(f"libCacheSim: {name} at {size} entries", file=sys.stderr)
        known[f"{name} {size}"] = libcachesim_ratios(trace(name), size)
    if missing:
        with open(REFERENCE_FILE, "w") as f:
            json.dump(known, f, indent=1, sort_keys=True)
    return known


def table(rows: list[tuple[str, int, float, dict[str, float]]]) -> str:
    lines = ["| trace | entries | ours | LRU | ARC | LIRS | W-TinyLFU | S3-FIFO | Belady | best of five "
             "| ours − best | ours − LRU |", "|---|---:|" + "---:|" * 10]
    for name, size, ours, ref in rows:
        best = max(ref[p] for p in FIVE)
        cells = [f"{ours:.1f}"] + [f"{ref[p]:.1f}" for p in REFERENCES] + [
            f"{best:.1f}", f"{ours - best:+.1f}", f"{ours - ref['LRU']:+.1f}"]
        lines.append(f"| {name} | {size:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[tuple[str, int, float, dict[str, float]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(name for name, *_ in rows))
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(4 * ((len(names) + 1) // 2), 7.5), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        mine = [(size, ours, ref) for n, size, ours, ref in rows if n == name]
        sizes = [size for size, _, _ in mine]
        for policy in REFERENCES:
            style = dict(color="0.6", linestyle=":") if policy == "Belady" else dict(alpha=0.7, linewidth=1)
            ax.plot(sizes, [ref[policy] for _, _, ref in mine], marker=".", label=policy, **style)
        ax.plot(sizes, [ours for _, ours, _ in mine], marker="o", color="black", linewidth=2.2,
                label=f"ours ({DEFAULT_POLICY})")
        ax.set(xscale="log", title=name, xlabel="cache size (entries, log)", ylabel="hit ratio (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Hit ratio against cache size: this store's default policy (black) and libCacheSim's")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", nargs="+", default=list(REAL + SYNTHETIC), choices=REAL + SYNTHETIC)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--policy", default=DEFAULT_POLICY, choices=sorted(POLICIES))
    parser.add_argument("--reference", action="store_true", help="recompute libCacheSim's figures")
    parser.add_argument("--no-library", action="store_true", help="skip the replay through the proxy")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    ref = references(args.traces, args.sizes, args.reference)
    rows = []
    for name in args.traces:
        keys = trace(name)
        for size in args.sizes:
            rows.append((name, size, replay_policy(keys, size, args.policy), ref[f"{name} {size}"]))
    print(table(rows))
    if not args.no_library:
        keys, size = real_trace("web07"), 1000
        print(f"\nweb07 at {size:,} entries through CollapsedForwardingProxy, counting backend calls: "
              f"{replay_library(keys, size):.2f}% hits; the policy {DEFAULT_POLICY!r} replayed directly: "
              f"{replay_policy(keys, size):.2f}%, and 'lru': {replay_policy(keys, size, 'lru'):.2f}%")
    if not args.no_plot:
        plot(rows, PLOT_FILE)
        print(f"\nplot: {os.path.relpath(PLOT_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
