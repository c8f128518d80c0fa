"""A write or cas of one key, as a client or another node asked for it."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from ..errors import CacheError
from ..keys import wire_key
from .wire import Body

UpdateDone = Callable[[CacheError | None], None]


@dataclass
class Update:
    kind: str  # "write" or "cas"
    value: Any = None  # write
    from_: Any = None  # cas
    to: Any = None  # cas

    def body(self, key: Hashable) -> Body:
        if self.kind == "write":
            return {"type": "cf_update", "key": wire_key(key), "kind": "write", "value": self.value}
        return {"type": "cf_update", "key": wire_key(key), "kind": "cas", "from": self.from_, "to": self.to}

    @property
    def written(self) -> Any:
        return self.value if self.kind == "write" else self.to

    def send(self, origin: Any, key: Hashable, done: UpdateDone) -> None:
        """Make this update at the origin (its write or its cas); `done(error or None)`."""
        if self.kind == "write":
            origin.write(key, self.value, done)
        else:
            origin.cas(key, self.from_, self.to, done)
