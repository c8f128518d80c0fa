"""The in-process contestants: the same origin, the same keys, each library's documented way of
protecting against stampedes (read from its own source). `make(origin, ttl)` returns `get(key) -> value`.

* collapsed-forwarding (grace): with `grace=60` an expired entry is served stale while one
  background fetch refreshes it (dogpile's behaviour).
* naive TTL dict: no collapsing, so concurrent misses each call the origin: the herd.
* dogpile.cache: `region.get_or_create`; its per-key dogpile lock lets one thread create the value;
  the others wait when there is no value, or get the expired value while it is recreated.
* cachetools: since 5.4 (6+ documents it) `condition=` marks a key pending while one thread computes
  it, and the others wait on the condition (cachetools/_decorator.py, _ConditionMixin).
* cachebox: `cached`'s default `lock=True` is its "cache stampede prevention": a per-key lock, the
  others re-check the cache one after another once they get it (cachebox/_wrappers.py).
* singleflight (0.1.3, a port of Go's groupcache singleflight) has no cache: it guards the fill of
  the naive contestant's TTL dict.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from time import monotonic
from typing import Any

import common  # noqa: F401  (puts the repository on sys.path)

from proxy import CollapsedForwardingProxy

Get = Callable[[str], Any]


class Origin:
    """The one backend every contestant uses: sleeps `latency` seconds (as a
    database or HTTP call would, releasing the GIL) and counts its calls."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, key: str) -> str:
        with self._lock:
            self.calls += 1
        if self.latency:
            time.sleep(self.latency)
        return "value-" + key


def make_floor(origin: Origin, ttl: float) -> Get:
    """Not a cache: a plain dict lookup plus one monotonic-clock comparison, in
    a function. Only for the hit cost; the key must have been put first."""
    entries: dict[str, tuple[Any, float]] = {}

    def get(key: str) -> Any:
        value, expires = entries[key]
        if monotonic() < expires:
            return value
        raise KeyError(key)

    get.put = lambda key: entries.__setitem__(key, (origin(key), monotonic() + ttl))  # type: ignore[attr-defined]
    return get


def make_naive(origin: Origin, ttl: float, guard: Callable[..., Any] | None = None) -> Get:
    """A dict of (value, expiry); a miss calls the origin itself, or through `guard(load, key, key)`."""
    entries: dict[str, tuple[Any, float]] = {}

    def load(key: str) -> Any:
        value = origin(key)
        entries[key] = (value, monotonic() + ttl)
        return value

    def get(key: str) -> Any:
        entry = entries.get(key)
        if entry is not None and monotonic() < entry[1]:
            return entry[0]
        return guard(load, key, key) if guard else load(key)

    return get


def make_collapsed(origin: Origin, ttl: float) -> Get:
    return CollapsedForwardingProxy(origin, ttl, timeout=30).get


def make_collapsed_grace(origin: Origin, ttl: float) -> Get:
    return CollapsedForwardingProxy(origin, ttl, timeout=30, grace=60).get


def make_dogpile(origin: Origin, ttl: float) -> Get:
    from dogpile.cache import make_region

    region = make_region().configure("dogpile.cache.memory", expiration_time=ttl)
    get_or_create = region.get_or_create

    def get(key: str) -> Any:
        return get_or_create(key, origin, creator_args=((key,), {}))

    return get


def make_cachetools(origin: Origin, ttl: float) -> Get:
    from cachetools import TTLCache, cached

    return cached(TTLCache(maxsize=1_000_000, ttl=ttl), condition=threading.Condition())(origin)


def make_cachebox(origin: Origin, ttl: float) -> Get:
    import cachebox

    return cachebox.cached(cachebox.TTLCache(maxsize=1_000_000, global_ttl=ttl))(origin)


def make_singleflight(origin: Origin, ttl: float) -> Get:
    from singleflight.basic import SingleFlight

    return make_naive(origin, ttl, guard=SingleFlight().call)


COLLAPSED = "collapsed-forwarding"
GRACE = "collapsed-forwarding (grace)"
NAIVE = "naive TTL dict"
FLOOR = "floor: dict + clock"

# name -> (factory, PyPI distribution or None, collapses concurrent misses?)
CONTESTANTS: dict[str, tuple[Callable[[Origin, float], Get], str | None, bool]] = {
    COLLAPSED: (make_collapsed, None, True),
    GRACE: (make_collapsed_grace, None, True),
    NAIVE: (make_naive, None, False),
    "dogpile.cache": (make_dogpile, "dogpile.cache", True),
    "cachetools": (make_cachetools, "cachetools", True),
    "cachebox": (make_cachebox, "cachebox", True),
    "singleflight": (make_singleflight, "singleflight", True),
}


@functools.cache
def available() -> dict[str, tuple[Callable[[Origin, float], Get], str | None, bool]]:
    """The contestants whose library is installed (a missing peer is skipped, and said so)."""
    out = {}
    for name, entry in CONTESTANTS.items():
        try:
            entry[0](Origin(0), 1.0)
        except ImportError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        out[name] = entry
    return out
