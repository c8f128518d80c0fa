"""What a cache answers when it has no value: the library's errors.

They say what went wrong, not how a wire protocol spells it: the node maps
them to Maelstrom's error codes at its boundary (see `codes.py`).
"""

from __future__ import annotations


class CacheError(Exception):
    """An answer that is an error, shared by every request that waited on one fetch."""

    def again(self) -> CacheError:
        """A copy to raise in one more thread: raising one shared instance
        everywhere would chain every waiter's traceback onto it. Made without
        calling __init__ (a subclass's may take anything), with the same args
        and attributes; if even that fails, the instance itself."""
        cls = type(self)
        try:
            err = cls.__new__(cls, *self.args)
            err.__dict__.update(self.__dict__)
        except Exception:
            return self
        err.args = self.args
        err.__cause__, err.__suppress_context__ = self.__cause__, self.__suppress_context__
        return err


class OriginTimeout(CacheError):
    """The origin did not answer within the fetch's deadline."""


class KeyMissing(CacheError, KeyError):
    """The origin says the key does not exist. Also a KeyError, so code
    written against a dict-like cache catches it."""

    def __str__(self) -> str:  # KeyError's repr-quoting makes no sense for a message
        return Exception.__str__(self)


class OriginUnavailable(CacheError):
    """The origin failed, or could not be reached."""


class Overloaded(CacheError):
    """Too many requests already wait on this key (`max_waiters`)."""


class PreconditionFailed(CacheError):
    """A compare-and-set whose expected value did not match."""


def as_cache_error(exc: BaseException) -> CacheError:
    """What waiters see of whatever the origin raised."""
    if isinstance(exc, CacheError):
        return exc
    err: CacheError
    if isinstance(exc, KeyError):
        err = KeyMissing("key does not exist")
    elif isinstance(exc, Exception):
        err = OriginUnavailable(f"origin failed: {exc!r}")
    else:
        err = OriginUnavailable(f"origin fetch crashed: {exc!r}")
    err.__cause__ = exc
    return err
