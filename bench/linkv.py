#!/usr/bin/env python3
"""Maelstrom's lin-kv workload against the node and against a pass-through node.

For each scenario and each node, runs tests/support/workload.py (real node
processes, Maelstrom's latencies, reordering and partitions), checks each
history with tests/support/linearizability.py, and reports: operations, how many runs
were linearizable, origin (lin-kv) and server messages per operation (as
Maelstrom's msgs-per-op counts them: messages sent between non-clients over the
invoked operations), the ratio to the pass-through, and read and write (write +
cas) latency, median and p99, over every completed operation.

    python3 bench/linkv.py                    # the table for bench/RESULTS.md (a few minutes)
    python3 bench/linkv.py --quick            # one short run of each
    python3 bench/linkv.py --seconds 30 --seeds 3 --only main   # a soak of the node alone
    python3 bench/linkv.py --node old=/path/to/other/checkout/main.py   # another version alongside
    python3 bench/linkv.py --scenario cost --seconds 30 --seeds 1 --no-write   # the cost rows, kills beside none

Prints a Markdown table; --json writes the raw figures too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, BENCH)

from common import splice_section, table  # noqa: E402
from support.workload import SHAPES, Latency, Workload, run  # noqa: E402

NODES = {
    "main": None,  # python3 main.py
    "passthrough": [sys.executable, os.path.join(BENCH, "passthrough_node.py")],
}


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: int
    latency: Latency
    mix: str = "maelstrom"
    partitions: bool = False
    rate: float = 100.0
    faults: tuple[str, ...] = ()  # process faults: "kill" (and restart), "pause"


SCENARIOS = [
    Scenario("read-heavy: 90% reads, 10 keys", 3, Latency(10), mix="read-heavy"),
    Scenario("read-heavy, partitions", 3, Latency(10), mix="read-heavy", partitions=True),
    Scenario("Maelstrom's mix", 3, Latency(10)),
    Scenario("Maelstrom's mix, partitions", 3, Latency(10), partitions=True),
    Scenario("Maelstrom's mix, uniform", 3, Latency(10, "uniform")),
    Scenario("Maelstrom's mix, exponential", 3, Latency(10, "exponential")),
    Scenario("Maelstrom's mix, 5 nodes, exponential, partitions", 5, Latency(10, "exponential"), partitions=True),
    *(Scenario(f"cost: Maelstrom's mix, {n} nodes, exponential{', kills' if kills else ''}", n,
               Latency(10, "exponential"), faults=("kill",) if kills else ())
      for n in (3, 5, 9) for kills in (False, True)),
    Scenario("slow: Maelstrom's mix, 3 nodes, 100 ms exponential", 3, Latency(100, "exponential")),
    Scenario("slow: Maelstrom's mix, 5 nodes, 100 ms exponential", 5, Latency(100, "exponential")),
]
# The node's own flags in every run: a fresh node caches nothing for --origin-settle seconds (an update
# its previous process sent may still land). With exponential latency of mean m a message later than s
# has probability exp(-s/m): 1 s at 10 ms leaves exp(-100), 2 s at 100 ms exp(-20), instead of the
# default 10 s, which would leave a short run all start-up.
MAIN_ARGS = {10: ["--origin-settle", "1"], 100: ["--origin-settle", "2"]}


def measure(s: Scenario, cmd: list[str] | None, seconds: float, seed: int, args: list[str]) -> dict[str, Any]:
    own = MAIN_ARGS.get(int(s.latency.mean_ms), []) if cmd is None else []
    w = Workload(nodes=s.nodes, latency=s.latency, time_limit=seconds, rate=s.rate, mix=s.mix, seed=seed,
                 nemesis=SHAPES if s.partitions else (), nemesis_interval=1.0, cmd=cmd,
                 args=["--origin", "lin-kv", *own, *args], faults=s.faults, fault_interval=(1.0, 2.0))
    result = run(w)
    verdict = result.check()
    unknown = sum(1 for e in result.events if e.f != "read" and e.status in ("", "info"))
    return {**result.summary(), "linearizable": verdict.valid, "problems": len(result.problems), "unknown": unknown,
            "explanation": "" if verdict.valid else verdict.explain()[:2000]}


def median(rows: list[dict[str, Any]], field: str) -> float:
    return statistics.median(r[field] for r in rows)


METHOD = """Each row runs real node processes under `tests/support/workload.py`, an emulation of Maelstrom's
lin-kv workload (latency drawn per message and delivered in deadline order, one-way partitions of node
links only, jepsen's generator: concurrency 2n, thread t on node t mod n, values 0–4), then checks each
history with `tests/support/linearizability.py`. `main` is this project's node (leases, `--lease 0.3`);
`passthrough` is `bench/passthrough_node.py`, which forwards every operation to lin-kv. Messages per
operation are counted as Maelstrom's net checker does: messages sent between non-clients (origin: to
or from lin-kv; server: origin plus node to node) over the operations invoked. Latency: every completed
operation, timeouts included (at the 1 s client timeout); write = write and cas. Partitions: the
nemesis cuts and heals (one, minority-third, majority, majorities-ring) at random, on average every
second. Kills (the `cost` rows): every 1–2 s a random node's process is killed and a fresh one started,
which gets `init` again; `main` runs with `--origin-settle 1` at 10 ms, 2 at 100 ms. Unknown: writes and cas whose
outcome the client never learnt. Goals (issue 9): at most 0.6x the pass-through's origin messages on the
read-heavy mix, at most 1.2x its server messages on Maelstrom's mix, every history linearizable."""


def results_section(command: str, lines: list[str]) -> str:
    import run as bench_run

    m = bench_run.machine()
    return (f"## Maelstrom's lin-kv workload (issue 9)\n\nMade by `{command}` "
            f"on {m['nproc']} cores, CPython {m['python']}; project commit {m['commit']}, {m['date']}.\n\n"
            f"{METHOD}\n\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one 3-second run of each")
    parser.add_argument("--only", help="run this node only (main, passthrough or a --node name)")
    parser.add_argument("--node", action="append", default=[], metavar="NAME=MAIN_PY",
                        help="also run this main.py, under NAME")
    parser.add_argument("--scenario", action="append", help="substring of the scenarios to run")
    parser.add_argument("--node-args", default="", help="extra flags for main.py, space-separated")
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md as it is")
    opts = parser.parse_args(argv)
    seconds, seeds = (3.0, 1) if opts.quick else (opts.seconds, opts.seeds)
    scenarios = [s for s in SCENARIOS if not opts.scenario or any(p in s.name for p in opts.scenario)]
    for extra in opts.node:
        name, _, path = extra.partition("=")
        NODES[name] = [sys.executable, path]
    nodes = [opts.only] if opts.only else list(NODES)
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    started = time.monotonic()
    for s in scenarios:
        for node in nodes:
            runs = raw.setdefault(s.name, {}).setdefault(node, [])
            for seed in range(1, seeds + 1):
                runs.append(measure(s, NODES[node], seconds, seed, opts.node_args.split()))
                print(f"{s.name} / {node} / seed {seed}: {runs[-1]}", file=sys.stderr, flush=True)
    header = ["scenario", "node", "ops", "linearizable", "origin msgs/op", "× pass-through", "server msgs/op",
              "× pass-through", "read p50 / p99 ms", "write p50 / p99 ms", "unknown", "kills"]
    rows = []
    for s in scenarios:
        base = raw[s.name].get("passthrough")
        for node, runs in raw[s.name].items():
            origin, servers = median(runs, "origin_per_op"), median(runs, "servers_per_op")
            rows.append([
                s.name, node, f"{sum(r['ops'] for r in runs):,}",
                f"{sum(r['linearizable'] for r in runs)}/{len(runs)}",
                f"{origin:.2f}", f"{origin / median(base, 'origin_per_op'):.2f}x" if base else "-",
                f"{servers:.2f}", f"{servers / median(base, 'servers_per_op'):.2f}x" if base else "-",
                f"{median(runs, 'read_p50_ms'):.1f} / {median(runs, 'read_p99_ms'):.1f}",
                f"{median(runs, 'write_p50_ms'):.1f} / {median(runs, 'write_p99_ms'):.1f}",
                f"{sum(r['unknown'] for r in runs)}", f"{sum(r['kills'] for r in runs)}",
            ])
    lines = [f"{seeds} run(s) of {seconds:g} s per row, 100 ops/s, concurrency 2n, 10 ms mean latency "
             f"(constant unless named); medians over the runs; took {time.monotonic() - started:.0f} s.\n",
             table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2))]
    for s in scenarios:
        for node, runs in raw[s.name].items():
            for r in runs:
                if r["explanation"]:
                    lines.append(f"\n{s.name} / {node}: not linearizable\n```\n{r['explanation']}\n```")
    print("\n".join(lines))
    if not opts.quick and not opts.no_write:
        command = " ".join(["python3 bench/linkv.py", *(sys.argv[1:] if argv is None else argv)])
        splice_section(os.path.join(BENCH, "RESULTS.md"), "linkv", results_section(command, lines))
    if opts.json:
        with open(opts.json, "w") as out:
            json.dump(raw, out, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
