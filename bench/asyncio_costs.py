"""The asyncio face's costs (issue 18), each a ratio measured in one process.

1. An `aget` hit against a bare `async def get(k): return d[k]`, both awaited
   in a loop of one task (goal: at most 2x). A third contestant, a bare TTL
   dict (`d[k]` plus the one clock read any TTL check needs), shows how much
   of the difference is that clock read: on a loaded virtual machine it may
   cost as much as the whole bare get.
2. N tasks (10,000 by default) awaiting one key on a cold cache, against a bare
   asyncio singleflight (a dict of Futures, one per key in the air): both make
   one origin fetch (an `async def` that yields to the loop once), and the time
   is from the first task made to the last one released (goal: at most 1.5x).

Each measure alternates the two contestants over several runs and reports the
median with min-max, and the median of the per-run ratios.

    python3 bench/asyncio_costs.py              # about 20 seconds on 2 shared cores
    python3 bench/asyncio_costs.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import med_range, summary  # noqa: E402

from collapsed_forwarding import AsyncCollapsedForwardingProxy  # noqa: E402

Get = Callable[[Hashable], Coroutine[Any, Any, Any]]


async def per_await(get: Get, key: Hashable, n: int) -> float:
    """Seconds per `await get(key)`, n of them in a row."""
    start = time.perf_counter()
    for _ in range(n):
        await get(key)
    return (time.perf_counter() - start) / n


async def hit_runs(n: int, runs: int) -> dict[str, list[float]]:
    table: dict[Hashable, str] = {"k": "value"}

    async def bare(key: Hashable) -> Any:
        return table[key]

    async def origin(key: Hashable) -> str:
        return "value"

    proxy = AsyncCollapsedForwardingProxy(origin)
    assert await proxy.aget("k") == "value"
    clock = proxy.clock
    entries: dict[Hashable, tuple[str, float]] = {"k": ("value", math.inf)}

    async def bare_ttl(key: Hashable) -> Any:
        entry = entries[key]
        return entry[0] if clock() < entry[1] else None

    times: dict[str, list[float]] = {"bare": [], "bare_ttl": [], "aget": []}
    for _ in range(runs):
        times["bare"].append(await per_await(bare, "k", n))
        times["bare_ttl"].append(await per_await(bare_ttl, "k", n))
        times["aget"].append(await per_await(proxy.aget, "k", n))
    assert proxy.stats()["origin_fetches"] == 1
    return times


class CountingOrigin:
    """The origin both herds share: one yield to the loop, then the value."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, key: Hashable) -> str:
        self.calls += 1
        await asyncio.sleep(0)
        return f"value-{key}"


def bare_singleflight(origin: CountingOrigin) -> Get:
    """The floor: a dict of Futures, one per key in the air."""
    in_air: dict[Hashable, asyncio.Future[Any]] = {}

    async def fill(key: Hashable, future: asyncio.Future[Any]) -> None:
        try:
            future.set_result(await origin(key))
        except Exception as exc:
            future.set_exception(exc)
        finally:
            del in_air[key]

    running: set[asyncio.Task[None]] = set()

    async def get(key: Hashable) -> Any:
        future = in_air.get(key)
        if future is None:
            future = in_air[key] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(fill(key, future))
            running.add(task)
            task.add_done_callback(running.discard)
        return await future

    return get


async def herd_seconds(get: Get, tasks: int) -> float:
    start = time.perf_counter()
    values: list[Any] = await asyncio.gather(*(asyncio.create_task(get("popular")) for _ in range(tasks)))
    elapsed = time.perf_counter() - start
    assert values == ["value-popular"] * tasks
    return elapsed


async def herd_runs(tasks: int, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"bare": [], "aget": []}
    for _ in range(runs):
        for name in ("bare", "aget"):
            origin = CountingOrigin()
            get = bare_singleflight(origin) if name == "bare" else AsyncCollapsedForwardingProxy(origin).aget
            gc.collect()
            times[name].append(await herd_seconds(get, tasks))
            assert origin.calls == 1, f"{name}: {origin.calls} origin fetches"
    return times


def ratios(times: dict[str, list[float]], floor: str = "bare") -> list[float]:
    return [ours / bare for ours, bare in zip(times["aget"], times[floor], strict=True)]


def report(hits: dict[str, list[float]], herd: dict[str, list[float]], args: argparse.Namespace) -> str:
    rows = [
        "| measure | bare | aget | ratio (goal) |",
        "|---|---:|---:|---:|",
        f"| a hit, awaited (ns) | {med_range(hits['bare'], 0, 1e9)} | {med_range(hits['aget'], 0, 1e9)} "
        f"| {med_range(ratios(hits), 2)} (≤ 2) |",
        f"| a hit, against a bare TTL dict (ns) | {med_range(hits['bare_ttl'], 0, 1e9)} "
        f"| {med_range(hits['aget'], 0, 1e9)} | {med_range(ratios(hits, 'bare_ttl'), 2)} |",
        f"| {args.tasks:,} tasks on one key, all released (ms) | {med_range(herd['bare'], 1, 1e3)} "
        f"| {med_range(herd['aget'], 1, 1e3)} | {med_range(ratios(herd), 2)} (≤ 1.5) |",
    ]
    return (f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; median (min–max) of {args.runs} runs, "
            f"{args.hits:,} awaits a hit run; 1 origin fetch per herd for both.\n\n" + "\n".join(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="runs of each measure (default 9)")
    parser.add_argument("--hits", type=int, default=200_000, help="awaits per hit run (default 200,000)")
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in each herd (default 10,000)")
    parser.add_argument("--quick", action="store_true", help="3 runs of fewer awaits: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the raw times here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.hits = 3, 20_000
    hits = asyncio.run(hit_runs(args.hits, args.runs))
    herd = asyncio.run(herd_runs(args.tasks, args.runs))
    print(report(hits, herd, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hits": hits, "herd": herd, "hit_ratio": summary(ratios(hits)),
                       "herd_ratio": summary(ratios(herd))}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
