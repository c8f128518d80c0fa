"""The costs part: issue 15's cost goals, each a ratio of this project against its baseline, pairs in turn.

* miss: N new keys, an instant blocking backend, one thread: the library's `get` against the design card's
  shape (`Card` below: a dict, a lock and a per-key threading.Event, the first miss calling the backend
  inline). Goal: at most 1.5x. The two take turns, N/20 keys a turn, so a shared machine's slow moments
  fall on both alike. The same N keys over 8 threads released together, a whole pass each: at most 1.5x too.
* hit: `get` of one present key in a loop, against a dict and a clock read in a plain function
  (inprocess.make_floor, timed by inprocess.hit_vs_floor, in turns as the miss). Goal: at most 1.5x.
* gc: a full gc.collect() in a process holding 1,000,000 entries filled through the library, against one
  holding a dict of the same tuples (the median of 5 collections each). Goal: at most 3x.
* node: cached gets through `python3 main.py` against bench/echo_node.py (node.cached_gets). Goal: at most 1.1x.

Each ratio is run by run: the median with its min–max over the runs.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from time import monotonic
from typing import Any

from common import child, in_turns, log, med, med_range, part_main, ratios, section, table, verdict
from inprocess import hit_vs_floor
from node import ECHO, NODE, cached_gets

from proxy import CollapsedForwardingProxy

CHUNKS = 20  # turns each getter takes at the one-thread miss

# measure -> (what it is, its goal, the unit and scale of its raw figures)
MEASURES: dict[str, tuple[str, float, str, float]] = {
    "miss": ("a miss, 1 thread: library / the design card", 1.5, "µs", 1e6),
    "miss_8_threads": ("a miss, 8 threads: library / the design card", 1.5, "µs", 1e6),
    "hit": ("a hit: library / the floor (dict + clock)", 1.5, "ns", 1.0),
    "gc_1m": ("a full gc.collect() at {gc_entries} entries: library / a dict of the same tuples", 3.0, "ms", 1e3),
    "node_hits": ("cached gets: the node / the echo loop (time)", 1.1, "ms", 1e3),
}


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
            if flight is None:
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


def misses(get: Callable[[str], Any], keys: Sequence[str], threads: int) -> float:
    """Seconds per miss: `keys` (all new) got once each, split over `threads` threads."""
    if threads == 1:
        began = time.perf_counter()
        for key in keys:
            get(key)
        return (time.perf_counter() - began) / len(keys)
    barrier = threading.Barrier(threads + 1)

    def run(part: Sequence[str]) -> None:
        barrier.wait()
        for key in part:
            get(key)

    workers = [threading.Thread(target=run, args=(keys[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - began) / len(keys)


def interleaved_misses(gets: dict[str, Callable[[str], Any]], keys: Sequence[str], chunks: int) -> dict[str, float]:
    """Seconds per miss of each getter over all of `keys`, one thread, taken `len(keys) // chunks` at a time by
    each getter in turn (common.in_turns): each still fills its cache to len(keys)."""
    size = len(keys) // chunks

    def chunk_of_misses(name: str, chunk: int) -> float:
        return misses(gets[name], keys[chunk * size:(chunk + 1) * size], 1)

    return in_turns(list(gets), chunks, chunk_of_misses)


def miss_pair(n: int, threads: int, run: int) -> tuple[float, float]:
    """(library, card) seconds per miss. One thread: the two in turn, chunk by chunk (interleaved_misses);
    8 threads, a whole pass each, who goes first alternating with the run."""
    keys = [f"key-{run}-{i:07d}" for i in range(n)]
    gets = {"library": CollapsedForwardingProxy(backend, 3600, max_entries=2 * n).get, "card": Card(backend, 3600).get}
    gc.collect()
    if threads == 1:
        out = interleaved_misses(gets, keys, CHUNKS)
    else:
        out = {}
        for name in ("library", "card") if run % 2 == 0 else ("card", "library"):
            gc.collect()
            out[name] = misses(gets[name], keys, threads)
    return out["library"], out["card"]


# seconds for one full collection in a fresh process holding n entries of the library or of a dict
GC_CHILD = r"""
import gc, statistics, time
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
print(statistics.median(times))
"""


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs = args.runs or (2 if args.quick else 5)
    n, gc_entries, messages = (20_000, 200_000, 20_000) if args.quick else (100_000, 1_000_000, 50_000)
    pairs: dict[str, dict[str, list[float]]] = {name: {"mine": [], "base": []} for name in MEASURES}
    for run in range(runs):
        measured = {"miss": miss_pair(n, 1, run), "miss_8_threads": miss_pair(n, 8, run),
                    "gc_1m": (float(child(GC_CHILD, gc_entries, "library")),
                              float(child(GC_CHILD, gc_entries, "dict"))),
                    "node_hits": (cached_gets(NODE, messages, 4), cached_gets(ECHO, messages, 4))}
        for name, (mine, base) in measured.items():  # measured in this order: the dict keeps it
            pairs[name]["mine"].append(mine)
            pairs[name]["base"].append(base)
        log(f"  costs: run {run + 1}/{runs} done")
    hit = hit_vs_floor(runs)
    pairs["hit"] = {"mine": hit["collapsed"], "base": hit["floor"]}
    return {"runs": runs, "misses": n, "gc_entries": gc_entries, "node_messages": messages, "pairs": pairs}


def render(r: dict[str, Any], plots: Path) -> str:
    rows = []
    for name, (what, goal, unit, scale) in MEASURES.items():
        mine, base = r["pairs"][name]["mine"], r["pairs"][name]["base"]
        paired = ratios(mine, base)
        rows.append((what.format(gc_entries=f"{r['gc_entries']:,}"), f"≤ {goal:g}x",
                     f"{med_range(paired, 2)}, {len(paired)} runs",
                     f"{med(mine) * scale:,.3g} / {med(base) * scale:,.3g} {unit}", verdict(paired, goal)))
    return section("Costs: issue 15's goals against their baselines", r,
                   f"{r['misses']:,} misses a run; the collector's measure at {r['gc_entries']:,} entries;\n"
                   f"{r['node_messages']:,} cached gets through the node.", __doc__,
                   table(["measure", "goal", "ratio (x): median (min–max), runs", "this project / baseline (medians)",
                          "met?"], rows, ["l", "r", "r", "r", "c"]))


def main(argv: list[str] | None = None) -> int:
    return part_main("costs", __doc__, argv, measure, render,
                     ("--runs", dict(type=int, default=0, help="pairs per measure (default 5; 2 with --quick)")))


if __name__ == "__main__":
    sys.exit(main())
