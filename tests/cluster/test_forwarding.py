"""The cluster: several nodes, one cache (docs/protocol.md, "Many nodes").

Each test runs real node processes on the Maelstrom-style network of
maelstrom_net.py, with the test playing the lin-kv service behind them.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from support.net import Net

from collapsed_forwarding.keys import cache_key
from collapsed_forwarding.node.forwarding import owner

pytestmark = pytest.mark.process  # starts node processes

NODES = ["n1", "n2", "n3"]


def owner_of(key: Any) -> str:
    return owner(cache_key(key), NODES)


def key_owned_by(node: str, prefix: str = "k") -> str:
    return next(f"{prefix}{i}" for i in range(1000) if owner_of(f"{prefix}{i}") == node)


def cluster(*args: str) -> Net:
    return Net(nodes=3, args=["--origin", "lin-kv", *args])


def test_owner_is_agreed_and_spreads_keys() -> None:
    """Rendezvous hashing: the same owner whatever the order of node ids, and every node owns some keys."""
    keys = [f"k{i}" for i in range(300)] + [1, 1.0, True, [1], {"a": 1}]
    assert all(owner(cache_key(k), NODES) == owner(cache_key(k), NODES[::-1]) for k in keys)
    shares = Counter(owner_of(k) for k in keys)
    assert set(shares) == set(NODES) and min(shares.values()) > 50
    # Removing a node moves only the keys it owned.
    survivors = ["n1", "n2"]
    assert all(owner(cache_key(k), survivors) == owner_of(k) for k in keys if owner_of(k) != "n3")


def test_herd_over_three_nodes_costs_one_origin_read() -> None:
    """300 requests for a cold key spread over 3 nodes: one value for all, one read at the service."""
    with cluster() as net:
        net.kv.set("hot", "v0")
        net.kv.latency = 0.2
        sent = {node: net.send_many(node, [{"type": "get", "key": "hot"}] * 100) for node in NODES}
        replies = [r for node in NODES for r in net.replies(sent[node], timeout=10)]
        assert {(r["type"], r["value"]) for r in replies} == {("get_ok", "v0")}
        assert net.kv.count("read") == 1
        stats = {node: net.call(node, {"type": "stats"}) for node in NODES}
        assert sum(s["origin_fetches"] for s in stats.values()) == 1
        assert stats[owner_of("hot")]["origin_fetches"] == 1
        assert all(stats[n]["forwards"] == 1 for n in NODES if n != owner_of("hot"))
        assert not net.problems


def test_a_cut_off_owner_costs_collapsing_not_availability() -> None:
    """With every link of one node cut, the others answer fresh keys within peer timeout plus origin
    latency, with at most one origin read per key per surviving node."""
    with cluster("--peer-timeout", "0.5") as net:
        net.kv.latency = 0.1
        keys = [key_owned_by("n3", "cut"), key_owned_by("n3", "lost"), key_owned_by("n1", "kept")]
        for key in keys:
            net.kv.set(key, f"v-{key}")
        net.cut("n3")
        started = time.monotonic()
        sent = {(node, key): net.send_many(node, [{"type": "get", "key": key}] * 20)
                for node in ("n1", "n2") for key in keys}
        for (_node, key), ids in sent.items():
            assert {r.get("value") for r in net.replies(ids, timeout=10)} == {f"v-{key}"}
        elapsed = time.monotonic() - started
        assert elapsed < 0.5 + 0.1 + 1.0, f"answers took {elapsed:.2f}s"  # generous margin on a shared machine
        reads = Counter(body["key"] for body in net.kv.requests if body["type"] == "read")
        assert all(reads[key] <= 2 for key in keys), reads  # one per surviving node at most
        fallbacks = sum(net.call(node, {"type": "stats"})["peer_fallbacks"] for node in ("n1", "n2"))
        assert fallbacks == 4  # both survivors gave up on n3, once for each of its two keys


def test_write_drops_every_copy_before_write_ok() -> None:
    """After write_ok from one node, no node serves the old value."""
    with cluster() as net:
        key = key_owned_by("n2")
        net.kv.set(key, "old")
        for node in NODES:
            assert net.call(node, {"type": "get", "key": key})["value"] == "old"
        assert {net.call(node, {"type": "get", "key": key})["cache"] for node in NODES} == {"hit"}
        writer = next(n for n in NODES if n != owner_of(key))
        assert net.call(writer, {"type": "write", "key": key, "value": "new"})["type"] == "write_ok"
        for node in NODES:
            assert net.call(node, {"type": "get", "key": key})["value"] == "new"


def test_write_wins_over_forwards_in_flight() -> None:
    """Forwards to the owner in flight when a write lands must not leave the old value anywhere."""
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "old")
        net.kv.hold = True  # the owner's origin read is parked: every node's miss is in flight
        pending = {node: net.send(node, {"type": "get", "key": key}) for node in NODES}
        net.kv.wait_count("read", 1)
        net.kv.hold = False
        write = net.send("n3", {"type": "write", "key": key, "value": "new"})
        net.kv.wait_count("write", 1)
        net.kv.release()  # the old read answers only now, after the write reached the service
        assert net.reply(write)["type"] == "write_ok"
        for msg_id in pending.values():
            net.reply(msg_id)  # each got some answer: the old value is allowed, they were asked before the write
        for node in NODES:
            assert net.call(node, {"type": "get", "key": key})["value"] == "new", node


def test_invalidate_drops_the_key_on_every_node() -> None:
    """invalidate on one node: the next request on any node goes back to the origin's current value."""
    with cluster() as net:
        key = key_owned_by("n3")
        net.kv.set(key, "v1")
        for node in NODES:
            net.call(node, {"type": "get", "key": key})
        net.kv.set(key, "v2")  # behind the cache's back
        assert net.call("n1", {"type": "invalidate", "key": key})["type"] == "invalidate_ok"
        assert {net.call(node, {"type": "get", "key": key})["value"] for node in NODES} == {"v2"}


def test_copy_lives_no_longer_than_the_owners_entry() -> None:
    """--ttl 1: a copy fetched from the owner at 0.8 s is not served as a hit at 1.2 s."""
    with cluster("--ttl", "1") as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v")
        filled = time.monotonic()
        assert net.call("n1", {"type": "get", "key": key})["cache"] == "miss"
        time.sleep(max(0.0, filled + 0.8 - time.monotonic()))  # pacing the scenario, not synchronising
        copy = net.call("n2", {"type": "get", "key": key})
        assert copy["cache"] == "miss" and copy["value"] == "v"
        ttl_left = net.call("n2", {"type": "stats", "key": key})["ttl_left"]
        assert ttl_left is None or ttl_left <= 0.2 + 0.05
        time.sleep(max(0.0, filled + 1.2 - time.monotonic()))
        assert net.call("n2", {"type": "get", "key": key})["cache"] != "hit"


def test_missing_key_answer_is_shared_by_the_owner() -> None:
    """A key the service does not have: error 20 on every node, from one read."""
    with cluster() as net:
        key = key_owned_by("n2")
        errors = [net.call(node, {"type": "get", "key": key}) for node in NODES]
        assert {(e["type"], e.get("code")) for e in errors} == {("error", 20)}
        assert net.kv.count("read") == 1


def test_a_single_node_neither_forwards_nor_falls_back() -> None:
    """A cluster of one behaves as the plain node: no forwards, no fallbacks."""
    with Net(nodes=1, args=["--origin", "lin-kv"]) as net:
        net.kv.set("k", 1)
        assert net.call("n1", {"type": "get", "key": "k"})["cache"] == "miss"
        stats = net.call("n1", {"type": "stats"})
        assert (stats["forwards"], stats["peer_fallbacks"], stats["origin_fetches"]) == (0, 0, 1)
