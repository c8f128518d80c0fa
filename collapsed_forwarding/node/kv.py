"""A Maelstrom KV service (lin-kv, seq-kv, lww-kv) as the cache's origin, reached by RPC.

Non-blocking (`start_fetch`): the service's reply arrives on the reader thread,
so no thread waits on a fetch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..errors import CacheError, OriginTimeout, OriginUnavailable
from ..keys import MAX_DEPTH, too_deep, wire_key
from ..origin import Done, WriteDone
from .codes import error_of
from .wire import Body, ErrorCode, Wire


class KvOrigin:
    """A Maelstrom KV service (lin-kv, seq-kv, lww-kv) reached by RPC."""

    def __init__(self, wire: Wire, service: str, timeout: float) -> None:
        self.wire, self.service, self.timeout = wire, service, timeout

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
        self.wire.rpc(self.service, body, on_reply, self.timeout)

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
