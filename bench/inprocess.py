"""The in-process part: the library against its peers, on the same origin and keys.

* hit: ns per `get` of a present key, one thread, against the floor (a dict lookup and a monotonic-clock
  comparison, in a function), the bare loop's cost subtracted, the collector off while timing (as timeit does).
  Goals: within 2x the floor; faster than every peer that collapses misses.
* herds: N threads (10, 100, 1,000), parked on a barrier, are released together to get one key, cold (never
  fetched, on a fresh instance) or expired (fetched with a 1 s TTL that has run out); the origin call sleeps
  50 ms. Origin calls, and the time from the release to the last answer, against the same herd with no cache
  and no origin (the harness floor). Goal: one origin call per herd.

The contestants run in turn within each repetition, their order rotated, so the machine's noise falls on all of
them alike. Each is `make(origin, ttl)`, returning `get(key) -> value`; each peer protects against stampedes in
its own documented way (read from its own source):

* collapsed-forwarding (grace): with `grace=60` an expired entry is served stale while one background fetch
  refreshes it (dogpile's behaviour).
* naive TTL dict: no collapsing, so concurrent misses each call the origin: the herd.
* dogpile.cache: `region.get_or_create`; its per-key dogpile lock lets one thread create the value; the others
  wait when there is no value, or get the expired value while it is recreated.
* cachetools: since 5.4 (6+ documents it) `condition=` marks a key pending while one thread computes it, and the
  others wait on the condition (cachetools/_decorator.py, _ConditionMixin).
* cachebox: `cached`'s default `lock=True` is its "cache stampede prevention": a per-key lock, the others
  re-check the cache one after another once they get it (cachebox/_wrappers.py).
* singleflight (0.1.3, a port of Go's groupcache singleflight) has no cache: it guards the fill of the naive
  contestant's TTL dict.
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from itertools import repeat
from pathlib import Path
from time import monotonic
from typing import Any

from common import (
    fmt,
    goals_table,
    in_turns,
    log,
    med,
    med_range,
    part_main,
    pyplot,
    ratios,
    rotated,
    save_plot,
    section,
    table,
    verdict,
)

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
    a function. Only for the hit cost: it holds "hot" from the start, and nothing else."""
    entries = {"hot": (origin("hot"), monotonic() + ttl)}

    def get(key: str) -> Any:
        value, expires = entries[key]
        if monotonic() < expires:
            return value
        raise KeyError(key)

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
            out[name] = entry
        except ImportError as exc:
            log(f"skipping {name}: {exc}")
    return out


HIT_GOAL = 2.0
HARNESS = "harness floor: no cache, no origin"
COLOURS = {COLLAPSED: "#d62728", GRACE: "#ff9896", NAIVE: "#7f7f7f", "dogpile.cache": "#1f77b4",
           "cachetools": "#2ca02c", "cachebox": "#9467bd", "singleflight": "#ff7f0e", FLOOR: "#000000",
           HARNESS: "#000000"}


def loop_ns(get: Get, key: str, n: int) -> float:
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


def hot(make: Callable[[Origin, float], Get]) -> Get:
    """A contestant (or the floor) holding "hot", its hit checked."""
    get = make(Origin(0), 3600)
    if get("hot") != "value-hot":
        raise AssertionError(f"{make.__name__} returned {get('hot')!r}")
    return get


def hit_runs(getters: dict[str, Get], sizes: dict[str, int], reps: int) -> dict[str, list[float]]:
    """ns per hit of each getter, `sizes[name]` gets a run, the getters in turn, their order rotated each run."""
    results: dict[str, list[float]] = {name: [] for name in getters}
    for rep in range(reps):
        for name in rotated(list(getters), rep):
            results[name].append(loop_ns(getters[name], "hot", sizes[name]))
    return results


def hit_cost(reps: int = 7, target_s: float = 0.04) -> dict:
    """Every contestant but grace (the same hit path as collapsed-forwarding), runs of about `target_s` each."""
    getters = {FLOOR: hot(make_floor)} | {name: hot(make) for name, (make, _, _) in available().items()
                                          if name != GRACE}
    sizes = {name: int(min(max(target_s * 1e9 / max(loop_ns(get, "hot", 2000), 20.0), 5_000), 2_000_000))
             for name, get in getters.items()}
    results = hit_runs(getters, sizes, reps)
    log(f"  hit cost: {reps} runs of {min(sizes.values()):,}-{max(sizes.values()):,} gets each")
    return {"reps": reps, "ns": results, "calls_per_run": sizes}


def hit_vs_floor(reps: int, n: int = 200_000, turns: int = 20) -> dict:
    """The hit of the library against the floor alone, n gets a run (the scale and costs parts' goal), the two
    taking `turns` turns of n/turns gets each, so a shared machine's slow moments fall on both alike."""
    getters = {"floor": hot(make_floor), "collapsed": hot(make_collapsed)}
    out: dict[str, list[float]] = {name: [] for name in getters}

    def turn_of_hits(name: str, _: int) -> float:
        return loop_ns(getters[name], "hot", n // turns)

    for _ in range(reps):
        for name, ns in in_turns(list(getters), turns, turn_of_hits).items():
            out[name].append(ns)
    log(f"  hit vs floor: {reps} runs of {n:,} gets, in {turns} turns each")
    return {**out, "ratios": ratios(out["collapsed"], out["floor"])}


class Crew:
    """n threads, started once and parked on a barrier, that run one herd after
    another: each herd releases them together, and each gets the key once."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._job: tuple[Get, str] | None = None
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

    def herd(self, get: Get, key: str) -> float:
        """Seconds from the release to the last answer; a wrong answer or an error fails the run."""
        self._job, self._wrong = (get, key), []
        self._go.wait()  # the workers are parked here already: this releases them
        self._done.wait()
        if self._wrong:
            raise RuntimeError(f"{len(self._wrong)} of {self.n} threads got a wrong answer or an error for {key!r}")
        return max(self._finished) - self._started

    def close(self) -> None:
        self._job = None
        self._go.wait()
        for t in self._threads:
            t.join()


def herds(sizes: tuple[int, ...] = (10, 100, 1000), reps: int = 5, latency: float = 0.05,
          expired_ttl: float = 1.0) -> dict:
    """Cold herds on a fresh instance each; expired herds on one instance per contestant and repetition, whose keys
    (one per herd size) were all filled before the cold herds ran and had expired by the time their herd came."""
    contestants = available()
    names = {"cold": [n for n in contestants if n != GRACE] + [HARNESS], "expired": [*contestants, HARNESS]}
    out: dict[str, Any] = {"sizes": list(sizes), "reps": reps, "latency": latency, "expired_ttl": expired_ttl}
    for kind in names:
        out[kind] = {name: {str(n): {"calls": [], "wall": []} for n in sizes} for name in names[kind]}
    crews = {n: Crew(n) for n in sizes}

    def record(kind: str, name: str, n: int, origin: Origin | None, get: Get, key: str) -> None:
        calls = origin.calls if origin else 0
        wall = crews[n].herd(get, key)
        cell = out[kind][name][str(n)]
        cell["calls"].append(origin.calls - calls if origin else 0)
        cell["wall"].append(wall)

    def no_cache(key: str) -> str:
        return "value-" + key

    for rep in range(reps):
        expiring: dict[str, tuple[Origin | None, Get]] = {HARNESS: (None, no_cache)}
        for name in contestants:
            origin = Origin(latency)
            get = contestants[name][0](origin, expired_ttl)
            for n in sizes:
                get(f"expired-{n}")
            expiring[name] = (origin, get)
        expired_at = time.perf_counter() + expired_ttl * 1.1 + 0.02
        for n in sizes:
            for name in rotated(names["cold"], rep):
                origin = None if name == HARNESS else Origin(latency)
                record("cold", name, n, origin, contestants[name][0](origin, 60) if origin else no_cache, "cold")
        time.sleep(max(0.0, expired_at - time.perf_counter()))
        for n in sizes:
            for name in rotated(names["expired"], rep):
                record("expired", name, n, *expiring[name], f"expired-{n}")
        log(f"  herds: repetition {rep + 1}/{reps} done")
    for crew in crews.values():
        crew.close()
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    log("in-process:")
    return {"versions": {dist: metadata.version(dist) for _, dist, _ in available().values() if dist},
            "hit": hit_cost(reps=3 if quick else 9, target_s=0.01 if quick else 0.04),
            "herds": herds(reps=2 if quick else 5)}


def goals(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    h, ns = r["herds"], r["hit"]["ns"]
    calls = [c for kind in ("cold", "expired") for name in (COLLAPSED, GRACE) if name in h[kind]
             for cell in h[kind][name].values() for c in cell["calls"]]
    paired = ratios(ns[COLLAPSED], ns[FLOOR])
    ours = med(ns[COLLAPSED])
    peers = [n for n in ns if n in CONTESTANTS and CONTESTANTS[n][2] and n not in (COLLAPSED, GRACE)]
    why = {"singleflight": " (a bare dict check: singleflight only guards the fill)"}

    def listed(dearer: bool) -> str:
        """The peers that collapse misses whose hit costs more than ours (or, not `dearer`, at most ours)."""
        return ", ".join(f"{n} {fmt(med(ns[n]))} ns{why.get(n, '')}" for n in peers if (med(ns[n]) > ours) == dearer)

    against = "; ".join(f"{side} than {listed(dearer)}" for side, dearer in (("faster", True), ("slower", False))
                        if listed(dearer)) or "no peer installed"
    return [("one origin call per herd, whatever its size",
             f"{max(calls)} call at most, in each of the {len(calls)} herds "
             f"({', '.join(fmt(n) for n in h['sizes'])} threads; cold and expired)",
             "yes" if max(calls) == 1 else "**no**"),
            (f"a hit within {HIT_GOAL:g}x the floor",
             f"{fmt(ours)} ns against {fmt(med(ns[FLOOR]))} ns: {med(paired):.2f}x "
             f"(run by run {min(paired):.2f}–{max(paired):.2f}x)", verdict(paired, HIT_GOAL)),
            ("a hit faster than every peer that collapses", f"{fmt(ours)} ns: {against}",
             "**no**" if listed(False) else "yes")]


def herd_table(h: dict[str, Any], field: str, scale: float = 1.0, harness: bool = False) -> str:
    sizes = [str(n) for n in h["sizes"]]
    rows = []
    for name in [n for n in h["expired"] if n != HARNESS] + ([HARNESS] if harness else []):
        cells = [med_range(h[kind][name][n][field], 0, scale) if name in h[kind] else "="
                 for kind in ("cold", "expired") for n in sizes]
        collapses = "–" if name == HARNESS else "yes" if CONTESTANTS[name][2] else "**no**"
        rows.append([f"**{name}**" if name == COLLAPSED else name, collapses, *cells])
    header = ["contestant", "collapses"] + [f"{kind}, {int(n):,}" for kind in ("cold", "expired") for n in sizes]
    return table(header, rows, ["l", "c"] + ["r"] * (2 * len(sizes)))


def wall_note(h: dict[str, Any]) -> str:
    """Why the herds of 1,000 threads take what they take (the subtitle of herd_wall_time.png)."""
    big = str(max(h["sizes"]))
    floor = med(h["cold"][HARNESS][big]["wall"]) * 1e3
    return (f"At {int(big):,} threads, waking them is most of the time (no cache at all: {floor:.0f} ms)."
            f" This project's waiters, like cachetools' and singleflight's, block on one Event (or Condition) "
            f"per fetch: once it is set, each woken thread re-takes its lock in turn, so they finish last; "
            f"dogpile.cache and cachebox pass a per-key lock from thread to thread.")


def spread(meds: Sequence[float], runs: Sequence[Sequence[float]]) -> list[list[float]]:
    """Error bars from each median down to the least of its runs and up to the most."""
    pairs = list(zip(meds, runs, strict=True))
    return [[m - min(r) for m, r in pairs], [max(r) - m for m, r in pairs]]


def plot_herds(plt: Any, h: dict[str, Any], field: str, scale: float, ylabel: str, path: Path, title: str,
               note: str, harness: bool) -> None:
    sizes = h["sizes"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    for ax, kind in zip(axes, ("cold", "expired"), strict=True):
        names = [n for n in h[kind] if n != HARNESS] + ([HARNESS] if harness else [])
        for i, name in enumerate(names):
            runs = [[v * scale for v in h[kind][name][str(n)][field]] for n in sizes]
            meds = [med(r) for r in runs]
            ax.errorbar([n * (1 + 0.035 * (i - len(names) / 2)) for n in sizes], meds, capsize=3, marker="o",
                        yerr=spread(meds, runs),
                        label=name, color=COLOURS.get(name), markersize=5, linewidth=2.5 if name == COLLAPSED else 1.4,
                        linestyle="--" if name in (NAIVE, HARNESS) else "-")
        ax.set(xscale="log", yscale="log", xlabel="threads in the herd", title=f"{kind} key")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[1].legend(fontsize=8, loc="upper left")
    save_plot(fig, path, title, note)


def plot_hits(plt: Any, ns: dict[str, list[float]], path: Path) -> None:
    names = sorted(ns, key=lambda n: med(ns[n]))
    meds = [med(ns[n]) for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 2))
    ax.barh(names, meds, color=[COLOURS.get(n, "#999999") for n in names], capsize=3,
            xerr=spread(meds, [ns[n] for n in names]))
    ax.axvline(med(ns[FLOOR]) * HIT_GOAL, color="#d62728", linestyle=":", label=f"goal: {HIT_GOAL:g}x the floor")
    for y, (m, n) in enumerate(zip(meds, names, strict=True)):
        ax.text(max(ns[n]) * 1.1, y, f"{m:,.0f}", va="center", fontsize=8)
    ax.set(xscale="log", xlabel="ns per hit (median of runs, min–max; log scale)")
    ax.set_xlim(right=max(max(v) for v in ns.values()) * 2.5)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    save_plot(fig, path, "The cost of a hit, one thread",
                     "ns per get of a present key: lower is better; the floor is a dict lookup and a clock read")


def reading(h: dict[str, Any]) -> str:
    return (f"- **Herds.** The naive TTL dict calls the origin once for every thread that misses before the first "
            f"fill lands. {wall_note(h)} On an expired key dogpile.cache and the `grace` variant answer at once with "
            f"the old value while one thread refreshes it.\n"
            "- **Hits.** The floor, the naive dict and singleflight's hit are a bare dict check (singleflight has no "
            "cache: it only guards the fill); cachebox's is a lookup in its Rust cache behind a Python wrapper; "
            "cachetools' takes its condition's lock and builds a key tuple; dogpile.cache's goes through its region, "
            "its lock and a creation-time check.")


def render(r: dict[str, Any], plots: Path) -> str:
    h, latency = r["herds"], r["herds"]["latency"] * 1e3
    plt = pyplot()
    if plt:
        plot_hits(plt, r["hit"]["ns"], plots / "hit_cost.png")
        plot_herds(plt, h, "calls", 1.0, "origin calls (median, min–max)", plots / "herd_origin_calls.png",
                   f"Origin calls per herd of threads asking for one key (origin latency {latency:g} ms)",
                   "lower is better: 1 is the goal; the naive TTL dict shows the herd", harness=False)
        plot_herds(plt, h, "wall", 1e3, "ms (median, min–max)", plots / "herd_wall_time.png",
                   f"Time for a herd to get its answer (origin latency {latency:g} ms)",
                   "ms from the barrier's release to the last answer: lower is better. " + wall_note(h), harness=True)
    peers = ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items())
    return section("In-process: the library against its peers", r, f"Peers: {peers}.", __doc__,
                   goals_table(goals(r)),
                   "### The cost of a hit",
                   "![ns per hit against the floor and the peers](plots/hit_cost.png)", "### Herds",
                   "Origin calls per herd (cold / expired key, by number of threads); `=`: as the row above (grace "
                   "only\nchanges an expired key):", herd_table(h, "calls"),
                   "Wall time, ms (barrier release → last answer):", herd_table(h, "wall", 1e3, harness=True),
                   "![origin calls against herd size](plots/herd_origin_calls.png)",
                   "![herd wall time](plots/herd_wall_time.png)", "### Reading", reading(h))


def main(argv: list[str] | None = None) -> int:
    return part_main("inprocess", __doc__, argv, measure, render)


if __name__ == "__main__":
    sys.exit(main())
