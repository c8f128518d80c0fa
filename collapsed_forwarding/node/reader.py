"""Maelstrom's wire protocol, the reading end: lines in, each message handed to the wire.

A message is one JSON object on one line; a person may also paste one spread
over several lines (`framing.py` follows it). A reader thread reads ahead of
the handlers and sorts the replies to this node's RPCs ahead of the requests.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from .framing import Fragment, Shape
from .wire import ErrorCode, Wire

log = logging.getLogger("collapsed_forwarding.reader")

MAX_LINE = 64 * 1024 * 1024  # a longer line is skipped, so one huge input cannot exhaust memory
MAX_FRAGMENT = 1024 * 1024  # the most a message spread over lines may hold (a person types less)
READ_AHEAD = 64 * 1024 * 1024  # bytes of requests read and not yet handled, at most
# The reader thread reads this much at a time: each read gives up the GIL, and taking
# it back from a busy handler thread can take a switch interval (5 ms), so 64 KiB a
# read let a burst of 100,000 gets take 1.2 s to read, and replies behind it time out.
READ_AHEAD_CHUNK = 1 << 20
BATCH_LINES = 512  # requests handed over at a time: a reply waits at most for one batch
# Overload: while more than SHED_PENDING requests already wait for answers, and either a request
# waited longer than SHED_AFTER between being read and being handled or the deadlines run that
# late, every request is answered error 11 at once (a definite "not done": nothing of it was),
# until the handlers have caught up with what is read and the deadlines with the clock. Reading
# ahead lets a flood of requests queue up to READ_AHEAD bytes, a minute's work; handled that
# late, a miss would time out a minute after it was read, not --origin-timeout after. Shedding
# drains the queue at a few us a line. A burst that is only fast (a file piped in, answered as
# it goes) leaves few requests waiting: it is handled whole. Whatever the load, a fetch that a
# get or read starts times out --origin-timeout after the request was read (`Reader.age`), and
# one read longer ago starts none. So a get is not shed (`Reader.unshed`): it costs a hit, a
# join or error 11, and a herd of 10,000 on one cold key read at once would otherwise lose
# its tail to error 11, though its fetch answers them all.
SHED_AFTER = 0.1  # the default of --shed-after
SHED_PENDING = 1000
# When the deadlines run more than LATE_TIMERS behind, the handlers wait for the timer thread
# (at most CATCH_UP_FOR a batch): under the GIL, a thread busy with a flood of requests would
# leave it a switch interval at a time, and a timeout would be answered long after its deadline.
LATE_TIMERS = 0.01
CATCH_UP_FOR = 0.1


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class Reader:
    """Reads one node's input and hands each message to its wire: requests to
    `handle_request`, replies to `handle_reply`."""

    def __init__(self, wire: Wire, clock: Callable[[], float] = time.monotonic, shed_after: float = SHED_AFTER) -> None:
        self.wire, self.clock, self.shed_after = wire, clock, shed_after  # shed_after 0: never shed
        self._shedding = False  # overloaded, until a batch read less than SHED_AFTER ago comes up
        self._shed_batch = False  # the requests of the batch being handled get error 11 (see _dispatch)
        self.age = 0.0  # seconds between the read of the batch being handled and its handling (see SHED_AFTER)
        self.unshed = {"init"}  # request types handled even while shedding (see SHED_AFTER)
        self._number_too_large = False  # set by the decoder, read by the thread that handles the lines
        self._decode = json.JSONDecoder(parse_constant=_reject_constant, parse_float=self._parse_float).decode
        self._fragment = Fragment(MAX_FRAGMENT)  # a message spread over lines, while its lines come

    def serve(self, stream: BinaryIO, drain_timeout: float) -> None:
        """Handle every line of `stream`; at its end, wait (up to drain_timeout)
        until every request read has been answered.

        A reader thread reads ahead of the handlers and puts the replies to this
        node's RPCs (a KV service's, a peer's) ahead of the requests read before
        them: otherwise, under a flood of requests, a reply would wait behind
        all of them while the deadline of the fetch it answers ran, and the fetch
        would time out although the service answered at once. This thread still
        handles every line, so the handlers and the replies never contend for
        a lock, which under the GIL would cost a switch interval each time.
        """
        ahead = _Ahead(READ_AHEAD)
        reader = threading.Thread(target=self._read_ahead, args=(stream, ahead), name="reader", daemon=True)
        reader.start()
        scheduler = self.wire.scheduler
        for lines, replies, read_at in ahead:
            if not replies and scheduler.overdue() > LATE_TIMERS:
                scheduler.catch_up(CATCH_UP_FOR)
            handle = self._handle_reply_line if replies else self.handle_line
            self._shed_batch = not replies and self._overloaded(read_at)
            with self.wire.batch():
                for line in lines:
                    try:
                        handle(line)
                    except Exception:  # no line, however odd, stops the node
                        log.exception("could not handle the line %.200r", line)
        if self._fragment.prefix is not None:
            log.warning("input ended inside an unfinished message of %d lines: dropped", len(self._fragment.lines))
            self._fragment.drop()
        self.wire.drain(drain_timeout)

    def _read_ahead(self, stream: BinaryIO, ahead: _Ahead) -> None:
        """The reader thread: it only reads and sorts lines, replies from requests."""
        try:
            for lines in _line_batches(stream, READ_AHEAD_CHUNK):
                read_at = self.clock()
                requests: list[bytes] = []
                replies: list[bytes] = []
                for line in lines:
                    (replies if b'"in_reply_to"' in line and _is_reply(line) else requests).append(line)
                ahead.put([], replies, read_at)
                for at in range(0, len(requests), BATCH_LINES):
                    ahead.put(requests[at:at + BATCH_LINES], [], read_at)
        except Exception:  # stdin failed: what was read is still handled, then the node drains
            log.exception("could not read the input")
        finally:
            ahead.close()

    def _parse(self, text: str) -> Any:
        """One message's JSON; `_number_too_large` then says whether it held a number no double holds."""
        self._number_too_large = False
        return self._decode(text)

    def _handle_reply_line(self, line: bytes) -> None:
        """A line the reader found to be one whole reply: handled as such, apart
        from whatever the requests' lines are in the middle of."""
        try:
            msg = self._parse(line.decode())
        except ValueError as exc:  # NaN or Infinity, which the reader thread's looser decoder let through
            log.warning("ignoring a reply that is not JSON (%.100s): %.200r", exc, line)
            return
        self.wire.handle_reply(msg.get("src"), msg["body"], self._number_too_large)

    def _overloaded(self, read_at: float) -> bool:
        """Whether requests read at `read_at` are shed (see SHED_AFTER); sets `age` for their handlers."""
        wire = self.wire
        limit = self.shed_after
        age = self.clock() - read_at
        self.age = max(0.0, age) if limit else 0.0  # --shed-after 0: lateness is never held against a request
        behind = age > limit or wire.scheduler.overdue() > limit
        if not limit or not behind or wire.node_id is None:
            self._shedding = False
        elif wire.unanswered() > SHED_PENDING:
            self._shedding = True
        return self._shedding

    def handle_line(self, line: bytes) -> None:
        if self._fragment.prefix is not None:  # (an attribute, not a property: this is every line's path)
            self._continue_fragment(line)
            return
        try:
            msg = self._parse(line.decode())
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
            self._not_one_line(line, exc)
            return
        self._dispatch(msg, line)

    def _not_one_line(self, line: bytes, exc: Exception) -> None:
        """A line that is no message on its own: blank, the first of several, or not JSON."""
        if not line.strip():
            return  # blank lines are ignored quietly
        try:
            text = line.decode()
        except UnicodeDecodeError:
            text = None
        if text is not None and not isinstance(exc, RecursionError) and self._fragment.begin(text):
            return
        log.warning("ignoring a line that is not JSON (%.200s): %.200r", exc, line)

    def _continue_fragment(self, line: bytes) -> None:
        """One more line while a message spread over lines is open."""
        fragment = self._fragment
        try:
            text = line.decode()
        except UnicodeDecodeError:
            text = ""
            shape = Shape.BROKEN
        else:
            try:
                alone = self._parse(text)
            except (ValueError, RecursionError):
                alone = None
            if _is_message(alone):  # a whole message is never swallowed by a fragment
                log.warning("dropped an unfinished message of %d lines: a whole one came", len(fragment.lines))
                fragment.drop()
                self._dispatch(alone, line)
                return
            if not text.strip():
                return
            if text.rstrip() == "{":  # a pretty printer's top-level brace, at the margin: a new message begins
                log.warning("dropped an unfinished message of %d lines: a new one began", len(fragment.lines))
                fragment.drop()
                fragment.begin(text)
                return
            shape = fragment.add(text)
        if shape is Shape.BROKEN:
            log.warning("dropped an unfinished message: a line could not continue it: %.200r", line)
            fragment.drop()
            self.handle_line(line)  # read afresh: it may begin a message, or be one
        elif shape is Shape.WHOLE:
            whole = fragment.take()
            if whole is None:
                log.warning("skipped a message spread over lines: over the %d-byte limit", MAX_FRAGMENT)
                return
            try:
                msg = self._parse(whole)
            except (ValueError, RecursionError) as exc:
                log.warning("ignoring a message spread over lines that is not JSON (%.200s)", exc)
                return
            self._dispatch(msg, line)

    def _dispatch(self, msg: Any, line: bytes) -> None:
        body = msg.get("body") if isinstance(msg, dict) else None
        if isinstance(body, dict) and "in_reply_to" in body:
            self.wire.handle_reply(msg.get("src"), body, self._number_too_large)
        elif not isinstance(body, dict) or not isinstance(msg.get("src"), str) or type(body.get("msg_id")) is not int:
            log.warning("ignoring a message with no src, no object body or no integer msg_id: %.200r", line)
        elif self.wire.node_id is None and not isinstance(msg.get("dest"), str):
            # Before init a reply is signed with the request's dest: only a string can sign one.
            log.warning("ignoring a request before init whose dest is not a string: %.200r", line)
        elif self._number_too_large:
            self.wire.refuse(msg, ErrorCode.MALFORMED_REQUEST, "a number in this message is too large for a double")
        elif self._shed_batch and body.get("type") not in self.unshed:
            self.wire.refuse(msg, ErrorCode.TEMPORARILY_UNAVAILABLE,
                             f"overloaded: not handled within {self.shed_after:g}s of being read, so not done")
        else:
            self.wire.handle_request(msg, body)

    def _parse_float(self, text: str) -> float:
        value = float(text)
        if math.isinf(value):  # 1e400: valid JSON that no double holds, and that would go out as Infinity
            self._number_too_large = True
            return 0.0
        return value


def _is_message(value: Any) -> bool:
    """Whether a line decoded on its own is a whole message, not a piece of one
    that happens to be an object (a value holding a "body" of its own)."""
    return isinstance(value, dict) and isinstance(value.get("src"), str) and isinstance(value.get("body"), dict)


def _is_reply(line: bytes) -> bool:
    """Whether a line is one whole message whose body answers an RPC (decoded
    apart from the handlers' decoder, which only the handling thread uses)."""
    try:
        msg = _classify(line.decode())
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return False
    body = msg.get("body") if isinstance(msg, dict) else None
    return isinstance(body, dict) and "in_reply_to" in body


_classify = json.JSONDecoder().decode


class _Ahead:
    """What the reader thread has read and the handlers have not: replies,
    handed out first, and batches of requests, in order, at most `limit` bytes
    of them (then the reader waits: bounded memory)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._replies: deque[list[bytes]] = deque()
        self._requests: deque[tuple[list[bytes], int, float]] = deque()  # (lines, bytes, when read)
        self._size = 0
        self._closed = False
        self._changed = threading.Condition(threading.Lock())

    def put(self, requests: list[bytes], replies: list[bytes], read_at: float) -> None:
        size = sum(map(len, requests))
        with self._changed:
            if replies:  # never held back: the handlers take them first
                self._replies.append(replies)
                self._changed.notify_all()
            if not requests:
                return
            while self._size > self._limit and self._requests:
                self._changed.wait()
            self._requests.append((requests, size, read_at))
            self._size += size
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __iter__(self) -> Iterator[tuple[list[bytes], bool, float]]:
        """(lines, whether they are replies, when read) until closed and empty: the
        replies waiting, if any, else the next batch of requests."""
        while True:
            with self._changed:
                while not self._replies and not self._requests and not self._closed:
                    self._changed.wait()
                replies = bool(self._replies)
                read_at = math.inf  # (replies are never shed)
                if replies:
                    lines = self._replies.popleft()
                elif self._requests:
                    lines, size, read_at = self._requests.popleft()
                    self._size -= size
                    self._changed.notify_all()
                else:
                    return
            yield lines, replies, read_at


def _line_batches(stream: BinaryIO, read_size: int = 1 << 16) -> Iterator[list[bytes]]:
    """The stream's lines, as many at a time as one read brings, so their
    replies can share a flush. A line longer than MAX_LINE is skipped (and
    logged) without ever being held whole."""
    read = getattr(stream, "read1", stream.read)
    pieces: list[bytes] = []  # the line being read, when no newline has come yet
    size = skipped = 0
    first = read(read_size)
    if first.startswith(codecs.BOM_UTF8):  # an editor's byte-order mark: not part of the first message
        first = first[len(codecs.BOM_UTF8):]
    while chunk := first or read(read_size):
        first = b""
        if skipped:
            end = chunk.find(b"\n")
            if end < 0:
                skipped += len(chunk)
                continue
            log.warning("skipped a line of %d bytes, over the %d-byte limit", skipped + end, MAX_LINE)
            chunk, skipped = chunk[end + 1:], 0
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            pieces.append(chunk)
            size += len(chunk)
            if size > MAX_LINE:
                pieces, skipped, size = [], size, 0
            continue
        if pieces:
            lines[0] = b"".join(pieces) + lines[0]
        last = lines.pop()
        pieces, size = ([last], len(last)) if last else ([], 0)
        yield lines
    if pieces and not skipped:
        yield [b"".join(pieces)]


