"""The reader thread: replies to the node's RPCs are handled
ahead of the requests read before them and not yet handled, the requests keep
their order, and the requests read ahead are bounded."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

from collapsed_forwarding.node.cli import parse_flags
from collapsed_forwarding.node.handlers import CacheNode
from collapsed_forwarding.node.reader import SHED_PENDING, Reader, _Ahead
from collapsed_forwarding.node.wire import Wire
from collapsed_forwarding.timers import Scheduler


def line(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def request(type_: str, msg_id: int, **fields: object) -> bytes:
    return line({"src": "c1", "dest": "n1", "body": {"type": type_, "msg_id": msg_id, **fields}})


class Chunks:
    """A stream that gives one chunk per read, then sets `ended` at its end."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.ended = threading.Event()

    def read1(self, size: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        self.ended.set()
        return b""

    read = read1


def started_node() -> tuple[Wire, io.BytesIO]:
    out = io.BytesIO()
    node = Wire(out, Scheduler())
    node.node_id, node.node_ids = "n1", ["n1"]
    return node, out


def test_a_reply_read_after_waiting_requests_is_handled_before_them():
    node, out = started_node()
    order: list[str] = []
    stream = Chunks([request("step", 1, name="first"),
                     request("step", 2, name="second")
                     + line({"src": "lin-kv", "dest": "n1",
                             "body": {"type": "read_ok", "in_reply_to": 0, "msg_id": 9, "value": 1}})
                     + request("step", 3, name="third")])

    def step(msg: dict, body: dict) -> None:
        order.append(body["name"])
        if body["name"] == "first":  # handled while the reader reads the rest, to its end
            stream.ended.wait(10)
        node.reply(msg, "step_ok")

    node.handlers["step"] = step
    node.rpc("lin-kv", {"type": "read", "key": "k"}, lambda body: order.append("reply"), timeout=30)  # msg_id 0
    Reader(node).serve(stream, drain_timeout=5)  # type: ignore[arg-type]
    assert [name for name in order if name != "reply"] == ["first", "second", "third"]
    assert order.index("reply") < order.index("second")  # read after "second", handled before it
    assert out.getvalue().count(b'"step_ok"') == 3


def test_requests_are_handled_in_the_order_read_and_every_one_is_answered():
    node, out = started_node()
    seen: list[int] = []

    def echo(msg: dict, body: dict) -> None:
        seen.append(body["msg_id"])
        node.reply(msg, "echo_ok")

    node.handlers["echo"] = echo
    count = 20_000  # several reads' worth, so batches cross the reader's hand-over
    Reader(node).serve(io.BytesIO(b"".join(request("echo", i) for i in range(count))), drain_timeout=5)
    assert seen == list(range(count))
    assert out.getvalue().count(b'"echo_ok"') == count


def test_a_line_that_only_mentions_in_reply_to_is_a_request_handled_in_order():
    node, out = started_node()
    seen: list[object] = []

    def note(msg: dict, body: dict) -> None:
        seen.append(body.get("key"))
        node.reply(msg, "note_ok")

    node.handlers["note"] = note
    stream = io.BytesIO(request("note", 1, key="a") + request("note", 2, key={"in_reply_to": 5})
                        + b'{"in_reply_to": not json\n' + b'"in_reply_to" \xff\n' + request("note", 3, key="c"))
    Reader(node).serve(stream, drain_timeout=5)
    assert seen == ["a", {"in_reply_to": 5}, "c"]
    assert out.getvalue().count(b'"note_ok"') == 3


def test_read_ahead_is_bounded_and_replies_are_never_held_back():
    ahead = _Ahead(limit=100)
    ahead.put([b"x" * 80], [], 0.0)
    ahead.put([b"y" * 80], [], 0.0)  # over the limit now: the next put of requests waits
    third = threading.Thread(target=ahead.put, args=([b"z"], [], 0.0))
    third.start()
    third.join(0.2)
    assert third.is_alive(), "a put over the limit must wait for the handlers"
    ahead.put([], [b"reply"], 0.0)  # replies go in at once, whatever the limit
    batches = ((lines, replies) for lines, replies, _ in ahead)
    assert next(batches) == ([b"reply"], True)
    assert next(batches) == ([b"x" * 80], False)  # taking a batch frees room
    third.join(5)
    assert not third.is_alive()
    ahead.close()
    assert list(batches) == [([b"y" * 80], False), ([b"z"], False)]


def test_an_overloaded_node_sheds_requests_read_too_long_ago_with_error_11():
    """Many requests waiting, and batches read longer than SHED_AFTER ago: each whole request in
    them gets error 11 at once (nothing of it done), init and replies are still handled."""
    node, out = started_node()
    held: list[int] = []
    node.handlers["hang"] = lambda msg, body: held.append(body["msg_id"])  # never answered
    ticks = iter(range(0, 10**9, 10))  # every read of the clock 10 s after the last: every batch is old

    count = 3 * 1024
    stream = io.BytesIO(b"".join(request("hang", i) for i in range(count)))
    Reader(node, clock=lambda: float(next(ticks))).serve(stream, drain_timeout=0)
    shed = out.getvalue().count(b'"code":11')
    assert len(held) > SHED_PENDING, "requests are handled until more than SHED_PENDING wait"
    assert len(held) + shed == count, "every request is either handled or shed"
    assert shed > 0 and b"not handled within" in out.getvalue()


def test_a_request_type_marked_unshed_is_handled_while_the_node_is_overloaded():
    """The node marks get so (late, it starts no fetch): a herd on one cold key read at once
    is joined to its one fetch, not shed past the first SHED_PENDING."""
    node, out = started_node()
    held: list[int] = []
    node.handlers["join"] = lambda msg, body: held.append(body["msg_id"])  # answered later, or never
    ticks = iter(range(0, 10**9, 10))
    reader = Reader(node, clock=lambda: float(next(ticks)))
    reader.unshed.add("join")
    count = 3 * 1024
    reader.serve(io.BytesIO(b"".join(request("join", i) for i in range(count))), drain_timeout=0)
    assert held == list(range(count))
    assert b'"code":11' not in out.getvalue()


def test_with_shed_after_0_a_get_handled_late_fetches_with_a_deadline_from_its_handling():
    out = io.BytesIO()
    node = CacheNode(parse_flags(["--sim-latency", "0", "--shed-after", "0"], environ={}), out)
    init = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}
    node.wire.handle_request(init, init["body"])
    ticks = iter(range(0, 10**9, 10))  # every batch handled 10 s after its read, 10 x --origin-timeout
    node.reader.clock = lambda: float(next(ticks))
    node.serve(io.BytesIO(request("get", 2, key="missed")))
    reply = json.loads(out.getvalue().splitlines()[-1])["body"]
    assert (reply["type"], reply["value"]) == ("get_ok", "value-missed")


def test_a_fast_burst_answered_as_it_goes_is_never_shed():
    node, out = started_node()
    node.handlers["echo"] = lambda msg, body: node.reply(msg, "echo_ok")
    ticks = iter(range(0, 10**9, 10))
    count = 5 * 1024
    Reader(node, clock=lambda: float(next(ticks))).serve(
        io.BytesIO(b"".join(request("echo", i) for i in range(count))), drain_timeout=5)
    assert out.getvalue().count(b'"echo_ok"') == count


def test_a_get_read_over_origin_timeout_ago_starts_no_fetch_but_is_served_a_hit_or_joins_one():
    """A fetch's deadline counts from the read of the request that starts it: a miss read
    --origin-timeout ago or more gets error 11, and starts nothing. A hit is still served,
    and a fetch already in the air, whose deadline is no later, is joined."""
    out = io.BytesIO()
    node = CacheNode(parse_flags(["--sim-latency", "0.2"], environ={}), out)
    init = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}
    node.wire.handle_request(init, init["body"])  # (counted as read and answered, as from stdin)
    assert node.proxy.fetch_and_cache("cached") == "value-cached"
    flying = threading.Event()
    assert node.proxy.request("flying", lambda answer: flying.set()) is None
    ticks = iter(range(0, 10**9, 10))  # every read of the clock 10 s after the last: every batch is late
    node.reader.clock = lambda: float(next(ticks))
    node.serve(io.BytesIO(request("get", 5, key="flying")
                          + request("get", 2, key="cached") + request("get", 3, key="missed")
                          + request("get", 4, key="flying")))
    assert flying.wait(5)
    replies = {body["in_reply_to"]: body for body in
               (json.loads(text)["body"] for text in out.getvalue().splitlines()) if body["in_reply_to"] > 1}
    assert replies[2]["type"] == "get_ok" and replies[2]["value"] == "value-cached"
    assert replies[3]["type"] == "error" and replies[3]["code"] == 11
    assert replies[4]["type"] == "get_ok" and replies[4]["value"] == "value-flying"
    assert node.proxy.stats()["origin_fetches"] == 2, "the late miss started no fetch"


def test_a_get_handled_late_fetches_with_a_deadline_counted_from_its_read():
    """Handled 0.4 s after its read (a slow message before it, say), a miss still fetches,
    and times out --origin-timeout after the read, not after its handling."""
    out = io.BytesIO()
    node = CacheNode(parse_flags(["--sim-latency", "30", "--origin-timeout", "1"], environ={}), out)
    init = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}
    node.wire.handle_request(init, init["body"])  # (counted as read and answered, as from stdin)
    readings = iter([100.0, 100.4])  # read at 100.0, handled at 100.4
    node.reader.clock = lambda: next(readings, 100.4)
    left_when_armed: list[float] = []
    arm = node.proxy.flights.arm

    def record(flight: Any) -> None:
        left_when_armed.append(flight.deadline - node.scheduler.time())
        arm(flight)

    node.proxy.flights.arm = record  # type: ignore[method-assign]
    node.serve(io.BytesIO(request("get", 2, key="missed")))
    reply = json.loads(out.getvalue().splitlines()[-1])["body"]
    assert (reply["type"], reply["code"]) == ("error", 0)
    assert len(left_when_armed) == 1 and 0.5 < left_when_armed[0] <= 0.6, left_when_armed
