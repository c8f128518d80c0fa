"""Many nodes, one cache: every key has an owner, and the others ask it.

The owner of a key is picked by rendezvous hashing (highest random weight) of
the key's canonical JSON and each node id, so every node agrees without
talking, and a node joining or leaving moves only the keys it wins or held.

`ForwardingOrigin` is the proxy's origin on a node of a cluster: a miss for a key
this node owns goes to the real origin; a miss for another node's key is sent
to that owner (`cf_fetch`), collapsed there with every other node's misses, and
its answer cached here only for the lifetime the owner has left on it. An owner
that does not answer within the peer timeout costs collapsing, never
availability: the node then fetches from the origin itself.

`drop_everywhere` drops a key on every node after a write: first at the owner,
then at the others, so that no node can refill its copy from an owner that has
not dropped yet.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from ..keys import key_text, wire_key
from .codes import Unexpected, reply_result
from .wire import Body, ErrorCode, Wire, after_replies

# Errors an owner passes on from its origin: shared with our waiters, as a local fetch's would be.
ORIGIN_ANSWERS = (ErrorCode.TIMEOUT, ErrorCode.TEMPORARILY_UNAVAILABLE, ErrorCode.KEY_DOES_NOT_EXIST)


def owner(key: Hashable, node_ids: list[str]) -> str:
    text = key_text(key).encode("utf-8", "surrogatepass")  # "\ud800" is a key too; every node encodes alike
    return max(node_ids, key=lambda node_id: hashlib.blake2b(node_id.encode() + b"\0" + text, digest_size=8).digest())


class ForwardingOrigin:
    def __init__(self, wire: Wire, origin: Any, peer_timeout: float,
                 clock: Callable[[], float] = time.monotonic, fallback_ttl: float | None = None) -> None:
        self.wire, self.origin, self.peer_timeout, self.clock = wire, origin, peer_timeout, clock
        # What a node fetched itself, the owner out of reach, lives no longer than this: the owner
        # cannot tell it to drop it before an update.
        self.fallback_ttl = fallback_ttl
        self.forwards = self.peer_fallbacks = 0
        self._count_lock = threading.Lock()

    def owner(self, key: Hashable) -> str:
        return owner(key, self.wire.node_ids)

    def start_fetch(self, key: Hashable, done: Callable[..., None]) -> None:
        owner_id = self.owner(key)
        if owner_id == self.wire.node_id:
            self.origin.start_fetch(key, done)
            return
        with self._count_lock:
            self.forwards += 1
        sent = self.clock()
        self.wire.rpc(owner_id, {"type": "cf_fetch", "key": wire_key(key)},
                      lambda reply: self._answered(key, done, sent, reply), self.peer_timeout)

    def _answered(self, key: Hashable, done: Callable[..., None], sent: float, reply: Body | None) -> None:
        result = _passed_on(reply, self.owner(key))
        if isinstance(result, Unexpected):  # no answer, or one that makes no sense: act alone
            with self._count_lock:
                self.peer_fallbacks += 1
            if self.fallback_ttl is None:
                self.origin.start_fetch(key, done)
            else:
                self.origin.start_fetch(key, lambda result: done(result, ttl=self.fallback_ttl))
            return
        assert reply is not None
        # The copy lives no longer than the owner's entry: its clock started before the owner's reply.
        done(result, ttl=max(0.0, reply["ttl_left"] - (self.clock() - sent)))

    def drop_everywhere(self, key: Hashable, drop_here: Callable[[], None], then: Callable[[], None]) -> None:
        """Drop `key` at its owner, then at every other node, then call `then`
        (each node has acknowledged, or the peer timeout has passed)."""
        owner_id = self.owner(key)
        rest = [n for n in self.wire.node_ids if n != owner_id]
        self._drop_at([owner_id], key, drop_here, lambda: self._drop_at(rest, key, drop_here, then))

    def _drop_at(self, node_ids: list[str], key: Hashable, drop_here: Callable[[], None],
                 then: Callable[[], None]) -> None:
        acknowledged = after_replies(len(node_ids), then)
        for node_id in node_ids:
            if node_id == self.wire.node_id:
                drop_here()
                acknowledged(None)
            else:
                self.wire.rpc(node_id, {"type": "cf_drop", "key": wire_key(key)}, acknowledged, self.peer_timeout)

    def stats(self) -> dict[str, int]:
        with self._count_lock:
            return {"forwards": self.forwards, "peer_fallbacks": self.peer_fallbacks}


class Alone:
    """A node with no peers: it owns every key, so its proxy asks the origin directly."""

    def drop_everywhere(self, key: Hashable, drop_here: Callable[[], None], then: Callable[[], None]) -> None:
        drop_here()
        then()

    @staticmethod
    def stats() -> dict[str, int]:
        return {"forwards": 0, "peer_fallbacks": 0}


def _passed_on(reply: Body | None, owner_id: str) -> Any:
    """What an owner's reply to cf_fetch gives our waiters: a value, or one of the origin's
    own errors; `Unexpected` for no reply or one that cannot be passed on, as it is missing
    the seconds its entry has left (a number a clock can count: 10**400 would overflow)."""
    if reply is None:
        return Unexpected(f"owner {owner_id} did not answer")
    ttl_left = reply.get("ttl_left", -1)
    if type(ttl_left) not in (int, float) or not 0 <= ttl_left < 1e15:
        return Unexpected(f"owner {owner_id} sent no usable ttl_left")
    return reply_result(reply, "cf_fetch_ok", f"owner {owner_id}", ORIGIN_ANSWERS, value=True)
