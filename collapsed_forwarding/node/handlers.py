"""The cache node: one handler per Maelstrom message type, on top of the
library's cache, an origin (the library's `SimOrigin`, or `kv.py`) and, on a
cluster, the other nodes (`forwarding.py`, `leases.py`: `owner.py`, `owner_updates.py` and `holder.py`).
The wire plumbing is in `wire.py` and `reader.py`; the messages are described in docs/protocol.md.
"""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, BinaryIO

from ..cache import Answer, CollapsedForwardingProxy, checked_ttl
from ..errors import CacheError
from ..keys import MAX_DEPTH, cache_key, too_deep
from ..origin import SimOrigin
from ..timers import Scheduler
from .codes import code_of
from .forwarding import Alone, ForwardingOrigin
from .kv import KvOrigin
from .leases import LinearKeys
from .reader import Reader
from .update import Update
from .wire import Body, ErrorCode, Handler, Malformed, Message, Wire, fields_json, to_json

log = logging.getLogger("collapsed_forwarding.node")

PEER_PREFIX = "cf_"  # the requests only another node of the cluster may send
NOT_A_NODE = ErrorCode.NOT_SUPPORTED  # a cf_* request from outside node_ids: nothing is done
NOT_THE_OWNER = ErrorCode.TEMPORARILY_UNAVAILABLE  # cf_read / cf_update at a node that does not own the key


def request_key(body: Body) -> Hashable:
    return cache_key(field(body, "key"))  # (field has refused a key nested too deep)


def field(body: Body, name: str) -> Any:
    if name not in body:
        raise Malformed(f"{body.get('type')} needs {name}")
    value = body[name]
    if too_deep(value):  # it could be stored, but not sent back: refuse it now
        raise Malformed(f"{name} is nested more than {MAX_DEPTH} deep")
    return value


def update_of(body: Body, kind: Any) -> Update:
    """The write or cas a request asks for."""
    if kind == "write":
        return Update("write", value=field(body, "value"))
    if kind == "cas":
        return Update("cas", from_=field(body, "from"), to=field(body, "to"))
    raise Malformed(f"{body.get('type')} needs kind write or cas, not {kind!r}")


def request_ttl(body: Body) -> float | None:
    try:
        return checked_ttl(body.get("ttl"))
    except (TypeError, ValueError) as exc:
        raise Malformed(str(exc)) from None



def encoded_size(key: Hashable, value: Any) -> int:
    """What `--max-bytes` counts: the bytes of the key and of the value as JSON on the wire."""
    return json_bytes(key) + json_bytes(value)


def json_bytes(item: Any) -> int:
    """The bytes of `item` as JSON on the wire. Every fill counts them under the proxy's lock, so a
    plain ASCII string (the usual key and value) is counted without being encoded: its JSON is itself
    in quotes, as nothing in it needs an escape."""
    if type(item) is str and item.isascii() and item.isprintable() and '"' not in item and "\\" not in item:
        return len(item) + 2
    try:
        return len(to_json(item).encode("utf-8", "surrogatepass"))
    except (ValueError, TypeError, RecursionError):  # (no value reaches the cache without a JSON form)
        return len(repr(item))

class CacheNode:
    """The handlers: one per message type, on top of the proxy and an origin."""

    def __init__(self, flags: argparse.Namespace, output: BinaryIO) -> None:
        self.flags = flags
        self.scheduler = Scheduler()
        self.wire = Wire(output, self.scheduler)
        self.wire.max_pending = flags.max_pending
        self.reader = Reader(self.wire, shed_after=flags.shed_after)
        self.reader.unshed.add("get")  # its fetch's deadline counts from its read (see _lookup)
        self.scheduler.around = self.wire.batch  # one flush for all a round of due timers sends
        handlers: dict[str, Handler] = dict(
            init=self.init, get=self.get, read=self.read, write=self.write, cas=self.cas,
            invalidate=self.invalidate, stats=self.stats, cf_fetch=self.cf_fetch, cf_drop=self.cf_drop,
            cf_read=self.cf_read, cf_update=self.cf_update, cf_revoke=self.cf_revoke)
        # Every cf_* request is a node's: checked here, once, before any handler sees it.
        self.wire.handlers.update({type_: self._from_a_node(handler) if type_.startswith(PEER_PREFIX) else handler
                                   for type_, handler in handlers.items()})
        self.origin: Any = None
        self.cluster: ForwardingOrigin | Alone = Alone()
        self.linear: LinearKeys | None = None  # read/write/cas on a cluster (leases.py)
        # The last answer's fields, encoded: every waiter of a fetch gets the same Answer.
        # The last answer's fields as JSON, by the identity of its value: (value, cache, ok, encoded).
        self._last_encoded: tuple[Any, str, str, str] = (None, "", "", "")
        self.proxy: CollapsedForwardingProxy = None  # type: ignore[assignment]  # made at init
        self.freeze_gc = False  # the process's owner (cli.main) sets it: see init

    def serve(self, stream: BinaryIO) -> None:
        self.reader.serve(stream, drain_timeout=self.flags.origin_timeout + 2 * self.flags.peer_timeout + 5)

    def init(self, msg: Message, body: Body) -> None:
        node_id, node_ids = body.get("node_id"), body.get("node_ids")
        if not (isinstance(node_id, str) and isinstance(node_ids, list) and all(isinstance(n, str) for n in node_ids)):
            raise Malformed("init needs node_id (a string) and node_ids (a list of strings)")
        if self.proxy is None:
            self.wire.node_id, self.wire.node_ids = node_id, node_ids
            self.proxy = self._make_proxy()
            if self.linear is None:  # a single node's read is served as get is; a cluster's goes to the owner
                self.reader.unshed.add("read")
            if self.freeze_gc:
                # What exists now (modules, the proxy and its empty tables) lives as
                # long as the process: move it out of the collector's sight. Its
                # tables then grow inside containers no collection traverses, so a
                # full collection costs what is in flight, not what is cached (a
                # million entries cost each one 10-20 ms more otherwise, and full
                # collections come often: entries are untracked, so little counts
                # as long-lived and every 25% growth of that little triggers one).
                gc.freeze()
        elif node_id != self.wire.node_id:
            log.warning("ignoring a second init as %r: this node is %r", node_id, self.wire.node_id)
        self.wire.reply(msg, "init_ok")

    def _make_proxy(self) -> CollapsedForwardingProxy:
        f = self.flags
        if f.origin == "sim":
            self.origin = SimOrigin(f.sim_latency, f.sim_error_rate, timeout=f.origin_timeout, scheduler=self.scheduler)
        else:
            self.origin = KvOrigin(self.wire, f.origin, f.origin_timeout)
        backend, timeout = self.origin, f.origin_timeout
        if len(self.wire.node_ids) > 1:
            # A miss may wait on the owner, then fetch itself: the flight's deadline covers both.
            self.cluster = backend = ForwardingOrigin(self.wire, backend, f.peer_timeout,
                                                      fallback_ttl=f.fallback_ttl)
            timeout += f.peer_timeout
        proxy = CollapsedForwardingProxy(
            backend, f.ttl, timeout=timeout, negative_ttl=f.negative_ttl, max_entries=f.max_entries,
            max_bytes=f.max_bytes or None, size_of=encoded_size, policy=f.policy,
            grace=f.grace, stale_if_error=f.stale_if_error, early_refresh=f.early_refresh, jitter=f.jitter,
            error_ttl=f.error_ttl, max_waiters=f.max_waiters, max_fetches=f.max_fetches,
            scheduler=self.scheduler)
        if isinstance(self.cluster, ForwardingOrigin):
            self.linear = LinearKeys(self.wire, self.origin, self.cluster.owner, proxy, lease=f.lease,
                                     drift=f.lease_drift, peer_timeout=f.peer_timeout,
                                     origin_timeout=f.origin_timeout, settle=f.origin_settle,
                                     max_keys=f.max_entries)
        return proxy

    # -- reads -------------------------------------------------------------

    def get(self, msg: Message, body: Body) -> None:
        key, ttl = request_key(body), request_ttl(body)
        answer = self.proxy.hit(key)  # a fresh entry, without the lock (a hit's ttl changes nothing)
        if answer is not None:
            self._get_answered(msg, answer)
            return
        self._lookup(msg, key, ttl, self._get_answered)

    def read(self, msg: Message, body: Body) -> None:
        if self.linear is not None:
            self.linear.read(request_key(body), partial(self._linear_read, msg))
            return
        # The freshness flags are for get, whose `cache` field says when it is stale; a read never is.
        self._lookup(msg, request_key(body), request_ttl(body), self._read_answered, serve_stale=False)

    def _linear_read(self, msg: Message, result: Any) -> None:
        if isinstance(result, CacheError):
            self._fail(msg, result)
        else:
            self.wire.reply(msg, "read_ok", value=result)

    def _lookup(self, msg: Message, key: Hashable, ttl: float | None,
                answered: Callable[[Message, Answer], None], serve_stale: bool = True) -> None:
        # A fetch it starts times out --origin-timeout after the request was read, not after now; read
        # that long ago, it starts none. It may still join a fetch in the air, whose deadline is no later.
        answer = self.proxy.request(key, partial(answered, msg), ttl, serve_stale=serve_stale, age=self.reader.age)
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
        if memo[0] is not answer.value or memo[1] != answer.cache or memo[2] != ok:
            fields = {"value": answer.value, "cache": answer.cache} if with_cache else {"value": answer.value}
            try:
                memo = self._last_encoded = (answer.value, answer.cache, ok, fields_json(**fields))
            except (ValueError, TypeError, RecursionError):
                self.wire.reply(msg, ok, **fields)  # says why, and answers with an error
                return
        self.wire.reply_encoded(msg, ok, memo[3])

    def _fail(self, msg: Message, error: CacheError) -> None:
        self.wire.error(msg, code_of(error), str(error))

    # -- writes: through to the origin, then the entry is dropped ----------

    def write(self, msg: Message, body: Body) -> None:
        self._update(msg, body, "write")

    def cas(self, msg: Message, body: Body) -> None:
        self._update(msg, body, "cas")

    def _update(self, msg: Message, body: Body, kind: str) -> None:
        key, update, ok = request_key(body), update_of(body, kind), f"{kind}_ok"
        if self.linear is not None:
            self.linear.update(key, update, partial(self._updated, msg, ok))
        else:
            update.send(self.origin, key, partial(self._written, msg, key, ok))

    def _updated(self, msg: Message, ok: str, error: CacheError | None) -> None:
        if error is not None:
            self._fail(msg, error)
        else:
            self.wire.reply(msg, ok)

    def _written(self, msg: Message, key: Hashable, ok: str, error: CacheError | None) -> None:
        # Dropped whatever the outcome: a write that timed out may still have happened.
        reply = partial(self._fail, msg, error) if error is not None else partial(self.wire.reply, msg, ok)
        self.cluster.drop_everywhere(key, partial(self.proxy.invalidate, key), reply)

    def invalidate(self, msg: Message, body: Body) -> None:
        key = request_key(body)
        self.cluster.drop_everywhere(key, partial(self._drop, key), partial(self.wire.reply, msg, "invalidate_ok"))

    def _drop(self, key: Hashable) -> None:
        """The one way a key is dropped on this node, whoever asks (invalidate, cf_drop, cf_revoke)."""
        if self.linear is not None:
            self.linear.drop(key)
        else:
            self.proxy.invalidate(key)

    def stats(self, msg: Message, body: Body) -> None:
        if "key" in body:
            fields = self.proxy.key_stats(request_key(body))
        else:
            fields = self.proxy.stats()
            peers = self.cluster.stats()
            # The proxy counts every fetch it starts; a forward reached the owner, not the origin.
            fields["origin_fetches"] += peers["peer_fallbacks"] - peers["forwards"]
            fields.update(peers)
            if self.linear is not None:
                fields.update(self.linear.stats())
        self.wire.reply(msg, "stats_ok", **fields)

    # -- between nodes (see forwarding.py) -------------------------------------

    def _from_a_node(self, handler: Handler) -> Handler:
        """`handler`, for requests from another node of the cluster only: anyone else (a client,
        a made-up id, this node's own id) is refused and nothing changes, so no client can
        write behind the owner's back, hold a lease, or be waited for by a write."""
        def from_a_node(msg: Message, body: Body) -> None:
            src = msg["src"]
            if src in self.wire.node_ids and src != self.wire.node_id:
                handler(msg, body)
            else:
                self.wire.error(msg, NOT_A_NODE, f"{str(body.get('type'))[:50]} is for the other nodes of this "
                                                 f"cluster only, and {src[:100]!r} is not one")
        return from_a_node

    def _owned_here(self, msg: Message, key: Hashable) -> LinearKeys | None:
        """The linear keys, if this node owns `key`; else None, the request refused: a node
        whose view of the cluster differs from ours must not make us a second owner."""
        linear = self._linear_keys()
        if linear.owner_of(key) == self.wire.node_id:
            return linear
        self.wire.error(msg, NOT_THE_OWNER, f"{msg['body'].get('type')} is served by the key's owner, "
                                            f"{linear.owner_of(key)}, not by {self.wire.node_id}")
        return None

    def cf_fetch(self, msg: Message, body: Body) -> None:
        """Another node's miss for a key this node owns."""
        key = request_key(body)
        gen = self.linear.note_get_holder(key, msg["src"]) if self.linear is not None else 0
        self._lookup(msg, key, None, partial(self._fetch_answered, key, gen))

    def _fetch_answered(self, key: Hashable, gen: int, msg: Message, answer: Answer) -> None:
        ttl_left = max(0.0, round(self.proxy.ttl_left(answer), 6))
        if self.linear is not None and self.linear.changed_since(key, gen):
            ttl_left = 0.0  # an update started meanwhile: the answer may predate it, so not to be kept
        if answer.error is not None:
            self.wire.reply(msg, "error", code=code_of(answer.error), text=str(answer.error), ttl_left=ttl_left)
        else:
            self.wire.reply(msg, "cf_fetch_ok", value=answer.value, ttl_left=ttl_left)

    def cf_drop(self, msg: Message, body: Body) -> None:
        """A write went through at some node: drop the key here (see forwarding.py)."""
        self._drop(request_key(body))
        self.wire.reply(msg, "cf_drop_ok")

    def _linear_keys(self) -> LinearKeys:
        if self.linear is None:
            raise Malformed("read leases are kept only on a cluster of several nodes")
        return self.linear

    def cf_read(self, msg: Message, body: Body) -> None:
        """Another node's read of a key this node owns (leases.py)."""
        key = request_key(body)
        if (linear := self._owned_here(msg, key)) is not None:
            linear.cf_read(key, msg["src"], partial(self._cf_read_answered, msg))

    def _cf_read_answered(self, msg: Message, result: Any, lease: float) -> None:
        if isinstance(result, CacheError):
            self.wire.reply(msg, "error", code=code_of(result), text=str(result))
        else:
            self.wire.reply(msg, "cf_read_ok", value=result, lease=lease)

    def cf_update(self, msg: Message, body: Body) -> None:
        """Another node's write or cas of a key this node owns."""
        key, update = request_key(body), update_of(body, body.get("kind"))
        if (linear := self._owned_here(msg, key)) is not None:
            linear.cf_update(key, update, partial(self._cf_updated, msg, key, linear, linear.clock()))

    def _cf_updated(self, msg: Message, key: Hashable, linear: LinearKeys, asked: float,
                    error: CacheError | None) -> None:
        # The answer brings the value and a lease, as a cf_read would now: the node that asked is
        # the likeliest to read the key next.
        granted = linear.lease_with_answer(key, msg["src"], asked)
        copy = {} if granted is None else {"value": granted[0], "lease": granted[1]}
        if error is not None:
            self.wire.reply(msg, "error", code=code_of(error), text=str(error), **copy)
        else:
            self.wire.reply(msg, "cf_update_ok", **copy)

    def cf_revoke(self, msg: Message, body: Body) -> None:
        """The owner is about to update a key: drop our copy (and the cache's entry) first."""
        key = request_key(body)
        self._linear_keys()
        self._drop(key)
        self.wire.reply(msg, "cf_revoke_ok")


