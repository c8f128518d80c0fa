"""stderr is bounded whatever the input: repeated warnings are summarised."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from collapsed_forwarding.node.logs import RepeatFilter

MAIN = Path(__file__).resolve().parents[2] / "main.py"


def record(msg: str, *args: object, name: str = "collapsed_forwarding.reader") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_records_of_one_kind_pass_burst_times_per_window_then_say_how_many_were_left_out():
    now = [0.0]
    repeats = RepeatFilter(burst=3, window=1.0, clock=lambda: now[0])
    passed = [r for r in (record("bad line %r", n) for n in range(100)) if repeats.filter(r)]
    assert [r.getMessage() for r in passed] == ["bad line 0", "bad line 1", "bad line 2"]
    assert repeats.filter(record("another kind"))  # each kind has its own budget
    now[0] = 1.5
    later = record("bad line %r", 100)
    assert repeats.filter(later)
    assert later.getMessage() == "bad line 100 (... 97 more like this not logged)"


def test_flush_logs_what_was_left_out_since_the_last_record_of_each_kind(caplog: pytest.LogCaptureFixture):
    repeats = RepeatFilter(burst=1, window=60.0)
    for n in range(10):
        repeats.filter(record("bad line %r", n))
    with caplog.at_level(logging.WARNING):
        repeats.flush(logging.getLogger("test"))
    assert [r.getMessage() for r in caplog.records] == [
        "... 9 more like this not logged: collapsed_forwarding.reader: bad line %r"]


@pytest.mark.process
def test_20000_lines_that_are_not_json_write_a_few_lines_of_stderr():
    data = b"x\n" * 20_000
    done = subprocess.run([sys.executable, str(MAIN)], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout == b""
    assert len(done.stderr) < 10_000, f"{len(done.stderr):,} bytes of stderr for {len(data):,} bytes of input"
    assert b"more like this not logged" in done.stderr
