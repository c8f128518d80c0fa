"""The in-process part: proxy.py against its peers, on the same origin and keys.

* hit cost: nanoseconds per `get` of a present key, one thread, against the
  floor (a dict lookup plus one monotonic-clock comparison, in a function);
  the cost of the bare loop is subtracted; the garbage collector is off
  while timing, as timeit does.
* herds: N threads (10, 100, 1,000), started beforehand and parked on a
  barrier, are released together and all get one key
  that is cold (never fetched) or expired (fetched, then its TTL ran out);
  origin calls, and wall time from the barrier's release to the last
  thread's answer.
* mixed load: 8 threads get keys drawn from 200 Zipf-popular keys, for a fixed
  time, with a short TTL: gets/s, origin calls, and the origin calls that
  overlapped another call for the same key (the herd's duplicates).

Contestants run in turn within each repetition (their order rotated each
time), so the machine's noise falls on all of them alike.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any

from contestants import COLLAPSED, FLOOR, GRACE, Origin, available, make_floor


def _rotated(names: list[str], rep: int) -> list[str]:
    k = rep % len(names)
    return names[k:] + names[:k]


# -- hit cost ----------------------------------------------------------------

def _loop_ns(get: Callable[[str], Any], key: str, n: int) -> float:
    """ns per call of get(key), the bare loop's own cost subtracted."""
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            get(key)
        t1 = time.perf_counter_ns()
        for _ in repeat(None, n):
            pass
        t2 = time.perf_counter_ns()
    finally:
        if gc_was:
            gc.enable()
    return ((t1 - t0) - (t2 - t1)) / n


def hit_cost(reps: int = 7, target_s: float = 0.04, log: Callable[[str], None] = print) -> dict:
    key = "hot"
    getters: dict[str, Callable[[str], Any]] = {}
    floor = make_floor(Origin(0), 3600)
    floor.put(key)  # type: ignore[attr-defined]
    getters[FLOOR] = floor
    for name, (make, _, _) in available().items():
        if name == GRACE:
            continue  # the same hit path as collapsed-forwarding
        getters[name] = make(Origin(0), 3600)
    sizes = {}
    for name, get in getters.items():
        if get(key) != "value-" + key:
            raise AssertionError(f"{name} returned {get(key)!r}")
        per_call = max(_loop_ns(get, key, 2000), 20.0)
        sizes[name] = int(min(max(target_s * 1e9 / per_call, 5_000), 2_000_000))
    results: dict[str, list[float]] = {name: [] for name in getters}
    for rep in range(reps):
        for name in _rotated(list(getters), rep):
            results[name].append(_loop_ns(getters[name], key, sizes[name]))
    log(f"  hit cost: {reps} runs of {min(sizes.values()):,}-{max(sizes.values()):,} gets each")
    return {"reps": reps, "ns": results, "calls_per_run": sizes}


# -- herds -------------------------------------------------------------------

class Crew:
    """n threads, started once and parked on a barrier, that run one herd after
    another: each herd releases them together, and each gets the key once."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._job: tuple[Callable[[str], Any], str] | None = None
        self._started = 0.0
        self._finished = [0.0] * n
        self._wrong: list[int] = []
        self._go = threading.Barrier(n + 1, action=self._mark)
        self._done = threading.Barrier(n + 1)
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def _mark(self) -> None:
        self._started = time.perf_counter()

    def _work(self, i: int) -> None:
        while True:
            self._go.wait()
            if self._job is None:
                return
            get, key = self._job
            try:
                ok = get(key) == "value-" + key
            except Exception:  # an error counts as a wrong answer, never as a stuck herd
                ok = False
            self._finished[i] = time.perf_counter()
            if not ok:
                self._wrong.append(i)
            self._done.wait()

    def herd(self, get: Callable[[str], Any], key: str) -> tuple[float, int]:
        """(seconds from the release to the last answer, wrong answers or errors)."""
        self._job, self._wrong = (get, key), []
        self._go.wait()  # the workers are parked here already: this releases them
        self._done.wait()
        return max(self._finished) - self._started, len(self._wrong)

    def close(self) -> None:
        self._job = None
        self._go.wait()
        for t in self._threads:
            t.join()


HARNESS = "harness floor: no cache, no origin"


def herds(sizes: tuple[int, ...] = (10, 100, 1000), reps: int = 5, latency: float = 0.05,
          expired_ttl: float = 1.0, log: Callable[[str], None] = print) -> dict:
    """Cold herds on a fresh instance each; expired herds on one instance per
    contestant and repetition, whose keys (one per herd size) were all filled
    before the cold herds ran and had expired by the time their herd came."""
    contestants = available()
    cold_names = [n for n in contestants if n != GRACE]
    expired_names = list(contestants)
    out: dict[str, Any] = {"sizes": list(sizes), "reps": reps, "latency": latency, "expired_ttl": expired_ttl}
    for kind, names in (("cold", cold_names), ("expired", expired_names)):
        out[kind] = {name: {str(n): {"calls": [], "overlapping": [], "wall": [], "wrong": []} for n in sizes}
                     for name in names + [HARNESS]}

    crews = {n: Crew(n) for n in sizes}

    def record(kind: str, name: str, n: int, origin: Origin | None, get: Callable[[str], Any], key: str) -> None:
        calls, overlapping = (origin.calls, origin.overlapping) if origin else (0, 0)
        wall, wrong = crews[n].herd(get, key)
        cell = out[kind][name][str(n)]
        cell["calls"].append(origin.calls - calls if origin else 0)
        cell["overlapping"].append(origin.overlapping - overlapping if origin else 0)
        cell["wall"].append(wall)
        cell["wrong"].append(wrong)

    def no_cache(key: str) -> str:
        return "value-" + key

    for rep in range(reps):
        made = {}
        for name in expired_names:
            origin = Origin(latency)
            get = contestants[name][0](origin, expired_ttl)
            for n in sizes:
                get(f"expired-{n}")
            made[name] = (origin, get)
        expired_at = time.perf_counter() + expired_ttl * 1.1 + 0.02
        for n in sizes:
            for name in _rotated(cold_names + [HARNESS], rep):
                if name == HARNESS:
                    record("cold", name, n, None, no_cache, "cold")
                    continue
                origin = Origin(latency)
                record("cold", name, n, origin, contestants[name][0](origin, 60), "cold")
        time.sleep(max(0.0, expired_at - time.perf_counter()))
        for n in sizes:
            for name in _rotated(expired_names + [HARNESS], rep):
                if name == HARNESS:
                    record("expired", name, n, None, no_cache, f"expired-{n}")
                    continue
                origin, get = made[name]
                record("expired", name, n, origin, get, f"expired-{n}")
        log(f"  herds: repetition {rep + 1}/{reps} done")
    for crew in crews.values():
        crew.close()
    return out


# -- mixed load ----------------------------------------------------------------

def zipf_keys(n_keys: int, s: float, count: int, seed: int) -> list[str]:
    names = [f"z{i}" for i in range(n_keys)]
    weights = [1.0 / (rank + 1) ** s for rank in range(n_keys)]
    return random.Random(seed).choices(names, weights, k=count)


def mixed_once(get: Callable[[str], Any], sequences: list[list[str]], duration: float) -> tuple[int, float]:
    """Each thread gets its keys in turn until `duration` has passed: (gets, seconds)."""
    n = len(sequences)
    started: list[float] = []
    barrier = threading.Barrier(n, action=lambda: started.append(time.perf_counter()))
    done = [0] * n
    ended = [0.0] * n

    def worker(i: int) -> None:
        seq = sequences[i]
        block = 128
        barrier.wait()
        deadline = started[0] + duration
        count, pos = 0, 0
        while True:
            for key in seq[pos:pos + block]:
                get(key)
            count += block
            pos = (pos + block) % (len(seq) - block)
            if time.perf_counter() >= deadline:
                break
        done[i] = count
        ended[i] = time.perf_counter()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), max(ended) - started[0]


def mixed(reps: int = 5, duration: float = 1.0, threads: int = 8, keys: int = 200, zipf_s: float = 1.0,
          ttl: float = 0.2, latency: float = 0.002, log: Callable[[str], None] = print) -> dict:
    contestants = available()
    sequences = [zipf_keys(keys, zipf_s, 50_000, seed=1000 + t) for t in range(threads)]
    names = list(contestants)
    out: dict[str, Any] = {"reps": reps, "duration": duration, "threads": threads, "keys": keys, "zipf_s": zipf_s,
                           "ttl": ttl, "latency": latency,
                           "results": {name: {"gets_per_s": [], "calls": [], "overlapping": [], "calls_per_s": []}
                                       for name in names}}
    for rep in range(reps):
        for name in _rotated(names, rep):
            origin = Origin(latency)
            get = contestants[name][0](origin, ttl)
            gets, seconds = mixed_once(get, sequences, duration)
            cell = out["results"][name]
            cell["gets_per_s"].append(gets / seconds)
            cell["calls"].append(origin.calls)
            cell["calls_per_s"].append(origin.calls / seconds)
            cell["overlapping"].append(origin.overlapping)
        log(f"  mixed load: repetition {rep + 1}/{reps} done")
    return out


if __name__ == "__main__":
    import json
    import sys

    quick = "--quick" in sys.argv
    res = {"hit": hit_cost(reps=3 if quick else 7),
           "herds": herds(reps=2 if quick else 5),
           "mixed": mixed(reps=2 if quick else 5, duration=0.3 if quick else 1.0)}
    json.dump(res, sys.stdout, indent=1)
    _ = COLLAPSED
