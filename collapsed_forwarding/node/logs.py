"""Log volume bounded whatever the input: repeated warnings are summarised.

Each line of a record is already cut at MAX_LOG_LINE characters (cli.py); this
bounds their number. Records of one kind (one logger, one message template)
pass at most `burst` times per `window` seconds; the rest are counted, and the
next one that passes, or `flush()` at exit, says how many were left out. So
stderr grows at most by burst x kinds x line length per window: a MB or so a second
at worst, whatever the input, where 20,000 bad lines used to write 2.8 MB.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

MAX_KINDS = 1000  # kinds followed at once; past that (templates made on the fly?), all are forgotten


class RepeatFilter(logging.Filter):
    """Lets through at most `burst` records of each kind per `window` seconds."""

    def __init__(self, burst: int = 20, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._kinds: dict[tuple[str, str], list[float]] = {}  # kind -> [window start, passed, left out]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        kind, now = (record.name, str(record.msg)), self.clock()
        with self._lock:
            state = self._kinds.get(kind)
            left_out = 0
            if state is None or now - state[0] >= self.window:
                left_out = int(state[2]) if state is not None else 0
                if state is None and len(self._kinds) >= MAX_KINDS:
                    self._kinds.clear()
                state = self._kinds[kind] = [now, 0, 0]
            if state[1] >= self.burst:
                state[2] += 1
                return False
            state[1] += 1
        if left_out:
            record.msg, record.args = f"{record.getMessage()} (... {left_out:,} more like this not logged)", None
        return True

    def flush(self, log: logging.Logger) -> None:
        """At exit: one line for each kind with records left out since its last one."""
        with self._lock:
            left = [(kind, int(state[2])) for kind, state in self._kinds.items() if state[2]]
            for _, state in self._kinds.items():
                state[2] = 0
        for (name, template), count in left:
            log.warning("... %d more like this not logged: %s: %.200s", count, name, template)
