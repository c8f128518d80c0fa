"""Maelstrom's wire protocol, the sending end: replies, and RPCs matched by in_reply_to.

This module knows nothing of caching. It hands each request to the handler
registered for its type, writes each outgoing message whole on one line, and
answers what cannot be handled (unknown type, before init, malformed) with
Maelstrom's error codes. Reading the input is `reader.py`'s job.
"""

from __future__ import annotations

import errno
import json
import json.encoder
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, BinaryIO

from ..timers import Scheduler, Timer

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


# What `rpc`'s on_reply is given for a reply that arrived but cannot be read as sent
# (a number no double holds): an error no service sends, so no one mistakes it for an answer.
UNREADABLE_REPLY_CODE = ErrorCode.CRASH


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


class Wire:
    """One Maelstrom node's end of the wire: `handlers[type](msg, body)` for
    each request read, `reply`/`error` to answer it, `rpc` to ask another node
    or a service. Deadlines of RPCs are kept on `scheduler`."""

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
        self._rpcs: dict[int, tuple[Callable[[Body | None], None], Timer, str]] = {}  # msg_id -> (.., dest)
        self._requests_read = 0  # only the thread that runs the handlers writes this
        self._replies_sent = 0  # only written under _output_lock
        self._batching = threading.local()  # .depth > 0: this thread's messages wait for one flush
        # The most requests that may wait for an answer at once (0: no limit): past it,
        # error 11 at once, so a flood of misses cannot grow memory without bound.
        self.max_pending = 0
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
            self._rpcs[msg_id] = (on_reply, self.scheduler.call_later(timeout, self._rpc_timed_out, msg_id), dest)
            self._write(line)

    def _rpc_timed_out(self, msg_id: int) -> None:
        with self._output_lock:
            pending = self._rpcs.pop(msg_id, None)
        if pending is not None:
            pending[0](None)

    # -- what the reader hands over ---------------------------------------

    def handle_reply(self, src: Any, body: Body, unreadable: bool = False) -> None:
        """A reply, from `src`, to one of our RPCs; `unreadable`: it held a number no double holds.
        It counts only from where the request went: anyone else's is ignored, the RPC left pending."""
        in_reply_to = body["in_reply_to"]
        with self._output_lock:  # only an integer matches: true is not 1
            pending = self._rpcs.get(in_reply_to) if type(in_reply_to) is int else None
            if pending is not None and pending[2] == src:
                del self._rpcs[in_reply_to]
        if pending is not None and pending[2] != src:
            log.info("ignoring a reply from %.100r to a request sent to %.100r", src, pending[2])
            return
        if pending is None:
            log.info("ignoring a reply to nothing pending: %.200r", body)
            return
        on_reply, timer, _dest = pending
        timer.cancel()
        if unreadable:  # its value was read as 0.0: it must not be taken for an answer
            body = {"type": "error", "in_reply_to": in_reply_to, "code": UNREADABLE_REPLY_CODE,
                    "text": "the reply held a number too large for a double"}
        try:
            on_reply(body)
        except Exception:
            log.exception("reply callback failed")

    def handle_request(self, msg: Message, body: Body) -> None:
        self._requests_read += 1
        type_ = body.get("type")
        handler = self.handlers.get(type_) if isinstance(type_, str) else None
        if self.node_id is None and type_ != "init":
            self.error(msg, ErrorCode.TEMPORARILY_UNAVAILABLE, "not initialised yet: send init first")
        elif handler is None:
            self.error(msg, ErrorCode.NOT_SUPPORTED, f"unknown message type {type_!r}")
        elif self.max_pending and self._requests_read - self._replies_sent > self.max_pending and type_ != "init":
            self.error(msg, ErrorCode.TEMPORARILY_UNAVAILABLE,
                       f"overloaded: {self.max_pending} requests already wait for an answer (--max-pending)")
        else:
            try:
                handler(msg, body)
            except Malformed as exc:
                self.error(msg, ErrorCode.MALFORMED_REQUEST, str(exc))
            except Exception as exc:  # a bug must cost one request, not the node
                log.exception("handler for %r failed", type_)
                self.error(msg, ErrorCode.CRASH, f"internal error: {exc!r}")

    def refuse(self, msg: Message, code: int, text: str) -> None:
        """A request read that no handler may see: answered with an error at once."""
        self._requests_read += 1
        self.error(msg, code, text)

    def drain(self, timeout: float) -> None:
        """Input has ended: wait (up to `timeout`) until every request read has been answered."""
        with self._output_lock:
            self._draining = True
            if self._replies_sent >= self._requests_read:
                self._drained.set()
        if not self._drained.wait(min(timeout, threading.TIMEOUT_MAX)):  # (a huge timeout would overflow)
            log.error("exiting with %d requests unanswered", self._requests_read - self._replies_sent)
        # The last reply may sit in a batch another thread has not flushed yet (a
        # round of timers): counted as sent, it must leave before the process ends.
        with self._output_lock:
            self._flush()


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


def _exit_quietly() -> None:
    """stdout is closed (`... | main.py | head -1`): no reply can be sent any
    more, so end now, with one line on stderr, from whichever thread found it."""
    log.warning("stdout is closed: exiting")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(0)
