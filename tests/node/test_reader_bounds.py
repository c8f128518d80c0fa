"""The reader's bounds and its framing of messages spread over lines: memory held
by a fragment is bounded whatever its nesting, a reply-shaped line that is no JSON
costs one short log line, and three shapes of input no longer lose a message."""

from __future__ import annotations

import io
import json
import logging
import tracemalloc

import pytest

from collapsed_forwarding.node.reader import MAX_FRAGMENT, Reader
from collapsed_forwarding.node.wire import Wire
from collapsed_forwarding.timers import Scheduler

INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'


def reader_with_handler() -> tuple[Reader, list[dict]]:
    """A reader whose wire records the body of every request it is handed."""
    wire = Wire(io.BytesIO(), Scheduler())
    wire.node_id, wire.node_ids = "n1", ["n1"]
    seen: list[dict] = []

    def record(msg: dict, body: dict) -> None:
        seen.append(body)
        wire.reply(msg, f"{body['type']}_ok")

    for type_ in ("get", "write", "init"):
        wire.handlers[type_] = record
    return Reader(wire), seen


def feed(reader: Reader, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for line in data.split(b"\n"):
        reader.handle_line(line)


def test_a_never_closed_fragment_of_brackets_holds_memory_bounded_by_the_fragment_limit():
    reader, _ = reader_with_handler()
    bracket_line = "[" * 1000
    lines = 4 * MAX_FRAGMENT // len(bracket_line)  # 4 MiB of nesting, four times the fragment limit
    logging.disable(logging.CRITICAL)  # (pytest keeps every log record: they are not the reader's memory)
    tracemalloc.start()
    try:
        feed(reader, '{"src": "c1", "dest": "n1", "body":')
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(lines):
            reader.handle_line(bracket_line.encode())
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)
    assert held < MAX_FRAGMENT, f"{held:,} bytes held after {lines * len(bracket_line):,} bytes of '['"


def test_a_reply_shaped_line_holding_nan_costs_one_short_log_line(caplog: pytest.LogCaptureFixture):
    reader, _ = reader_with_handler()
    nan_reply = b'{"src":"lin-kv","dest":"n1","body":{"type":"read_ok","in_reply_to":0,"value":NaN}}\n'
    with caplog.at_level(logging.INFO):
        reader.serve(io.BytesIO(INIT + nan_reply * 3), drain_timeout=1)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert records and all(r.exc_info is None for r in records), [r.getMessage() for r in records]
    assert all(len(r.getMessage()) < 400 for r in records)


def test_a_top_level_brace_alone_on_its_line_starts_a_new_message():
    reader, seen = reader_with_handler()
    pretty = json.dumps({"src": "c1", "dest": "n1", "body": {"type": "get", "msg_id": 5, "key": "k"}}, indent=2)
    feed(reader, '{"src": "c1", "dest": "n1", "body":\n' + pretty)  # unfinished, expecting a value
    assert [body["msg_id"] for body in seen] == [5]


def test_a_value_holding_a_body_on_its_own_line_stays_part_of_its_message():
    reader, seen = reader_with_handler()
    feed(reader, '{"src": "c1", "dest": "n1", "body": {"type": "write", "msg_id": 6, "key": "k",\n'
                 '"value":\n{"body": {"x": 1}}\n}}')
    assert seen == [{"type": "write", "msg_id": 6, "key": "k", "value": {"body": {"x": 1}}}]


def test_a_byte_order_mark_at_the_start_of_the_input_loses_no_message():
    reader, seen = reader_with_handler()
    reader.serve(io.BytesIO(b"\xef\xbb\xbf" + INIT), drain_timeout=1)
    assert [body["type"] for body in seen] == ["init"]
