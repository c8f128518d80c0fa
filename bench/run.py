#!/usr/bin/env python3
"""Run every benchmark: the in-process one against the peers and the floor,
and the node through its pipes against the echo floor. Writes Markdown
tables (bench/RESULTS.md), the README's Benchmarks section (between its bench markers),
plots (bench/plots/*.png) and the raw figures (bench/results.json).

    python3 bench/run.py            # the full run, a few minutes on 2 cores
    python3 bench/run.py --quick    # a smoke run: fewer, shorter runs; writes under bench/out/ only

Needs the `bench` extra (dogpile.cache, cachetools, cachebox, singleflight,
matplotlib); a peer that is not installed is skipped and said so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

import inprocess  # noqa: E402
import node_bench  # noqa: E402
import node_throughput as nt  # noqa: E402
import report  # noqa: E402
from contestants import CONTESTANTS, version  # noqa: E402


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", nt.ROOT, "rev-parse", "--short", "HEAD"], check=False,
                                capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", nt.ROOT, "diff", "--name-only", "HEAD", "--", "*.py", ":!bench"],
                               check=False, capture_output=True, text=True).stdout.split()
        commit += f" with uncommitted changes to {', '.join(dirty)}" if dirty else ""
    except OSError:
        commit = "unknown"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
        "implementation": platform.python_implementation(), "os": f"{platform.system()} {platform.release()}",
        "load_before": os.getloadavg(), "commit": commit or "unknown",
        "versions": {dist: version(dist) for _, dist, _ in CONTESTANTS.values() if dist} | {
            "matplotlib": version("matplotlib")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (results go under bench/out/)")
    parser.add_argument("--out", help="where to write RESULTS.md, README_SECTION.md and plots/ "
                                      "(default: bench/, or bench/out/ with --quick)")
    args = parser.parse_args()
    quick = args.quick
    out_dir = args.out or (os.path.join(BENCH, "out") if quick else BENCH)
    os.makedirs(os.path.join(BENCH, "out"), exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.perf_counter()
    results: dict[str, Any] = {"quick": quick, "machine": machine()}
    log(f"collapsed-forwarding benchmarks ({'quick' if quick else 'full'} run)")
    results["part_seconds"] = {}

    def part(name: str, fn: Any, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        results[name] = fn(log=log, **kwargs)
        results["part_seconds"][name] = seconds = time.perf_counter() - t0
        log(f"    ({name}: {seconds:.0f} s; load average {os.getloadavg()[0]:.2f})")

    log("in-process:")
    part("hit", inprocess.hit_cost, reps=3 if quick else 9, target_s=0.01 if quick else 0.04)
    part("herds", inprocess.herds, reps=2 if quick else 5, sizes=(10, 100, 1000))
    part("mixed", inprocess.mixed, reps=2 if quick else 5, duration=0.3 if quick else 1.0)
    log("node:")
    part("throughput", node_bench.throughput, runs=2 if quick else 5, messages=20_000 if quick else 50_000)
    part("release", node_bench.release, reps=2 if quick else 5)
    part("memory", node_bench.memory, reps=1 if quick else 2, burst_reps=0 if quick else 2)
    results["seconds"] = time.perf_counter() - started
    results["machine"]["load_after"] = os.getloadavg()

    raw = os.path.join(out_dir, "results.json")
    with open(raw, "w") as f:
        json.dump(results, f, indent=1)
    paths = report.write(results, out_dir, log=log)
    log(f"done in {results['seconds']:.0f} s: {raw}, " + ", ".join(paths))
    print(report.goals_text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
