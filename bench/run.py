#!/usr/bin/env python3
"""The benchmarks' one entry point.

    python3 bench/run.py                  # every part below but fuzz, in turn (about 15 minutes on 2 cores)
    python3 bench/run.py --quick          # the same as a smoke run, written under bench/out/
    python3 bench/run.py PART [ARGS...]   # one part; `python3 bench/run.py PART --help` for its flags
    python3 bench/run.py PART --report    # measure nothing: redo its section and plots from results/PART.json

Each part writes its raw figures to bench/results/PART.json, its plots to bench/plots/, and its
section of bench/RESULTS.md (between its markers, through common.write_section, the one writer of
that file). Nothing here writes README.md: its figures are copied from RESULTS.md by hand.
Needs the `bench` extra (pip install -e '.[bench]'); a peer that is not installed is skipped, and said so.
"""

from __future__ import annotations

import importlib
import sys

# part -> (its module in bench/, what it measures). A part is a module with
# `main(argv: list[str] | None = None) -> int`; add one here to add a part.
PARTS: dict[str, tuple[str, str]] = {
    "inprocess": ("inprocess", "the library against its peers: a hit, herds of threads"),
    "node": ("node", "the node through its pipes: cached gets, 10,000 waiters released"),
    "scale": ("scale", "costs against the size of the cache (about 4 minutes)"),
    "linkv": ("linkv", "Maelstrom's lin-kv workload, against a node that caches nothing"),
    "hitratio": ("hitratio", "hit ratio of the eviction policies"),
    "asyncio": ("asyncio_costs", "the library's costs under asyncio: an awaited hit, 10,000 tasks on one key"),
    "costs": ("costs", "issue 15's cost goals: miss, hit, gc at 1,000,000 entries, node against echo loop"),
    "flood": ("flood", "a flood of 1,000,000 distinct misses: peak memory, error 11 and error 0 (about 80 s)"),
    "fuzz": ("fuzz", "a long fuzz of the node (not in a full run: it measures nothing)"),
}
NOT_IN_FULL_RUN = {"fuzz"}


def usage() -> str:
    width = max(map(len, PARTS))
    parts = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in PARTS.items())
    return f"{__doc__.strip()}\n\nParts:\n{parts}"


def run_part(name: str, argv: list[str]) -> int:
    try:
        return int(importlib.import_module(PARTS[name][0]).main(argv) or 0)
    except SystemExit as exit:  # argparse refusing a flag, say --quick, ends that part, not the whole run
        return exit.code if isinstance(exit.code, int) else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if args and not args[0].startswith("-"):
        if args[0] not in PARTS:
            print(f"no part {args[0]!r}\n\n{usage()}", file=sys.stderr)
            return 2
        return run_part(args[0], args[1:])
    failed = []
    for name in PARTS:
        if name not in NOT_IN_FULL_RUN:
            print(f"== {name}", file=sys.stderr, flush=True)
            if run_part(name, args) != 0:
                failed.append(name)
    if failed:
        print(f"parts that did not finish: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
