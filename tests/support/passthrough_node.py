#!/usr/bin/env python3
"""A Maelstrom node that caches nothing: every read, write and cas goes to lin-kv,
and lin-kv's answer goes back to the client. The baseline for origin messages
per operation (bench/linkv.py) and a node that must pass the lin-kv checker.

With `--cache-reads` it is a deliberately broken cache for the tests: it keeps
every value it reads or writes, forever, and never hears of other nodes' writes.

With `--relay-updates` it sends each write and cas to lin-kv through the key's
relay node (one of the cluster's, chosen by the key, itself for a share of the
keys), which answers with lin-kv's answer: the two hops any design adds that
routes a key's updates through one node (an owner), with no waiting besides.

Standard library only, one thread: lin-kv's replies arrive on stdin too.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from typing import Any

SERVICE = "lin-kv"
FORWARDED = ("read", "write", "cas")


class Passthrough:
    def __init__(self, cache_reads: bool = False, relay_updates: bool = False) -> None:
        self.cache: dict[str, Any] | None = {} if cache_reads else None  # canonical key -> value
        self.relay_updates = relay_updates
        self.node_id = ""
        self.node_ids: list[str] = []
        self.next_msg_id = 0
        # our msg_id -> (who asked: a client, or a node whose update this one relays; its msg_id; the request)
        self.pending: dict[int, tuple[str, Any, dict[str, Any]]] = {}

    def send(self, dest: str, body: dict[str, Any]) -> None:
        body["msg_id"] = self.next_msg_id
        self.next_msg_id += 1
        sys.stdout.write(json.dumps({"src": self.node_id, "dest": dest, "body": body}, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def handle(self, msg: dict[str, Any]) -> None:
        body = msg["body"]
        kind = body.get("type")
        if kind == "init":
            self.node_id, self.node_ids = body["node_id"], list(body.get("node_ids") or [body["node_id"]])
            self.send(msg["src"], {"type": "init_ok", "in_reply_to": body["msg_id"]})
        elif "in_reply_to" in body:  # lin-kv's answer (or a relay node's: lin-kv's) for whoever asked
            client = self.pending.pop(body["in_reply_to"], None)
            if client is not None:
                reply = {k: v for k, v in body.items() if k not in ("msg_id", "in_reply_to")}
                self.remember(client[2], reply)
                self.send(client[0], {**reply, "in_reply_to": client[1]})
        elif kind == "read" and self.cache is not None and key_of(body) in self.cache:
            self.send(msg["src"], {"type": "read_ok", "in_reply_to": body["msg_id"], "value": self.cache[key_of(body)]})
        elif kind in FORWARDED or kind == "relay":
            request = body["request"] if kind == "relay" else {k: v for k, v in body.items() if k != "msg_id"}
            dest = self.relay_of(request) if kind in ("write", "cas") and self.relay_updates else SERVICE
            self.pending[self.next_msg_id] = (msg["src"], body["msg_id"], request)
            self.send(dest, {"type": "relay", "request": request} if dest != SERVICE else request)
        else:
            self.send(msg["src"], {"type": "error", "in_reply_to": body.get("msg_id"), "code": 10,
                                   "text": f"unsupported {kind!r}"})

    def relay_of(self, request: dict[str, Any]) -> str:
        """The node a key's updates go through: lin-kv itself where that is this node."""
        relay = self.node_ids[zlib.crc32(key_of(request).encode()) % len(self.node_ids)]
        return SERVICE if relay == self.node_id else relay

    def remember(self, request: dict[str, Any], reply: dict[str, Any]) -> None:
        if self.cache is None:
            return
        key, kind = key_of(request), reply.get("type")
        if kind == "read_ok":
            self.cache[key] = reply.get("value")
        elif kind == "write_ok":
            self.cache[key] = request.get("value")
        elif kind == "cas_ok":
            self.cache[key] = request.get("to")


def key_of(body: dict[str, Any]) -> str:
    return json.dumps(body.get("key"), sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cache-reads", action="store_true", help="a deliberately broken cache, for the tests")
    parser.add_argument("--relay-updates", action="store_true", help="writes and cas through the key's relay node")
    known, _ = parser.parse_known_args()  # it is started with the node's own flags (--origin lin-kv), unused here
    node = Passthrough(cache_reads=known.cache_reads, relay_updates=known.relay_updates)
    for line in sys.stdin:
        if line.strip():
            node.handle(json.loads(line))


if __name__ == "__main__":
    main()
