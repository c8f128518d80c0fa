#!/usr/bin/env python3
"""Cached-get throughput of the node against the floor of any Python node.

Pipes the same N `get` messages (a few keys, warmed first, so every one is a
hit) through `python3 main.py` and through bench/echo_node.py, a minimal JSON
echo loop (read a line, json.loads, build a get_ok dict, json.dumps, write,
flush). For each run it measures the wall time from the first write of the
batch until the last reply has been read (the driver writes the whole batch
from one thread and reads the replies in batches from another, through 1 MiB
pipes, so that its own wake-ups do not compete with the process measured); it alternates node and echo runs,
each in a fresh process, and prints the rates (msgs/s), their medians and
spread, and the ratio of the node's time to the echo loop's. A third
contestant, the echo loop with --tuned (its JSON encoder built once, one
write and flush per read of input rather than per message), is a stricter
floor.

Goal reported against: the node within 1.5x of the echo loop's time.

Standard library only:  python3 bench/node_throughput.py [--messages 50000] [--runs 5]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
NODE = [sys.executable, os.path.join(ROOT, "main.py")]
ECHO = [sys.executable, os.path.join(BENCH, "echo_node.py")]
ECHO_TUNED = [*ECHO, "--tuned"]
GOAL = 1.5
NAP = 0.001  # seconds the driver sleeps between small reads (see read_lines)

INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'


def get_line(msg_id: int, key: str) -> bytes:
    return json.dumps({"src": "c0", "dest": "n1", "body": {"type": "get", "msg_id": msg_id, "key": key}},
                      separators=(",", ":")).encode() + b"\n"


PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def enlarge_pipes(proc: subprocess.Popen[bytes]) -> None:
    """1 MiB pipes (Linux), so neither side blocks while the driver naps."""
    for stream in (proc.stdin, proc.stdout):
        if stream is None:
            continue
        try:
            fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass


def read_lines(stream: Any, count: int, nap: float = 0.0) -> bytes:
    """Read until `count` newlines have arrived; returns the bytes read.

    With `nap`, the driver sleeps that long after each small read, so it takes
    the replies in batches: woken by every single reply, the driver itself
    would take a good part of this 2-core machine from the process measured.
    The last reply is then seen at most `nap` late."""
    chunks, seen = [], 0
    while seen < count:
        chunk = stream.read1(PIPE_SIZE)
        if not chunk:
            raise RuntimeError(f"the process closed its output after {seen} of {count} lines")
        chunks.append(chunk)
        seen += chunk.count(b"\n")
        if nap and seen < count and len(chunk) < PIPE_SIZE // 32:
            time.sleep(nap)
    return b"".join(chunks)


def run_once(cmd: list[str], messages: int, keys: int) -> float:
    """Seconds from the first write of `messages` gets until the last reply is read."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        enlarge_pipes(proc)
        stdin, stdout = proc.stdin, proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(INIT)
            stdin.flush()
            read_lines(stdout, 1)
            names = [f"k{i}" for i in range(keys)]
            stdin.write(b"".join(get_line(2 + i, k) for i, k in enumerate(names)))  # warm: one miss each
            stdin.flush()
            read_lines(stdout, keys)
            batch = b"".join(get_line(100 + i, names[i % keys]) for i in range(messages))
            started: list[float] = []

            def write() -> None:
                started.append(time.perf_counter())
                stdin.write(batch)
                stdin.flush()

            writer = threading.Thread(target=write)
            writer.start()
            replies = read_lines(stdout, messages, nap=NAP)
            elapsed = time.perf_counter() - started[0]
            writer.join()
            hits = replies.count(b'"cache":"hit"')
            if hits != messages:
                raise RuntimeError(f"{cmd}: {hits} of {messages} replies were hits")
            stdin.close()
            if proc.wait(timeout=30) != 0:
                raise RuntimeError(f"{cmd} exited {proc.returncode}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.returncode:
                err.seek(0)
                sys.stderr.write(err.read().decode(errors="replace")[-2000:])
    return elapsed


def measure(messages: int = 50_000, runs: int = 5, keys: int = 4) -> dict:
    """Node, echo and tuned-echo runs in turn; times in seconds."""
    node: list[float] = []
    echo: list[float] = []
    tuned: list[float] = []
    for _ in range(runs):
        node.append(run_once(NODE, messages, keys))
        echo.append(run_once(ECHO, messages, keys))
        tuned.append(run_once(ECHO_TUNED, messages, keys))
    return {"messages": messages, "runs": runs, "keys": keys, "node_s": node, "echo_s": echo,
            "echo_tuned_s": tuned,
            "ratio": statistics.median(node) / statistics.median(echo),
            "paired_ratios": [n / e for n, e in zip(node, echo, strict=True)],
            "ratio_tuned": statistics.median(node) / statistics.median(tuned),
            "paired_ratios_tuned": [n / e for n, e in zip(node, tuned, strict=True)]}


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def report(result: dict) -> str:
    n = result["messages"]
    lines = [(f"{n:,} cached gets over {result['keys']} keys, {result['runs']} runs each (in turn), "
             f"wall time from first write to last reply read")]
    labels = {"node": "node (main.py)           ", "echo": "echo loop                ",
              "echo_tuned": "echo loop, tuned         "}
    for name, label in labels.items():
        times = result[f"{name}_s"]
        med, lo, hi = spread(times)
        rates = ", ".join(f"{n / t:,.0f}" for t in times)
        lines.append(f"  {label}: median {n / med:,.0f} msgs/s ({med * 1e3:.0f} ms; "
                     f"range {n / hi:,.0f}-{n / lo:,.0f} msgs/s)   runs: {rates}")
    med, lo, hi = spread(result["paired_ratios"])
    verdict = "met" if result["ratio"] <= GOAL else "NOT met"
    lines.append(f"  node/echo time: {result['ratio']:.2f}x (ratio of medians; paired runs {lo:.2f}-{hi:.2f}x) "
                 f"-> goal <= {GOAL}x {verdict}")
    med, lo, hi = spread(result["paired_ratios_tuned"])
    lines.append(f"  node/(tuned echo) time: {result['ratio_tuned']:.2f}x "
                 f"(paired runs {lo:.2f}-{hi:.2f}x)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--json", metavar="PATH", help="also write the raw times as JSON")
    args = parser.parse_args()
    result = measure(args.messages, args.runs, args.keys)
    print(report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
