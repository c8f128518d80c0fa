"""Between the library's errors and Maelstrom's error codes, at the node's boundary;
and what a reply to one of the node's requests means (`reply_result`)."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from ..errors import CacheError, KeyMissing, OriginTimeout, OriginUnavailable, PreconditionFailed
from ..keys import MAX_DEPTH, too_deep
from .wire import Body, ErrorCode


class Unexpected(OriginUnavailable):
    """A reply that makes no sense for its request (error 11, or for an update `OutcomeUnknown`)."""


class OutcomeUnknown(OriginUnavailable):
    """An update that may or may not have happened (error 13): the service crashed, or
    answered what no definite error says."""


_CODE_OF: dict[type[CacheError], ErrorCode] = {
    OriginTimeout: ErrorCode.TIMEOUT,
    OutcomeUnknown: ErrorCode.CRASH,
    KeyMissing: ErrorCode.KEY_DOES_NOT_EXIST,
    PreconditionFailed: ErrorCode.PRECONDITION_FAILED,
}
_ERROR_OF = {code: cls for cls, code in _CODE_OF.items()}

# Maelstrom's definite codes: the request certainly did not take effect.
DEFINITE = frozenset({1, 10, 11, 12, 14, 20, 21, 22, 30})


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


def reply_result(reply: Body, ok: str, who: str, passed_on: Container[int], *,
                 value: bool = False, update: bool = False) -> Any:
    """What a reply means for the request it answers:

    * `ok`: None, or with `value` the reply's value (missing, or nested deeper than a
      request's may be: `Unexpected`);
    * an error whose integer code is in `passed_on`: the library's error for that code;
    * anything else: `Unexpected`, except for an `update`, where only a definite code
      may say it did not happen: any other answer leaves its outcome unknown.
    """
    type_, code = reply.get("type"), reply.get("code")
    if type_ == ok:
        if not value:
            return None
        if "value" not in reply or too_deep(reply["value"]):
            return Unexpected(f"{who} sent {ok} without a value, or one nested more than {MAX_DEPTH} deep")
        return reply["value"]
    text = str(reply.get("text", ""))[:200]
    is_code = type(code) is int
    if type_ == "error" and is_code and code in passed_on:
        return error_of(code, f"{who} answered error {code}: {text}")
    said = f"error {str(code)[:100]}: {text}" if type_ == "error" else repr(str(type_)[:100])
    if update and not (type_ == "error" and is_code and code in DEFINITE):
        return OutcomeUnknown(f"{who} answered {ok[:-3]} with {said}: it may or may not have happened")
    return Unexpected(f"{who} answered {ok[:-3]} with {said}")
