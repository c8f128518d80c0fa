"""read / write / cas on a cluster, step by step (collapsed_forwarding/node/owner.py, owner_updates.py and holder.py).

Real node processes on tests/support/net.py, the test playing lin-kv. The
randomised, Maelstrom-shaped runs are in test_linearizable_cluster.py; these
pin each rule down on its own.
"""

from __future__ import annotations

import time

import pytest
from support.net import Net

from collapsed_forwarding.keys import cache_key
from collapsed_forwarding.node.forwarding import owner

pytestmark = pytest.mark.process  # starts node processes

NODES = ["n1", "n2", "n3"]
LEASE = 0.3


def key_owned_by(node: str, prefix: str = "k") -> str:
    return next(f"{prefix}{i}" for i in range(1000) if owner(cache_key(f"{prefix}{i}"), NODES) == node)


def cluster(*args: str, settle: float = 0.0) -> Net:
    """Three nodes; `settle` 0 (by default) lets a fresh owner cache and grant leases at once, as if
    no previous incarnation could have an update in flight."""
    return Net(nodes=3, args=["--origin", "lin-kv", "--lease", str(LEASE), "--origin-settle", str(settle), *args])


def read(net: Net, node: str, key: str) -> object:
    reply = net.call(node, {"type": "read", "key": key})
    assert reply["type"] == "read_ok", reply
    assert set(reply) == {"type", "in_reply_to", "msg_id", "value"}  # lin-kv's closed schema
    return reply["value"]


def stats(net: Net, node: str) -> dict:
    return net.call(node, {"type": "stats"})


def test_a_read_gets_a_lease_and_the_next_are_served_from_the_copy() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        assert net.call("n1", {"type": "write", "key": key, "value": 7})["type"] == "write_ok"
        assert [read(net, "n2", key) for _ in range(3)] == [7, 7, 7]
        n2, n1 = stats(net, "n2"), stats(net, "n1")
        assert (n2["reads_forwarded"], n2["reads_leased"]) == (1, 2)
        assert n1["leases_granted"] == 1
        assert net.kv.count("read") == 0  # the owner knew the value from its own write


def test_a_write_anywhere_waits_out_the_lease_before_write_ok_and_sends_no_revocation() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, 1)
        assert [read(net, "n2", key) for _ in range(3)] == [1, 1, 1]  # n2 holds a lease
        started = time.monotonic()
        assert net.call("n3", {"type": "write", "key": key, "value": 2})["type"] == "write_ok"
        assert time.monotonic() - started > LEASE / 2  # the lease ran out first
        assert read(net, "n2", key) == 2
        assert stats(net, "n1")["revokes_sent"] == 0
        assert net.kv.count("write") == 1


def test_a_holder_answers_a_mismatched_cas_and_a_write_of_its_value_from_its_lease() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        assert net.call("n1", {"type": "write", "key": key, "value": 3})["type"] == "write_ok"
        assert read(net, "n2", key) == 3  # n2 holds a lease
        mismatch = net.call("n2", {"type": "cas", "key": key, "from": 4, "to": 0})
        assert (mismatch["type"], mismatch["code"]) == ("error", 22)
        assert net.call("n2", {"type": "write", "key": key, "value": 3})["type"] == "write_ok"
        n2 = stats(net, "n2")
        assert (n2["cas_answered_locally"], n2["updates_unchanged"], n2["updates_forwarded"]) == (1, 1, 0)
        assert net.call("n2", {"type": "cas", "key": key, "from": 3, "to": 0})["type"] == "cas_ok"
        assert stats(net, "n2")["updates_forwarded"] == 1
        assert {read(net, node, key) for node in NODES} == {0}
        assert (net.kv.count("write"), net.kv.count("cas")) == (1, 1)  # write 3 and cas 3->0: nothing else


def test_a_forwarded_updates_answer_brings_a_lease() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        assert net.call("n2", {"type": "write", "key": key, "value": 4})["type"] == "write_ok"
        assert read(net, "n2", key) == 4  # from the lease the write_ok brought
        n2 = stats(net, "n2")
        assert (n2["reads_forwarded"], n2["reads_leased"], n2["updates_forwarded"]) == (0, 1, 1)
        mismatch = net.call("n2", {"type": "cas", "key": key, "from": 9, "to": 0})
        assert (mismatch["type"], mismatch["code"]) == ("error", 22)
        assert stats(net, "n2")["updates_forwarded"] == 1  # refused from the lease too
        assert net.call("n3", {"type": "write", "key": key, "value": 5})["type"] == "write_ok"
        assert read(net, "n2", key) == 5  # n2's lease ran out before the write


def test_a_cut_off_holder_is_waited_out_and_then_reads_the_origin() -> None:
    """The stale read leases rule out: write 1; n2 reads 1; n2 is cut off; write 2 is acknowledged; n2 must read 2."""
    with cluster("--peer-timeout", "0.3") as net:
        key = key_owned_by("n1")
        assert net.call("n1", {"type": "write", "key": key, "value": 1})["type"] == "write_ok"
        assert [read(net, "n2", key) for _ in range(2)] == [1, 1]  # the second read brought a lease
        net.cut("n2", "n1", "n3")  # nodes only: n2 still reaches lin-kv and its clients
        started = time.monotonic()
        assert net.call("n1", {"type": "write", "key": key, "value": 2})["type"] == "write_ok"
        took = time.monotonic() - started
        assert LEASE * 0.5 < took < 1.0, took  # it waited for n2's lease, and within a client's timeout
        assert read(net, "n2", key) == 2  # its lease ran out: the owner is out of reach, so the origin
        assert stats(net, "n2")["reads_direct"] >= 1
        net.heal()
        assert read(net, "n2", key) == 2


def test_the_owner_answers_a_mismatched_cas_itself() -> None:
    with cluster() as net:
        key = key_owned_by("n2")
        assert net.call("n1", {"type": "write", "key": key, "value": 3})["type"] == "write_ok"
        mismatch = net.call("n3", {"type": "cas", "key": key, "from": 4, "to": 0})
        assert (mismatch["type"], mismatch["code"]) == ("error", 22)
        assert net.kv.count("cas") == 0
        assert net.call("n3", {"type": "cas", "key": key, "from": 3, "to": 0})["type"] == "cas_ok"
        assert net.kv.count("cas") == 1
        assert {read(net, node, key) for node in NODES} == {0}
        missing = net.call("n1", {"type": "cas", "key": key_owned_by("n2", "absent"), "from": 1, "to": 2})
        assert (missing["type"], missing["code"]) == ("error", 20)


def test_a_fetch_sent_before_a_write_fills_nothing() -> None:
    """The owner's read of the origin is answered after a write it made: its waiter may have the
    old value (it asked first), but the copy must be the written one."""
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "old")
        net.kv.hold = True
        first = net.send("n1", {"type": "read", "key": key})
        net.kv.wait_count("read", 1)
        write = net.send("n1", {"type": "write", "key": key, "value": "new"})
        net.kv.wait_count("write", 1)
        net.kv.hold = False
        net.kv.release()  # the read's reply ("old") first, then the write's
        assert net.reply(first)["value"] in ("old", "new")
        assert net.reply(write)["type"] == "write_ok"
        assert read(net, "n1", key) == "new"
        assert read(net, "n2", key) == "new"
        assert net.kv.count("read") == 1


def test_an_update_of_unknown_outcome_is_not_cached() -> None:
    with cluster("--origin-timeout", "0.3", settle=10) as net:
        key = key_owned_by("n1")
        net.kv.set(key, 1)
        net.kv.fail = "drop"
        lost = net.call("n2", {"type": "write", "key": key, "value": 2}, timeout=5)
        assert (lost["type"], lost["code"]) == ("error", 0)  # a timeout: Maelstrom records it as unknown
        net.kv.fail = None
        net.kv.set(key, 2)  # as if the lost write landed late
        reads = net.kv.count("read")
        assert [read(net, "n1", key) for _ in range(3)] == [2, 2, 2]
        assert net.kv.count("read") == reads + 3  # every read went to the origin: nothing cached meanwhile


def test_while_uncertain_reads_share_only_a_read_of_the_origin_sent_after_they_came() -> None:
    """Just started (settle 10 s), the owner's value may change at any moment: the reads that come
    while its read of the origin is out wait for the next one, and share it."""
    with cluster(settle=10) as net:
        key = key_owned_by("n1")
        net.kv.set(key, 1)
        net.kv.hold = True
        first = net.send("n1", {"type": "read", "key": key})
        net.kv.wait_count("read", 1)
        later = net.send_many("n1", [{"type": "read", "key": key}] * 3)
        net.call("n1", {"type": "stats"})  # answered once the three reads are taken in
        net.kv.set(key, 2)  # as if an update the previous process sent landed now
        net.kv.hold = False
        net.kv.release()
        assert net.reply(first)["value"] == 1
        assert [net.reply(msg_id)["value"] for msg_id in later] == [2, 2, 2]
        assert net.kv.count("read") == 2


def test_a_cut_off_writer_gets_an_unknown_outcome_not_a_false_ok() -> None:
    with cluster("--peer-timeout", "0.2") as net:
        key = key_owned_by("n1")
        net.cut("n3", "n1")
        reply = net.call("n3", {"type": "write", "key": key, "value": 5}, timeout=5)
        assert (reply["type"], reply["code"]) == ("error", 0)
        assert net.kv.count("write") == 0


def test_get_still_caches_and_a_write_drops_its_copies() -> None:
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.set(key, "v1")
        assert {net.call(n, {"type": "get", "key": key})["value"] for n in NODES} == {"v1"}
        assert {net.call(n, {"type": "get", "key": key})["cache"] for n in NODES} == {"hit"}
        assert net.call("n2", {"type": "write", "key": key, "value": "v2"})["type"] == "write_ok"
        assert {net.call(n, {"type": "get", "key": key})["value"] for n in NODES} == {"v2"}


class _FakeNode:
    """Enough of wire.Node for LinearKeys: records what it would send."""

    node_id, node_ids = "n1", NODES

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.scheduler = self

    def rpc(self, dest: str, body: dict, on_reply: object, timeout: float) -> None:
        self.sent.append((dest, body))

    def call_later(self, delay: float, fn: object, *args: object) -> None:
        pass


class _NoCache:
    def invalidate(self, key: object) -> None:
        pass


def test_the_owners_table_is_bounded_and_a_forgotten_keys_get_copies_are_dropped() -> None:
    from collapsed_forwarding.node.leases import LinearKeys

    node = _FakeNode()
    keys = LinearKeys(node, origin=None, owner_of=lambda key: "n1", cache=_NoCache(), lease=LEASE,  # type: ignore[arg-type]
                      drift=0.02, peer_timeout=0.5, origin_timeout=1.0, settle=10.0, max_keys=10)
    for i in range(100):
        keys.note_get_holder(f"k{i}", "n2")
    assert len(keys.owner.owned) <= 10
    revoked = {body["key"] for dest, body in node.sent if dest == "n2" and body["type"] == "cf_revoke"}
    assert len(revoked) >= 90 and "k99" not in revoked  # every forgotten key, and only those


def test_updates_queued_behind_one_at_the_origin_go_there_as_one_write() -> None:
    """While write 1 is at the origin, write 2, cas 1->3, cas 9->4 and write 5 queue at the owner.
    Once 1 is written, cas 9->4 is refused at once (it is linearized before the updates still
    queued, against 1); the rest are decided in order against the value each leaves (cas 1->3
    meets 2) and sent as one write of 5."""
    with cluster() as net:
        key = key_owned_by("n1")
        net.kv.hold = True
        first, *queued = net.send_many("n1", [  # one burst: all five are read before write 1 is answered
            {"type": "write", "key": key, "value": 1},
            {"type": "write", "key": key, "value": 2},
            {"type": "cas", "key": key, "from": 1, "to": 3},
            {"type": "cas", "key": key, "from": 9, "to": 4},
            {"type": "write", "key": key, "value": 5}])
        net.kv.wait_count("write", 1)
        net.kv.hold = False
        net.kv.release()
        assert net.reply(first)["type"] == "write_ok"
        replies = [net.reply(msg_id) for msg_id in queued]
        assert [r["type"] for r in replies] == ["write_ok", "error", "error", "write_ok"]
        assert [r.get("code") for r in replies] == [None, 22, 22, None]
        assert net.kv.count("write") == 2 and net.kv.count("cas") == 0
        assert {read(net, node, key) for node in NODES} == {5}
        n1 = stats(net, "n1")
        assert (n1["updates_batched"], n1["cas_answered_locally"]) == (2, 1)


def test_a_key_whose_update_may_still_land_is_not_forgotten_to_make_room() -> None:
    """Forgotten and made afresh, the key would trust the origin at once, while the update of
    unknown outcome may still land."""
    from collapsed_forwarding.node.leases import LinearKeys

    keys = LinearKeys(_FakeNode(), origin=None, owner_of=lambda key: "n1", cache=_NoCache(), lease=LEASE,  # type: ignore[arg-type]
                      drift=0.02, peer_timeout=0.5, origin_timeout=1.0, settle=0.0, max_keys=10)
    keys.note_get_holder("uncertain", "n2")
    keys.owner.owned["uncertain"].uncertain_until = keys.owner.clock() + 100
    for i in range(100):
        keys.note_get_holder(f"k{i}", "n2")
    assert "uncertain" in keys.owner.owned
    assert len(keys.owner.owned) <= 11
