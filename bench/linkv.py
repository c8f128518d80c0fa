#!/usr/bin/env python3
"""The linkv part: Maelstrom's lin-kv workload against the node and against a pass-through node.

Each row runs real node processes under `tests/support/workload.py`, an emulation of Maelstrom's lin-kv
workload (latency drawn per message and delivered in deadline order, one-way partitions of node links only,
jepsen's generator: concurrency 2n, thread t on node t mod n, values 0–4), and checks each history with
`tests/support/linearizability.py`. `main` is this project's node (leases, `--lease 0.3`); `passthrough`
(`tests/support/passthrough_node.py`) forwards every operation to lin-kv. Messages per operation as
Maelstrom's net checker counts them: sent between non-clients (origin: to or from lin-kv; server: origin plus
node to node), over the operations invoked. Latency: every completed operation, timeouts included (at the 1 s
client timeout); write = write and cas. Unknown: updates that ended with an unknown outcome; of them, those
whose node, or whose key's owner, was killed within the client's timeout of the call. Partitions: the nemesis
cuts and heals (one, minority-third, majority, majorities-ring) at random, every second on average. Goals: at
most 0.6x the pass-through's origin messages on the read-heavy mix; on Maelstrom's mix at 3 to 9 nodes, at
most 0.8x its server and 0.3x its origin messages, and no more unknown outcomes than it at 10 and 100 ms;
every history linearizable.

    python3 bench/run.py linkv                           # the table in bench/RESULTS.md (about 2 minutes)
    python3 bench/run.py linkv --seconds 30 --seeds 3 --only main --out /tmp/soak   # a soak of the node alone
    python3 bench/run.py linkv --scenario cost --seconds 30   # the cost rows, kills beside none
    python3 bench/run.py linkv --scenario slow --seeds 3 --only relay --out /tmp/relay   # updates via an owner
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ROOT, log, part_main, section, table

from collapsed_forwarding.keys import cache_key
from collapsed_forwarding.node.forwarding import owner
from tests.support.workload import SHAPES, Latency, RunResult, Workload, run

NODES = {
    "main": None,  # python3 main.py
    "passthrough": [sys.executable, str(ROOT / "tests" / "support" / "passthrough_node.py")],
    # Run only when asked (--only relay): the pass-through with each key's updates sent through one node of
    # the cluster, the two hops that any design routing a key's updates through an owner adds, and nothing else.
    "relay": [sys.executable, str(ROOT / "tests" / "support" / "passthrough_node.py"), "--relay-updates"],
}
DEFAULT_NODES = ("main", "passthrough")


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
    causes = unknown_causes(result, owned=cmd is None)
    return {**result.summary(), "linearizable": verdict.valid, "problems": len(result.problems),
            "unknown": sum(causes.values()), "unknown_causes": causes,
            "explanation": "" if verdict.valid else verdict.explain()[:2000]}


def unknown_causes(result: RunResult, owned: bool) -> dict[str, int]:
    """The updates that ended unknown, by what may have cost each: its node killed within the client's
    timeout of the call, else its key's owner (`owned`: this project's node), else neither (a timeout)."""
    timeout, node_ids = result.workload.latency.client_timeout, result.node_ids
    causes = {"node": 0, "owner": 0, "neither": 0}
    for e in result.events:
        if e.f == "read" or e.status not in ("", "info"):
            continue
        killed = {node for when, fault, node in result.faults if fault == "kill" and 0 <= when - e.call_time <= timeout}
        cause = "node" if e.node in killed else "owner" if owned and owner(cache_key(e.key), node_ids) in killed \
            else "neither"
        causes[cause] += 1
    return causes


def median(rows: list[dict[str, Any]], field: str) -> float:
    return statistics.median(r[field] for r in rows)


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    seconds, seeds = (3.0, 1) if args.quick else (args.seconds, args.seeds)
    scenarios = [s for s in SCENARIOS if not args.scenario or any(p in s.name for p in args.scenario)]
    nodes = [args.only] if args.only else list(DEFAULT_NODES)
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for s in scenarios:
        for node in nodes:
            runs = raw.setdefault(s.name, {}).setdefault(node, [])
            for seed in range(1, seeds + 1):
                runs.append(measure(s, NODES[node], seconds, seed, args.node_args.split()))
                log(f"{s.name} / {node} / seed {seed}: {runs[-1]}")
    return {"seconds_per_run": seconds, "seeds": seeds, "raw": raw}


def killed_share(runs: list[dict[str, Any]], owned: bool) -> str:
    """How many unknown outcomes a kill may have cost: its node's, its key's owner's (- for a node
    without owners, and for runs from before the count was kept)."""
    if any("unknown_causes" not in x for x in runs):
        return "-"
    node, owner_ = (sum(x["unknown_causes"][cause] for x in runs) for cause in ("node", "owner"))
    return f"{node} / {owner_ if owned else '-'}"


def render(r: dict[str, Any], plots: Path) -> str:
    raw = r["raw"]
    header = ["scenario", "node", "ops", "linearizable", "origin msgs/op", "× pass-through", "server msgs/op",
              "× pass-through", "read p50 / p99 ms", "write p50 / p99 ms", "unknown", "of them: node / owner killed",
              "kills"]
    rows, failures = [], []
    for name, by_node in raw.items():
        base = by_node.get("passthrough")
        for node, runs in by_node.items():
            origin, servers = median(runs, "origin_per_op"), median(runs, "servers_per_op")
            rows.append([
                name, node, f"{sum(r['ops'] for r in runs):,}", f"{sum(r['linearizable'] for r in runs)}/{len(runs)}",
                f"{origin:.2f}", f"{origin / median(base, 'origin_per_op'):.2f}x" if base else "-",
                f"{servers:.2f}", f"{servers / median(base, 'servers_per_op'):.2f}x" if base else "-",
                f"{median(runs, 'read_p50_ms'):.1f} / {median(runs, 'read_p99_ms'):.1f}",
                f"{median(runs, 'write_p50_ms'):.1f} / {median(runs, 'write_p99_ms'):.1f}",
                f"{sum(x.get('unknown', 0) for x in runs)}", killed_share(runs, NODES[node] is None),
                f"{sum(x.get('kills', 0) for x in runs)}"])
            failures += [f"{name} / {node}: not linearizable\n```\n{x['explanation']}\n```" for x in runs
                         if x["explanation"]]
    return section(
        "Maelstrom's lin-kv workload", r, "", __doc__,
        f"{r['seeds']} run(s) of {r['seconds_per_run']:g} s per row, 100 ops/s, concurrency 2n, 10 ms mean latency "
        f"(constant unless named); medians over the runs.",
        table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2)), *failures)


def main(argv: list[str] | None = None) -> int:
    return part_main("linkv", __doc__, argv, measure_all, render,
                     ("--seconds", dict(type=float, default=8.0, help="seconds per run (3 with --quick)")),
                     ("--seeds", dict(type=int, default=1, help="runs per scenario and node")),
                     ("--only", dict(choices=list(NODES), help="run this node only")),
                     ("--scenario", dict(action="append", help="substring of the scenarios to run")),
                     ("--node-args", dict(default="", help="extra flags for main.py, space-separated")))


if __name__ == "__main__":
    sys.exit(main())
