"""A Maelstrom KV service (lin-kv, seq-kv, lww-kv) as the cache's origin, reached by RPC.

Non-blocking (`start_fetch`): the service's reply arrives on the reader thread,
so no thread waits on a fetch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..errors import OriginTimeout
from ..keys import wire_key
from ..origin import Done, WriteDone
from .codes import reply_result
from .wire import Body, ErrorCode, Wire


class KvOrigin:
    """A Maelstrom KV service (lin-kv, seq-kv, lww-kv) reached by RPC."""

    def __init__(self, wire: Wire, service: str, timeout: float) -> None:
        self.wire, self.service, self.timeout = wire, service, timeout

    def start_fetch(self, key: Hashable, done: Done) -> None:
        self._call({"type": "read", "key": wire_key(key)}, lambda reply: done(self._read_result(reply)))

    def write(self, key: Hashable, value: Any, done: WriteDone) -> None:
        self._call({"type": "write", "key": wire_key(key), "value": value},
                   lambda reply: done(self._result(reply, "write_ok", WRITE_ERRORS, update=True)))

    def cas(self, key: Hashable, from_: Any, to: Any, done: WriteDone) -> None:
        self._call({"type": "cas", "key": wire_key(key), "from": from_, "to": to},
                   lambda reply: done(self._result(reply, "cas_ok", CAS_ERRORS, update=True)))

    def _read_result(self, reply: Body | None) -> Any:
        return self._result(reply, "read_ok", READ_ERRORS, value=True)

    def _call(self, body: Body, on_reply: Callable[[Body | None], None]) -> None:
        self.wire.rpc(self.service, body, on_reply, self.timeout)

    def _result(self, reply: Body | None, ok: str, errors: frozenset[int], *, value: bool = False,
                update: bool = False) -> Any:
        """The service's own error when it is one this operation can have (a missing key for a
        read, a mismatch for a cas); for an update that may have happened, error 13; else 11."""
        if reply is None:
            return OriginTimeout(f"{self.service} did not answer within {self.timeout}s")
        return reply_result(reply, ok, self.service, errors, value=value, update=update)


# The errors each operation passes on as the service gave them; any other answer is error 11
# (13 for an update, unless the service's code is a definite one: see codes.reply_result).
READ_ERRORS = frozenset({ErrorCode.KEY_DOES_NOT_EXIST})
WRITE_ERRORS: frozenset[int] = frozenset()
CAS_ERRORS = frozenset({ErrorCode.KEY_DOES_NOT_EXIST, ErrorCode.PRECONDITION_FAILED})
