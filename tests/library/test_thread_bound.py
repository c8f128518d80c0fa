"""A blocking backend that never returns must not make the library start
threads without bound: one more per key per lock_age, 2,001 after 20 s with 400
keys, before. The threads in play should be the callers' own."""

from __future__ import annotations

import threading
import time
from typing import Any

from collapsed_forwarding.cache import CollapsedForwardingProxy
from collapsed_forwarding.errors import CacheError

KEYS = 50
ROUNDS = 3


def test_a_never_returning_backend_over_many_keys_starts_no_thread_of_the_librarys_own():
    release = threading.Event()
    entered = threading.Semaphore(0)

    def never_returns(key: Any) -> Any:
        entered.release()
        release.wait(60)
        raise RuntimeError("released at the end of the test")

    proxy = CollapsedForwardingProxy(never_returns, timeout=0.01, lock_age=0)  # each round may call again
    callers: list[threading.Thread] = []
    baseline = {t.ident for t in threading.enumerate()}

    def call(key: str) -> None:
        try:
            proxy.get(key)
        except CacheError:
            pass

    try:
        for round_ in range(ROUNDS):
            round_callers = [threading.Thread(target=call, args=(f"k{n}",), daemon=True) for n in range(KEYS)]
            for caller in round_callers:
                caller.start()
            callers += round_callers
            if round_ == 0:  # the first round: every key's backend call has begun (in whatever thread)
                for _ in range(KEYS):
                    assert entered.acquire(timeout=10)
            # A caller the library lets go at the deadline ends within this; a leader stays in its hung
            # call for good, so the wait is one 0.5 s for the round, not 0.5 s for each caller (50 s).
            until = time.monotonic() + 0.5
            for caller in round_callers:
                caller.join(max(0.0, until - time.monotonic()))
        ours = {t.ident for t in callers}
        library = [t for t in threading.enumerate() if t.ident not in baseline and t.ident not in ours]
        assert len(library) <= 8, f"{len(library)} threads started by the library for {KEYS} keys"
    finally:
        release.set()
