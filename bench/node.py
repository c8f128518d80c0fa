"""The node part: `python3 main.py` driven through its stdin and stdout.

* throughput: N cached gets (a few keys, warmed first, so every one is a hit) piped through the
  node and through bench/echo_node.py, the floor of any Python node (read a line, json.loads,
  build the reply, json.dumps, write, flush), and its --tuned form (encoder built once, one write
  per read: a stricter floor). Wall time from the first write to the last reply read; the
  contestants in turn, each run in a fresh process. Goal: the node within 1.5x the echo loop.
* release: with --sim-latency L (1 s), 10,000 gets of one cold key written at once. The origin
  answers L after the node reads the first get, which is no earlier than the driver wrote it
  (t0): the time from t0 + L to the last reply read is an upper bound of the time from the
  origin's answer to the last waiter's reply; first to last reply read is a lower bound. A
  `stats` for the key written after the gets is answered while they wait: it confirms that all
  wait, and at that moment the thread count is read from /proc. Goal: under 100 ms.
* memory: VmRSS growth after 100,000 distinct gets (--sim-latency 0) have been answered and their
  deadline timers have run out, filled 1,000 at a time (the entries' own cost) or all at once
  (burst: many fetches in flight together, a high-water mark CPython's allocator keeps); a
  plain dict of the same keys and values with an expiry float, in a process of its own, is the floor.

`NodeProcess` is the one driver of a node process in bench/ (scale.py uses it too).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import BENCH, ROOT, child, fmt, med, med_range, method, part_main, ratios, section, table, verdict

NODE = [sys.executable, str(ROOT / "main.py")]
ECHO = [sys.executable, str(BENCH / "echo_node.py")]
INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'
PIPE_SIZE = 1 << 20
NAP = 0.001  # seconds the driver sleeps between small reads (see read_lines)
GOALS = {"release_s": 0.100, "node_ratio": 1.5}


def get_line(msg_id: int, key: str) -> bytes:
    return b'{"src":"c0","dest":"n1","body":{"type":"get","msg_id":%d,"key":%s}}\n' % (msg_id, json.dumps(key).encode())


def gets(start: int, stop: int, msg_base: int = 1_000_000) -> bytes:
    """Gets of the distinct keys key-START..key-STOP."""
    return b"".join(get_line(msg_base + i, f"key-{i:07d}") for i in range(start, stop))


def status(pid: int, field: str) -> int:
    """A field of /proc/PID/status, in its unit (kB for memory)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class NodeProcess:
    """A node (or echo loop) process with 1 MiB pipes, initialised, its stderr kept aside."""

    def __init__(self, *flags: str, cmd: list[str] = NODE) -> None:
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([*cmd, *flags], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: Any = self.proc.stdin
        self.stdout: Any = self.proc.stdout
        for stream in (self.stdin, self.stdout):  # so neither side blocks while the driver naps (Linux)
            try:
                fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
            except OSError:
                pass
        self.write(INIT)
        self.read_lines(1)

    def write(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def read_lines(self, count: int, nap: float = 0.0,
                   seen_at: Callable[[float, bytes], object] | None = None) -> bytes:
        """Read until `count` lines have come, each chunk shown to `seen_at` with the time it was read.
        With `nap`, sleep that long after each small read, so the replies come in batches: woken by
        every reply, the driver would take a good part of a 2-core machine from the process measured.
        The last reply is then seen at most `nap` late."""
        chunks, seen = [], 0
        while seen < count:
            chunk = self.stdout.read1(PIPE_SIZE)
            if not chunk:
                raise RuntimeError(f"the process closed its output after {seen} of {count} lines")
            if seen_at:
                seen_at(time.perf_counter(), chunk)
            chunks.append(chunk)
            seen += chunk.count(b"\n")
            if nap and seen < count and len(chunk) < PIPE_SIZE // 32:
                time.sleep(nap)
        return b"".join(chunks)

    def timed(self, batch: bytes, count: int) -> tuple[float, bytes]:
        """Seconds from the first write of `batch` (from a thread) to reading its `count` replies."""
        began: list[float] = []

        def write() -> None:
            began.append(time.perf_counter())
            self.write(batch)

        writer = threading.Thread(target=write)
        writer.start()
        replies = self.read_lines(count, nap=NAP)
        elapsed = time.perf_counter() - began[0]
        writer.join()
        return elapsed, replies

    def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        self.write(json.dumps({"src": "c0", "dest": "n1", "body": body}, separators=(",", ":")).encode() + b"\n")
        return json.loads(self.read_lines(1))["body"]  # type: ignore[no-any-return]

    def status(self, field: str) -> int:
        return status(self.proc.pid, field)

    def close(self) -> None:
        """End of input, then the exit; an unclean exit shows the end of the process's stderr."""
        try:
            self.stdin.close()
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.returncode:
                self.err.seek(0)
                sys.stderr.write(self.err.read().decode(errors="replace")[-2000:])
            self.err.close()
        if self.proc.returncode:
            raise RuntimeError(f"{self.proc.args!r} exited {self.proc.returncode}")

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stats_of(replies: bytes) -> dict[str, Any]:
    return next(json.loads(line)["body"] for line in replies.splitlines() if b'"stats_ok"' in line)  # type: ignore[no-any-return]


# -- the node against the echo loop ----------------------------------------------------

def through(cmd: list[str], batch: bytes, expect: bytes, flags: Sequence[str] = (), warm: bytes = b"") -> float:
    """Seconds from the first write of `batch` to its last reply, in a fresh process (`warm` answered
    first); each reply must hold `expect`."""
    count = batch.count(b"\n")
    with NodeProcess(*flags, cmd=cmd) as node:
        if warm:
            node.write(warm)
            node.read_lines(warm.count(b"\n"))
        elapsed, replies = node.timed(batch, count)
    if replies.count(expect) != count:
        raise RuntimeError(f"{cmd}: {replies.count(expect)} of {count} replies had {expect!r}")
    return elapsed


def cached_gets(cmd: list[str], messages: int, keys: int) -> float:
    """`messages` gets of `keys` keys, each warmed first by one miss: all hits."""
    names = [f"k{i}" for i in range(keys)]
    return through(cmd, b"".join(get_line(100 + i, names[i % keys]) for i in range(messages)), b'"cache":"hit"',
                   warm=b"".join(get_line(2 + i, k) for i, k in enumerate(names)))


def throughput(runs: int, messages: int, keys: int = 4) -> dict[str, Any]:
    times: dict[str, list[float]] = {"node_s": [], "echo_s": [], "echo_tuned_s": []}
    for _ in range(runs):
        for name, cmd in (("node_s", NODE), ("echo_s", ECHO), ("echo_tuned_s", [*ECHO, "--tuned"])):
            times[name].append(cached_gets(cmd, messages, keys))
    node, echo, tuned = times["node_s"], times["echo_s"], times["echo_tuned_s"]
    return {"messages": messages, "runs": runs, "keys": keys, **times, "ratio": med(node) / med(echo),
            "paired_ratios": ratios(node, echo),
            "ratio_tuned": med(node) / med(tuned),
            "paired_ratios_tuned": ratios(node, tuned)}


# -- release of 10,000 waiters ----------------------------------------------------------

def release_once(waiters: int = 10_000, latency: float = 1.0) -> dict[str, Any]:
    node = NodeProcess("--sim-latency", str(latency), "--origin-timeout", str(latency + 10))
    chunks: list[tuple[float, bytes]] = []
    probe: dict[str, Any] = {}
    try:
        threads_idle = node.status("Threads")
        batch = b"".join(get_line(10 + i, "cold") for i in range(waiters))
        stats_line = b'{"src":"c0","dest":"n1","body":{"type":"stats","msg_id":5,"key":"cold"}}\n'

        def seen_at(now: float, chunk: bytes) -> None:
            chunks.append((now, chunk))
            if "at" not in probe and b'"stats_ok"' in chunk:
                probe.update(threads=node.status("Threads"), at=now)

        reader = threading.Thread(target=node.read_lines, args=(waiters + 1,), kwargs={"seen_at": seen_at})
        reader.start()
        t0 = time.perf_counter()
        node.write(batch + stats_line)
        reader.join(timeout=latency + 60)
        if reader.is_alive():
            raise RuntimeError("the node did not answer every get")
    finally:
        node.close()
    data = b"".join(c for _, c in chunks)
    stats = stats_of(data)
    misses, collapsed = data.count(b'"cache":"miss"'), data.count(b'"cache":"collapsed"')
    if misses != 1 or collapsed != waiters - 1:
        raise RuntimeError(f"expected 1 miss and {waiters - 1} collapsed, got {misses} and {collapsed}")
    arrivals = [when for when, chunk in chunks if b'"get_ok"' in chunk]
    answer = t0 + latency
    return {"release_s": arrivals[-1] - answer, "spread_s": arrivals[-1] - arrivals[0],
            "stats_reply_s": probe["at"] - t0, "waiting": stats["waiting"], "threads_waiting": probe["threads"],
            "threads_idle": threads_idle}


# -- memory ---------------------------------------------------------------------------

DICT_FLOOR = r"""
import time
n, before, d, now = int(sys.argv[2]), rss(), {}, time.monotonic()
for i in range(n):
    key = "key-%07d" % i
    d[key] = ("value-" + key, now + 60.0)
print(rss() - before)
"""


def dict_floor_kb(entries: int) -> int:
    """RSS growth of a plain dict of the same keys and values, with an expiry float."""
    return int(child(DICT_FLOOR, entries))


def fill(node: NodeProcess, start: int, stop: int, step: int, msg_base: int = 1_000_000) -> int:
    """Distinct misses start..stop, `step` written at a time, each batch answered before the next;
    returns the replies that were not get_ok."""
    bad = 0
    for at in range(start, stop, step):
        count = min(step, stop - at)
        bad += count - node.timed(gets(at, at + count, msg_base), count)[1].count(b'"get_ok"')
    return bad


def memory_once(entries: int = 100_000, paced: int = 0, timeout: float = 1.0) -> dict[str, Any]:
    """RSS growth for `entries` distinct keys: written all at once (paced=0), or
    `paced` at a time, each batch answered before the next is written."""
    node = NodeProcess("--sim-latency", "0", "--origin-timeout", str(timeout), "--max-entries", str(entries * 2))
    try:
        node.ask({"type": "get", "msg_id": 2, "key": "warm"})
        time.sleep(timeout + 0.5)  # the warm-up's deadline timer leaves the heap
        before, started = node.status("VmRSS"), time.perf_counter()
        errors = fill(node, 0, entries, paced or entries, msg_base=10)
        fill_s = time.perf_counter() - started
        time.sleep(timeout + 0.5)  # the fetches' cancelled deadline timers leave the heap
        after = node.status("VmRSS")
        stats = node.ask({"type": "stats", "msg_id": 3})
    finally:
        node.close()
    if stats["entries"] + errors != entries + 1:
        raise RuntimeError(f"expected {entries + 1 - errors} entries, the node has {stats['entries']}")
    return {"paced": paced, "delta_kb": after - before, "fill_s": fill_s, "errors": errors}


def memory(reps: int, burst_reps: int, entries: int = 100_000, paced: int = 1000) -> dict[str, Any]:
    return {"entries": entries, "paced_batch": paced,
            "paced": [memory_once(entries, paced) for _ in range(reps)],
            "burst": [memory_once(entries, 0) for _ in range(burst_reps)],
            "dict_floor_kb": [dict_floor_kb(entries) for _ in range(reps)]}


# -- the part -------------------------------------------------------------------------

def measure(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    r: dict[str, Any] = {"throughput": throughput(2 if quick else 5, 20_000 if quick else 50_000)}
    r["release"] = {"waiters": 10_000, "latency": 1.0, "runs": [release_once() for _ in range(2 if quick else 5)]}
    r["memory"] = memory(1 if quick else 2, 0 if quick else 2)
    return r


def goals(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rel = [run["release_s"] for run in r["release"]["runs"]]
    t = r["throughput"]
    return [(f"{r['release']['waiters']:,} waiters released in under {GOALS['release_s'] * 1e3:g} ms",
             f"{med_range(rel, 0, 1e3)} ms from the origin's answer to the last reply",
             verdict(rel, GOALS["release_s"], below=True)),
            (f"node within {GOALS['node_ratio']:g}x the echo loop's time",
             f"{t['ratio']:.2f}x (paired runs {min(t['paired_ratios']):.2f}–{max(t['paired_ratios']):.2f}x)",
             "**no**" if t["ratio"] > GOALS["node_ratio"] else verdict(t["paired_ratios"], GOALS["node_ratio"]))]


def node_table(r: dict[str, Any]) -> str:
    t, runs, mem = r["throughput"], r["release"]["runs"], r["memory"]
    n, waiters, entries = t["messages"], r["release"]["waiters"], mem["entries"]

    def rate(times: list[float]) -> str:
        return med_range([n / s for s in times])

    def mb(kbs: list[int]) -> str:
        return med_range([k / 1024 for k in kbs], 1)

    def per_entry(kbs: list[int]) -> str:
        return f"{fmt(med(kbs) * 1024 / entries)} B per entry" if kbs else ""

    paced, burst = [x["delta_kb"] for x in mem["paced"]], [x["delta_kb"] for x in mem["burst"]]
    rows = [
        (f"cached gets/s, node (`main.py`), {n:,} gets", rate(t["node_s"]), ""),
        ("cached gets/s, echo loop (`bench/echo_node.py`), the floor", rate(t["echo_s"]), ""),
        ("node time / echo time", f"{t['ratio']:.2f}x (paired runs {min(t['paired_ratios']):.2f}–"
         f"{max(t['paired_ratios']):.2f}x)", f"goal ≤ {GOALS['node_ratio']:g}x"),
        ("cached gets/s, tuned echo loop (`echo_node.py --tuned`)", rate(t["echo_tuned_s"]),
         "encoder built once, one write per read: stricter"),
        ("node time / that echo time", f"{t['ratio_tuned']:.2f}x (paired runs "
         f"{min(t['paired_ratios_tuned']):.2f}–{max(t['paired_ratios_tuned']):.2f}x)", ""),
        (f"{waiters:,} waiters on one key: origin answer → last reply, ms",
         med_range([x["release_s"] for x in runs], 0, 1e3), f"goal < {GOALS['release_s'] * 1e3:g} ms; an upper bound"),
        (f"{waiters:,} waiters: first reply → last reply, ms", med_range([x["spread_s"] for x in runs], 0, 1e3),
         "a lower bound"),
        ("µs per waiter released", med_range([x["release_s"] / waiters for x in runs], 1, 1e6), ""),
        (f"{waiters:,} gets + 1 stats written → stats answered (all admitted), ms",
         med_range([x["stats_reply_s"] for x in runs], 0, 1e3),
         "`waiting` = " + ", ".join(sorted({fmt(x["waiting"]) for x in runs}))),
        ("threads: idle after init / while 10,000 requests wait",
         f"{med([x['threads_idle'] for x in runs]):g} / {med([x['threads_waiting'] for x in runs]):g}",
         "from /proc/<pid>/status"),
        (f"RSS growth for {entries:,} entries, paced fill (1,000 at a time), MB", mb(paced), per_entry(paced)),
        (f"RSS growth for {entries:,} entries, burst fill (all at once), MB", mb(burst), per_entry(burst)),
        (f"the same {entries:,} keys and values in a plain dict, MB (floor)", mb(mem["dict_floor_kb"]),
         per_entry(mem["dict_floor_kb"])),
        (f"{entries:,} distinct misses (`--sim-latency 0`) answered per second: paced / burst fill",
         f"{med_range([entries / x['fill_s'] for x in mem['paced']])} / "
         f"{med_range([entries / x['fill_s'] for x in mem['burst']])}",
         "origin timeouts in the burst fills: " + (", ".join(str(x["errors"]) for x in mem["burst"]) or "-")),
    ]
    return table(["measure", "median (min–max)", "note"], rows, ["l", "r", "l"])


def reading(r: dict[str, Any]) -> str:
    t, rel, mem = r["throughput"], r["release"], r["memory"]
    rel_ms = med([x["release_s"] for x in rel["runs"]]) * 1e3
    paced_mb = med([x["delta_kb"] for x in mem["paced"]]) / 1024
    floor_mb = med(mem["dict_floor_kb"]) / 1024
    text = (f"Cached gets run at {t['ratio']:.2f}x the echo loop's time and {t['ratio_tuned']:.2f}x the tuned "
            f"echo loop's: reading, parsing, encoding and writing the JSON lines is most of the cost of each. "
            f"Releasing {rel['waiters']:,} waiters took {rel_ms:,.0f} ms ({rel_ms * 1e3 / rel['waiters']:.1f} µs "
            f"each), against {med(t['echo_s']) / t['messages'] * 1e6:.1f} µs per message for the whole echo loop. "
            f"The waiters cost no threads ({med([x['threads_waiting'] for x in rel['runs']]):g} threads while "
            f"they wait, {med([x['threads_idle'] for x in rel['runs']]):g} when idle). {mem['entries']:,} entries "
            f"added {paced_mb:,.0f} MB filled 1,000 at a time (a plain dict of the same keys and values: "
            f"{floor_mb:,.0f} MB)")
    if mem["burst"]:
        burst_mb = med([x["delta_kb"] for x in mem["burst"]]) / 1024
        text += (f", and {burst_mb:,.0f} MB written all at once, when many fetches and their requests are alive "
                 f"together and CPython's allocator keeps that high-water mark")
    return text + "."


def render(r: dict[str, Any], plots: Path) -> str:
    return section("The node through its pipes", r, "", method(__doc__),
                   table(["goal", "measured (median of runs, min–max)", "met?"], goals(r), ["l", "l", "c"]),
                   node_table(r), reading(r))


def main(argv: list[str] | None = None) -> int:
    return part_main("node", __doc__, argv, measure, render)


if __name__ == "__main__":
    sys.exit(main())
