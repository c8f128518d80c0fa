"""A node that restarts keeps its previous incarnation's promises (docs/protocol.md, "Restarts").

The two scripts that broke linearizability before a fresh start waited for anything:
each kills the owner of a key (SIGKILL) and starts a fresh process, which gets init
again. The randomised runs with kills and pauses are in test_linearizable.py.
"""

from __future__ import annotations

import time

import pytest
from support.net import Net, canonical
from test_leases import LEASE, key_owned_by, read, stats

pytestmark = pytest.mark.process  # starts node processes

DRIFT = 0.02


def cluster(settle: float) -> Net:
    return Net(nodes=3, args=["--origin", "lin-kv", "--lease", str(LEASE), "--lease-drift", str(DRIFT),
                              "--origin-settle", str(settle)])


def test_a_restarted_owner_waits_out_the_leases_its_previous_process_granted() -> None:
    """write 1 at the owner; n2 reads it twice (a lease); the owner is killed and restarted;
    write 2 at the owner: once it is acknowledged, n2 must not serve 1 from its copy."""
    with cluster(settle=0) as net:
        key = key_owned_by("n1")
        assert net.call("n1", {"type": "write", "key": key, "value": 1})["type"] == "write_ok"
        assert [read(net, "n2", key) for _ in range(2)] == [1, 1]
        assert stats(net, "n1")["leases_granted"] == 1  # n2 holds a lease
        restarted = time.monotonic()
        net.restart("n1")
        assert net.call("n1", {"type": "write", "key": key, "value": 2})["type"] == "write_ok"
        assert [read(net, "n2", key) for _ in range(5)] == [2] * 5
        assert time.monotonic() - restarted >= LEASE  # the lease the old process granted ran out first
        assert stats(net, "n1")["updates_held_after_start"] == 1


def test_a_restarted_owner_caches_nothing_while_its_previous_processs_write_may_land() -> None:
    """The owner's write 2 is on its way to lin-kv (it takes 0.6 s) when the owner is killed and
    restarted; the restarted owner reads 1; the write lands: no node may read 1 after another read 2."""
    with cluster(settle=2) as net:
        key = key_owned_by("n1")
        net.kv.set(key, 1)
        net.kv.request_delay = 0.6
        net.send("n1", {"type": "write", "key": key, "value": 2})
        net.kv.wait_until(lambda: net.kv.arrived >= 1)  # the write is in flight to lin-kv
        net.restart("n1")
        net.kv.request_delay = 0.0
        assert read(net, "n1", key) in (1, 2)  # either: the write's client never heard back
        net.kv.wait_until(lambda: net.kv.data.get(canonical(key)) == 2)  # the write lands
        assert read(net, "n2", key) == 2
        assert [read(net, node, key) for node in ("n1", "n3", "n1", "n2")] == [2, 2, 2, 2]
        assert stats(net, "n1")["leases_granted"] == 0  # nothing granted on a value the old write could change
