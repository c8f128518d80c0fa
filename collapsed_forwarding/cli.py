"""The command line: flags (each also read from CF_<NAME>), logging, and the node's run.

The messages the node speaks, its flags and its errors are described in
docs/protocol.md in the project's repository.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .node import CacheNode

DESCRIPTION = ("collapsed-forwarding: a Maelstrom cache node in which concurrent misses of a key share one "
               "origin fetch. Messages, flags and errors: docs/protocol.md.")


def _number(text: str, kind: type = float, low: float = 0.0, high: float = math.inf) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if not (low <= value <= high and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not within [{low:g}, {high:g}]")
    return value


def seconds(text: str) -> float:
    return _number(text)


def fraction(text: str) -> float:
    return _number(text, high=1.0)


def below_one(text: str) -> float:
    return _number(text, high=0.99)


def count(text: str) -> int:
    return _number(text, kind=int)  # type: ignore[no-any-return]


def positive_count(text: str) -> int:
    return _number(text, kind=int, low=1)  # type: ignore[no-any-return]


# name, type, default, help
FLAGS: list[tuple[str, Callable[[str], Any], str, str]] = [
    ("origin", str, "sim", "what is behind the cache: sim, lin-kv, seq-kv or lww-kv"),
    ("ttl", seconds, "60", "seconds a fetched value stays fresh"),
    ("origin-timeout", seconds, "1", "seconds before an origin fetch fails with error 0"),
    ("negative-ttl", seconds, "1", "seconds a key-does-not-exist answer is cached"),
    ("max-entries", positive_count, "100000", "entries kept; the least recently used goes first"),
    ("sim-latency", seconds, "0.05", "seconds each sim fetch takes"),
    ("sim-error-rate", fraction, "0", "fraction of sim fetches that fail"),
    ("grace", seconds, "0", "seconds past expiry an entry is served stale while one background fetch refreshes it"),
    ("stale-if-error", seconds, "0", "seconds past expiry an entry is served stale when its refresh fails"),
    ("early-refresh", seconds, "0", "XFetch's beta: above 0, hits refresh entries early, in the background"),
    ("jitter", below_one, "0", "fraction by which each entry's TTL is randomly shortened"),
    ("error-ttl", seconds, "0", "seconds an origin failure is remembered and answered without another fetch"),
    ("max-waiters", count, "0", "above 0, the most requests that may wait on one key's fetch"),
    ("peer-timeout", seconds, "0.5", "seconds a node waits on another node before acting alone"),
    ("lease", seconds, "0.3", "on a cluster, seconds a node may answer read from its copy of a key it does not own; "
                              "0: never"),
    ("log-level", str.upper, "WARNING", "stderr logging level"),
]
ORIGINS = ("sim", "lin-kv", "seq-kv", "lww-kv")


def parse_flags(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="collapsed-forwarding", description=DESCRIPTION)
    for name, kind, default, text in FLAGS:
        env = "CF_" + name.upper().replace("-", "_")
        parser.add_argument("--" + name, type=kind, default=environ.get(env, default), help=f"{text} (${env})")
    flags = parser.parse_args(argv)
    if flags.origin not in ORIGINS:
        parser.error(f"--origin must be one of {', '.join(ORIGINS)}, not {flags.origin!r}")
    if flags.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        parser.error(f"--log-level {flags.log_level!r} is not a logging level")
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    flags = parse_flags(argv)
    logging.basicConfig(stream=sys.stderr, level=flags.log_level,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    output = open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # lives as long as the process
    sys.stdout = sys.stderr  # a stray print() must never corrupt the message stream
    CacheNode(flags, output).serve(sys.stdin.buffer)
    return 0

