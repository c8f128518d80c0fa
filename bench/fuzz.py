"""The fuzz part, a long fuzz of the node: `python3 bench/run.py fuzz --seconds 300 [--seed N] ...`.

Runs tests/support/fuzz.py's `run_once` with seeds N, N+1, ... (one node process each)
until the time is up, then prints the lines sent, the requests that had to be
answered, and every failure with the seed that reproduces it. Exit status 1 if
anything failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import common  # noqa: F401  (puts the repository on sys.path)

from tests.support.fuzz import run_once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py fuzz", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--odd-rate", type=float, default=0.3, help="fraction of service replies made odd")
    args = parser.parse_args(argv)
    started, seed, total = time.monotonic(), args.seed, Counter[str]()
    while time.monotonic() - started < args.seconds:
        run = run_once(seed, args.batches, args.batch_size, args.odd_rate)
        total.update(runs=1, lines_in=run.lines_in, lines_out=run.lines_out, expected=run.expected,
                     hostile=run.hostile, failed=bool(run.failures))
        if run.failures:
            print(f"seed {seed}: {len(run.failures)} failures", flush=True)
            for failure in run.failures[:10]:
                print("   ", failure, flush=True)
        seed += 1
    elapsed = time.monotonic() - started
    print(f"{total['runs']} runs (seeds {args.seed}..{seed - 1}) in {elapsed:.0f}s: {total['lines_in']} lines sent "
          f"to the node ({total['lines_in'] / elapsed:.0f}/s), {total['lines_out']} lines read back, "
          f"{total['expected']} requests that had to be answered, {total['hostile']} hostile-sender messages; "
          f"{total['failed']} runs failed")
    return 1 if total["failed"] else 0

if __name__ == "__main__":
    sys.exit(main())
