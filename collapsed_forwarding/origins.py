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
from .keys import canonical, wire_key
from .timers import Scheduler, default_scheduler
from .wire import Body, Node

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
        else:
            self.scheduler.call_later(self.latency, self._answer, key, done)

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
        self._call({"type": "write", "key": wire_key(key), "value": value}, lambda reply: done(self._error(reply)))

    def cas(self, key: Hashable, from_: Any, to: Any, done: WriteDone) -> None:
        self._call({"type": "cas", "key": wire_key(key), "from": from_, "to": to},
                   lambda reply: done(self._error(reply)))

    def _read_result(self, reply: Body | None) -> Any:
        error = self._error(reply)
        return reply["value"] if error is None else error  # type: ignore[index]

    def _call(self, body: Body, on_reply: Callable[[Body | None], None]) -> None:
        self.node.rpc(self.service, body, on_reply, self.timeout)

    def _error(self, reply: Body | None) -> CacheError | None:
        if reply is None:
            return OriginTimeout(f"{self.service} did not answer within {self.timeout}s")
        if reply.get("type") != "error":
            if reply.get("type") == "read_ok" and "value" not in reply:
                return OriginUnavailable(f"{self.service} sent read_ok without a value")
            return None
        code = reply.get("code")
        return error_of(code, f"{self.service} answered error {code}: {reply.get('text', '')}")
