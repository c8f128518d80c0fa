"""When two JSON keys are the same key, and how a key is held in the cache.

Two keys are the same when their canonical JSON (sorted object keys, compact)
is the same: `1`, `1.0`, `"1"` and `true` are four keys.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(value: Any) -> Hashable:
    """The cache's key for a JSON key: a string stands for itself, anything else
    for its canonical JSON in a 1-tuple, which no string equals (so "1", 1,
    1.0 and true are four keys) and which costs nothing on the common path."""
    return value if type(value) is str else (canonical(value),)


def wire_key(key: Hashable) -> Any:
    """The JSON key a cache key stands for."""
    return key if type(key) is str else json.loads(key[0])  # type: ignore[index]


def key_text(key: Hashable) -> str:
    """A cache key's canonical JSON text."""
    return canonical(key) if type(key) is str else key[0]  # type: ignore[index]


MAX_DEPTH = 128  # nesting a key or value may have (serde_json's limit): far from Python's recursion limit


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists and objects more than `limit` deep (without recursing)."""
    if type(value) not in (list, dict):
        return False
    stack = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > limit:
            return True
        for item in container.values() if type(container) is dict else container:
            if type(item) in (list, dict):
                stack.append((item, depth + 1))
    return False
