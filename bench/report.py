#!/usr/bin/env python3
"""Turn the raw figures of bench/run.py into Markdown tables, plots and the
README's section. Run on its own to redo them from a saved run:

    python3 bench/report.py bench/results.json [--out bench/]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable, Sequence

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)

from common import fmt, marked_sections, med_range, summary, table  # noqa: E402
from contestants import COLLAPSED, CONTESTANTS, FLOOR, GRACE, NAIVE  # noqa: E402
from inprocess import HARNESS  # noqa: E402

GOALS = {"hit_ratio": 2.0, "release_s": 0.100, "node_ratio": 1.5}
COLOURS = {COLLAPSED: "#d62728", GRACE: "#ff9896", NAIVE: "#7f7f7f", "dogpile.cache": "#1f77b4",
           "cachetools": "#2ca02c", "cachebox": "#9467bd", "singleflight": "#ff7f0e", FLOOR: "#000000",
           HARNESS: "#000000"}


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratios(values: Sequence[float], floors: Sequence[float]) -> list[float]:
    """Run-by-run ratios: each run of a contestant against the floor's run of the same repetition."""
    return [v / f for v, f in zip(values, floors, strict=True)]


def collapses(name: str) -> str:
    if name in (FLOOR, HARNESS):
        return "–"
    return "yes" if CONTESTANTS[name][2] else "**no**"


# -- goals ---------------------------------------------------------------------

def verdict(on_median: bool, every_run: bool) -> str:
    if on_median:
        return "yes" if every_run else "yes, on the median (not in every run)"
    return "**no**"


def goals(r: dict) -> list[tuple[str, str, str]]:
    """(goal, measured, met) for each goal the project reports against."""
    out = []
    herd_calls = [c for kind in ("cold", "expired") for name in (COLLAPSED, GRACE)
                  if name in r["herds"][kind] for cell in r["herds"][kind][name].values() for c in cell["calls"]]
    out.append(("one origin call per herd, whatever its size",
                (f"{max(herd_calls)} call at most, in each of the {len(herd_calls)} herds "
                f"({', '.join(fmt(n) for n in r['herds']['sizes'])} threads; cold and expired)"),
                verdict(max(herd_calls) == 1, max(herd_calls) == 1)))
    ns = r["hit"]["ns"]
    floor, ours = med(ns[FLOOR]), med(ns[COLLAPSED])
    paired = ratios(ns[COLLAPSED], ns[FLOOR])
    out.append((f"a hit within {GOALS['hit_ratio']:g}x the floor",
                f"{fmt(ours)} ns against {fmt(floor)} ns: {med(paired):.2f}x "
                f"(run by run {min(paired):.2f}–{max(paired):.2f}x)",
                verdict(med(paired) <= GOALS["hit_ratio"], max(paired) <= GOALS["hit_ratio"])))
    peers = [n for n in ns if n in CONTESTANTS and CONTESTANTS[n][2] and n not in (COLLAPSED, GRACE)]
    faster = [n for n in peers if med(ns[n]) <= ours]
    slower = [n for n in peers if med(ns[n]) > ours]

    def listed(names: list[str]) -> str:
        return ", ".join(f"{n} {fmt(med(ns[n]))} ns" + (" (a bare dict check: singleflight only guards the fill)"
                                                         if n == "singleflight" else "") for n in names)

    text = "; ".join(part for part in (f"faster than {listed(slower)}" if slower else "",
                                        f"slower than {listed(faster)}" if faster else "") if part)
    out.append(("a hit faster than every peer that collapses", f"{fmt(ours)} ns: {text}",
                verdict(not faster, not faster)))
    rel = [run["release_s"] for run in r["release"]["runs"]]
    out.append((f"{r['release']['waiters']:,} waiters released in under {GOALS['release_s'] * 1e3:g} ms",
                f"{med_range(rel, 0, 1e3)} ms from the origin's answer to the last reply",
                verdict(med(rel) < GOALS["release_s"], max(rel) < GOALS["release_s"])))
    t = r["throughput"]
    lo, hi = min(t["paired_ratios"]), max(t["paired_ratios"])
    out.append((f"node within {GOALS['node_ratio']:g}x the echo loop's time",
                f"{t['ratio']:.2f}x (paired runs {lo:.2f}–{hi:.2f}x)",
                verdict(t["ratio"] <= GOALS["node_ratio"], hi <= GOALS["node_ratio"])))
    return out


def goals_table(r: dict) -> str:
    return table(["goal", "measured (median of runs, min–max)", "met?"],
                 goals(r), ["l", "l", "c"])


def goals_text(r: dict) -> str:
    return "\n".join(f"{'NOT met' if ok == '**no**' else 'met    '}  {g}: {m}"
                     + ("" if ok in ("yes", "**no**") else f" [{ok}]") for g, m, ok in goals(r))


# -- tables --------------------------------------------------------------------

def hit_table(r: dict) -> str:
    ns = r["hit"]["ns"]
    rows = []
    for name in sorted(ns, key=lambda n: med(ns[n])):
        label = f"**{name}**" if name == COLLAPSED else name
        paired = ratios(ns[name], ns[FLOOR])
        rows.append((label, collapses(name), med_range(ns[name]),
                     f"{med(paired):.2f}x ({min(paired):.2f}–{max(paired):.2f}x)" if name != FLOOR else "1"))
    return table(["contestant", "collapses misses", "ns per hit", "× floor, run by run"], rows, ["l", "c", "r", "r"])


def herd_table(r: dict, field: str, scale: float = 1.0, digits: int = 0, harness: bool = False) -> str:
    h = r["herds"]
    sizes = [str(n) for n in h["sizes"]]
    names = [n for n in h["expired"] if n != HARNESS] + ([HARNESS] if harness else [])
    rows = []
    for name in names:
        cells = []
        for kind in ("cold", "expired"):
            for n in sizes:
                cell = h[kind].get(name, {}).get(n)
                cells.append(med_range(cell[field], digits, scale) if cell else "=")
        label = f"**{name}**" if name == COLLAPSED else name
        rows.append([label, collapses(name)] + cells)
    header = ["contestant", "collapses"] + [f"cold, {int(n):,}" for n in sizes] + \
             [f"expired, {int(n):,}" for n in sizes]
    return table(header, rows, ["l", "c"] + ["r"] * (2 * len(sizes)))


def mixed_table(r: dict) -> str:
    m = r["mixed"]["results"]
    rows = []
    for name in sorted(m, key=lambda n: -med(m[n]["gets_per_s"])):
        c = m[name]
        label = f"**{name}**" if name == COLLAPSED else name
        rows.append((label, collapses(name), med_range(c["gets_per_s"]), med_range(c["calls"]),
                     med_range(c["overlapping"])))
    return table(["contestant", "collapses", "gets/s", "origin calls", "of which overlapped a call for the same key"],
                 rows, ["l", "c", "r", "r", "r"])


def node_table(r: dict) -> str:
    t, rel, mem = r["throughput"], r["release"], r["memory"]
    n = t["messages"]
    runs = rel["runs"]
    lo, hi = min(t["paired_ratios"]), max(t["paired_ratios"])
    waiters = rel["waiters"]
    entries = mem["entries"]
    per = f"{entries:,}"

    def mb(kbs: list[int]) -> str:
        return med_range([k / 1024 for k in kbs], 1)

    def per_entry(kbs: list[int]) -> str:
        return fmt(med(kbs) * 1024 / entries)

    paced = [x["delta_kb"] for x in mem["paced"]]
    burst = [x["delta_kb"] for x in mem["burst"]] or [float("nan")]
    rows = [
        (f"cached gets/s, node (`main.py`), {n:,} gets", med_range([n / s for s in t["node_s"]]), ""),
        ("cached gets/s, echo loop (`bench/echo_node.py`), the floor", med_range([n / s for s in t["echo_s"]]), ""),
        ("node time / echo time", f"{t['ratio']:.2f}x (paired runs {lo:.2f}–{hi:.2f}x)",
         f"goal ≤ {GOALS['node_ratio']:g}x"),
    ]
    if "echo_tuned_s" in t:
        blo, bhi = min(t["paired_ratios_tuned"]), max(t["paired_ratios_tuned"])
        rows += [
            ("cached gets/s, tuned echo loop (`echo_node.py --tuned`)",
             med_range([n / s for s in t["echo_tuned_s"]]), "encoder built once, one write per read: stricter"),
            ("node time / that echo time", f"{t['ratio_tuned']:.2f}x (paired runs {blo:.2f}–{bhi:.2f}x)", ""),
        ]
    rows += [
        (f"{waiters:,} waiters on one key: origin answer → last reply, ms",
         med_range([x["release_s"] for x in runs], 0, 1e3), f"goal < {GOALS['release_s'] * 1e3:g} ms; an upper bound"),
        (f"{waiters:,} waiters: first reply → last reply, ms", med_range([x["spread_s"] for x in runs], 0, 1e3),
         "a lower bound"),
        ("µs per waiter released", med_range([x["release_s"] / waiters for x in runs], 1, 1e6), ""),
        (f"{waiters:,} gets + 1 stats written → stats answered (all admitted), ms",
         med_range([x["stats_reply_s"] for x in runs], 0, 1e3), "`waiting` = " +
         ", ".join(sorted({fmt(x["waiting"]) for x in runs}))),
        ("threads: idle after init / while 10,000 requests wait",
         f"{med([x['threads_idle'] for x in runs]):g} / {med([x['threads_waiting'] for x in runs]):g}",
         "from /proc/<pid>/status"),
        (f"RSS growth for {per} entries, paced fill (1,000 at a time), MB",
         mb(paced), f"{per_entry(paced)} B per entry"),
        (f"RSS growth for {per} entries, burst fill (all at once), MB", mb(burst),
         f"{per_entry(burst)} B per entry"),
        (f"the same {per} keys and values in a plain dict, MB (floor)", mb(mem["dict_floor_kb"]),
         f"{per_entry(mem['dict_floor_kb'])} B per entry"),
        (f"{per} distinct misses (`--sim-latency 0`) answered per second: paced / burst fill",
         f"{med_range([entries / x['fill_s'] for x in mem['paced']])} / "
         f"{med_range([entries / x['fill_s'] for x in mem['burst']] or [float('nan')])}",
         "origin timeouts in the burst fills: " + (", ".join(str(x["errors"]) for x in mem["burst"]) or "-")),
    ]
    return table(["measure", "median (min–max)", "note"], rows, ["l", "r", "l"])


# -- plots ---------------------------------------------------------------------

def plots(r: dict, plot_dir: str) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plot_dir, exist_ok=True)
    made = []
    h = r["herds"]
    sizes = h["sizes"]

    def herd_plot(field: str, scale: float, ylabel: str, filename: str, title: str, harness: bool) -> None:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
        for ax, kind in zip(axes, ("cold", "expired"), strict=True):
            names = [n for n in h[kind] if n != HARNESS] + ([HARNESS] if harness else [])
            for i, name in enumerate(names):
                xs = [n * (1 + 0.035 * (i - len(names) / 2)) for n in sizes]
                meds, los, his = [], [], []
                for n in sizes:
                    s = summary([v * scale for v in h[kind][name][str(n)][field]])
                    meds.append(s["median"])
                    los.append(s["median"] - s["min"])
                    his.append(s["max"] - s["median"])
                style = {"color": COLOURS.get(name), "marker": "o", "markersize": 5, "capsize": 3,
                             "linewidth": 2.5 if name == COLLAPSED else 1.4,
                             "linestyle": "--" if name in (NAIVE, HARNESS) else "-"}
                ax.errorbar(xs, meds, yerr=[los, his], label=name, **style)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(sizes)
            ax.set_xticklabels([f"{n:,}" for n in sizes])
            ax.set_xlabel("threads in the herd")
            ax.set_title(f"{kind} key")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel(ylabel)
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="center right")
        fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 0.84, 1))
        path = os.path.join(plot_dir, filename)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    latency_ms = h["latency"] * 1e3
    herd_plot("calls", 1.0, "origin calls (median, min–max)", "herd_origin_calls.png",
              f"Origin calls per herd (origin latency {latency_ms:g} ms)", harness=False)
    herd_plot("wall", 1e3, "ms, barrier release → last answer", "herd_wall_time.png",
              f"Herd wall time (origin latency {latency_ms:g} ms)", harness=True)

    ns = r["hit"]["ns"]
    names = sorted(ns, key=lambda n: med(ns[n]))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
    meds = [med(ns[n]) for n in names]
    errs = [[m - min(ns[n]) for m, n in zip(meds, names, strict=True)],
            [max(ns[n]) - m for m, n in zip(meds, names, strict=True)]]
    ax.barh(names, meds, xerr=errs, color=[COLOURS.get(n, "#999999") for n in names], capsize=3)
    floor = med(ns[FLOOR])
    ax.axvline(floor * GOALS["hit_ratio"], color="#d62728", linestyle=":", label=f"{GOALS['hit_ratio']:g}x the floor")
    ax.set_xscale("log")
    ax.set_xlabel("ns per hit of a present key (median of runs, min–max; log scale)")
    ax.invert_yaxis()
    for y, (m, n) in enumerate(zip(meds, names, strict=True)):
        ax.text(max(ns[n]) * 1.1, y, f"{m:,.0f}", va="center", fontsize=8)
    ax.set_xlim(right=max(max(v) for v in ns.values()) * 2.5)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Cost of a hit, one thread")
    fig.tight_layout()
    path = os.path.join(plot_dir, "hit_cost.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)
    return made


# -- documents -----------------------------------------------------------------

def header(r: dict) -> str:
    m = r["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())

    def load(xs: list[float]) -> str:
        return " / ".join(f"{x:.2f}" for x in xs)

    text = (f"Measured {m['date']} on {m['nproc']} cores ({m['cpu']}), {m['implementation']} {m['python']}, "
            f"{m['os']}; project commit {m['commit']}. Peers: {versions}. Load average (1/5/15 min) "
            f"before the run {load(m['load_before'])}; the whole run took {r['seconds']:.0f} s.")
    busy = m["load_before"][0]  # the herds' 1,000 threads raise the load average themselves, so only before
    if busy > 0.75 * m["nproc"]:
        text += (f"\n\n**The machine was busy with other work when this run started (1-minute load average "
                 f"{busy:.1f} on {m['nproc']} cores): figures are noisier and slower than on a quiet machine.**")
    if r.get("quick"):
        text += "\n\n**A quick smoke run (`--quick`): too few and too short runs to quote.**"
    return text


def method(r: dict) -> dict[str, str]:
    h, mx, t, rel = r["herds"], r["mixed"], r["throughput"], r["release"]
    return {
        "hit": (f"One thread gets one present key over and over; ns per get, the bare loop's cost subtracted, "
                f"garbage collector off; {r['hit']['reps']} runs, contestants in turn. The floor is not a cache: "
                f"a dict lookup plus one `time.monotonic()` comparison, in a function."),
        "herds": (f"N threads, started beforehand and parked on a barrier, are released together and all get "
                  f"the same key, whose origin call sleeps "
                  f"{h['latency'] * 1e3:g} ms. Cold: a key never fetched, on a fresh instance. Expired: a key "
                  f"fetched with a {h['expired_ttl']:g} s TTL that has run out. {h['reps']} runs. "
                  f"Wall time runs from the barrier's release to the last thread's answer; the harness floor "
                  f"row is the same herd with no cache and no origin (a get that returns at once): with 1,000 "
                  f"threads on 2 cores, waking the threads is most of the time. `=` marks the same figures "
                  f"as the row above (grace only changes an expired key)."),
        "mixed": (f"{mx['threads']} threads get keys drawn from {mx['keys']} keys with Zipf (s={mx['zipf_s']:g}) "
                  f"popularity, the same sequences for every contestant, for {mx['duration']:g} s; TTL "
                  f"{mx['ttl'] * 1e3:g} ms, origin latency {mx['latency'] * 1e3:g} ms; {mx['reps']} runs. "
                  f"\"Overlapped\" counts origin calls that started while another call for the same key was in "
                  f"flight: the herd's duplicates."),
        "node": (f"Through the node's pipes. Throughput: {t['messages']:,} gets of {t['keys']} warmed keys (all "
                 f"hits), first write to last reply read, {t['runs']} runs each of the node and the echo loops, "
                 f"in turn, each in a fresh process. The echo loop calls `json.dumps(..., separators=...)` and flushes "
                 f"for every message; its `--tuned` form, a stricter floor, builds its encoder once and writes the "
                 f"replies to one read of input at once. "
                 f"Release: `--sim-latency {rel['latency']:g}`, "
                 f"{rel['waiters']:,} gets of one cold key written at once; the origin answers "
                 f"{rel['latency']:g} s after the node reads the first get, which is no earlier than the moment "
                 f"the driver wrote it, so the time from (first write + latency) to the last reply read is an upper "
                 f"bound of the release, and the time from the first reply read to the last a lower bound; a "
                 f"`stats` sent after the gets confirms that all {rel['waiters']:,} wait, and the thread count is "
                 f"read from /proc while they do; {len(rel['runs'])} runs. Memory: VmRSS growth "
                 f"with `--sim-latency 0`, measured once the fill's deadline timers have run out; "
                 f"{len(r['memory']['paced'])} paced and {len(r['memory']['burst'])} burst fills."),
    }


def reading(r: dict) -> str:
    """A short reading of the figures, its numbers taken from this run."""
    ns, h, mx = r["hit"]["ns"], r["herds"], r["mixed"]["results"]
    floor, ours = med(ns[FLOOR]), med(ns[COLLAPSED])
    ratio = med(ratios(ns[COLLAPSED], ns[FLOOR]))
    big = str(max(h["sizes"]))
    naive_calls = med(h["cold"][NAIVE][big]["calls"])
    naive_all = h["cold"][NAIVE][big]["calls"] + h["expired"][NAIVE][big]["calls"]
    peers_collapsing = [n for n in ns if n in CONTESTANTS and CONTESTANTS[n][2] and n not in (COLLAPSED, GRACE)]
    cheaper = sorted((n for n in peers_collapsing if med(ns[n]) <= ours), key=lambda n: med(ns[n]))
    dearer = sorted((n for n in peers_collapsing if med(ns[n]) > ours), key=lambda n: med(ns[n]))
    wall = {n: med(h["cold"][n][big]["wall"]) * 1e3 for n in h["cold"]}
    harness = wall[HARNESS]
    mixed_rank = sorted(mx, key=lambda n: -med(mx[n]["gets_per_s"]))
    naive_dups = med(mx[NAIVE]["overlapping"])
    rel = r["release"]
    rel_ms = med([x["release_s"] for x in rel["runs"]]) * 1e3
    per_waiter = rel_ms * 1e3 / rel["waiters"]
    t = r["throughput"]
    mem = r["memory"]
    paced_mb = med([x["delta_kb"] for x in mem["paced"]]) / 1024
    burst_mb = med([x["delta_kb"] for x in mem["burst"]] or [float("nan")]) / 1024
    floor_mb = med(mem["dict_floor_kb"]) / 1024
    threads = med([x["threads_waiting"] for x in rel["runs"]])
    idle = med([x["threads_idle"] for x in rel["runs"]])
    echo_us = med(t["echo_s"]) / t["messages"] * 1e6
    burst_rate = med([mem["entries"] / x["fill_s"] for x in mem["burst"]] or [float("nan")])
    parts = [
        (f"- **Herds.** Every collapsing contestant, this project included, made one origin call per herd, cold or "
        f"expired, from 10 to {int(big):,} threads; the naive TTL dict made about one per thread that missed "
        f"before the first fill landed ({naive_calls:,.0f} for {int(big):,} threads on a cold key, the median; "
        f"{min(naive_all):,} to {max(naive_all):,} over all its {int(big):,}-thread herds, as the scheduler let more "
        f"or fewer threads reach the cache within the origin's {h['latency'] * 1e3:g} ms). Wall times for "
        f"{int(big):,} threads ({wall[COLLAPSED]:,.0f} ms for this project, harness floor {harness:,.0f} ms) are "
        f"mostly the cost of waking {int(big):,} Python threads on 2 cores. On an expired key dogpile.cache and "
        f"the `grace` variant answer at once with the old value while one thread refreshes it; the others make "
        f"every reader wait for the new one."),
        f"- **Hits.** A hit costs {ours:,.0f} ns against a {floor:,.0f} ns floor ({ratio:.2f}x, run by run), so "
        f"the 2x goal is {'met' if ratio <= GOALS['hit_ratio'] else 'not met'}"
        + (f"; it is cheaper than {', '.join(dearer)}" if dearer else "")
        + (f"{' but' if dearer else '; it is'} dearer than {', '.join(cheaper)}" if cheaper else "")
        + ". "
        "The floor and the naive dict are a bare dict check; so is the singleflight contestant's hit path "
        "(singleflight has no cache: it only guards the fill of the same dict). cachebox's hit is a lookup in "
        "its Rust cache behind a Python wrapper; "
        "cachetools' takes its condition's lock and builds a key tuple; dogpile.cache's goes through its "
        "region, its dogpile lock and a creation-time check.",
        (f"- **Mixed load.** Order by gets/s: {', '.join(mixed_rank)}. Every collapsing contestant avoided the "
        f"duplicate fetches that the naive dict made ({naive_dups:,.0f} of its calls overlapped another for the "
        f"same key); with 8 threads sharing the GIL, the cost of a hit and any lock on the hit path decide the rest."),
        (f"- **The node.** Cached gets run at {t['ratio']:.2f}x the echo loop's time "
        f"({'within' if t['ratio'] <= GOALS['node_ratio'] else 'outside'} the 1.5x goal)"
        + (f" and {t['ratio_tuned']:.2f}x that of the tuned echo loop"
           if "ratio_tuned" in t else "")
        + "; reading, parsing, "
        f"encoding and writing the JSON lines is most of the cost of each. "
        f"Releasing {rel['waiters']:,} waiters took {rel_ms:,.0f} ms "
        f"({per_waiter:.1f} µs each; goal < 100 ms {'met' if rel_ms < 100 else 'not met'}), against "
        f"{echo_us:.1f} µs per message for the whole echo loop (read, parse, reply, write). The waiters cost no "
        f"threads ({threads:g} threads in the process while {rel['waiters']:,} wait, {idle:g} when idle). "
        f"{mem['entries']:,} entries added {paced_mb:,.0f} MB when filled 1,000 at a time (a plain dict of the "
        f"same keys and values: {floor_mb:,.0f} MB)"
        + ("." if not mem["burst"] else
           f", and {burst_mb:,.0f} MB when all were written at once ({burst_rate:,.0f} misses/s)."
           if burst_mb < 1.25 * paced_mb else
           f", but {burst_mb:,.0f} MB when all were written at once: the node reads requests faster than it "
           f"answers misses ({burst_rate:,.0f} misses/s), so a great many fetches and their requests are alive at "
           f"once, and CPython's allocator keeps that high-water mark.")),
    ]
    return "\n".join(parts)


def tables_block(r: dict, plot_prefix: str, level: str) -> str:
    m = method(r)
    return f"""{level} Goals

{goals_table(r)}

{level} In-process: the cost of a hit

{m['hit']}

{hit_table(r)}

![ns per hit against the floor and the peers]({plot_prefix}hit_cost.png)

{level} In-process: herds

{m['herds']}

Origin calls per herd (cold / expired key, by number of threads):

{herd_table(r, 'calls')}

Wall time, ms (barrier release → last answer):

{herd_table(r, 'wall', 1e3, 0, harness=True)}

![origin calls against herd size]({plot_prefix}herd_origin_calls.png)

![herd wall time]({plot_prefix}herd_wall_time.png)

{level} In-process: mixed load

{m['mixed']}

{mixed_table(r)}

{level} The node

{m['node']}

{node_table(r)}
"""


def results_md(r: dict) -> str:
    return f"""# Benchmarks

Made by `python3 bench/run.py` (the `bench` extra installed); redo the tables and plots from the raw figures
with `python3 bench/report.py bench/results.json`. Every figure is the median of several runs, followed by
the smallest and largest of those runs.

{header(r)}

{tables_block(r, 'plots/', '##')}
## Reading

{reading(r)}
"""


def readme_section(r: dict) -> str:
    """A short summary for the README: the goals and two plots; the detail lives in bench/RESULTS.md."""
    return f"""### In-process and the node (`bench/run.py`)

{header(r)}

{goals_table(r)}

![ns per hit against the floor and the peers](bench/plots/hit_cost.png)
![origin calls against herd size](bench/plots/herd_origin_calls.png)

Each peer with its own documented stampede protection, the method, every table and a reading of them:
[bench/RESULTS.md](bench/RESULTS.md).
"""


README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
README_MARKS = ("<!-- bench:start -->", "<!-- bench:end -->")


def splice_into_readme(section: str) -> bool:
    """Put the section between the README's bench markers; False if it has none."""
    with open(README) as f:
        text = f.read()
    start, end = README_MARKS
    head, found, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        return False
    with open(README, "w") as f:
        f.write(f"{head}{start}\n{section.strip()}\n{end}{tail}")
    return True


def write(r: dict, out_dir: str, log: Callable[[str], None] = print) -> list[str]:
    """RESULTS.md and plots/ in out_dir; the README's bench section too when out_dir is bench/ itself
    (a full run), else README_SECTION.md beside RESULTS.md (a --quick or --out run)."""
    made = plots(r, os.path.join(out_dir, "plots"))
    paths = []
    section = readme_section(r)
    outputs = [("RESULTS.md", results_md(r) + marked_sections(os.path.join(out_dir, "RESULTS.md")))]
    if os.path.abspath(out_dir) == os.path.dirname(os.path.abspath(__file__)) and splice_into_readme(section):
        paths.append(README)
    else:
        outputs.append(("README_SECTION.md", section))
    for name, text in outputs:
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    return paths + made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a results JSON written by bench/run.py")
    parser.add_argument("--out", help="where to write (default: the folder of the results file)")
    args = parser.parse_args()
    with open(args.results) as f:
        r = json.load(f)
    out = args.out or os.path.dirname(os.path.abspath(args.results))
    for path in write(r, out):
        print(path)
    print(goals_text(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

