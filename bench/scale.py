#!/usr/bin/env python3
"""The scale part: costs against the size of the cache, each goal a ratio measured in one run.

    python3 bench/run.py scale                          # beside the runs before this work and after the move
    python3 bench/run.py scale --baseline other.json    # beside another earlier run instead

The node is driven as `python3 main.py` through its pipes (node.NodeProcess), the library is
imported as `from proxy import CollapsedForwardingProxy`. Every node runs `--sim-latency 0 --ttl 3600`
unless said:

* sweep, node: one process is filled with distinct keys (5,000 gets written,
  their replies read, then the next 5,000) up to each size in turn. At each
  size: (1) a burst of distinct misses is written at once and timed from the
  write to the last reply (µs per miss); (2) a stream of hits on one key, one
  every 5 ms, runs while distinct misses are written alongside at 5,000/s:
  the longest gap between two hit replies, and the longest hit latency
  (reply read − request written), show the pauses; (3) VmRSS per entry.
* sweep, library: the same in-process (a child process per run, the
  collector enabled): µs per miss over a batch of misses at each size, the
  longest single miss in it, and RSS per entry against a dict of the same
  keys and values.
* eviction: `--max-entries 1000 --sim-latency 2`, 8,000 distinct gets and
  then one `stats` written at once: the time from writing `stats` to its
  reply (which comes once the node has admitted every get, so it is also
  the admission time of the 8,000 gets), against the same on a node with
  the default `--max-entries`.
* lin-kv flood: `--origin lin-kv`; the bench plays the lin-kv service and
  answers each `read` as soon as it reads it, on the node's stdin, alongside
  a burst of 20,000 distinct `get`s written at once: the fraction of gets
  answered with error 0 (timeout) although the service answered at once.
* distinct misses against the echo loop: N distinct-key gets through a
  fresh node (it ends holding N entries) and the same N lines through
  bench/echo_node.py: the ratio of the wall times, pairs in turn.
* memory at 100,000 entries: node.memory (paced fill) against node.dict_floor_kb (the
  same keys and values, with an expiry float, in a dict, measured in a separate process).
* hit in the library against the floor: inprocess.hit_vs_floor.
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

from common import (
    BENCH,
    child,
    fmt,
    log,
    med,
    med_range,
    part_main,
    pyplot,
    ratios,
    save_plot,
    section,
    table,
    verdict,
)
from inprocess import hit_vs_floor
from node import ECHO, NODE, PIPE_SIZE, NodeProcess, dict_floor_kb, fill, gets, memory, stats_of, through

GOALS = {"fill_ratio": 1.5, "pause_s": 0.1, "memory_ratio": 1.5, "stats_s": 1.0, "eviction_ratio": 1.2,
         "false_timeouts": 0.01, "echo_ratio": 3.0, "hit_ratio": 2.0}
HIT_BASE = 1 << 40  # msg_id of the hit stream's requests: HIT_BASE + i
NODE_FLAGS = ("--sim-latency", "0", "--ttl", "3600", "--max-fetches", "0", "--shed-after", "0")  # costs, not overload
# the earlier runs the goals table shows beside this one: before this work (9131206), after the package move
BASELINES = [str(BENCH / "results" / "scale_9131206.json"), str(BENCH / "results" / "scale_cf63f3d.json")]


# -- node: fill, miss bursts, hit streams ----------------------------------------

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
    hot = b'{"src":"c0","dest":"n1","body":{"type":"get","msg_id":%d,"key":"hot"}}\n'

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
        node.write(hot % (HIT_BASE + i) + gets(at, stop))
        at = stop
    reader.join(timeout=120)
    if reader.is_alive() or len(arrivals) != ticks:
        raise RuntimeError(f"{len(arrivals)} of {ticks} hits answered")
    times = sorted(t for _, t in arrivals)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return {"max_gap_s": max(gaps, default=0.0), "max_latency_s": max(t - written[i] for i, t in arrivals),
            "misses": misses, "seconds": times[-1] - began, "hits": ticks}


def burst_at(size: int, most: int) -> int:
    """Misses in the timed burst at `size` entries: a fifth of the size, 1,000 to `most`."""
    return min(most, max(1_000, size // 5))


def stream_at(size: int, most: int) -> int:
    """Misses during the hit stream: 30% of the size, up to `most`. Python's full
    collection runs once the objects that survived grow by 25%, so a window that
    adds 30% sees the one that a fill of this size brings (with the old entries)."""
    return min(most, max(1_000, size * 3 // 10))


def node_sweep_once(sizes: Sequence[int], burst: int, stream: int) -> dict:
    """One node filled to each size in turn; `filled` is the next fresh key (the
    measures themselves add entries, so a size is where each measure starts)."""
    top = max(sizes)
    node = NodeProcess(*NODE_FLAGS, "--max-entries", str(3 * top))
    points = []
    try:
        node.ask({"type": "get", "msg_id": 2, "key": "hot"})
        rss0 = node.status("VmRSS")
        filled, bad = 0, 0
        for size in sorted(sizes):
            t0 = time.perf_counter()
            bad += fill(node, filled, max(size, filled), 5_000)
            filled = max(size, filled)
            fill_s = time.perf_counter() - t0
            rss = node.status("VmRSS")
            n_burst = burst_at(filled, burst)
            burst_s, burst_errors = miss_burst(node, filled, n_burst)
            filled += n_burst
            n_stream = stream_at(size, stream)
            pause = hit_stream(node, filled, n_stream)
            filled += n_stream
            points.append({"entries": size, "fill_s": fill_s, "rss_kb": rss - rss0, "burst": n_burst,
                           "burst_s": burst_s, "burst_errors": burst_errors, "fill_errors": bad,
                           **{f"stream_{k}": v for k, v in pause.items()}})
            log(f"    node at {size:,} entries: {burst_s / n_burst * 1e6:.1f} µs per miss, "
                f"longest gap {pause['max_gap_s'] * 1e3:.0f} ms, latency {pause['max_latency_s'] * 1e3:.0f} ms")
        stats = node.ask({"type": "stats", "msg_id": 3})
    finally:
        node.close()
    return {"points": points, "entries_at_end": stats["entries"], "keys_asked": filled + 1}


# -- library sweep (a child process per run) ---------------------------------------

LIBRARY_CHILD = r"""
import gc, json, time
from proxy import CollapsedForwardingProxy

sizes, batch = json.loads(sys.argv[2]), int(sys.argv[3])
backend = lambda key: "value-" + key
proxy = CollapsedForwardingProxy(backend, 3600, max_entries=2 * max(sizes) + 10 * batch)
get, clock = proxy.get, time.perf_counter
rss0 = rss()
filled, points = 0, []
for size in sorted(sizes):
    for i in range(filled, size):
        get("key-%07d" % i)
    filled = max(filled, size)
    rss_kb = rss() - rss0
    n = min(batch, max(1000, size // 5))
    keys = ["key-%07d" % i for i in range(filled, filled + n)]
    longest = 0.0
    began = clock()
    for key in keys:
        t = clock()
        get(key)
        t = clock() - t
        if t > longest:
            longest = t
    elapsed = clock() - began
    filled += n
    assert proxy.stats()["misses"] == filled, "the batch must be misses"
    t = clock()
    gc.collect()
    full_gc = clock() - t
    points.append({"entries": size, "rss_kb": rss_kb, "batch": n, "batch_s": elapsed, "longest_s": longest,
                   "full_gc_s": full_gc})
print(json.dumps({"points": points, "stats": proxy.stats()}))
"""


def library_sweep_once(sizes: Sequence[int], batch: int) -> dict:
    return json.loads(child(LIBRARY_CHILD, json.dumps(list(sizes)), batch))  # type: ignore[no-any-return]


def dict_floor_points(sizes: Sequence[int]) -> dict[str, int]:
    return {str(n): dict_floor_kb(n) for n in sizes}


# -- eviction with fetches in flight ---------------------------------------------------

def eviction_once(max_entries: int | None, misses: int = 8_000, latency: float = 2.0) -> dict:
    flags = ["--sim-latency", str(latency), "--origin-timeout", str(latency + 10), "--ttl", "3600",
             "--max-fetches", "0", "--shed-after", "0"]
    if max_entries is not None:
        flags += ["--max-entries", str(max_entries)]
    node = NodeProcess(*flags)
    stats_line = b'{"src":"c0","dest":"n1","body":{"type":"stats","msg_id":7}}\n'
    marks: list[float] = []
    try:
        batch = gets(0, misses)
        began = time.perf_counter()
        node.write(batch + stats_line)
        written = time.perf_counter()
        # replies to early gets may come before stats_ok when admission is slow
        data = node.read_lines(misses + 1, seen_at=lambda now, chunk: marks.append(now) if b'"stats_ok"' in chunk
                               else None)
        answered, stats = marks[0], stats_of(data)
    finally:
        node.close()
    if stats.get("type") != "stats_ok" or data.count(b'"get_ok"') != misses:
        raise RuntimeError(f"eviction run: stats {stats}, {data.count(b'get_ok')} of {misses} get_ok")
    return {"max_entries": max_entries, "misses": misses, "stats_after_written_s": answered - written,
            "admitted_s": answered - began, "in_flight": stats["in_flight"], "entries_after": stats["entries"]}


LIBRARY_EVICTION = r"""
import json, time
from proxy import CollapsedForwardingProxy

class Silent:  # a non-blocking origin that never answers: every flight stays in the air
    def start_fetch(self, key, done):
        pass

in_flight, max_entries = int(sys.argv[2]), int(sys.argv[3])
proxy = CollapsedForwardingProxy(Silent(), 3600, timeout=600, max_entries=max_entries)
request, on_answer = proxy.request, lambda answer: None
began = time.perf_counter()
for i in range(in_flight):
    request("key-%07d" % i, on_answer)
print(json.dumps({"seconds": time.perf_counter() - began}))
"""


def library_eviction_once(in_flight: int, max_entries: int) -> float:
    return json.loads(child(LIBRARY_EVICTION, in_flight, max_entries))["seconds"] / in_flight  # type: ignore[no-any-return]


# -- lin-kv flood: the bench is the service -------------------------------------------

RPC_READ = re.compile(rb'"dest":"lin-kv","body":\{"type":"read","msg_id":(\d+),"key":"([^"]*)"')


def linkv_once(misses: int = 20_000, chunk: int = 1 << 16) -> dict:
    """The node's stdin is fed from one first-in-first-out queue, as
    Maelstrom's network delivers: the burst of gets goes in at once, and each
    reply of the service goes in behind whatever was queued before it."""
    node = NodeProcess("--origin", "lin-kv", "--ttl", "3600", "--max-fetches", "0", "--shed-after", "0")
    fifo: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    counts = {"ok": 0, "timeout": 0, "other": 0, "rpcs": 0}

    marks: dict[str, float] = {}

    def write() -> None:
        while (data := fifo.get()) is not None:
            node.write(data)
            if data is last_get:
                marks["gets_written"] = time.perf_counter()

    def serve_and_count() -> None:
        """Whole chunks at a time (regex and count in C): the driver must not be
        the one that falls behind, on a machine the node shares with it."""
        pending = b""
        answered = 0
        while answered < misses:
            data = node.stdout.read1(PIPE_SIZE)
            if not data:
                raise RuntimeError("the node closed its output")
            cut = data.rfind(b"\n") + 1
            whole, pending = pending + data[:cut], data[cut:] if cut else pending + data
            if not cut:
                continue
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

    service = threading.Thread(target=serve_and_count, daemon=True)
    writer = threading.Thread(target=write, daemon=True)
    batch = gets(0, misses)
    began = time.perf_counter()
    at = 0
    last_get = b""
    while at < len(batch):  # whole lines
        end = batch.rfind(b"\n", at, at + chunk) + 1 or len(batch)
        last_get = batch[at:end]
        fifo.put(last_get)
        at = end
    service.start()
    writer.start()
    try:
        service.join(timeout=120)
        elapsed = time.perf_counter() - began
    finally:
        fifo.put(None)
        writer.join(timeout=5)
        node.close()
    if service.is_alive():
        raise RuntimeError("not every get was answered")
    return {"misses": misses, "seconds": elapsed, **counts, "false_timeout_rate": counts["timeout"] / misses,
            "gets_written_s": marks.get("gets_written", float("nan")) - began}


# -- distinct misses against the echo loop ---------------------------------------------

def versus_echo(runs: int, count: int) -> dict:
    node_s, echo_s = [], []
    for _ in range(runs):
        node_s.append(through(NODE, gets(0, count), b'"cache":"miss"', [*NODE_FLAGS, "--max-entries", str(2 * count)]))
        echo_s.append(through(ECHO, gets(0, count), b'"get_ok"'))
    log(f"  distinct misses vs echo: {runs} pairs of {count:,} lines")
    return {"lines": count, "node_s": node_s, "echo_s": echo_s,
            "ratios": ratios(node_s, echo_s)}


# -- the whole run ------------------------------------------------------------------------

def measure(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    gc.collect()
    paths = [Path(b).resolve() for b in args.baseline or BASELINES]  # kept relative to bench/ where they can be
    r: dict[str, Any] = {"baselines": [str(p.relative_to(BENCH) if p.is_relative_to(BENCH) else p) for p in paths]}
    sizes = [1_000, 10_000, 50_000] if quick else [1_000, 10_000, 100_000, 200_000, 1_000_000]
    node_runs = args.node_runs or (1 if quick else 3)
    burst = 5_000 if quick else 20_000
    log("node sweep:")
    r["node_sweep"] = {"sizes": sizes, "runs": [], "burst": burst}
    for i in range(node_runs):
        with NodeProcess(*NODE_FLAGS, "--max-entries", str(4 * burst)) as empty:  # the goal's empty point
            empty.ask({"type": "get", "msg_id": 2, "key": "hot"})
            empty_s, empty_errors = miss_burst(empty, 0, burst)
        sweep = node_sweep_once(sizes, burst, stream=5_000 if quick else 50_000)
        sweep["empty_burst_s"], sweep["empty_burst_errors"] = empty_s, empty_errors
        r["node_sweep"]["runs"].append(sweep)
        log(f"  node sweep run {i + 1}/{node_runs}: empty {empty_s / burst * 1e6:.1f} µs per miss")
    log("library sweep:")
    lib_sizes = [1_000, 10_000, 50_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    lib_batch = 5_000 if quick else 20_000
    r["library_sweep"] = {"sizes": lib_sizes, "batch": lib_batch,
                          "runs": [library_sweep_once(lib_sizes, lib_batch) for _ in range(1 if quick else 3)]}
    r["dict_floor_kb"] = dict_floor_points(sorted(set(sizes) | set(lib_sizes)))
    log("memory at 100,000 entries:")
    mem_entries, mem_runs = (20_000, 2) if quick else (100_000, 3)
    mem = memory(mem_runs, 0, mem_entries)  # the node part's measure, with no burst fills
    r["memory"] = {"entries": mem_entries, "node": mem["paced"], "dict_floor_kb": mem["dict_floor_kb"]}
    log("eviction with fetches in flight:")
    ev_runs, lib_in_flight = (2, 2_000) if quick else (3, 8_000)
    r["eviction"] = {"evicting": [], "default": []}
    for _ in range(ev_runs):
        r["eviction"]["evicting"].append(eviction_once(1000))
        r["eviction"]["default"].append(eviction_once(None))
    r["eviction"]["library"] = {
        "in_flight": lib_in_flight,
        "evicting_s": [library_eviction_once(lib_in_flight, 1000) for _ in range(ev_runs)],
        "default_s": [library_eviction_once(lib_in_flight, 100_000) for _ in range(ev_runs)]}
    log("lin-kv flood:")
    r["linkv"] = [linkv_once(20_000) for _ in range(2 if quick else 3)]
    r["linkv_100k"] = [] if quick else [linkv_once(100_000)]
    log("distinct misses against the echo loop:")
    r["echo"] = versus_echo(2 if quick else 3, 20_000 if quick else 100_000)
    r["hit"] = hit_vs_floor(3 if quick else 7)
    return r


# -- figures ----------------------------------------------------------------------------

def node_point(r: dict, size: int) -> list[dict]:
    return [p for run in r["node_sweep"]["runs"] for p in run["points"] if p["entries"] == size]


def goals(r: dict) -> list[tuple[str, list[float], str, float, str]]:
    """(measure, values run by run, how to print, goal, direction) for each goal."""
    sweep = r["node_sweep"]
    burst = sweep["burst"]
    sizes = sweep["sizes"]
    mid = 200_000 if 200_000 in sizes else sorted(sizes)[-1]
    top = max(sizes)
    empties = [run["empty_burst_s"] for run in sweep["runs"]]
    at_mid = [p["burst_s"] for p in node_point(r, mid)]
    fill_ratio = ratios(at_mid, empties)
    gaps = [p["stream_max_gap_s"] for p in node_point(r, top)]
    mem = r["memory"]
    mem_ratio = ratios([n["delta_kb"] for n in mem["node"]], mem["dict_floor_kb"])
    ev = r["eviction"]
    stats_s = [x["stats_after_written_s"] for x in ev["evicting"]]
    ev_ratio = ratios([a["admitted_s"] for a in ev["evicting"]], [b["admitted_s"] for b in ev["default"]])
    false_t = [x["false_timeout_rate"] for x in r["linkv"]]
    echo = r["echo"]["ratios"]
    hit = r["hit"]["ratios"]
    return [
        (f"time per miss, node with {mid:,} entries / empty ({burst:,}-miss bursts)", fill_ratio, "x",
         GOALS["fill_ratio"], "<="),
        (f"longest gap between hits (one per 5 ms), node at {top:,} entries taking "
         f"{node_point(r, top)[0]['stream_misses']:,} misses, ms", [g * 1e3 for g in gaps], "ms",
         GOALS["pause_s"] * 1e3, "<"),
        (f"RSS per entry, node at {mem['entries']:,} entries / dict", mem_ratio, "x", GOALS["memory_ratio"], "<="),
        ("`--max-entries 1000`, 8,000 misses in flight: `stats` answered after written, ms",
         [s * 1e3 for s in stats_s], "ms", GOALS["stats_s"] * 1e3, "<="),
        ("the same: admitting 8,000 misses / the same with no eviction", ev_ratio, "x", GOALS["eviction_ratio"],
         "<="),
        ("lin-kv burst of 20,000 distinct misses: false timeouts, %", [f * 100 for f in false_t], "%",
         GOALS["false_timeouts"] * 100, "<="),
        (f"{r['echo']['lines']:,} distinct misses, node / echo loop (time)", echo, "x", GOALS["echo_ratio"], "<="),
        ("a hit in the library / the floor", hit, "x", GOALS["hit_ratio"], "<="),
    ]


def show(values: Sequence[float], unit: str) -> str:
    digits = 0 if unit == "ms" else 2 if unit in ("x", "%") else 1
    return med_range(values, digits) + (unit if unit == "x" else f" {unit}" if unit != "ms" else "")


def runs(values: Sequence[float]) -> str:
    return f"{len(values)} run{'s' if len(values) != 1 else ''}"


def label(res: dict) -> str:
    return str(res["machine"]["commit"]).split()[0]


def goals_table(r: dict, befores: Sequence[dict] = ()) -> str:
    """The goals, with a column for each earlier run (oldest first) and one for this run."""
    rows = []
    olds = [{g[0]: g for g in goals(b)} for b in befores]
    for name, values, unit, goal, direction in goals(r):
        row = [name, f"{direction} {goal:g}{'x' if unit == 'x' else ' ' + unit}"]
        for old in olds:
            prev = old.get(name)
            row.append(f"{show(prev[1], unit)} ({runs(prev[1])})" if prev else "-")
        row += [f"{show(values, unit)} ({runs(values)})", verdict(values, goal, below=direction == "<")]
        rows.append(row)
    header = ["measure", "goal"] + [f"at {label(b)}" for b in befores] + [f"now ({label(r)})", "met now?"]
    return table(header, rows, ["l", "r"] + ["r"] * len(befores) + ["r", "c"])


def sweep_table(r: dict) -> str:
    sweep, lib = r["node_sweep"], r["library_sweep"]
    floor = r["dict_floor_kb"]
    rows = []
    for size in sorted(set(sweep["sizes"]) | set(lib["sizes"])):
        pts = node_point(r, size)
        lpts = [p for run in lib["runs"] for p in run["points"] if p["entries"] == size]
        rows.append([
            f"{size:,}", med_range([p["burst_s"] / p["burst"] * 1e6 for p in pts], 1),
            med_range([p["stream_max_gap_s"] * 1e3 for p in pts]),
            med_range([p["stream_max_latency_s"] * 1e3 for p in pts]),
            med_range([p["rss_kb"] * 1024 / size for p in pts]),
            ", ".join(str(p.get("fill_errors", 0) + p.get("burst_errors", 0)) for p in pts) or "-",
            med_range([p["batch_s"] / p["batch"] * 1e6 for p in lpts], 1),
            med_range([p["longest_s"] * 1e3 for p in lpts], 1), med_range([p["full_gc_s"] * 1e3 for p in lpts], 1),
            med_range([p["rss_kb"] * 1024 / size for p in lpts]),
            fmt(floor[str(size)] * 1024 / size if str(size) in floor else float("nan"))])
    return table(["entries", "node µs/miss", "node longest hit gap, ms", "node longest hit latency, ms",
                  "node B/entry", "node error replies (fill + burst), run by run",
                  "library µs/miss", "library longest miss, ms", "library: gc.collect(), ms",
                  "library B/entry", "dict B/entry"], rows)


def detail_table(r: dict) -> str:
    ev, mem = r["eviction"], r["memory"]
    lib = ev["library"]
    rows = [
        ("`--max-entries 1000`: 8,000 gets + stats written → stats answered, ms",
         med_range([x["admitted_s"] * 1e3 for x in ev["evicting"]])),
        ("default `--max-entries`: the same, ms", med_range([x["admitted_s"] * 1e3 for x in ev["default"]])),
        (f"library, {lib['in_flight']:,} in flight, `max_entries=1000`: µs per miss",
         med_range([s * 1e6 for s in lib["evicting_s"]], 1)),
        (f"library, {lib['in_flight']:,} in flight, `max_entries=100000`: µs per miss",
         med_range([s * 1e6 for s in lib["default_s"]], 1)),
        (f"RSS growth, node, {mem['entries']:,} entries (paced fill), B per entry",
         med_range([x["delta_kb"] * 1024 / mem["entries"] for x in mem["node"]])),
        ("the same keys and values in a dict, B per entry",
         med_range([k * 1024 / mem["entries"] for k in mem["dict_floor_kb"]])),
        ("lin-kv burst: seconds to answer all 20,000", med_range([x["seconds"] for x in r["linkv"]], 2)),
        ("lin-kv burst: error 0 replies", med_range([x["timeout"] for x in r["linkv"]])),
        ("lin-kv burst of 100,000: false timeouts, %",
         med_range([x["false_timeout_rate"] * 100 for x in r.get("linkv_100k", [])] or [float("nan")], 1)),
        (f"{r['echo']['lines']:,} distinct misses through the node, s", med_range(r["echo"]["node_s"], 2)),
        ("the same lines through the echo loop, s", med_range(r["echo"]["echo_s"], 2)),
        ("hit in the library, ns", med_range(r["hit"]["collapsed"])),
        ("the floor (dict + clock), ns", med_range(r["hit"]["floor"])),
    ]
    return table(["measure", "median (min–max)"], [list(x) for x in rows], ["l", "r"])


MISS_WHY = ("The node's misses go to its non-blocking sim origin. The library's go to a blocking function, "
            "which since 72f6c97 runs on a worker thread, so that the leading get, too, returns at its deadline "
            "when the origin hangs: each miss pays a hand-off to that thread and a wake-up back, which cf63f3d, "
            "calling the function inline, did not.")


def plots(r: dict, plot_dir: Path, befores: Sequence[dict]) -> None:
    """Baselines (dashed, dotted) are drawn for the first series of each plot only: the node's, as the goals are."""
    plt = pyplot()
    if plt is None:
        return

    def series(res: dict, which: str, field: Callable[[dict], float]) -> tuple[list[int], list[float]]:
        block = res["node_sweep" if which == "node" else "library_sweep"]
        xs = sorted(block["sizes"])
        return xs, [med([field(p) for run in block["runs"] for p in run["points"] if p["entries"] == x]) for x in xs]

    def draw(filename: str, ylabel: str, title: str, subtitle: str,
             lines: list[tuple[str, str, Callable[[dict], float]]], goal: float | None = None, log_y: bool = False):
        fig, ax = plt.subplots(figsize=(8, 5))
        for i, (name, which, field) in enumerate(lines):
            runs = [*((b, ":" if j else "--") for j, b in enumerate(befores))] if i == 0 else []
            for res, style in [*runs, (r, "-")]:
                ax.plot(*series(res, which, field), style, marker="o", label=f"{name} ({label(res)})")
        if goal is not None:
            ax.axhline(goal, color="grey", linestyle=":", label="goal")
        ax.set(xscale="log", xlabel="entries in the cache", ylabel=ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save_plot(fig, plot_dir / filename, title, subtitle)

    draw("scale_miss_cost.png", "µs per miss (median of runs)", "The cost of a miss against the size of the cache",
         "µs per miss: lower is better, flat is the goal. " + MISS_WHY,
         [("node (wire, burst)", "node", lambda p: p["burst_s"] / p["burst"] * 1e6),
          ("library (get, blocking origin)", "library", lambda p: p["batch_s"] / p["batch"] * 1e6)])
    draw("scale_pause.png", "ms (median of runs; log scale)", "The longest pause against the size of the cache",
         "lower is better: under the goal, 100 ms. The node's gap between two hits sent every 5 ms while "
         "misses arrive; the library's longest single miss and one full gc.collect().",
         [("node: longest gap between hits", "node", lambda p: p["stream_max_gap_s"] * 1e3),
          ("library: longest single miss", "library", lambda p: p["longest_s"] * 1e3),
          ("library: one full gc.collect()", "library", lambda p: p["full_gc_s"] * 1e3)],
         goal=GOALS["pause_s"] * 1e3, log_y=True)
    floor = r["dict_floor_kb"]
    draw("scale_memory.png", "bytes per entry (RSS)", "Memory per entry against the size of the cache",
         "lower is better: the goal is within 1.5x a plain dict of the same keys and values",
         [("node", "node", lambda p: p["rss_kb"] * 1024 / p["entries"]),
          ("library", "library", lambda p: p["rss_kb"] * 1024 / p["entries"]),
          ("dict of the same keys and values", "library",
           lambda p: floor.get(str(p["entries"]), float("nan")) * 1024 / p["entries"])])


def render(r: dict, plot_dir: Path) -> str:
    befores = [json.loads((BENCH / path).read_text()) for path in r.get("baselines", [])]
    plots(r, plot_dir, befores)
    base = "".join(f" The column at {label(b)} was measured {b['machine']['date']} by `{b.get('command', '-')}`."
                   for b in befores)
    return section("Scale: costs against the size of the cache", r, "Figures are medians with (min–max) of the "
                   f"runs; ratios are run by run.{base} How each is\nmeasured is in the docstring of `bench/scale.py`.",
                   goals_table(r, befores),
                   f"Against the number of entries (node: `--sim-latency 0 --ttl 3600`, {r['node_sweep']['burst']:,}"
                   "-miss bursts;\nhits one per 5 ms while 5,000 misses/s arrive; library: `get` with a blocking "
                   f"origin, batches of\n{r['library_sweep']['batch']:,} misses):", sweep_table(r),
                   "![µs per miss against entries](plots/scale_miss_cost.png)\n"
                   "![longest pause against entries](plots/scale_pause.png)\n"
                   "![memory per entry against entries](plots/scale_memory.png)", MISS_WHY, detail_table(r))


def main(argv: list[str] | None = None) -> int:
    return part_main("scale", __doc__, argv, measure, render,
                     ("--baseline", dict(action="append", default=[], metavar="JSON",
                                         help="an earlier run's results, shown beside this one (repeat, oldest "
                                              "first; default: the runs at 9131206 and cf63f3d)")),
                     ("--node-runs", dict(type=int, default=0, help="runs of the node sweep (default 3; 1 quick)")))


if __name__ == "__main__":
    sys.exit(main())
