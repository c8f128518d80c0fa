"""read, write and cas through the cluster, as Maelstrom's lin-kv workload drives them
(tests/support/workload.py), judged by the linearizability checker (tests/support/linearizability.py).

Each scenario runs real node processes for a couple of seconds. The soak tests run the
same scenarios over more seeds and longer: `SOAK_SECONDS` (default 1) and
`SOAK_SEEDS` (default 1) set how long and how many (`SOAK_SECONDS=30 SOAK_SEEDS=3
python3 -m pytest -m soak tests/cluster/test_linearizable.py`); `python3 bench/run.py linkv
--only main --seconds 60 --out /tmp/soak` runs the benchmark's scenarios as long, and checks each history too.
`LINKV_MAIN=/other/checkout/main.py` runs the scenarios against another version of the node.
`FAULTS` adds process faults (kills and restarts, pauses), alone and mixed with partitions:
3 s each here, `SOAK_SECONDS=30 SOAK_SEEDS=3 python3 -m pytest -m soak -k soak_faults -s` for the
issue's runs (each prints a summary line).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from support.workload import SHAPES, Latency, RunResult, Workload, run

pytestmark = pytest.mark.process  # starts node processes

ROOT = Path(__file__).resolve().parents[2]
PASSTHROUGH = [sys.executable, str(ROOT / "tests" / "support" / "passthrough_node.py")]
BROKEN_CACHE = [*PASSTHROUGH, "--cache-reads"]
SECONDS = 1.5
RATE = 300.0  # ops/s: enough overlap between reads and writes to show a stale copy within seconds
# A fresh node caches nothing for --origin-settle seconds (an update its previous process sent may
# still land): 0.5 s lets short runs reach the leases. At 10 ms exponential latency a message later
# than 0.5 s has probability exp(-50).
SETTLE = 0.5
ARGS = ("--origin", "lin-kv", "--origin-settle", str(SETTLE))

# (nodes, mean ms, distribution, partitions?)
SCENARIOS = [
    (1, 0, "constant", False),
    (1, 10, "exponential", False),
    (3, 0, "constant", False),
    (3, 10, "constant", False),
    (3, 10, "uniform", False),
    (3, 10, "exponential", False),
    (3, 10, "uniform", True),
    (5, 10, "uniform", False),
    (5, 10, "exponential", True),
]


def scenario_id(s: tuple[int, int, str, bool]) -> str:
    nodes, ms, dist, partitions = s
    return f"{nodes}n-{ms}ms-{dist}{'-partitions' if partitions else ''}"


def workload(nodes: int, ms: int, dist: str, partitions: bool, seed: int, seconds: float = SECONDS,
             cmd: list[str] | None = None, faults: Sequence[str] = (),
             fault_interval: tuple[float, float] = (1.0, 2.0)) -> Workload:
    if cmd is None and os.environ.get("LINKV_MAIN"):  # another checkout's node, e.g. to see an old one fail
        cmd = [sys.executable, os.environ["LINKV_MAIN"]]
    return Workload(nodes=nodes, latency=Latency(ms, dist), time_limit=seconds, rate=RATE, seed=seed,
                    nemesis=SHAPES if partitions else (), nemesis_interval=0.3, cmd=cmd,
                    args=ARGS if cmd is None else ("--origin", "lin-kv"), faults=faults,
                    fault_interval=fault_interval)


def assert_linearizable(result: RunResult) -> None:
    verdict = result.check()
    summary = result.summary()
    assert verdict.valid, f"{summary}\n{verdict.explain()}"
    assert not result.problems, result.problems
    assert summary["ops"] > 50 * result.workload.time_limit, summary  # the run did run
    assert all(code == 0 for code in result.exit_codes.values()), result.exit_codes


@pytest.mark.parametrize("scenario", SCENARIOS, ids=scenario_id)
def test_scenario_is_linearizable(scenario: tuple[int, int, str, bool]) -> None:
    nodes, ms, dist, partitions = scenario
    result = run(workload(nodes, ms, dist, partitions, seed=SCENARIOS.index(scenario)))
    assert_linearizable(result)
    if partitions:
        assert result.partitions, "the nemesis never cut the network"


def test_the_passthrough_node_is_linearizable_under_partitions() -> None:
    """The baseline forwards everything: linearizable, two origin messages per operation."""
    result = run(workload(3, 10, "exponential", True, seed=5, cmd=PASSTHROUGH))
    assert_linearizable(result)
    assert result.per_op("origin") == pytest.approx(2.0, abs=0.05)  # only the ops unanswered at the end differ


def test_the_relay_node_sends_each_update_through_its_keys_relay_node() -> None:
    """bench/linkv.py's floor for a design that routes a key's updates through one node: the pass-through's
    origin messages, and two more hops between nodes for each update relayed (reads go straight to lin-kv)."""
    result = run(workload(3, 10, "exponential", False, seed=6, cmd=[*PASSTHROUGH, "--relay-updates"]))
    assert_linearizable(result)
    assert result.per_op("origin") == pytest.approx(2.0, abs=0.05)
    by_type = result.per_op_by_type()
    assert by_type.get("peer relay", 0) > 0 and by_type.get("peer relay", 0) == pytest.approx(
        by_type.get("peer write_ok", 0) + by_type.get("peer cas_ok", 0) + by_type.get("peer error", 0), abs=0.02)


def test_the_workload_catches_a_cache_that_does_not_drop_on_write() -> None:
    """A node that keeps what it read and never hears of another node's write is caught at once."""
    result = run(workload(3, 0, "constant", False, seed=1, seconds=1.5, cmd=BROKEN_CACHE))
    verdict = result.check()
    assert not verdict.valid
    assert "no linearization" in verdict.explain()


# A hostile client sends the trust attacks (test_trust.py's A1-A8) all through the run (workload.Hostile): forged cf_*
# requests and replies forged to the nodes' real pending requests. Histories stay linearizable.
HOSTILE = [(3, 10, "exponential", False), (5, 10, "uniform", True)]


@pytest.mark.parametrize("scenario", HOSTILE, ids=scenario_id)
def test_a_hostile_client_changes_no_history(scenario: tuple[int, int, str, bool]) -> None:
    result = run(dataclasses.replace(workload(*scenario, seed=11 + HOSTILE.index(scenario)), hostile=True))
    assert_linearizable(result)
    kinds = {kind.split()[0] for kind in result.hostile}
    assert {"cf_update", "cf_read", "cf_fetch", "cf_drop", "cf_revoke", "forged", "sprayed"} <= kinds, result.hostile
    assert result.hostile["forged cf_revoke_ok"] + result.hostile["forged cf_read_ok"] > 0, result.hostile
# (nodes, process faults, partitions?): kills restart a node's process, pauses SIGSTOP it up to 2 s.
FAULTS = [
    (3, ("kill",), False),
    (3, ("pause",), False),
    (5, ("kill",), False),
    (3, ("kill", "pause"), True),
    (5, ("kill", "pause"), True),
]


def faults_id(f: tuple[int, tuple[str, ...], bool]) -> str:
    nodes, faults, partitions = f
    return f"{nodes}n-{'+'.join(faults)}{'-partitions' if partitions else ''}"


def run_with_faults(nodes: int, faults: tuple[str, ...], partitions: bool, seed: int, seconds: float,
                    fault_interval: tuple[float, float]) -> RunResult:
    result = run(workload(nodes, 10, "exponential", partitions, seed, seconds, faults=faults,
                          fault_interval=fault_interval))
    assert_linearizable(result)
    assert result.faults, "the nemesis never struck"
    return result


@pytest.mark.parametrize("case", FAULTS, ids=faults_id)
def test_faults_keep_it_linearizable(case: tuple[int, tuple[str, ...], bool]) -> None:
    """A short run: a fault every 0.5-1 s for 3 s (the soak runs them at 1-2 s for longer)."""
    run_with_faults(*case, seed=FAULTS.index(case), seconds=3.0, fault_interval=(0.5, 1.0))


SOAK = [s for s in SCENARIOS if s[0] > 1 and (s[3] or s[2] == "exponential")]


@pytest.mark.soak
@pytest.mark.parametrize("scenario", SOAK, ids=scenario_id)
def test_soak(scenario: tuple[int, int, str, bool]) -> None:
    """The suite runs these for a second each; SOAK_SECONDS=30 SOAK_SEEDS=5 makes them soak."""
    seconds = float(os.environ.get("SOAK_SECONDS", "1"))
    for seed in range(100, 100 + int(os.environ.get("SOAK_SEEDS", "1"))):
        assert_linearizable(run(workload(*scenario, seed=seed, seconds=seconds)))


@pytest.mark.soak
@pytest.mark.parametrize("case", FAULTS, ids=faults_id)
def test_soak_faults(case: tuple[int, tuple[str, ...], bool]) -> None:
    """Kills and pauses every 1-2 s; SOAK_SECONDS=30 SOAK_SEEDS=3 for the issue's runs. Each run's
    summary is printed (pytest -s) for the report."""
    seconds = float(os.environ.get("SOAK_SECONDS", "3"))
    for seed in range(100, 100 + int(os.environ.get("SOAK_SEEDS", "1"))):
        result = run_with_faults(*case, seed=seed, seconds=seconds, fault_interval=(1.0, 2.0))
        summary = result.summary()
        print(f"SOAK {faults_id(case)} seed={seed} seconds={seconds} ops={summary['ops']} kills={summary['kills']} "
              f"pauses={summary['pauses']} partitions={summary['partitions']} linearizable=True "
              f"origin/op={summary['origin_per_op']:.2f} servers/op={summary['servers_per_op']:.2f}")
