"""Every reply reaches its client, also when input ends while a fetch is in flight:
the node does not exit with a reply written but not yet flushed."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from collapsed_forwarding.node.wire import Wire
from collapsed_forwarding.timers import Scheduler

ROOT = Path(__file__).resolve().parents[2]
INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'


class FlushedOutput:
    """An output that keeps what was written apart from what was flushed."""

    def __init__(self) -> None:
        self.pending = b""
        self.flushed = b""

    def write(self, data: bytes) -> int:
        self.pending += data
        return len(data)

    def flush(self) -> None:
        self.flushed, self.pending = self.flushed + self.pending, b""


def test_drain_flushes_a_reply_another_thread_has_batched_but_not_flushed():
    out = FlushedOutput()
    wire = Wire(out, Scheduler())  # type: ignore[arg-type]
    wire.node_id = "n1"
    request = {"src": "c1", "dest": "n1", "body": {"type": "get", "msg_id": 7}}
    wire.handle_request(request, request["body"])  # (no handler: answered at once, error 10)
    out.flushed = out.pending = b""
    wire._requests_read += 1  # one more request read, answered below by a fetch's thread
    replied, finish = threading.Event(), threading.Event()

    def settle_in_a_batch() -> None:  # as the timer thread does: its round of replies shares one flush
        with wire.batch():
            wire.reply(request, "get_ok", value=1)
            replied.set()
            finish.wait(10)  # still inside the batch when the main thread drains, then exits

    thread = threading.Thread(target=settle_in_a_batch)
    thread.start()
    try:
        assert replied.wait(10)
        wire.drain(timeout=10)
        assert b'"get_ok"' in out.flushed, "drain returned with the last reply still unflushed"
    finally:
        finish.set()
        thread.join(10)


def run_node(data: bytes, *args: str) -> bytes:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], input=data,
                          capture_output=True, timeout=60, check=True).stdout


CASES = {
    "get": INIT + b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":2,"key":"k"}}\n',
    "read": INIT + b'{"src":"c1","dest":"n1","body":{"type":"read","msg_id":2,"key":"k"}}\n',
    "herd": (ROOT / "examples" / "herd.jsonl").read_bytes(),
}


@pytest.mark.process
@pytest.mark.parametrize("case", CASES)
def test_input_ending_with_a_fetch_in_flight_still_gets_every_reply(case):
    """The origin answers just after input ends: every line read must still be answered (25 runs a case)."""
    data = CASES[case]
    lost = [n for n in range(25) if run_node(data, "--sim-latency", "0.005").count(b"\n") != data.count(b"\n")]
    assert not lost
