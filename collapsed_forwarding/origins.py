"""What stands behind the cache: the in-process `sim` origin, or a Maelstrom KV service.

Both are non-blocking (`start_fetch(key, done)`), so the node spends no thread
on a fetch: the sim answers from the timer thread after its latency, a KV
service's reply arrives on the reader thread. Keys here are cache keys (see
`cache_key`); `write` and `cas` call `done(None)` on success, else `done(error)`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from .codes import error_of
from .errors import CacheError, OriginTimeout, OriginUnavailable, PreconditionFailed
from .keys import MAX_DEPTH, canonical, too_deep, wire_key
from .timers import Scheduler, default_scheduler
from .wire import Body, ErrorCode, Node

Done = Callable[[Any], None]
WriteDone = Callable[[CacheError | None], None]


class SimOrigin:
    """Every key exists, as "value-" + key, until written; each fetch takes
    `latency` seconds and fails with probability `error_rate`."""

    def __init__(self, latency: float = 0.05, error_rate: float = 0.0, timeout: float = float("inf"),
                 rand: Callable[[], float] = random.random, scheduler: Scheduler | None = None) -> None:
        self.latency, self.error_rate, self.timeout, self.rand = latency, error_rate, timeout, rand
        self.scheduler = scheduler or default_scheduler()
        self._written: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def value(self, key: Hashable) -> Any:
        with self._lock:
            return self._value(key)

    def _value(self, key: Hashable) -> Any:
        if key in self._written:
            return self._written[key]
        return "value-" + (key if type(key) is str else key[0])  # type: ignore[index,operator]

    def __call__(self, key: Hashable) -> Any:
        """The blocking form, for CollapsedForwardingProxy(SimOrigin()) in a program's own threads."""
        time.sleep(self.latency)
        return self._fetch(key)

    def _fetch(self, key: Hashable) -> Any:
        if self.error_rate and self.rand() < self.error_rate:
            raise OriginUnavailable("the sim origin failed (--sim-error-rate)")
        return self.value(key)

    def start_fetch(self, key: Hashable, done: Done) -> None:
        if self.latency >= self.timeout:
            error = OriginTimeout(f"origin fetch took longer than {self.timeout}s")
            self.scheduler.call_later(self.timeout, done, error)
        elif self.latency > 0:
            self.scheduler.call_later(self.latency, self._answer, key, done)
        else:  # a fetch that takes no time is answered now, without a round through the timer thread
            self._answer(key, done)

    def _answer(self, key: Hashable, done: Done) -> None:
        try:
            value = self._fetch(key)
        except OriginUnavailable as error:
            done(error)
        else:
            done(value)

    def write(self, key: Hashable, value: Any, done: WriteDone) -> None:
        with self._lock:
            self._written[key] = value
        done(None)

    def cas(self, key: Hashable, from_: Any, to: Any, done: WriteDone) -> None:
        with self._lock:
            current = self._value(key)
            matches = canonical(current) == canonical(from_)
            if matches:
                self._written[key] = to
        done(None if matches else PreconditionFailed(f"expected {from_!r}, but the value is {current!r}"))


class KvOrigin:
    """A Maelstrom KV service (lin-kv, seq-kv, lww-kv) reached by RPC."""

    def __init__(self, node: Node, service: str, timeout: float) -> None:
        self.node, self.service, self.timeout = node, service, timeout

    def start_fetch(self, key: Hashable, done: Done) -> None:
        self._call({"type": "read", "key": wire_key(key)}, lambda reply: done(self._read_result(reply)))

    def write(self, key: Hashable, value: Any, done: WriteDone) -> None:
        self._call({"type": "write", "key": wire_key(key), "value": value},
                   lambda reply: done(self._outcome(reply, "write_ok", WRITE_ERRORS)))

    def cas(self, key: Hashable, from_: Any, to: Any, done: WriteDone) -> None:
        self._call({"type": "cas", "key": wire_key(key), "from": from_, "to": to},
                   lambda reply: done(self._outcome(reply, "cas_ok", CAS_ERRORS)))

    def _read_result(self, reply: Body | None) -> Any:
        error = self._outcome(reply, "read_ok", READ_ERRORS)
        if error is not None:
            return error
        assert reply is not None
        if "value" not in reply:
            return OriginUnavailable(f"{self.service} sent read_ok without a value")
        if too_deep(reply["value"]):
            return OriginUnavailable(f"{self.service} sent a value nested more than {MAX_DEPTH} deep")
        return reply["value"]

    def _call(self, body: Body, on_reply: Callable[[Body | None], None]) -> None:
        self.node.rpc(self.service, body, on_reply, self.timeout)

    def _outcome(self, reply: Body | None, ok: str, errors: frozenset[int]) -> CacheError | None:
        """None for the reply `ok`; else the error: the service's own, when it is one this
        operation can have (a missing key for a read, a mismatch for a cas), else error 11."""
        if reply is None:
            return OriginTimeout(f"{self.service} did not answer within {self.timeout}s")
        type_ = reply.get("type")
        if type_ == ok:
            return None
        code = reply.get("code")
        if type_ != "error":
            return OriginUnavailable(f"{self.service} answered {ok[:-3]} with {str(type_)[:100]!r}")
        if type(code) is not int or code not in errors:
            return OriginUnavailable(f"{self.service} answered {ok[:-3]} with error {str(code)[:100]}: "
                                     f"{str(reply.get('text', ''))[:200]}")
        return error_of(code, f"{self.service} answered error {code}: {str(reply.get('text', ''))[:200]}")


# The errors each operation passes on as the service gave them; any other answer is error 11.
READ_ERRORS = frozenset({ErrorCode.KEY_DOES_NOT_EXIST})
WRITE_ERRORS: frozenset[int] = frozenset()
CAS_ERRORS = frozenset({ErrorCode.KEY_DOES_NOT_EXIST, ErrorCode.PRECONDITION_FAILED})
