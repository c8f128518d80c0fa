"""The asyncio part (issue 18): the costs of `AsyncCollapsedForwardingProxy`, each a ratio measured in one process.

* hit: an `aget` hit against a bare `async def get(k): return d[k]`, both awaited in a loop of one task,
  taking turns within each run (a twentieth of its awaits a turn). Goal: at most 2x. A bare TTL dict (`d[k]`
  and the one clock read any TTL check needs) shows how much of the difference is that clock read.
* herd: 10,000 tasks awaiting one key on a cold cache, against a bare asyncio singleflight (a dict of
  Futures): both make one origin fetch (an `async def` that yields once), timed from the first task made to
  the last one released. Goal: at most 1.5x.

The contestants alternate over the runs; each ratio is run by run, the median with its min–max.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import sys
import time
from collections.abc import Callable, Coroutine, Hashable
from pathlib import Path
from typing import Any

from common import med_range, part_main, ratios, rotated, section, table, verdict

from collapsed_forwarding import AsyncCollapsedForwardingProxy

GOALS = {"hit": 2.0, "herd": 1.5}
TURNS = 20  # turns each getter takes in a run of the hit
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

    gets: dict[str, Get] = {"bare": bare, "bare_ttl": bare_ttl, "aget": proxy.aget}
    times: dict[str, list[float]] = {name: [] for name in gets}
    for _ in range(runs):  # each run in TURNS turns of n/TURNS awaits a getter, so slow moments fall on all alike
        spent = dict.fromkeys(gets, 0.0)
        for turn in range(TURNS):
            for name in rotated(list(gets), turn):
                spent[name] += await per_await(gets[name], "k", n // TURNS)
        for name, total in spent.items():
            times[name].append(total / TURNS)
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


async def herd_runs(tasks: int, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"bare": [], "aget": []}
    for _ in range(runs):
        for name in ("bare", "aget"):
            origin = CountingOrigin()
            get = bare_singleflight(origin) if name == "bare" else AsyncCollapsedForwardingProxy(origin).aget
            gc.collect()
            start = time.perf_counter()
            values: list[Any] = await asyncio.gather(*(asyncio.create_task(get("popular")) for _ in range(tasks)))
            times[name].append(time.perf_counter() - start)
            assert values == ["value-popular"] * tasks
            assert origin.calls == 1, f"{name}: {origin.calls} origin fetches"
    return times


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs = args.runs or (3 if args.quick else 25)
    awaits = 20_000 if args.quick else 200_000
    return {"runs": runs, "awaits": awaits, "tasks": args.tasks,
            "hit": asyncio.run(hit_runs(awaits, runs)), "herd": asyncio.run(herd_runs(args.tasks, runs))}


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for name, times, bare, digits, scale, goal in [
            ("a hit, awaited, ns", r["hit"], "bare", 0, 1e9, GOALS["hit"]),
            ("a hit, against a bare TTL dict, ns", r["hit"], "bare_ttl", 0, 1e9, None),
            (f"{r['tasks']:,} tasks on one key, all released, ms", r["herd"], "bare", 1, 1e3, GOALS["herd"])]:
        paired = ratios(times["aget"], times[bare])
        rows.append((name, med_range(times[bare], digits, scale), med_range(times["aget"], digits, scale),
                     med_range(paired, 2), f"≤ {goal:g}" if goal else "", verdict(paired, goal) if goal else ""))
    return rows


def render(r: dict[str, Any], plots: Path) -> str:
    return section("asyncio: the costs of `aget`", r, f"Median (min–max) of {r['runs']} runs, {r['awaits']:,} "
                   "awaits a hit run; one origin fetch per\nherd for both.", __doc__,
                   table(["measure", "bare", "aget", "ratio, run by run", "goal", "met?"], rows(r),
                         ["l", "r", "r", "r", "r", "c"]))


def main(argv: list[str] | None = None) -> int:
    return part_main("asyncio", __doc__, argv, measure, render,
                     ("--runs", dict(type=int, default=0, help="runs of each measure (default 25; 3 with --quick)")),
                     ("--tasks", dict(type=int, default=10_000, help="tasks in each herd (default 10,000)")))


if __name__ == "__main__":
    sys.exit(main())
