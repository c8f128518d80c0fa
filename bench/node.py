"""The node part: `python3 main.py` driven through its stdin and stdout.

* throughput: N cached gets (a few keys, warmed first: all hits) piped through the node and through
  bench/echo_node.py, the floor of any Python node (read a line, json.loads, build the reply, json.dumps, write,
  flush): wall time from the first write to the last reply read, the two in turn, each in a fresh process.
  Goal: the node within 1.5x the echo loop.
* release: with --sim-latency 1, 10,000 gets of one cold key written at once, at t0. The origin answers 1 s
  after the node reads the first get, so the time from t0 + 1 s to the last reply read bounds the time from
  the origin's answer to the last waiter's reply. Goal: under 100 ms.

`NodeProcess` drives the node (or echo loop) processes of this part, scale.py and costs.py.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from common import BENCH, ROOT, goals_table, med, med_range, part_main, ratios, section, verdict

NODE = [sys.executable, str(ROOT / "main.py")]
ECHO = [sys.executable, str(BENCH / "echo_node.py")]
INIT = b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}\n'
PIPE_SIZE = 1 << 20
NAP = 0.001  # seconds the driver sleeps between small reads (see read_lines)
GOALS = {"release_s": 0.100, "node_ratio": 1.5}


def get_line(msg_id: int, key: str) -> bytes:
    return b'{"src":"c0","dest":"n1","body":{"type":"get","msg_id":%d,"key":%s}}\n' % (msg_id, json.dumps(key).encode())


def gets(start: int, stop: int, msg_base: int = 1_000_000) -> bytes:
    """Gets of the distinct keys key-START..key-STOP."""
    return b"".join(get_line(msg_base + i, f"key-{i:07d}") for i in range(start, stop))


def status(pid: int, field: str) -> int:
    """A field of /proc/PID/status, in its unit (kB for memory)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def whole_lines(stream: Any) -> Iterator[tuple[float, bytes]]:
    """The whole lines read from `stream` until it ends, a chunk at a time, each with the time it was read.
    Chunks, counted and matched in C: a reader that parsed each line would fall behind the node."""
    tail = b""
    for chunk in iter(partial(stream.read1, PIPE_SIZE), b""):
        now, data = time.perf_counter(), tail + chunk
        cut = data.rfind(b"\n") + 1
        lines, tail = data[:cut], data[cut:]
        if lines:
            yield now, lines


class NodeProcess:
    """A node (or echo loop) process with 1 MiB pipes, initialised, its stderr kept aside."""

    def __init__(self, *flags: str, cmd: list[str] = NODE) -> None:
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([*cmd, *flags], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: Any = self.proc.stdin
        self.stdout: Any = self.proc.stdout
        for stream in (self.stdin, self.stdout):  # so neither side blocks while the driver naps (Linux)
            try:
                fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
            except OSError:
                pass
        self.write(INIT)
        self.read_lines(1)

    def write(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def read_lines(self, count: int, nap: float = 0.0,
                   seen_at: Callable[[float, bytes], object] | None = None) -> bytes:
        """Read until `count` lines have come, each chunk shown to `seen_at` with the time it was read.
        With `nap`, sleep that long after each small read, so the replies come in batches: woken by
        every reply, the driver would take a good part of a 2-core machine from the process measured.
        The last reply is then seen at most `nap` late."""
        chunks, seen = [], 0
        while seen < count:
            chunk = self.stdout.read1(PIPE_SIZE)
            if not chunk:
                raise RuntimeError(f"the process closed its output after {seen} of {count} lines")
            if seen_at:
                seen_at(time.perf_counter(), chunk)
            chunks.append(chunk)
            seen += chunk.count(b"\n")
            if nap and seen < count and len(chunk) < PIPE_SIZE // 32:
                time.sleep(nap)
        return b"".join(chunks)

    def timed(self, batch: bytes, count: int) -> tuple[float, bytes]:
        """Seconds from the first write of `batch` (from a thread) to reading its `count` replies."""
        began: list[float] = []

        def write() -> None:
            began.append(time.perf_counter())
            self.write(batch)

        writer = threading.Thread(target=write)
        writer.start()
        replies = self.read_lines(count, nap=NAP)
        elapsed = time.perf_counter() - began[0]
        writer.join()
        return elapsed, replies

    def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        self.write(json.dumps({"src": "c0", "dest": "n1", "body": body}, separators=(",", ":")).encode() + b"\n")
        return json.loads(self.read_lines(1))["body"]  # type: ignore[no-any-return]

    def close(self) -> None:
        """End of input, then the exit; an unclean exit shows the end of the process's stderr."""
        try:
            self.stdin.close()
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.returncode:
                self.err.seek(0)
                sys.stderr.write(self.err.read().decode(errors="replace")[-2000:])
            self.err.close()
        if self.proc.returncode:
            raise RuntimeError(f"{self.proc.args!r} exited {self.proc.returncode}")

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def through(cmd: list[str], batch: bytes, expect: bytes, flags: Sequence[str] = (), warm: bytes = b"") -> float:
    """Seconds from the first write of `batch` to its last reply, in a fresh process (`warm` answered
    first); each reply must hold `expect`."""
    count = batch.count(b"\n")
    with NodeProcess(*flags, cmd=cmd) as node:
        if warm:
            node.write(warm)
            node.read_lines(warm.count(b"\n"))
        elapsed, replies = node.timed(batch, count)
    if replies.count(expect) != count:
        raise RuntimeError(f"{cmd}: {replies.count(expect)} of {count} replies had {expect!r}")
    return elapsed


def cached_gets(cmd: list[str], messages: int, keys: int) -> float:
    """`messages` gets of `keys` keys, each warmed first by one miss: all hits."""
    names = [f"k{i}" for i in range(keys)]
    return through(cmd, b"".join(get_line(100 + i, names[i % keys]) for i in range(messages)), b'"cache":"hit"',
                   warm=b"".join(get_line(2 + i, k) for i, k in enumerate(names)))


def throughput(runs: int, messages: int, keys: int = 4) -> dict[str, Any]:
    pairs = [(cached_gets(NODE, messages, keys), cached_gets(ECHO, messages, keys)) for _ in range(runs)]
    node, echo = [n for n, _ in pairs], [e for _, e in pairs]
    return {"messages": messages, "runs": runs, "keys": keys, "node_s": node, "echo_s": echo,
            "ratio": med(node) / med(echo), "paired_ratios": ratios(node, echo)}


def release_once(waiters: int = 10_000, latency: float = 1.0) -> float:
    """Seconds from the origin's answer (at the latest) to the last waiter's reply read."""
    arrivals: list[float] = []
    with NodeProcess("--sim-latency", str(latency), "--origin-timeout", str(latency + 10)) as node:
        batch = b"".join(get_line(10 + i, "cold") for i in range(waiters))  # built as the node settles after init
        t0 = time.perf_counter()
        node.write(batch)
        data = node.read_lines(waiters, seen_at=lambda now, chunk: arrivals.append(now))
    misses, collapsed = data.count(b'"cache":"miss"'), data.count(b'"cache":"collapsed"')
    if misses != 1 or collapsed != waiters - 1:
        raise RuntimeError(f"expected 1 miss and {waiters - 1} collapsed, got {misses} and {collapsed}")
    return arrivals[-1] - (t0 + latency)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs = 2 if args.quick else 5
    return {"throughput": throughput(runs, 20_000 if args.quick else 50_000),
            "release": {"waiters": 10_000, "latency": 1.0,
                        "runs": [{"release_s": release_once()} for _ in range(runs)]}}


def goals(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rel, t = [run["release_s"] for run in r["release"]["runs"]], r["throughput"]
    return [(f"{r['release']['waiters']:,} waiters released in under {GOALS['release_s'] * 1e3:g} ms",
             f"{med_range(rel, 0, 1e3)} ms from the origin's answer to the last reply",
             verdict(rel, GOALS["release_s"], below=True)),
            (f"node within {GOALS['node_ratio']:g}x the echo loop's time",
             f"{t['ratio']:.2f}x (paired runs {min(t['paired_ratios']):.2f}–{max(t['paired_ratios']):.2f}x)",
             "**no**" if t["ratio"] > GOALS["node_ratio"] else verdict(t["paired_ratios"], GOALS["node_ratio"]))]


def render(r: dict[str, Any], plots: Path) -> str:
    t = r["throughput"]

    def rate(times: list[float]) -> str:
        return med_range([t["messages"] / s for s in times])

    return section("The node through its pipes", r, "", __doc__, goals_table(goals(r)),
                   f"Cached gets a second, {t['messages']:,} a run: the node {rate(t['node_s'])}, the echo loop "
                   f"{rate(t['echo_s'])}.")


def main(argv: list[str] | None = None) -> int:
    return part_main("node", __doc__, argv, measure, render)


if __name__ == "__main__":
    sys.exit(main())
