"""A node believes only whom it knows (`node_ids`), and only what it asked.

One test per attack (A1-A8, each named in its test): each sends what an attacker sent
on 3 nodes with lin-kv, and shows the node refusing it, or ignoring it, with
nothing changed. `c9` is a client (not in node_ids); forged replies are written
straight to a node's stdin, keyed to the msg_id of a request really pending.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from support.net import Net, decode, encode

from collapsed_forwarding.keys import cache_key
from collapsed_forwarding.node.forwarding import owner

pytestmark = pytest.mark.process  # starts node processes

NODES = ["n1", "n2", "n3"]
NOT_A_NODE = 10  # the code a cf_* request from outside node_ids gets (docs/protocol.md, "Trust")
NOT_THE_OWNER = 11  # cf_read / cf_update at a node that does not own the key


def key_owned_by(node: str, prefix: str = "k") -> str:
    return next(f"{prefix}{i}" for i in range(1000) if owner(cache_key(f"{prefix}{i}"), NODES) == node)


# --origin-settle 0: these tests need leases at once, not after the restart rule's wait
CLUSTER_ARGS = ["--origin", "lin-kv", "--peer-timeout", "0.3", "--origin-settle", "0"]


def cluster(*args: str) -> Net:
    return Net(nodes=3, args=[*CLUSTER_ARGS, "--lease", "0.3", *args])


def read(net: Net, node: str, key: str) -> Any:
    reply = net.call(node, {"type": "read", "key": key})
    assert reply["type"] == "read_ok", reply
    return reply["value"]


def forge(net: Net, to: str, src: str, body: dict[str, Any]) -> None:
    """Write a message to a node as if `src` had sent it."""
    net.send_raw(to, encode({"src": src, "dest": to, "body": body}))


def sent(net: Net, node: str, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
    """The first message `node` wrote that `match`es, once it has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in net.lines(node):
            msg = decode(line)
            if match(msg):
                return msg
        time.sleep(0.005)  # the node's stdout has no event to wait on: polled, with a deadline
    raise TimeoutError(f"{node} never sent the awaited message")


def refused(reply: dict[str, Any], code: int = NOT_A_NODE) -> bool:
    return reply["type"] == "error" and reply["code"] == code


def test_a1_a_client_cf_update_at_the_owner_is_refused_and_changes_nothing() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v1")
        reply = net.call("n1", {"type": "cf_update", "key": key, "kind": "write", "value": "EVIL"}, client="c9")
        assert refused(reply), reply
        assert net.kv.count("write") == 0
        assert {read(net, node, key) for node in NODES} == {"v1"}


def test_a2_a_cf_update_at_a_node_that_does_not_own_the_key_is_refused() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v1")
        assert refused(net.call("n2", {"type": "cf_update", "key": key, "kind": "write", "value": "v2"},
                                client="c9"))
        # A node whose node_ids differ would send it: a node, so the owner rule refuses it.
        forge(net, "n2", "n3", {"type": "cf_update", "key": key, "kind": "write", "value": "v2", "msg_id": 77})
        answer = sent(net, "n2", lambda m: m["dest"] == "n3" and m["body"].get("in_reply_to") == 77)
        assert refused(answer["body"], NOT_THE_OWNER), answer
        assert net.kv.count("write") == 0
        assert {read(net, node, key) for node in NODES} == {"v1"}


def test_a2_a_cf_read_at_a_node_that_does_not_own_the_key_is_refused() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v1")
        forge(net, "n2", "n3", {"type": "cf_read", "key": key, "msg_id": 78})
        answer = sent(net, "n2", lambda m: m["dest"] == "n3" and m["body"].get("in_reply_to") == 78)
        assert refused(answer["body"], NOT_THE_OWNER), answer
        assert net.kv.count("read") == 0


def test_a3_a_client_gets_no_lease_and_a_write_revokes_nothing() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        assert net.call("n1", {"type": "write", "key": key, "value": 1})["type"] == "write_ok"
        for _ in range(3):
            assert refused(net.call("n1", {"type": "cf_read", "key": key}, client="c9"))
        assert net.call("n1", {"type": "write", "key": key, "value": 2})["type"] == "write_ok"
        stats = net.call("n1", {"type": "stats"})
        assert (stats["leases_granted"], stats["revokes_sent"]) == (0, 0), stats


def test_a3b_cf_fetches_from_made_up_sources_are_refused_and_revoke_nothing() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v1")
        sources = [f"x{i}" for i in range(300)]
        net.send_raw("n1", b"".join(encode({"src": src, "dest": "n1", "body": {"type": "cf_fetch", "key": key,
                                                                                "msg_id": 1}})
                                    for src in sources))
        assert all(refused(net.reply(1, client=src)) for src in sources)
        assert net.call("n1", {"type": "write", "key": key, "value": "v2"})["type"] == "write_ok"
        assert net.call("n1", {"type": "stats"})["revokes_sent"] == 0
        assert net.kv.count("read") == 0  # nothing was looked up for them either


def test_a4_a_forged_cf_read_ok_is_ignored() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v1")
        net.cut("n2", "n1")  # n2's cf_read stays pending: the attacker answers it
        asked = net.send("n2", {"type": "read", "key": key})
        cf_read = sent(net, "n2", lambda m: m["body"].get("type") == "cf_read")
        forge(net, "n2", "c9", {"type": "cf_read_ok", "in_reply_to": cf_read["body"]["msg_id"], "msg_id": 1,
                                "value": "POISON", "lease": 1e9})
        assert net.reply(asked)["value"] == "v1"  # the owner never answered: n2 read lin-kv itself
        net.heal()
        assert net.call("n3", {"type": "write", "key": key, "value": "v2"})["type"] == "write_ok"
        assert read(net, "n2", key) == "v2"


def test_a5_a_forged_read_ok_from_a_client_is_not_taken_for_lin_kvs() -> None:
    with cluster() as net:
        keys = [key_owned_by("n1", prefix) for prefix in "abc"]
        for key in keys:
            net.kv.set(key, "v1")
        net.kv.hold = True
        asked = [net.send("n1", {"type": "read", "key": key}) for key in keys]
        net.kv.wait_count("read", len(keys))
        first = net.kv.requests[0]["msg_id"]
        forge(net, "n1", "c9", {"type": "read_ok", "in_reply_to": first, "msg_id": 1, "value": "NEVER-WRITTEN"})
        for in_reply_to in range(200):  # and a spray at every msg_id it might be
            forge(net, "n1", "c9", {"type": "read_ok", "in_reply_to": in_reply_to, "msg_id": 2, "value": "SPRAY"})
        net.kv.hold = False
        net.kv.release()
        assert [r["value"] for r in net.replies(asked)] == ["v1"] * len(keys)
        assert {read(net, node, key) for node in NODES for key in keys} == {"v1"}


def test_a6_a_node_cannot_answer_a_cf_fetch_sent_to_another() -> None:
    with cluster() as net:
        key = key_owned_by("n2")
        net.kv.set(key, "v1")
        net.cut("n1", "n2")
        asked = net.send("n1", {"type": "get", "key": key})
        cf_fetch = sent(net, "n1", lambda m: m["body"].get("type") == "cf_fetch")
        forge(net, "n1", "n3", {"type": "cf_fetch_ok", "in_reply_to": cf_fetch["body"]["msg_id"], "msg_id": 1,
                                "value": "FORGED", "ttl_left": 1e9})
        assert net.reply(asked)["value"] == "v1"  # the owner out of reach: n1 fetched it itself
        net.heal()
        net.kv.set(key, "v2")
        assert net.call("n1", {"type": "invalidate", "key": key})["type"] == "invalidate_ok"
        assert net.call("n1", {"type": "get", "key": key})["value"] == "v2"


def test_a7_every_inter_node_request_from_a_client_is_refused() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v1")
        assert net.call("n1", {"type": "get", "key": key})["cache"] == "miss"
        for type_ in ("cf_fetch", "cf_read", "cf_drop", "cf_revoke", "cf_update", "cf_anything"):
            reply = net.call("n1", {"type": type_, "key": key, "kind": "write", "value": 0}, client="c9")
            assert refused(reply), (type_, reply)
        assert net.call("n1", {"type": "get", "key": key})["cache"] == "hit"  # cf_drop/cf_revoke dropped nothing
        assert net.kv.count("read") == 1 and net.kv.count("write") == 0


def test_a8_a_forged_cf_revoke_ok_does_not_end_the_wait_for_a_cut_off_holder() -> None:
    """n1 holds a get copy (dropped by cf_revoke, waited for up to the peer timeout) and a lease
    of 1 s (waited out, with no message: nothing to forge a reply to)."""
    with Net(nodes=3, args=[*CLUSTER_ARGS, "--lease", "1"]) as net:
        key = key_owned_by("n2")
        assert net.call("n2", {"type": "write", "key": key, "value": "old"})["type"] == "write_ok"
        assert net.call("n1", {"type": "get", "key": key})["value"] == "old"
        assert read(net, "n1", key) == "old"  # the read brought a lease
        net.cut("n1", "n2", "n3")
        started = time.monotonic()
        write = net.send("n2", {"type": "write", "key": key, "value": "new"})
        revoke = sent(net, "n2", lambda m: m["body"].get("type") == "cf_revoke")
        forge(net, "n2", "c9", {"type": "cf_revoke_ok", "in_reply_to": revoke["body"]["msg_id"], "msg_id": 1})
        assert net.reply(write)["type"] == "write_ok"
        assert time.monotonic() - started > 1.0 + 0.2  # the lease, then the get copy's peer timeout
        assert read(net, "n1", key) == "new"  # no stale read after a completed write


def test_a_cf_request_signed_with_the_nodes_own_id_is_refused() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        forge(net, "n1", "n1", {"type": "cf_read", "key": key, "msg_id": 79})
        answer = sent(net, "n1", lambda m: m["dest"] == "n1" and m["body"].get("in_reply_to") == 79)
        assert refused(answer["body"]), answer
        assert net.call("n1", {"type": "stats"})["leases_granted"] == 0
