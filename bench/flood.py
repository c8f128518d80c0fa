"""The flood part: a flood of misses over distinct keys, against the node's bounds.

Init and then 1,000,000 gets of distinct keys are written to one node (`main.py --origin-timeout 1`, the
sim origin) as fast as it reads them, 1,000 a write, and every reply is read: once with the sim's latency
(50 ms), once with a slow origin (`--sim-latency 5`) whose every fetch times out. Measured: the peak RSS
(VmHWM), the replies that were values, error 11 (refused at once: --max-pending, --max-fetches, overload) and
error 0 (the origin timed out), and how much later than --origin-timeout each error 0 came after its get was
written (a get is read as soon as written, bar the pipe's 64 KiB). Goal: every error 0 within
--origin-timeout + 0.2 s.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import fmt, part_main, section, table
from node import INIT, NODE, get_line, status, whole_lines

ORIGINS = {"sim, 50 ms": [], "slow, 5 s": ["--sim-latency", "5"]}
ERROR = re.compile(rb'"type":"error","in_reply_to":(\d+),"msg_id":\d+,"code":(\d+)')


def peak_rss_mb(pid: int) -> float:
    try:
        return status(pid, "VmHWM") / 1024
    except (OSError, StopIteration):
        return float("nan")


def flood(gets: int, origin_timeout: float, flags: list[str]) -> dict[str, Any]:
    # not node.NodeProcess: its 1 MiB pipes and its init before the clock would change what the method measures
    proc = subprocess.Popen([*NODE, "--origin-timeout", str(origin_timeout), *flags],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin
    written = [0.0] * (gets + 2)
    counts: Counter[str] = Counter()
    late: list[float] = []
    peak = [0.0]

    def write() -> None:
        stdin.write(INIT)
        batch = 1000
        for start in range(2, gets + 2, batch):
            ids = range(start, min(start + batch, gets + 2))
            stdin.write(b"".join(get_line(i, f"k{i}") for i in ids))
            stdin.flush()
            now = time.perf_counter()
            for i in ids:
                written[i] = now
            peak[0] = max(peak[0], peak_rss_mb(proc.pid))  # VmHWM already is a peak: read it while the node lives
        stdin.close()

    writer = threading.Thread(target=write)
    started = time.perf_counter()
    writer.start()
    for now, lines in whole_lines(proc.stdout):
        counts["value"] += lines.count(b'"type":"get_ok"')
        for reply_to, code in ERROR.findall(lines):
            counts[f"error {int(code)}"] += 1
            if code == b"0":
                late.append(now - written[int(reply_to)] - origin_timeout)
    writer.join()
    peak[0] = max(peak[0], peak_rss_mb(proc.pid))
    proc.wait()
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak[0], "counts": dict(counts),
            "late_max_s": max(late, default=float("nan")),
            "late_median_s": statistics.median(late) if late else float("nan")}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    gets = args.gets or (50_000 if args.quick else 1_000_000)
    flags = args.node_args.split()
    return {"gets": gets, "origin_timeout": args.origin_timeout, "node_args": flags,
            "runs": {origin: flood(gets, args.origin_timeout, flags + extra) for origin, extra in ORIGINS.items()}}


def render(r: dict[str, Any], plots: Path) -> str:
    runs = r["runs"]
    node = " ".join(["--origin-timeout", f"{r['origin_timeout']:g}", *r["node_args"]])
    others = sorted({k for run in runs.values() for k in run["counts"]} - {"value", "error 11", "error 0"})

    def row(name: str, value: Any) -> tuple[str, ...]:
        return (name, *(value(run) for run in runs.values()))

    rows = [row("gets written", lambda run: f"{r['gets']:,}"),
            row("seconds to read every reply", lambda run: f"{run['seconds']:.1f}"),
            row("peak RSS (VmHWM), MB", lambda run: f"{run['peak_rss_mb']:.0f}"),
            *(row(f"{label}", lambda run, k=k: f"{run['counts'].get(k, 0):,}")
              for k, label in (("value", "replies that were values"), ("error 11", "error 11 (refused at once)"),
                               ("error 0", "error 0 (the origin timed out)"))),
            *(row(f"{k} (other)", lambda run, k=k: f"{run['counts'].get(k, 0):,}") for k in others),
            row("error 0: later than --origin-timeout by, s: at most / median",
                lambda run: f"{fmt(run['late_max_s'], 3)} / {fmt(run['late_median_s'], 3)}")]
    return section("A flood of misses over distinct keys", r, f"Node flags: `{node}`.", __doc__,
                   table(["measure", *(f"origin: {name}" for name in runs)], rows))


def main(argv: list[str] | None = None) -> int:
    return part_main("flood", __doc__, argv, measure, render,
                     ("--gets", dict(type=int, default=0, help="gets written (default 1,000,000; 50,000 --quick)")),
                     ("--origin-timeout", dict(type=float, default=1.0, help="the node's --origin-timeout, s")),
                     ("--node-args", dict(default="", help="more flags for main.py, space-separated")))


if __name__ == "__main__":
    sys.exit(main())
