"""A global cap on the requests waiting for an answer (--max-pending): past it,
a request gets error 11 at once, so a flood of misses over distinct keys cannot
grow the node's memory without bound."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from collapsed_forwarding.node.cli import parse_flags
from collapsed_forwarding.node.wire import Wire
from collapsed_forwarding.timers import Scheduler

MAIN = Path(__file__).resolve().parents[2] / "main.py"


def test_past_max_pending_a_request_gets_error_11_at_once():
    out = io.BytesIO()
    wire = Wire(out, Scheduler())
    wire.node_id, wire.max_pending = "n1", 3
    wire.handlers["hang"] = lambda msg, body: None  # answered later, or never

    for msg_id in range(5):
        msg = {"src": "c1", "dest": "n1", "body": {"type": "hang", "msg_id": msg_id}}
        wire.handle_request(msg, msg["body"])
    replies = [json.loads(line)["body"] for line in out.getvalue().splitlines()]
    assert [(r["in_reply_to"], r["code"]) for r in replies] == [(3, 11), (4, 11)]


def test_the_default_cap_is_set_and_read_from_its_variable():
    assert parse_flags([], environ={}).max_pending == 100_000
    assert parse_flags([], environ={"CF_MAX_PENDING": "7"}).max_pending == 7
    assert parse_flags(["--max-pending", "0"], environ={"CF_MAX_PENDING": "7"}).max_pending == 0


@pytest.mark.process
def test_a_node_answers_misses_past_its_cap_with_error_11_and_the_rest_with_values():
    init = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}
    gets = [{"src": "c1", "dest": "n1", "body": {"type": "get", "msg_id": 10 + n, "key": f"k{n}"}} for n in range(10)]
    data = b"".join(json.dumps(m).encode() + b"\n" for m in [init, *gets])
    out = subprocess.run([sys.executable, str(MAIN), "--max-pending", "4", "--sim-latency", "0.5"], input=data,
                         capture_output=True, timeout=60, check=True).stdout
    bodies = [json.loads(line)["body"] for line in out.splitlines()][1:]
    assert sorted(b["in_reply_to"] for b in bodies if b["type"] == "get_ok") == [10, 11, 12, 13]
    assert sorted(b["in_reply_to"] for b in bodies if b.get("code") == 11) == list(range(14, 20))


@pytest.mark.process
def test_past_max_fetches_a_miss_of_one_more_key_gets_error_11_at_once():
    init = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}}
    gets = [{"src": "c1", "dest": "n1", "body": {"type": "get", "msg_id": 10 + n, "key": f"k{n % 3}"}}
            for n in range(6)]  # k0, k1, k2, k0, k1, k2: the cap of 2 fetches refuses k2 both times
    data = b"".join(json.dumps(m).encode() + b"\n" for m in [init, *gets])
    out = subprocess.run([sys.executable, str(MAIN), "--max-fetches", "2", "--sim-latency", "0.5"], input=data,
                         capture_output=True, timeout=60, check=True).stdout
    bodies = [json.loads(line)["body"] for line in out.splitlines()][1:]
    assert sorted(b["in_reply_to"] for b in bodies if b["type"] == "get_ok") == [10, 11, 13, 14]
    assert sorted(b["in_reply_to"] for b in bodies if b.get("code") == 11) == [12, 15]
