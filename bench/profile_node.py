#!/usr/bin/env python3
"""Where the time goes: cProfile summaries of the paths the benchmarks time.

    python3 bench/profile_node.py [--top 12]

1. a hit in-process (`proxy.get` of a present key);
2. cached gets through the node's read loop, in-process (CacheNode.serve of
   the lines, replies written to a pipe that a thread drains);
3. the release of 10,000 waiters on one key (`proxy.settle` of their flight,
   as the node's origin answer calls it);
4. 30,000 misses of distinct keys through the message path: admission (reading
   the get, starting the fetch) and settling (filling the cache, the reply),
   each timed with the garbage collector on and off as well.

Not part of bench/run.py: a profiler changes what it measures, so these are
for finding hot spots, not for quoting.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, ROOT)
sys.path.insert(0, BENCH)

import node_throughput as nt  # noqa: E402
from contestants import Origin  # noqa: E402

from collapsed_forwarding.node import cli  # noqa: E402
from collapsed_forwarding.node import handlers as node_main  # noqa: E402
from proxy import CollapsedForwardingProxy  # noqa: E402


def profiled(title: str, fn: Callable[[], Any], top: int) -> None:
    prof = cProfile.Profile()
    started = time.perf_counter()
    prof.enable()
    fn()
    prof.disable()
    elapsed = time.perf_counter() - started
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    print(f"\n=== {title} ({elapsed:.2f} s under the profiler)")
    print("\n".join(lines[2:]))


def make_node(*flags: str) -> node_main.CacheNode:
    """A CacheNode whose output goes to a pipe drained by a thread, as a real node's stdout would."""
    read_fd, write_fd = os.pipe()

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as f:
            while f.read1(1 << 20):
                pass

    threading.Thread(target=drain, daemon=True).start()
    node = node_main.CacheNode(cli.parse_flags(list(flags), environ={}), os.fdopen(write_fd, "wb"))
    node.node.handle_line(nt.INIT)
    return node


def answer(node: node_main.CacheNode, flight: Any, value: Any) -> None:
    """Settle a flight as the node does when its origin answers: inside Node.batch()
    where the node has one, so the waiters' replies share a flush."""
    with getattr(node.node, "batch", contextlib.nullcontext)():
        node.proxy.settle(flight, value)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=12, help="rows of each profile")
    top = parser.parse_args().top

    # 4. misses of distinct keys: admission, then settling
    n = 30_000

    def misses(tag: str, profile: bool) -> None:
        node = make_node("--sim-latency", "1000", "--origin-timeout", "2000", "--max-entries", "1000000")
        lines = [nt.get_line(10 + i, f"{tag}-{i:07d}") for i in range(n)]

        def admit() -> None:
            for line in lines:
                node.node.handle_line(line)

        def settle() -> None:
            for i in range(n):
                flight = node.proxy.flights.in_air.get(f"{tag}-{i:07d}")
                assert flight is not None
                answer(node, flight, "v")

        if profile:
            profiled(f"4a. admitting {n:,} misses of distinct keys through Node.handle_line", admit, top)
            profiled(f"4b. settling their {n:,} flights", settle, top)
            return
        spent = [0.0, 0.0, 0.0]
        count = [0, 0, 0]
        began = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                spent[info["generation"]] += time.perf_counter() - began[0]
                count[info["generation"]] += 1

        gc.callbacks.append(on_gc)
        try:
            a = timed(admit)
        finally:
            gc.callbacks.remove(on_gc)
        s = timed(settle)
        print(f"   {tag}: admit {a / n * 1e6:.1f} µs, settle {s / n * 1e6:.1f} µs per miss, not profiled; "
              f"during admission {count} collections of generations 0/1/2 took "
              f"{' / '.join(f'{x * 1e3:.0f}' for x in spent)} ms, {len(gc.get_objects()):,} objects tracked")

    print(f"=== 4. {n:,} misses of distinct keys, first, in a fresh process (the scheduler's heap keeps every "
          f"flight alive until its deadline, so what ran before would weigh on the collector)")
    misses("gc-on", profile=False)
    gc.disable()
    try:
        misses("gc-off", profile=False)
    finally:
        gc.enable()

    # 1. a hit in-process
    proxy = CollapsedForwardingProxy(Origin(0), 3600)
    get = proxy.get
    get("hot")
    profiled("1. 200,000 hits in-process: proxy.get('hot')", lambda: [get("hot") for _ in range(200_000)], top)

    # 2. cached gets through the message path
    node = make_node("--sim-latency", "0")
    for key in ("k0", "k1"):
        node.proxy.fetch_and_cache(key)
    lines = [nt.get_line(10 + i, f"k{i % 2}") for i in range(50_000)]
    data = b"".join(lines)
    profiled("2. 50,000 cached gets through the node's read loop (CacheNode.serve)",
             lambda: node.serve(io.BytesIO(data)), top)

    # 3. the release of 10,000 waiters
    node = make_node("--sim-latency", "1000", "--origin-timeout", "2000")
    for i in range(10_000):
        node.node.handle_line(nt.get_line(10 + i, "cold"))
    cold = node.proxy.flights.in_air.get("cold")
    assert cold is not None and cold.waiters == 10_000
    profiled("3. releasing 10,000 waiters: proxy.settle(flight, value), as the origin's answer arrives",
             lambda: answer(node, cold, "value-cold"), top)
    for i in range(10_000):
        node.node.handle_line(nt.get_line(20_000 + i, "cold2"))
    cold2 = node.proxy.flights.in_air.get("cold2")
    assert cold2 is not None
    print(f"   the same, not profiled: {timed(lambda: answer(node, cold2, 'value-cold2')) * 1e3:.0f} ms")

    misses("p", profile=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
