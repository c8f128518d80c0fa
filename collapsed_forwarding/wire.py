"""Maelstrom's wire protocol: JSON lines in and out, replies, and RPCs matched by in_reply_to.

This module knows nothing of caching. It reads messages, hands each request to
the handler registered for its type, writes each outgoing message whole on one
line, and answers what cannot be handled (unknown type, before init, malformed)
with Maelstrom's error codes.
"""

from __future__ import annotations

import errno
import json
import json.encoder
import logging
import math
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, BinaryIO

from .framing import Fragment, Shape
from .timers import Scheduler, Timer

log = logging.getLogger("collapsed_forwarding.wire")

Message = dict[str, Any]
Body = dict[str, Any]
Handler = Callable[[Message, Body], None]



class ErrorCode(IntEnum):
    """Maelstrom's error codes, the ones this node sends or reads."""

    TIMEOUT = 0
    NOT_SUPPORTED = 10
    TEMPORARILY_UNAVAILABLE = 11
    MALFORMED_REQUEST = 12
    CRASH = 13
    KEY_DOES_NOT_EXIST = 20
    PRECONDITION_FAILED = 22

MAX_LINE = 64 * 1024 * 1024  # a longer line is skipped, so one huge input cannot exhaust memory
MAX_FRAGMENT = 1024 * 1024  # the most a message spread over lines may hold (a person types less)
# What `rpc`'s on_reply is given for a reply that arrived but cannot be read as sent
# (a number no double holds): an error no service sends, so no one mistakes it for an answer.
UNREADABLE_REPLY_CODE = ErrorCode.CRASH
READ_AHEAD = 64 * 1024 * 1024  # bytes of requests read and not yet handled, at most
# The reader thread reads this much at a time: each read gives up the GIL, and taking
# it back from a busy handler thread can take a switch interval (5 ms), so 64 KiB a
# read let a burst of 100,000 gets take 1.2 s to read, and replies behind it time out.
READ_AHEAD_CHUNK = 1 << 20
BATCH_LINES = 512  # requests handed over at a time: a reply waits at most for one batch

def _no_json_form(value: Any) -> None:
    raise TypeError(f"a {type(value).__name__} has no JSON form")


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON, no NaN or Infinity. Made once: JSONEncoder.encode builds
    its C encoder anew on every call, a third of the cost of a short reply."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the json accelerator
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
    encode = make(None, _no_json_form, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda value: "".join(encode(value, 0))


to_json = _compact_encoder()


def fields_json(**fields: Any) -> str:
    """Fields as the JSON text that follows msg_id in a body: `"value":1,"cache":"hit"`."""
    return to_json(fields)[1:-1]


def _line(text: str) -> bytes:
    # A lone surrogate ("\ud800" in the input) has no UTF-8 form; its \uXXXX
    # escape, which backslashreplace writes, is the same JSON string.
    return text.encode("utf-8", "backslashreplace") + b"\n"


class Malformed(Exception):
    """A request that cannot be served as sent (error 12)."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class Node:
    """One Maelstrom node's plumbing: `handlers[type](msg, body)` for each
    request read, `reply`/`error` to answer it, `rpc` to ask another node or
    a service. Deadlines of RPCs are kept on `scheduler`."""

    def __init__(self, output: BinaryIO, scheduler: Scheduler) -> None:
        self.node_id: str | None = None
        self.node_ids: list[str] = []
        self.handlers: dict[str, Handler] = {}
        self.scheduler = scheduler
        self._output = output
        # Guards what must change together with a line written: the output,
        # the msg_id counter, the table of pending RPCs and the count of replies.
        self._output_lock = threading.Lock()
        self._draining = False  # input has ended: each reply checks whether it was the last one owed
        self._drained = threading.Event()
        self._next_msg_id = 0
        self._rpcs: dict[int, tuple[Callable[[Body | None], None], Timer]] = {}
        self._requests_read = 0  # only the thread that runs the handlers writes this
        self._replies_sent = 0  # only written under _output_lock
        self._number_too_large = False  # set by the decoder, read by the thread that handles the lines
        self._batching = threading.local()  # .depth > 0: this thread's messages wait for one flush
        self._decode = json.JSONDecoder(parse_constant=_reject_constant, parse_float=self._parse_float).decode
        self._fragment = Fragment(MAX_FRAGMENT)  # a message spread over lines, while its lines come
        # Called (under the output lock) once stdout is found closed: nothing can be
        # answered any more, so by default the process ends at once, quietly.
        self.on_output_closed: Callable[[], None] = _exit_quietly

    # -- sending ---------------------------------------------------------

    def _write(self, line: bytes) -> None:
        """Under the output lock: one whole line, flushed unless this thread is batching."""
        try:
            self._output.write(line)
            if not getattr(self._batching, "depth", 0):
                self._output.flush()
        except OSError as exc:
            self._output_failed(exc)

    def _flush(self) -> None:
        """Under the output lock."""
        try:
            self._output.flush()
        except OSError as exc:
            self._output_failed(exc)

    def _output_failed(self, exc: OSError) -> None:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.EBADF):
            raise exc
        self.on_output_closed()

    def flush_if_free(self, wait: float = 0.5) -> None:
        """Flush what is written, unless the output lock stays taken (a signal
        handler may run in the very thread that holds it)."""
        if self._output_lock.acquire(timeout=wait):
            try:
                self._flush()
            finally:
                self._output_lock.release()

    def unanswered(self) -> int:
        """Requests read and not yet answered (a racy count: for a log line)."""
        return self._requests_read - self._replies_sent

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Messages this thread sends inside go out with one flush at the end:
        one write for a burst of hits, or for every waiter of a fetch."""
        local = self._batching
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1
        try:
            yield
        finally:
            local.depth = depth
            if not depth:
                with self._output_lock:
                    self._flush()

    def reply(self, request: Message, type_: str, **fields: Any) -> None:
        try:
            encoded = fields_json(**fields)
        except (ValueError, TypeError, RecursionError) as exc:  # no JSON form: still one reply, an error
            log.exception("could not encode a %s reply", type_)
            type_, encoded = "error", fields_json(code=ErrorCode.CRASH, text=f"reply could not be encoded: {exc}")
        self.reply_encoded(request, type_, encoded)

    def reply_encoded(self, request: Message, type_: str, encoded_fields: str) -> None:
        """reply(), its fields given as fields_json() made them: encoded once, the
        same answer goes to every request waiting on one fetch at little cost."""
        src = to_json(self.node_id if self.node_id is not None else request.get("dest"))  # unknown before init
        head = (f'{{"src":{src},"dest":{to_json(request["src"])},"body":{{"type":{to_json(type_)},'
                f'"in_reply_to":{request["body"]["msg_id"]},"msg_id":')
        tail = f",{encoded_fields}}}}}" if encoded_fields else "}}"
        with self._output_lock:
            msg_id = self._next_msg_id
            self._next_msg_id = msg_id + 1
            self._write(_line(f"{head}{msg_id}{tail}"))
            self._replies_sent += 1
            if self._draining and self._replies_sent >= self._requests_read:
                self._drained.set()

    def error(self, request: Message, code: int, text: str) -> None:
        self.reply(request, "error", code=code, text=text)

    def rpc(self, dest: str, body: Body, on_reply: Callable[[Body | None], None], timeout: float) -> None:
        """Send a request; `on_reply(reply_body)` is called once, with None if no reply came within `timeout`."""
        body = {"type": body["type"], "msg_id": None, **body}
        with self._output_lock:
            body["msg_id"] = msg_id = self._next_msg_id
            line = _line(to_json({"src": self.node_id, "dest": dest, "body": body}))
            self._next_msg_id = msg_id + 1  # only once encoded: no msg_id is skipped
            # Registered before the request leaves, so no reply can beat it.
            self._rpcs[msg_id] = (on_reply, self.scheduler.call_later(timeout, self._rpc_timed_out, msg_id))
            self._write(line)

    def _rpc_timed_out(self, msg_id: int) -> None:
        with self._output_lock:
            pending = self._rpcs.pop(msg_id, None)
        if pending is not None:
            pending[0](None)

    # -- receiving -------------------------------------------------------

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
        for lines, replies in ahead:
            handle = self._handle_reply_line if replies else self.handle_line
            with self.batch():
                for line in lines:
                    try:
                        handle(line)
                    except Exception:  # no line, however odd, stops the node
                        log.exception("could not handle the line %.200r", line)
        if self._fragment.prefix is not None:
            log.warning("input ended inside an unfinished message of %d lines: dropped", len(self._fragment.lines))
            self._fragment.drop()
        with self._output_lock:
            self._draining = True
            if self._replies_sent >= self._requests_read:
                self._drained.set()
        if not self._drained.wait(min(drain_timeout, threading.TIMEOUT_MAX)):  # (a huge timeout would overflow)
            log.error("exiting with %d requests unanswered", self._requests_read - self._replies_sent)

    def _read_ahead(self, stream: BinaryIO, ahead: _Ahead) -> None:
        """The reader thread: it only reads and sorts lines, replies from requests."""
        try:
            for lines in _line_batches(stream, READ_AHEAD_CHUNK):
                requests: list[bytes] = []
                replies: list[bytes] = []
                for line in lines:
                    (replies if b'"in_reply_to"' in line and _is_reply(line) else requests).append(line)
                ahead.put([], replies)
                for at in range(0, len(requests), BATCH_LINES):
                    ahead.put(requests[at:at + BATCH_LINES], [])
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
        self._handle_reply(self._parse(line.decode())["body"])

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
            if isinstance(alone, dict) and "body" in alone:  # a whole message is never swallowed by a fragment
                log.warning("dropped an unfinished message of %d lines: a whole one came", len(fragment.lines))
                fragment.drop()
                self._dispatch(alone, line)
                return
            if not text.strip():
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
            self._handle_reply(body)
        elif not isinstance(body, dict) or not isinstance(msg.get("src"), str) or type(body.get("msg_id")) is not int:
            log.warning("ignoring a message with no src, no object body or no integer msg_id: %.200r", line)
        elif self.node_id is None and not isinstance(msg.get("dest"), str):
            # Before init a reply is signed with the request's dest: only a string can sign one.
            log.warning("ignoring a request before init whose dest is not a string: %.200r", line)
        elif self._number_too_large:
            self._requests_read += 1
            self.error(msg, ErrorCode.MALFORMED_REQUEST, "a number in this message is too large for a double")
        else:
            self._handle_request(msg, body)

    def _parse_float(self, text: str) -> float:
        value = float(text)
        if math.isinf(value):  # 1e400: valid JSON that no double holds, and that would go out as Infinity
            self._number_too_large = True
            return 0.0
        return value

    def _handle_reply(self, body: Body) -> None:
        in_reply_to = body["in_reply_to"]
        with self._output_lock:  # only an integer matches: true is not 1
            pending = self._rpcs.pop(in_reply_to, None) if type(in_reply_to) is int else None
        if pending is None:
            log.info("ignoring a reply to nothing pending: %.200r", body)
            return
        on_reply, timer = pending
        timer.cancel()
        if self._number_too_large:  # its value was read as 0.0: it must not be taken for an answer
            body = {"type": "error", "in_reply_to": in_reply_to, "code": UNREADABLE_REPLY_CODE,
                    "text": "the reply held a number too large for a double"}
        try:
            on_reply(body)
        except Exception:
            log.exception("reply callback failed")

    def _handle_request(self, msg: Message, body: Body) -> None:
        self._requests_read += 1
        type_ = body.get("type")
        handler = self.handlers.get(type_) if isinstance(type_, str) else None
        if self.node_id is None and type_ != "init":
            self.error(msg, ErrorCode.TEMPORARILY_UNAVAILABLE, "not initialised yet: send init first")
        elif handler is None:
            self.error(msg, ErrorCode.NOT_SUPPORTED, f"unknown message type {type_!r}")
        else:
            try:
                handler(msg, body)
            except Malformed as exc:
                self.error(msg, ErrorCode.MALFORMED_REQUEST, str(exc))
            except Exception as exc:  # a bug must cost one request, not the node
                log.exception("handler for %r failed", type_)
                self.error(msg, ErrorCode.CRASH, f"internal error: {exc!r}")


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
        self._requests: deque[tuple[list[bytes], int]] = deque()
        self._size = 0
        self._closed = False
        self._changed = threading.Condition(threading.Lock())

    def put(self, requests: list[bytes], replies: list[bytes]) -> None:
        size = sum(map(len, requests))
        with self._changed:
            if replies:  # never held back: the handlers take them first
                self._replies.append(replies)
                self._changed.notify_all()
            if not requests:
                return
            while self._size > self._limit and self._requests:
                self._changed.wait()
            self._requests.append((requests, size))
            self._size += size
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __iter__(self) -> Iterator[tuple[list[bytes], bool]]:
        """(lines, whether they are replies) until closed and empty: the replies
        waiting, if any, else the next batch of requests."""
        while True:
            with self._changed:
                while not self._replies and not self._requests and not self._closed:
                    self._changed.wait()
                replies = bool(self._replies)
                if replies:
                    lines = self._replies.popleft()
                elif self._requests:
                    lines, size = self._requests.popleft()
                    self._size -= size
                    self._changed.notify_all()
                else:
                    return
            yield lines, replies


def after_replies(count: int, then: Callable[[], None]) -> Callable[[Body | None], None]:
    """The on_reply to give `count` RPCs so that `then` runs once, when the last
    of them has answered or timed out; `then` runs at once if `count` is 0."""
    pending = [count]
    lock = threading.Lock()

    def one_more(_reply: Body | None = None) -> None:
        with lock:
            pending[0] -= 1
            last = pending[0] == 0
        if last:
            then()

    if count == 0:
        then()
    return one_more


def _line_batches(stream: BinaryIO, read_size: int = 1 << 16) -> Iterator[list[bytes]]:
    """The stream's lines, as many at a time as one read brings, so their
    replies can share a flush. A line longer than MAX_LINE is skipped (and
    logged) without ever being held whole."""
    read = getattr(stream, "read1", stream.read)
    pieces: list[bytes] = []  # the line being read, when no newline has come yet
    size = skipped = 0
    while chunk := read(read_size):
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


def _exit_quietly() -> None:
    """stdout is closed (`... | main.py | head -1`): no reply can be sent any
    more, so end now, with one line on stderr, from whichever thread found it."""
    log.warning("stdout is closed: exiting")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(0)
