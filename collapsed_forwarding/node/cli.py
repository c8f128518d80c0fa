"""The command line: flags (each also read from CF_<NAME>), logging, and the node's run.

The messages the node speaks, its flags and its errors are described in
docs/protocol.md in the project's repository.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from ..policy import DEFAULT_POLICY, POLICIES
from .handlers import CacheNode
from .logs import RepeatFilter

log = logging.getLogger("collapsed_forwarding.cli")

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
    return _number(text, high=1e12)  # some 30,000 years: "forever", and still a number a clock can add


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
    ("origin-timeout", seconds, "1", "seconds from a request's read until its origin fetch fails with error 0"),
    ("negative-ttl", seconds, "1", "seconds a key-does-not-exist answer is cached"),
    ("max-entries", positive_count, "100000", "entries kept; the eviction policy says which go first"),
    ("policy", str, DEFAULT_POLICY, "which keys go first at a bound: tinylfu (adaptive W-TinyLFU: keeps what "
                                    "is asked often) or lru (keeps what was asked last)"),
    ("max-bytes", count, "0", "above 0, the most bytes kept: the key and the value as encoded JSON, per entry"),
    ("sim-latency", seconds, "0.05", "seconds each sim fetch takes"),
    ("sim-error-rate", fraction, "0", "fraction of sim fetches that fail"),
    ("grace", seconds, "0", "seconds past expiry an entry is served stale while one background fetch refreshes it"),
    ("stale-if-error", seconds, "0", "seconds past expiry an entry is served stale when its refresh fails"),
    ("early-refresh", seconds, "0", "XFetch's beta: above 0, hits refresh entries early, in the background"),
    ("jitter", below_one, "0", "fraction by which each entry's TTL is randomly shortened"),
    ("error-ttl", seconds, "0", "seconds an origin failure is remembered and answered without another fetch"),
    ("max-waiters", count, "0", "above 0, the most requests that may wait on one key's fetch"),
    ("shed-after", seconds, "0.1", "overloaded (over 1,000 requests waiting), answer error 11 at once to requests "
                                   "read longer ago than this, or while deadlines run this late; 0: never, and a "
                                   "fetch's deadline counts from its request's handling, not its read"),
    ("max-fetches", count, "2000", "the most origin fetches in the air at once; past it, a miss that would start one "
                                   "more gets error 11 at once; 0: no limit"),
    ("max-pending", count, "100000", "the most requests that may wait for an answer at once (about 3 KB each); "
                                     "past it, error 11 at once; 0: no limit"),
    ("peer-timeout", seconds, "0.5", "seconds a node waits on another node before acting alone"),
    ("lease", seconds, "0.3", "on a cluster, seconds a node may answer read from its copy of a key it does not own; "
                              "0: never"),
    ("lease-drift", below_one, "0.02", "the most two nodes' clocks may differ in rate (0.02: 2%%): the owner "
                                       "records a lease as lasting lease x (1 + this)"),
    ("origin-settle", seconds, "10", "seconds an update sent to the origin may still land after it was sent: "
                                     "after an unknown outcome, and after the node starts"),
    ("fallback-ttl", seconds, "0.3", "on a cluster, seconds a get copy fetched from the origin lives when the "
                                     "key's owner could not be reached"),
    ("log-level", str.upper, "WARNING", "stderr logging level"),
]
ORIGINS = ("sim", "lin-kv", "seq-kv", "lww-kv")


def parse_flags(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    """The flags; each one not given on the command line is read from CF_<NAME>, then
    its default. An error names where the bad value came from: the flag or the variable."""
    parser = argparse.ArgumentParser(prog="collapsed-forwarding", description=DESCRIPTION)
    for name, kind, default, text in FLAGS:
        parser.add_argument("--" + name, type=kind, default=None, help=f"{text} (${env_name(name)}; default {default})")
    flags = parser.parse_args(argv)
    source, given = {}, {}  # where each value came from, and its text as given there
    for name, kind, default, _ in FLAGS:
        dest, env = name.replace("-", "_"), env_name(name)
        if getattr(flags, dest) is not None:
            source[dest] = "--" + name
            continue
        source[dest], text = (env, environ[env]) if env in environ else ("the default", default)
        given[dest] = text
        try:
            setattr(flags, dest, kind(text))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            parser.error(f"{env}: {exc}")
    if flags.origin not in ORIGINS:
        origin = given.get("origin", flags.origin)
        parser.error(f"{source['origin']} must be one of {', '.join(ORIGINS)}, not {origin!r}")
    if flags.policy not in POLICIES:
        parser.error(f"{source['policy']} must be one of {', '.join(sorted(POLICIES))}, not {flags.policy!r}")
    if flags.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        parser.error(f"{source['log_level']} {given.get('log_level', flags.log_level)!r} is not a logging level")
    return flags


def env_name(flag: str) -> str:
    return "CF_" + flag.upper().replace("-", "_")


class BoundedFormatter(logging.Formatter):
    """Every line of a log record cut at MAX_LOG_LINE characters: a 5 MB field in
    a message is logged as its first kilobyte and its length, not whole."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if len(text) <= MAX_LOG_LINE:
            return text
        return "\n".join(line if len(line) <= MAX_LOG_LINE else f"{line[:MAX_LOG_LINE]}... ({len(line)} characters)"
                         for line in text.split("\n"))


MAX_LOG_LINE = 1000


# The interpreter's switch interval in the node's process, 5 ms by default. Under a flood the
# handler thread is always busy, and the reader thread (replies and requests still in the pipe)
# and the timer thread (deadlines) each wait up to an interval every time they want the GIL back:
# at 5 ms, a slow origin's error 0 came up to 0.38 s past --origin-timeout; at 1 ms, 0.14 s. It
# costs a hit nothing measurable (bench/run.py node).
SWITCH_INTERVAL = 0.001


def main(argv: Sequence[str] | None = None) -> int:
    flags = parse_flags(argv)
    sys.setswitchinterval(SWITCH_INTERVAL)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(BoundedFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    repeats = RepeatFilter()
    handler.addFilter(repeats)
    logging.basicConfig(level=flags.log_level, handlers=[handler])
    output = open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # lives as long as the process
    sys.stdout = sys.stderr  # a stray print() must never corrupt the message stream
    node = CacheNode(flags, output)
    node.freeze_gc = True  # this process is the node's alone
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, partial(_stop, node))
    node.serve(sys.stdin.buffer)
    handler.removeFilter(repeats)
    repeats.flush(log)
    return 0


def _stop(node: CacheNode, signum: int, _frame: object) -> None:
    """SIGINT or SIGTERM: stop now. Requests still waiting get no reply (say how
    many); replies already made are flushed; then the process dies by that signal,
    as a shell or supervisor expects, with no traceback."""
    unanswered = node.wire.unanswered()
    log.warning("stopping on %s: %d request%s unanswered", signal.Signals(signum).name, unanswered,
                "" if unanswered == 1 else "s")
    node.wire.flush_if_free()
    for handler in logging.getLogger().handlers:
        handler.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # (not reached: the default action of both is to end the process)
