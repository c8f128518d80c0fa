"""collapsed-forwarding: a cache that stops a thundering herd.

Concurrent misses of one key share one origin fetch. The library is
`CollapsedForwardingProxy`; the Maelstrom node built on it runs as
`python3 -m collapsed_forwarding` or the `collapsed-forwarding` script.
"""

from .cache import Answer, CollapsedForwardingProxy
from .errors import CacheError, KeyMissing, OriginTimeout, OriginUnavailable, Overloaded, PreconditionFailed
from .origins import SimOrigin

__all__ = ["Answer", "CacheError", "CollapsedForwardingProxy", "KeyMissing", "OriginTimeout", "OriginUnavailable",
           "Overloaded", "PreconditionFailed", "SimOrigin"]
