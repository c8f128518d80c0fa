"""Wire: a reply counts only from where its request went (docs/protocol.md, "Trust")."""

from __future__ import annotations

import io

from collapsed_forwarding.node.wire import Wire
from collapsed_forwarding.timers import Scheduler


def test_a_reply_from_anyone_but_the_dest_is_ignored_and_the_rpc_stays_pending() -> None:
    wire = Wire(io.BytesIO(), Scheduler())
    wire.node_id, wire.node_ids = "n1", ["n1", "n2"]
    replies: list[object] = []
    wire.rpc("n2", {"type": "cf_read", "key": "k"}, replies.append, timeout=60)
    for impostor in ("c9", "n3", "lin-kv", None, ["n2"]):
        wire.handle_reply(impostor, {"type": "cf_read_ok", "in_reply_to": 0, "value": "forged", "lease": 1e9})
    assert replies == []
    wire.handle_reply("n2", {"type": "cf_read_ok", "in_reply_to": 0, "value": "real", "lease": 0})
    assert replies == [{"type": "cf_read_ok", "in_reply_to": 0, "value": "real", "lease": 0}]
