"""collapsed-forwarding: a cache that stops a thundering herd.

Concurrent misses of one key share one origin fetch. The library is
`CollapsedForwardingProxy`, in front of an `Origin`, and
`AsyncCollapsedForwardingProxy` for asyncio code; the Maelstrom node built
on it (the subpackage `collapsed_forwarding.node`, which this package never
imports) runs as `python3 -m collapsed_forwarding` or the
`collapsed-forwarding` script.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .cache import Answer, CollapsedForwardingProxy
from .errors import CacheError, KeyMissing, OriginTimeout, OriginUnavailable, Overloaded, PreconditionFailed
from .origin import BlockingOrigin, FetchingOrigin, Origin, SimOrigin

__all__ = ["Answer", "AsyncCollapsedForwardingProxy", "BlockingOrigin", "CacheError", "CollapsedForwardingProxy",
           "FetchingOrigin", "KeyMissing", "Origin", "OriginTimeout", "OriginUnavailable", "Overloaded",
           "PreconditionFailed", "SimOrigin", "__version__"]

if TYPE_CHECKING:
    from .aio import AsyncCollapsedForwardingProxy


def __getattr__(name: str) -> Any:
    """AsyncCollapsedForwardingProxy is imported when first asked for: threaded code never loads asyncio."""
    if name == "AsyncCollapsedForwardingProxy":
        from .aio import AsyncCollapsedForwardingProxy
        return AsyncCollapsedForwardingProxy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
