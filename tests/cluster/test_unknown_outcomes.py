"""An update whose outcome is unknown never gets a definite error.

Maelstrom takes 11 (and 1, 10, 12, 14, 20-22, 30) to mean "certainly did not
happen". When lin-kv answers a write or cas with 13 (crash), with a code the node
does not know, or with nonsense, the write may have happened: the client must get
0 or 13, on one node, at the key's owner and through it from another node.
"""

from __future__ import annotations

import pytest
from support.net import Net

from collapsed_forwarding.keys import cache_key
from collapsed_forwarding.node.forwarding import owner

pytestmark = pytest.mark.process  # starts node processes

INDEFINITE = {0, 13}
NODES = ["n1", "n2", "n3"]
KEY = next(f"k{i}" for i in range(1000) if owner(cache_key(f"k{i}"), NODES) == "n1")
UPDATES = [{"type": "write", "key": KEY, "value": 2}, {"type": "cas", "key": KEY, "from": 1, "to": 2}]


def error_code(net: Net, node: str, body: dict) -> int:
    reply = net.call(node, body)
    assert reply["type"] == "error", reply
    return reply["code"]


@pytest.mark.parametrize("service_code", [13, 99, -1])
@pytest.mark.parametrize("nodes,at", [(1, "n1"), (3, "n1"), (3, "n2")], ids=["alone", "owner", "forwarded"])
def test_an_update_the_service_may_have_made_gets_an_indefinite_code(nodes: int, at: str, service_code: int) -> None:
    with Net(nodes=nodes, args=["--origin", "lin-kv"]) as net:
        net.kv.set(KEY, 1)
        net.kv.fail, net.kv.fail_code = "error", service_code
        for body in UPDATES:
            assert error_code(net, at, body) in INDEFINITE, body


@pytest.mark.parametrize("nodes,at", [(1, "n1"), (3, "n2")], ids=["alone", "forwarded"])
def test_a_definite_error_from_the_service_stays_definite(nodes: int, at: str) -> None:
    with Net(nodes=nodes, args=["--origin", "lin-kv"]) as net:
        net.kv.set(KEY, 1)
        net.kv.fail = "error"  # 11: the service says it did not happen
        assert [error_code(net, at, body) for body in UPDATES] == [11, 11]
        net.kv.fail = None
        mismatch = {"type": "cas", "key": KEY, "from": 5, "to": 6}
        assert error_code(net, at, mismatch) == 22
