#!/usr/bin/env python3
"""The scale part: costs against the size of the cache, each goal a ratio measured in one run.

The node runs as `python3 main.py`, driven through its pipes, with `--sim-latency 0 --ttl 3600` unless said and
`--max-fetches 0 --shed-after 0` (these measure costs, not the overload bounds). Goals in the table below.
* sweep: one node is filled with distinct keys, 5,000 gets at a time, to each size in turn. At each size: (1)
  a burst of distinct misses written at once, timed to the last reply, against the same burst on an empty
  node; (2) a hit on one key every 5 ms while distinct misses are written alongside at 5,000/s: the longest
  gap between two hit replies; (3) VmRSS per entry, against a dict of the same keys and values (with an
  expiry float) in a process of its own.
* memory: VmRSS growth once 100,000 distinct gets (1,000 at a time, the default bounds) have been answered
  and their deadline timers have run out, against the same dict.
* eviction: `--max-entries 1000 --sim-latency 2`, 8,000 distinct gets and one `stats` written at once: the
  time from writing `stats` to its reply, which comes once every get is admitted; against the same with the
  default `--max-entries`, in five pairs, who goes first alternating.
* lin-kv flood: `--origin lin-kv`, the bench playing the service and answering each `read` as soon as it
  reads it, alongside a burst of 20,000 distinct gets: the fraction answered with error 0 (timeout).
* echo: N distinct gets through a fresh node and the same N lines through bench/echo_node.py, pairs in turn.
* hit: the library against the floor (inprocess.hit_vs_floor).
"""

from __future__ import annotations

import argparse
import gc
import json
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import child, goals_table, log, med, med_range, part_main, pyplot, ratios, save_plot, section, verdict
from inprocess import hit_vs_floor
from node import ECHO, NODE, NodeProcess, get_line, gets, status, through, whole_lines

GOALS = {"fill_ratio": 1.5, "pause_s": 0.1, "memory_ratio": 1.5, "stats_s": 1.0, "eviction_ratio": 1.2,
         "false_timeouts": 0.01, "echo_ratio": 3.0, "hit_ratio": 2.0}
HIT_BASE = 1 << 40  # msg_id of the hit stream's requests: HIT_BASE + i
BOUNDS_OFF = ("--max-fetches", "0", "--shed-after", "0")
NODE_FLAGS = ("--sim-latency", "0", "--ttl", "3600", *BOUNDS_OFF)


def fill(node: NodeProcess, start: int, stop: int, step: int, msg_base: int = 1_000_000) -> int:
    """Distinct misses start..stop, `step` written at a time, each batch answered before the next;
    returns the replies that were not get_ok."""
    bad = 0
    for at in range(start, stop, step):
        count = min(step, stop - at)
        bad += count - node.timed(gets(at, at + count, msg_base), count)[1].count(b'"get_ok"')
    return bad


def miss_burst(node: NodeProcess, start: int, count: int) -> tuple[float, int]:
    """Seconds from writing `count` distinct gets at once to reading their last
    reply, and how many replies were not misses (errors: a timeout in a pause)."""
    elapsed, replies = node.timed(gets(start, start + count), count)
    return elapsed, count - replies.count(b'"cache":"miss"')


HIT_REPLY = re.compile(rb'"in_reply_to":(\d+),[^\n]*"cache":"hit"')


def hit_stream(node: NodeProcess, start: int, misses: int, rate: float = 5_000.0,
               period: float = 0.005) -> dict[str, float]:
    """A hit on "hot" every `period` s while `misses` distinct misses are written at `rate`/s alongside."""
    ticks = max(1, round(misses / rate / period))
    per_tick = -(-misses // ticks)
    written = [0.0] * ticks
    arrivals: list[tuple[int, float]] = []

    def seen_at(now: float, chunk: bytes) -> None:
        arrivals.extend((int(m.group(1)) - HIT_BASE, now) for m in HIT_REPLY.finditer(chunk))

    reader = threading.Thread(target=node.read_lines, args=(ticks + misses,), kwargs={"seen_at": seen_at})
    reader.start()
    began = time.perf_counter()
    at = start
    for i in range(ticks):
        pause = began + i * period - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        stop = min(at + per_tick, start + misses)
        written[i] = time.perf_counter()
        node.write(get_line(HIT_BASE + i, "hot") + gets(at, stop))
        at = stop
    reader.join(timeout=120)
    if reader.is_alive() or len(arrivals) != ticks:
        raise RuntimeError(f"{len(arrivals)} of {ticks} hits answered")
    times = sorted(t for _, t in arrivals)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {"max_gap_s": max(gaps, default=0.0), "max_latency_s": max(t - written[i] for i, t in arrivals),
            "misses": misses, "seconds": times[-1] - began, "hits": ticks}


def node_sweep_once(sizes: Sequence[int], burst: int, stream: int) -> dict:
    """One node filled to each size in turn; `filled` is the next fresh key (the
    measures themselves add entries, so a size is where each measure starts)."""
    points = []
    with NodeProcess(*NODE_FLAGS, "--max-entries", str(3 * max(sizes))) as node:
        node.ask({"type": "get", "msg_id": 2, "key": "hot"})
        rss0 = status(node.proc.pid, "VmRSS")
        filled, bad = 0, 0
        for size in sorted(sizes):
            t0 = time.perf_counter()
            bad += fill(node, filled, max(size, filled), 5_000)
            filled = max(size, filled)
            fill_s = time.perf_counter() - t0
            rss = status(node.proc.pid, "VmRSS")
            n_burst = min(burst, max(1_000, filled // 5))
            burst_s, burst_errors = miss_burst(node, filled, n_burst)
            filled += n_burst
            # Python's full collection runs once the objects that survived grow by 25%, so a stream
            # that adds 30% of the size sees the one that a fill of this size brings
            n_stream = min(stream, max(1_000, size * 3 // 10))
            pause = hit_stream(node, filled, n_stream)
            filled += n_stream
            points.append({"entries": size, "fill_s": fill_s, "rss_kb": rss - rss0, "burst": n_burst,
                           "burst_s": burst_s, "burst_errors": burst_errors, "fill_errors": bad,
                           **{f"stream_{k}": v for k, v in pause.items()}})
            log(f"    node at {size:,} entries: {burst_s / n_burst * 1e6:.1f} µs per miss, "
                f"longest gap {pause['max_gap_s'] * 1e3:.0f} ms, latency {pause['max_latency_s'] * 1e3:.0f} ms")
        stats = node.ask({"type": "stats", "msg_id": 3})
    return {"points": points, "entries_at_end": stats["entries"], "keys_asked": filled + 1}


# RSS growth of a plain dict of the same keys and values, with an expiry float
DICT_FLOOR = r"""
import time
n, before, d, now = int(sys.argv[2]), rss(), {}, time.monotonic()
for i in range(n):
    key = "key-%07d" % i
    d[key] = ("value-" + key, now + 60.0)
print(rss() - before)
"""


def memory_once(entries: int, paced: int = 1000, timeout: float = 1.0) -> dict[str, Any]:
    """RSS growth for `entries` distinct keys, `paced` at a time, each batch answered before the next."""
    with NodeProcess("--sim-latency", "0", "--origin-timeout", str(timeout), "--max-entries", str(entries * 2)) as node:
        node.ask({"type": "get", "msg_id": 2, "key": "warm"})
        time.sleep(timeout + 0.5)  # the warm-up's deadline timer leaves the heap
        before = status(node.proc.pid, "VmRSS")
        errors = fill(node, 0, entries, paced, msg_base=10)
        time.sleep(timeout + 0.5)  # the fetches' cancelled deadline timers leave the heap
        after = status(node.proc.pid, "VmRSS")
        stats = node.ask({"type": "stats", "msg_id": 3})
    if stats["entries"] + errors != entries + 1:
        raise RuntimeError(f"expected {entries + 1 - errors} entries, the node has {stats['entries']}")
    return {"delta_kb": after - before, "errors": errors}


def eviction_pair(turn: int) -> tuple[dict, dict]:
    """(evicting, default): eviction_once with `--max-entries 1000` and without, who goes first alternating."""
    if turn % 2:
        default = eviction_once(None)
        return eviction_once(1000), default
    return eviction_once(1000), eviction_once(None)


def eviction_once(max_entries: int | None, misses: int = 8_000, latency: float = 2.0) -> dict:
    flags = ["--sim-latency", str(latency), "--origin-timeout", str(latency + 10), "--ttl", "3600", *BOUNDS_OFF]
    if max_entries is not None:
        flags += ["--max-entries", str(max_entries)]
    stats_line = b'{"src":"c0","dest":"n1","body":{"type":"stats","msg_id":7}}\n'
    marks: list[float] = []
    with NodeProcess(*flags) as node:
        batch = gets(0, misses)
        began = time.perf_counter()
        node.write(batch + stats_line)
        written = time.perf_counter()
        # replies to early gets may come before stats_ok when admission is slow
        data = node.read_lines(misses + 1, seen_at=lambda now, chunk: marks.append(now) if b'"stats_ok"' in chunk
                               else None)
    answered = marks[0]
    stats = next(json.loads(line)["body"] for line in data.splitlines() if b'"stats_ok"' in line)
    if stats.get("type") != "stats_ok" or data.count(b'"get_ok"') != misses:
        raise RuntimeError(f"eviction run: stats {stats}, {data.count(b'get_ok')} of {misses} get_ok")
    return {"max_entries": max_entries, "misses": misses, "stats_after_written_s": answered - written,
            "admitted_s": answered - began, "in_flight": stats["in_flight"], "entries_after": stats["entries"]}


RPC_READ = re.compile(rb'"dest":"lin-kv","body":\{"type":"read","msg_id":(\d+),"key":"([^"]*)"')


def linkv_once(misses: int = 20_000) -> dict:
    """The node's stdin is fed from one first-in-first-out queue, as Maelstrom's network delivers: the burst of gets
    goes in at once, and each reply of the service goes in behind whatever was queued before it."""
    fifo: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    counts = {"ok": 0, "timeout": 0, "other": 0, "rpcs": 0}

    def write() -> None:
        while (data := fifo.get()) is not None:
            node.write(data)

    def serve_and_count() -> None:
        answered = 0
        for _, whole in whole_lines(node.stdout):
            out = [b'{"src":"lin-kv","dest":"n1","body":{"type":"read_ok","in_reply_to":%s,'
                   b'"msg_id":1,"value":"v-%s"}}\n' % (m.group(1), m.group(2)) for m in RPC_READ.finditer(whole)]
            if out:
                fifo.put(b"".join(out))
                counts["rpcs"] += len(out)
            ok, timeouts = whole.count(b'"get_ok"'), whole.count(b'"code":0')
            lines = whole.count(b"\n") - len(out)
            counts["ok"] += ok
            counts["timeout"] += timeouts
            counts["other"] += lines - ok - timeouts
            answered += lines
            if answered >= misses:
                return
        raise RuntimeError("the node closed its output")

    service = threading.Thread(target=serve_and_count, daemon=True)
    writer = threading.Thread(target=write, daemon=True)
    with NodeProcess("--origin", "lin-kv", "--ttl", "3600", *BOUNDS_OFF) as node:
        fifo.put(gets(0, misses))  # the whole burst first: every reply of the service queues behind it
        began = time.perf_counter()
        service.start()
        writer.start()
        try:
            service.join(timeout=120)
            elapsed = time.perf_counter() - began
        finally:
            fifo.put(None)
            writer.join(timeout=5)
    if service.is_alive():
        raise RuntimeError("not every get was answered")
    return {"misses": misses, "seconds": elapsed, **counts, "false_timeout_rate": counts["timeout"] / misses}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    gc.collect()
    r: dict[str, Any] = {}
    sizes = [1_000, 10_000, 50_000] if quick else [1_000, 10_000, 100_000, 200_000, 1_000_000]
    burst, stream = (5_000, 5_000) if quick else (20_000, 50_000)
    sweeps = args.node_runs or (1 if quick else 3)
    log("node sweep:")
    r["node_sweep"] = {"sizes": sizes, "runs": [], "burst": burst}
    for i in range(sweeps):  # each sweep beside a burst on an empty node (the goal's empty point)
        with NodeProcess(*NODE_FLAGS, "--max-entries", str(4 * burst)) as empty:
            empty.ask({"type": "get", "msg_id": 2, "key": "hot"})
            empty_s, empty_errors = miss_burst(empty, 0, burst)
        sweep = node_sweep_once(sizes, burst, stream)
        sweep["empty_burst_s"], sweep["empty_burst_errors"] = empty_s, empty_errors
        r["node_sweep"]["runs"].append(sweep)
        log(f"  node sweep run {i + 1}/{sweeps}: empty {empty_s / burst * 1e6:.1f} µs per miss")
    r["dict_floor_kb"] = {str(n): int(child(DICT_FLOOR, n)) for n in sizes}
    log("memory at 100,000 entries:")
    entries, runs = (20_000, 2) if quick else (100_000, 3)
    r["memory"] = {"entries": entries, "node": [memory_once(entries) for _ in range(runs)],
                   "dict_floor_kb": [int(child(DICT_FLOOR, entries)) for _ in range(runs)]}
    log("eviction with fetches in flight:")
    pairs = [eviction_pair(turn) for turn in range(2 if quick else 5)]
    r["eviction"] = {"evicting": [e for e, _ in pairs], "default": [d for _, d in pairs]}
    log("lin-kv flood:")
    r["linkv"] = [linkv_once(20_000) for _ in range(2 if quick else 3)]
    runs, count = (2, 20_000) if quick else (3, 100_000)
    log(f"distinct misses against the echo loop: {runs} pairs of {count:,} lines")
    echo_pairs = [(through(NODE, gets(0, count), b'"cache":"miss"', [*NODE_FLAGS, "--max-entries", str(2 * count)]),
                   through(ECHO, gets(0, count), b'"get_ok"')) for _ in range(runs)]
    node_s, echo_s = [n for n, _ in echo_pairs], [e for _, e in echo_pairs]
    r["echo"] = {"lines": count, "node_s": node_s, "echo_s": echo_s, "ratios": ratios(node_s, echo_s)}
    r["hit"] = hit_vs_floor(3 if quick else 7)
    return r


def node_point(r: dict, size: int) -> list[dict]:
    return [p for run in r["node_sweep"]["runs"] for p in run["points"] if p["entries"] == size]


def goals(r: dict) -> list[tuple[str, str, str]]:
    """(goal, measured, met?) for each goal."""
    sweep, mem, ev = r["node_sweep"], r["memory"], r["eviction"]
    mid = 200_000 if 200_000 in sweep["sizes"] else sorted(sweep["sizes"])[-1]
    top = max(sweep["sizes"])
    fill_ratio = ratios([p["burst_s"] for p in node_point(r, mid)], [run["empty_burst_s"] for run in sweep["runs"]])
    mem_ratio = ratios([n["delta_kb"] for n in mem["node"]], mem["dict_floor_kb"])
    ev_ratio = ratios([a["admitted_s"] for a in ev["evicting"]], [b["admitted_s"] for b in ev["default"]])
    measures = [  # (measure, values run by run, unit, goal, whether the goal is strictly below)
        (f"time per miss, node with {mid:,} entries / empty ({sweep['burst']:,}-miss bursts)", fill_ratio, "x",
         GOALS["fill_ratio"], False),
        (f"longest gap between hits (one per 5 ms), node at {top:,} entries taking "
         f"{node_point(r, top)[0]['stream_misses']:,} misses",
         [p["stream_max_gap_s"] * 1e3 for p in node_point(r, top)], "ms", GOALS["pause_s"] * 1e3, True),
        (f"RSS per entry, node at {mem['entries']:,} entries / dict", mem_ratio, "x", GOALS["memory_ratio"], False),
        ("`--max-entries 1000`, 8,000 misses in flight: `stats` answered after written",
         [x["stats_after_written_s"] * 1e3 for x in ev["evicting"]], "ms", GOALS["stats_s"] * 1e3, False),
        ("the same: admitting 8,000 misses / the same with no eviction", ev_ratio, "x", GOALS["eviction_ratio"],
         False),
        ("lin-kv burst of 20,000 distinct misses: false timeouts",
         [x["false_timeout_rate"] * 100 for x in r["linkv"]], "%", GOALS["false_timeouts"] * 100, False),
        (f"{r['echo']['lines']:,} distinct misses, node / echo loop (time)", r["echo"]["ratios"], "x",
         GOALS["echo_ratio"], False),
        ("a hit in the library / the floor", r["hit"]["ratios"], "x", GOALS["hit_ratio"], False),
    ]
    rows = []
    for name, values, unit, goal, below in measures:
        spaced = unit if unit == "x" else f" {unit}"
        measured = f"{med_range(values, 0 if unit == 'ms' else 2)}{spaced}"
        rows.append((f"{name}: {'<' if below else '≤'} {goal:g}{spaced}",
                     f"{measured}, {len(values)} run{'s' if len(values) > 1 else ''}", verdict(values, goal, below)))
    return rows


def plots(r: dict, plot_dir: Path) -> None:
    """Each plot: the node's median, against the number of entries."""
    plt = pyplot()
    if plt is None:
        return

    def draw(filename: str, field: Callable[[dict], float], ylabel: str, title: str, subtitle: str,
             goal: float | None = None, floor: bool = False, log_y: bool = False) -> None:
        fig, ax = plt.subplots(figsize=(8, 5))
        xs = sorted(r["node_sweep"]["sizes"])
        ax.plot(xs, [med([field(p) for p in node_point(r, x)]) for x in xs], marker="o", label="node")
        if floor:
            xs = sorted(int(n) for n in r["dict_floor_kb"])
            ax.plot(xs, [r["dict_floor_kb"][str(x)] * 1024 / x for x in xs], marker="o",
                    label="dict of the same keys and values")
        if goal is not None:
            ax.axhline(goal, color="grey", linestyle=":", label="goal")
        ax.set(xscale="log", xlabel="entries in the cache", ylabel=ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save_plot(fig, plot_dir / filename, title, subtitle)

    draw("scale_miss_cost.png", lambda p: p["burst_s"] / p["burst"] * 1e6, "µs per miss (median of runs)",
         "The cost of a miss against the size of the cache", "µs per miss, in bursts of distinct misses: lower "
         "is better, flat is the goal")
    draw("scale_pause.png", lambda p: p["stream_max_gap_s"] * 1e3, "ms (median of runs; log scale)",
         "The longest pause against the size of the cache", "the longest gap between two hits sent every 5 ms "
         "while misses arrive: lower is better, under the goal (100 ms)", goal=GOALS["pause_s"] * 1e3, log_y=True)
    draw("scale_memory.png", lambda p: p["rss_kb"] * 1024 / p["entries"], "bytes per entry (RSS)",
         "Memory per entry against the size of the cache",
         "lower is better: the goal is within 1.5x a plain dict of the same keys and values", floor=True)


def render(r: dict, plot_dir: Path) -> str:
    plots(r, plot_dir)
    return section("Scale: costs against the size of the cache", r, "Ratios are run by run.", __doc__,
                   goals_table(goals(r)),
                   "![µs per miss against entries](plots/scale_miss_cost.png)\n"
                   "![longest pause against entries](plots/scale_pause.png)\n"
                   "![memory per entry against entries](plots/scale_memory.png)")


def main(argv: list[str] | None = None) -> int:
    return part_main("scale", __doc__, argv, measure, render,
                     ("--node-runs", dict(type=int, default=0, help="runs of the node sweep (default 3; 1 quick)")))


if __name__ == "__main__":
    sys.exit(main())
