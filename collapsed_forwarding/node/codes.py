"""Between the library's errors and Maelstrom's error codes, at the node's boundary."""

from __future__ import annotations

from ..errors import CacheError, KeyMissing, OriginTimeout, OriginUnavailable, PreconditionFailed
from .wire import ErrorCode

_CODE_OF: dict[type[CacheError], ErrorCode] = {
    OriginTimeout: ErrorCode.TIMEOUT,
    KeyMissing: ErrorCode.KEY_DOES_NOT_EXIST,
    PreconditionFailed: ErrorCode.PRECONDITION_FAILED,
}
_ERROR_OF = {code: cls for cls, code in _CODE_OF.items()}


def code_of(error: CacheError) -> ErrorCode:
    """The code a client is sent for `error`: anything not named is temporarily-unavailable."""
    for cls in type(error).__mro__:
        if cls in _CODE_OF:
            return _CODE_OF[cls]  # type: ignore[index]
    return ErrorCode.TEMPORARILY_UNAVAILABLE


def error_of(code: object, text: str) -> CacheError:
    """The library's error for a code another node or a service sent."""
    known = isinstance(code, int) and not isinstance(code, bool)
    return _ERROR_OF.get(code, OriginUnavailable)(text) if known else OriginUnavailable(text)  # type: ignore[call-overload]
