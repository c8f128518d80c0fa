"""The end_of_input part (issue 16): replies lost when the node's input ends with a fetch in flight.

Each run starts the node (`main.py --sim-latency 0.01`), writes a whole input at once and closes
stdin while the fetch it asks for is still in flight: the origin answers just after the end of
input, and the node must answer every request it read before it exits. A run whose stdout has
fewer lines than its input lost a reply. Cases: `get` and `read`, init then one missing key;
`herd`, the README's examples/herd.jsonl. Goal: no run of the 10,000 of each case loses a reply.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import ROOT, log, method, part_main, section, table
from node import INIT

CASES = {
    "get": INIT + b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":2,"key":"k"}}\n',
    "read": INIT + b'{"src":"c1","dest":"n1","body":{"type":"read","msg_id":2,"key":"k"}}\n',
    "herd": (ROOT / "examples" / "herd.jsonl").read_bytes(),
}


def lost_reply(data: bytes, latency: str) -> str:
    """'' if the node answered every line of `data`, else what it did say, to tell a lost reply from a
    node that died."""
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--sim-latency", latency], input=data,
                          capture_output=True, timeout=60)
    if done.stdout.count(b"\n") == data.count(b"\n"):
        return ""
    return f"exit status {done.returncode}, stdout {done.stdout[-300:]!r}, stderr {done.stderr[-300:]!r}"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs = args.runs or (100 if args.quick else 10_000)
    cases: dict[str, Any] = {}
    for case in args.case:
        started = time.monotonic()
        with ThreadPoolExecutor(args.jobs) as pool:
            lost = [x for x in pool.map(lost_reply, [CASES[case]] * runs, [args.sim_latency] * runs) if x]
        cases[case] = {"runs": runs, "lost": len(lost), "seconds": time.monotonic() - started, "examples": lost[:5]}
        log(f"  {case}: {len(lost)} of {runs:,} runs lost a reply")
    return {"sim_latency": args.sim_latency, "jobs": args.jobs, "cases": cases}


def render(r: dict[str, Any], plots: Path) -> str:
    cases = r["cases"]
    rows = [(case, f"{c['runs']:,}", f"{c['lost']:,}", f"{c['seconds']:.0f}", "yes" if not c["lost"] else "**no**")
            for case, c in cases.items()]
    lost = "\n".join(f"- {case}: {example}" for case, c in cases.items() for example in c["examples"])
    return section("End of input with a fetch in flight", r,
                   f"`--sim-latency {r['sim_latency']}`, {r['jobs']} node processes at a time.", method(__doc__),
                   table(["case", "runs", "runs that lost a reply", "seconds", "none lost?"], rows,
                         ["l", "r", "r", "r", "c"]),
                   *([f"What the first runs that lost one said:\n\n{lost}"] if lost else []))


def main(argv: list[str] | None = None) -> int:
    return part_main("end_of_input", __doc__, argv, measure, render,
                     ("--runs", dict(type=int, default=0, help="runs of each case (default 10,000; 100 with --quick)")),
                     ("--jobs", dict(type=int, default=2, help="node processes at a time (default 2)")),
                     ("--sim-latency", dict(default="0.01", help="the sim origin's latency, s (default 0.01)")),
                     ("--case", dict(nargs="+", choices=sorted(CASES), default=list(CASES))))


if __name__ == "__main__":
    sys.exit(main())
