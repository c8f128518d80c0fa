#!/usr/bin/env python3
"""Issue 15's cost goals, each a ratio measured in one run against its baseline.

    python3 bench/costs.py [--runs N] [--quick] [--skip-node] [--skip-gc]

* miss: N new keys, an instant blocking backend, one thread: the library's
  `get` against the design card's shape (`Card` below: a dict, a lock and a
  per-key threading.Event, the first miss calling the backend inline). Goal <= 1.5x.
* miss, 8 threads: the same N keys split over 8 threads released together. Goal <= 1.5x.
* hit: one present key, `get` in a loop, against a dict looked up in a plain
  function (contestants.make_floor); the bare loop's cost subtracted, the
  collector off while timing (bench/inprocess.py's method). Goal <= 1.5x.
* gc: a full gc.collect() in a process holding 1,000,000 entries filled
  through the library, against one holding a plain dict of the same tuples.
  Goal <= 3x.
* node: cached gets through `python3 main.py` against bench/echo_node.py
  (bench/node_throughput.py's run). Goal <= 1.1x.

Every measure runs its pair in turn, `--runs` times, and prints the median
ratio with its min-max. Nothing is measured for --help.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path[:0] = [BENCH, ROOT]

GOALS = {"miss": 1.5, "miss_8_threads": 1.5, "hit": 1.5, "gc_1m": 3.0, "node_hits": 1.1}


class Card:
    """The design card's shape: a dict, a lock and a per-key Event; the first miss calls the backend inline."""

    def __init__(self, backend: Callable[[str], Any], ttl: float, timeout: float = 1.0) -> None:
        self.backend, self.ttl, self.timeout = backend, ttl, timeout
        self.entries: dict[str, tuple[Any, float]] = {}
        self.flights: dict[str, list[Any]] = {}  # key -> [Event, value, error]
        self.lock = threading.Lock()

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is not None and monotonic() < entry[1]:
            return entry[0]
        with self.lock:
            flight = self.flights.get(key)
            leader = flight is None
            if leader:
                flight = self.flights[key] = [threading.Event(), None, None]
        if not leader:
            if not flight[0].wait(self.timeout):
                raise TimeoutError(key)
            if flight[2] is not None:
                raise flight[2]
            return flight[1]
        try:
            flight[1] = value = self.backend(key)
        except Exception as exc:
            flight[2] = exc
            raise
        finally:
            with self.lock:
                if flight[2] is None:
                    self.entries[key] = (flight[1], monotonic() + self.ttl)
                del self.flights[key]
            flight[0].set()
        return value


def backend(key: str) -> str:
    return "value-" + key


def library(max_entries: int) -> Callable[[str], Any]:
    from proxy import CollapsedForwardingProxy

    return CollapsedForwardingProxy(backend, 3600, max_entries=max_entries).get


def misses(get: Callable[[str], Any], keys: Sequence[str], threads: int) -> float:
    """Seconds per miss: `keys` (all new) got once each, split over `threads` threads."""
    if threads == 1:
        began = time.perf_counter()
        for key in keys:
            get(key)
        return (time.perf_counter() - began) / len(keys)
    parts = [keys[i::threads] for i in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def run(part: Sequence[str]) -> None:
        barrier.wait()
        for key in part:
            get(key)

    workers = [threading.Thread(target=run, args=(part,)) for part in parts]
    for worker in workers:
        worker.start()
    barrier.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - began) / len(keys)


def miss_pair(n: int, threads: int, run: int) -> tuple[float, float]:
    keys = [f"key-{run}-{i:07d}" for i in range(n)]
    out = {}
    for name in (("library", "card") if run % 2 == 0 else ("card", "library")):
        get = library(2 * n) if name == "library" else Card(backend, 3600).get
        gc.collect()
        out[name] = misses(get, keys, threads)
    return out["library"], out["card"]


def hit_pair() -> tuple[float, float]:
    import inprocess
    from contestants import Origin, make_floor

    floor = make_floor(Origin(0), 3600)
    floor.put("hot")  # type: ignore[attr-defined]
    get = library(1000)
    get("hot")
    n = 500_000
    return inprocess._loop_ns(get, "hot", n), inprocess._loop_ns(floor, "hot", n)


GC_CHILD = r"""
import gc, sys, time
sys.path.insert(0, sys.argv[1])
n, kind = int(sys.argv[2]), sys.argv[3]
if kind == "library":
    from proxy import CollapsedForwardingProxy
    get = CollapsedForwardingProxy(lambda key: "value-" + key, 3600, max_entries=n).get
    for i in range(n):
        get("key-%07d" % i)
else:
    now = time.monotonic()
    held = {"key-%07d" % i: ("value-key-%07d" % i, now + 3600, 0.0) for i in range(n)}
gc.collect()
times = []
for _ in range(5):
    t = time.perf_counter()
    gc.collect()
    times.append(time.perf_counter() - t)
print(sorted(times)[2])
"""


def gc_once(n: int, kind: str) -> float:
    out = subprocess.run([sys.executable, "-c", GC_CHILD, ROOT, str(n), kind], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


def node_pair(messages: int) -> tuple[float, float]:
    import node_throughput as nt

    return nt.run_once(nt.NODE, messages, 4), nt.run_once(nt.ECHO, messages, 4)


def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    runs, n = args.runs, (20_000 if args.quick else 100_000)
    ratios: dict[str, list[float]] = {name: [] for name in GOALS}
    raw: dict[str, list[tuple[float, float]]] = {name: [] for name in GOALS}
    for run in range(runs):
        pairs = (("miss", lambda run=run: miss_pair(n, 1, run)),
                 ("miss_8_threads", lambda run=run: miss_pair(n, 8, run)), ("hit", hit_pair))
        for name, pair in pairs:
            mine, base = pair()
            raw[name].append((mine, base))
            ratios[name].append(mine / base)
        if not args.skip_gc:
            size = 200_000 if args.quick else 1_000_000
            mine, base = gc_once(size, "library"), gc_once(size, "dict")
            raw["gc_1m"].append((mine, base))
            ratios["gc_1m"].append(mine / base)
        if not args.skip_node:
            mine, base = node_pair(20_000 if args.quick else 50_000)
            raw["node_hits"].append((mine, base))
            ratios["node_hits"].append(mine / base)
        print(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f}x" for k, v in ratios.items() if v),
              file=sys.stderr, flush=True)
    return {"ratios": ratios, "raw": raw}  # type: ignore[dict-item]


def report(result: dict[str, Any]) -> str:
    lines = ["| measure | goal | ratio: median (min-max, runs) | this project / baseline (medians) |",
             "|---|---:|---:|---:|"]
    for name, values in result["ratios"].items():
        if not values:
            continue
        mine = statistics.median(m for m, _ in result["raw"][name])
        base = statistics.median(b for _, b in result["raw"][name])
        unit, scale = ("µs", 1e6) if name.startswith("miss") else ("ns", 1) if name == "hit" else ("ms", 1e3)
        lines.append(f"| {name} | <= {GOALS[name]}x | {statistics.median(values):.2f}x "
                     f"({min(values):.2f}-{max(values):.2f}, {len(values)}) | "
                     f"{mine * scale:.3g} / {base * scale:.3g} {unit} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="pairs per measure (default 5)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--skip-node", action="store_true", help="leave out the node's measure")
    parser.add_argument("--skip-gc", action="store_true", help="leave out the collector's measure")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    result = measure(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
