#!/usr/bin/env python3
"""collapsed-forwarding: a Maelstrom cache node in which concurrent misses of
a key share one origin fetch. The contract is ../shared/PROTOCOL.md; the
README lists the flags (each also read from CF_<NAME>) and the messages.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from typing import Any, BinaryIO

import timers
from cluster import Alone, Cluster
from maelstrom import Body, Malformed, Message, Node, fields_json
from origins import KvOrigin, SimOrigin, cache_key
from proxy import Answer, CacheError, CollapsedForwardingProxy

log = logging.getLogger("main")


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
    ("log-level", str.upper, "WARNING", "stderr logging level"),
]
ORIGINS = ("sim", "lin-kv", "seq-kv", "lww-kv")


def parse_flags(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="collapsed-forwarding", description=__doc__.split("\n\n")[0])
    for name, kind, default, text in FLAGS:
        env = "CF_" + name.upper().replace("-", "_")
        parser.add_argument("--" + name, type=kind, default=environ.get(env, default), help=f"{text} (${env})")
    flags = parser.parse_args(argv)
    if flags.origin not in ORIGINS:
        parser.error(f"--origin must be one of {', '.join(ORIGINS)}, not {flags.origin!r}")
    if flags.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        parser.error(f"--log-level {flags.log_level!r} is not a logging level")
    return flags


def request_key(body: Body) -> Hashable:
    if "key" not in body:
        raise Malformed(f"{body.get('type')} needs a key")
    return cache_key(body["key"])


def field(body: Body, name: str) -> Any:
    if name not in body:
        raise Malformed(f"{body.get('type')} needs {name}")
    return body[name]


def request_ttl(body: Body) -> float | None:
    ttl = body.get("ttl")
    if ttl is not None and (type(ttl) not in (int, float) or ttl < 0):
        raise Malformed(f"ttl must be a non-negative number of seconds, not {ttl!r}")
    return ttl


class CacheNode:
    """The handlers: one per message type, on top of the proxy and an origin."""

    def __init__(self, flags: argparse.Namespace, output: BinaryIO) -> None:
        self.flags = flags
        self.node = Node(output)
        timers.scheduler.around = self.node.batch  # one flush for all a round of due timers sends
        self.node.handlers.update(init=self.init, get=self.get, read=self.read, write=self.write,
                                  cas=self.cas, invalidate=self.invalidate, stats=self.stats,
                                  cf_fetch=self.cf_fetch, cf_drop=self.cf_drop)
        self.origin: Any = None
        self.cluster: Cluster | Alone = Alone()
        # The last answer's fields, encoded: every waiter of a fetch gets the same Answer.
        self._last_encoded: tuple[Answer | None, str, str] = (None, "", "")
        self.proxy: CollapsedForwardingProxy = None  # type: ignore[assignment]  # made at init

    def serve(self, stream: BinaryIO) -> None:
        self.node.serve(stream, drain_timeout=self.flags.origin_timeout + 2 * self.flags.peer_timeout + 5)

    def init(self, msg: Message, body: Body) -> None:
        node_id, node_ids = body.get("node_id"), body.get("node_ids")
        if not (isinstance(node_id, str) and isinstance(node_ids, list) and all(isinstance(n, str) for n in node_ids)):
            raise Malformed("init needs node_id (a string) and node_ids (a list of strings)")
        if self.proxy is None:
            self.node.node_id, self.node.node_ids = node_id, node_ids
            self.proxy = self._make_proxy()
        elif node_id != self.node.node_id:
            log.warning("ignoring a second init as %r: this node is %r", node_id, self.node.node_id)
        self.node.reply(msg, "init_ok")

    def _make_proxy(self) -> CollapsedForwardingProxy:
        f = self.flags
        if f.origin == "sim":
            self.origin = SimOrigin(f.sim_latency, f.sim_error_rate, timeout=f.origin_timeout)
        else:
            self.origin = KvOrigin(self.node, f.origin, f.origin_timeout)
        backend, timeout = self.origin, f.origin_timeout
        if len(self.node.node_ids) > 1:
            # A miss may wait on the owner, then fetch itself: the flight's deadline covers both.
            self.cluster = backend = Cluster(self.node, backend, f.peer_timeout)
            timeout += f.peer_timeout
        return CollapsedForwardingProxy(
            backend, f.ttl, timeout=timeout, negative_ttl=f.negative_ttl, max_entries=f.max_entries,
            grace=f.grace, stale_if_error=f.stale_if_error, early_refresh=f.early_refresh, jitter=f.jitter,
            error_ttl=f.error_ttl, max_waiters=f.max_waiters)

    # -- reads -------------------------------------------------------------

    def get(self, msg: Message, body: Body) -> None:
        self._lookup(msg, request_key(body), request_ttl(body), self._get_answered)

    def read(self, msg: Message, body: Body) -> None:
        self._lookup(msg, request_key(body), request_ttl(body), self._read_answered)

    def _lookup(self, msg: Message, key: Hashable, ttl: float | None,
                answered: Callable[[Message, Answer], None]) -> None:
        answer = self.proxy.request(key, partial(answered, msg), ttl)
        if answer is not None:
            answered(msg, answer)

    def _get_answered(self, msg: Message, answer: Answer) -> None:
        self._answered(msg, answer, "get_ok", with_cache=True)

    def _read_answered(self, msg: Message, answer: Answer) -> None:
        self._answered(msg, answer, "read_ok", with_cache=False)  # lin-kv's read_ok holds only the value

    def _answered(self, msg: Message, answer: Answer, ok: str, with_cache: bool) -> None:
        if answer.error is not None:
            self._fail(msg, answer.error)
            return
        memo = self._last_encoded  # one tuple, read and replaced whole: safe from two threads
        if memo[0] is not answer or memo[1] != ok:
            fields = {"value": answer.value, "cache": answer.cache} if with_cache else {"value": answer.value}
            try:
                memo = self._last_encoded = (answer, ok, fields_json(**fields))
            except (ValueError, TypeError):
                self.node.reply(msg, ok, **fields)  # says why, and answers with an error
                return
        self.node.reply_encoded(msg, ok, memo[2])

    def _fail(self, msg: Message, error: CacheError) -> None:
        self.node.error(msg, error.code, str(error))

    # -- writes: through to the origin, then the entry is dropped ----------

    def write(self, msg: Message, body: Body) -> None:
        key = request_key(body)
        self.origin.write(key, field(body, "value"), partial(self._written, msg, key, "write_ok"))

    def cas(self, msg: Message, body: Body) -> None:
        key = request_key(body)
        self.origin.cas(key, field(body, "from"), field(body, "to"), partial(self._written, msg, key, "cas_ok"))

    def _written(self, msg: Message, key: Hashable, ok: str, error: CacheError | None) -> None:
        # Dropped whatever the outcome: a write that timed out may still have happened.
        reply = partial(self._fail, msg, error) if error is not None else partial(self.node.reply, msg, ok)
        self.cluster.drop_everywhere(key, partial(self.proxy.invalidate, key), reply)

    def invalidate(self, msg: Message, body: Body) -> None:
        key = request_key(body)
        self.cluster.drop_everywhere(key, partial(self.proxy.invalidate, key),
                                     partial(self.node.reply, msg, "invalidate_ok"))

    def stats(self, msg: Message, body: Body) -> None:
        if "key" in body:
            fields = self.proxy.key_stats(request_key(body))
        else:
            fields = self.proxy.stats()
            peers = self.cluster.stats()
            # The proxy counts every fetch it starts; a forward reached the owner, not the origin.
            fields["origin_fetches"] += peers["peer_fallbacks"] - peers["forwards"]
            fields.update(peers)
        self.node.reply(msg, "stats_ok", **fields)

    # -- between nodes (see cluster.py) -------------------------------------

    def cf_fetch(self, msg: Message, body: Body) -> None:
        """Another node's miss for a key this node owns."""
        self._lookup(msg, request_key(body), None, self._fetch_answered)

    def _fetch_answered(self, msg: Message, answer: Answer) -> None:
        ttl_left = max(0.0, round(self.proxy.ttl_left(answer), 6))
        if answer.error is not None:
            self.node.reply(msg, "error", code=answer.error.code, text=str(answer.error), ttl_left=ttl_left)
        else:
            self.node.reply(msg, "cf_fetch_ok", value=answer.value, ttl_left=ttl_left)

    def cf_drop(self, msg: Message, body: Body) -> None:
        self.proxy.invalidate(request_key(body))
        self.node.reply(msg, "cf_drop_ok")


def main(argv: Sequence[str] | None = None) -> int:
    flags = parse_flags(argv)
    logging.basicConfig(stream=sys.stderr, level=flags.log_level,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    output = open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # lives as long as the process
    sys.stdout = sys.stderr  # a stray print() must never corrupt the message stream
    CacheNode(flags, output).serve(sys.stdin.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
