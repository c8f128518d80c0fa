"""Replies lost at end of input: `python3 bench/end_of_input.py [--runs 10000] [--jobs 2] [--case get read herd]`.

Each run starts the node (`main.py`), writes a whole input at once and closes
stdin while the fetch it asks for is still in flight; the node must answer every
request read before it exits. A run whose stdout has fewer lines than the input
has requests lost a reply. Prints, per case, how many of the runs lost one.

Cases: `get` and `read`, init then one missing key; `herd`, the README's
examples/herd.jsonl. The sim origin's latency (`--sim-latency`, 0.01 s by
default) puts the fetch's answer just after the end of input.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'
CASES = {
    "get": INIT + b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":2,"key":"k"}}\n',
    "read": INIT + b'{"src":"c1","dest":"n1","body":{"type":"read","msg_id":2,"key":"k"}}\n',
    "herd": (ROOT / "examples" / "herd.jsonl").read_bytes(),
}


def lost_reply(data: bytes, latency: str) -> bool:
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--sim-latency", latency], input=data,
                          capture_output=True, timeout=60)
    lost = done.stdout.count(b"\n") != data.count(b"\n")
    if lost:  # what the run did say, to tell a lost reply from a node that died
        print(f"  lost: exit status {done.returncode}, stdout {done.stdout[-300:]!r}, "
              f"stderr {done.stderr[-300:]!r}", flush=True)
    return lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=2, help="node processes at a time")
    parser.add_argument("--sim-latency", default="0.01")
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args()
    any_lost = False
    for case in args.case:
        started = time.monotonic()
        with ThreadPoolExecutor(args.jobs) as pool:
            lost = sum(pool.map(lost_reply, [CASES[case]] * args.runs, [args.sim_latency] * args.runs))
        any_lost |= bool(lost)
        print(f"{case}: {lost} of {args.runs} runs lost a reply ({time.monotonic() - started:.0f}s)", flush=True)
    return 1 if any_lost else 0


if __name__ == "__main__":
    sys.exit(main())
