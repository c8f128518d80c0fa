"""The node part: `python3 main.py` driven through its stdin/stdout pipes.

* throughput: cached gets against the echo floor (node_throughput.py).
* release: with --sim-latency L (1 s), 10,000 gets of one cold key are
  written at once. One origin fetch starts when the node reads the first of
  them; the other 9,999 wait on it. The origin answers L seconds after the
  node read that first get, which happened at or after the driver wrote it
  (t0). The release time is measured from t0 + L to the moment the driver has
  read the last of the 10,000 replies: an upper bound of the time from the
  origin's answer to the last waiter's reply (it also counts the time the
  first get took to reach the node, and the driver's read). The spread from
  the first reply read to the last is given too. A `stats` for the key sent
  after the 10,000 gets is answered while they wait: it confirms that all
  10,000 are waiting (`waiting`), and at that moment the driver reads the
  node's thread count from /proc/<pid>/status.
* memory: VmRSS from /proc/<pid>/status after init and one get, and again
  after 100,000 gets of distinct keys (--sim-latency 0) have been answered
  and the fetches' cancelled deadline timers have run out (origin timeout +
  0.5 s). Two fills: paced (1,000 gets written, their replies read, then the
  next 1,000), which is the entries' own cost, and burst (all 100,000
  written at once), where the node reads requests faster than it answers
  them, so many fetches are in flight together and the high-water mark
  stays in the RSS. The same measure for a plain dict holding the same keys
  and values with an expiry float is given as a floor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import node_throughput as nt

MAIN = os.path.join(nt.ROOT, "main.py")


def proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Driven:
    """A node process with enlarged pipes, its stderr kept in a temporary file."""

    def __init__(self, *flags: str) -> None:
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, MAIN, *flags], cwd=nt.ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err)
        nt.enlarge_pipes(self.proc)
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        self.stdin: Any = stdin
        self.stdout: Any = stdout
        self.write(nt.INIT)
        nt.read_lines(self.stdout, 1)

    def write(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def ask(self, body: dict) -> dict:
        self.write(json.dumps({"src": "c0", "dest": "n1", "body": body}, separators=(",", ":")).encode() + b"\n")
        return json.loads(nt.read_lines(self.stdout, 1))["body"]

    def status(self, field: str) -> int:
        return proc_status(self.proc.pid, field)

    def close(self) -> None:
        try:
            self.stdin.close()
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.returncode:
                self.err.seek(0)
                sys.stderr.write(self.err.read().decode(errors="replace")[-2000:])
            self.err.close()


# -- release of 10,000 waiters --------------------------------------------------

def release_once(waiters: int = 10_000, latency: float = 1.0) -> dict[str, Any]:
    node = Driven("--sim-latency", str(latency), "--origin-timeout", str(latency + 10))
    try:
        threads_idle = node.status("Threads")
        batch = b"".join(nt.get_line(10 + i, "cold") for i in range(waiters))
        stats_line = json.dumps({"src": "c0", "dest": "n1", "body": {"type": "stats", "msg_id": 5, "key": "cold"}},
                                separators=(",", ":")).encode() + b"\n"
        chunks: list[tuple[float, bytes]] = []
        stats_seen = threading.Event()
        probe: dict[str, Any] = {}

        def read() -> None:
            seen = 0
            while seen < waiters + 1:
                chunk = node.stdout.read1(nt.PIPE_SIZE)
                now = time.perf_counter()
                if not chunk:
                    break
                chunks.append((now, chunk))
                seen += chunk.count(b"\n")
                if not stats_seen.is_set() and b'"stats_ok"' in chunk:
                    probe["threads"] = node.status("Threads")
                    probe["at"] = now
                    stats_seen.set()

        reader = threading.Thread(target=read)
        reader.start()
        t0 = time.perf_counter()
        node.write(batch + stats_line)
        written = time.perf_counter()
        reader.join(timeout=latency + 60)
        if reader.is_alive():
            raise RuntimeError("the node did not answer every get")
    finally:
        node.close()
    data = b"".join(c for _, c in chunks)
    lines = data.splitlines()
    stats = next(json.loads(line)["body"] for line in lines if b'"stats_ok"' in line)
    misses, collapsed = data.count(b'"cache":"miss"'), data.count(b'"cache":"collapsed"')
    if misses != 1 or collapsed != waiters - 1:
        raise RuntimeError(f"expected 1 miss and {waiters - 1} collapsed, got {misses} and {collapsed}")
    # the arrival time of each get_ok: that of the chunk it came in
    first: float | None = None
    last = 0.0
    for when, chunk in chunks:
        if b'"get_ok"' in chunk:
            first = when if first is None else first
            last = when
    answer = t0 + latency
    assert first is not None
    return {"release_s": last - answer, "spread_s": last - first, "first_after_answer_s": first - answer,
            "write_s": written - t0, "stats_reply_s": probe["at"] - t0, "waiting": stats["waiting"],
            "threads_waiting": probe["threads"], "threads_idle": threads_idle}


def release(reps: int = 5, waiters: int = 10_000, latency: float = 1.0,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    runs = [release_once(waiters, latency) for _ in range(reps)]
    log(f"  release of {waiters:,} waiters: {reps} runs")
    return {"waiters": waiters, "latency": latency, "runs": runs}


# -- memory per 100,000 entries -------------------------------------------------

DICT_FLOOR = r"""
import sys, time
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
n = int(sys.argv[1])
before = rss()
d = {}
now = time.monotonic()
for i in range(n):
    key = "key-%07d" % i
    d[key] = ("value-" + key, now + 60.0)
print(rss() - before)
"""


def memory_once(entries: int = 100_000, paced: int = 0, timeout: float = 1.0) -> dict[str, Any]:
    """RSS growth for `entries` distinct keys: written all at once (paced=0), or
    `paced` at a time, each batch answered before the next is written."""
    node = Driven("--sim-latency", "0", "--origin-timeout", str(timeout), "--max-entries", str(entries * 2))
    try:
        node.ask({"type": "get", "msg_id": 2, "key": "warm"})
        time.sleep(timeout + 0.5)
        before = node.status("VmRSS")
        step = paced or entries
        errors = 0
        started = time.perf_counter()
        for start in range(0, entries, step):
            count = min(step, entries - start)
            batch = b"".join(nt.get_line(10 + i, f"key-{i:07d}") for i in range(start, start + count))
            writer = threading.Thread(target=node.write, args=(batch,))
            writer.start()
            replies = nt.read_lines(node.stdout, count, nap=nt.NAP)
            writer.join()
            errors += count - replies.count(b'"get_ok"')
        fill_s = time.perf_counter() - started
        time.sleep(timeout + 0.5)  # the fetches' cancelled deadline timers leave the heap
        after = node.status("VmRSS")
        peak = node.status("VmHWM")
        stats = node.ask({"type": "stats", "msg_id": 3})
    finally:
        node.close()
    if stats["entries"] + errors != entries + 1:
        raise RuntimeError(f"expected {entries + 1 - errors} entries, the node has {stats['entries']}")
    return {"paced": paced, "rss_before_kb": before, "rss_after_kb": after, "hwm_kb": peak,
            "delta_kb": after - before, "fill_s": fill_s, "errors": errors, "entries": stats["entries"] - 1}


def dict_floor_kb(entries: int) -> int:
    return int(subprocess.run([sys.executable, "-c", DICT_FLOOR, str(entries)], capture_output=True, text=True,
                              check=True).stdout)


def memory(reps: int = 3, burst_reps: int = 1, entries: int = 100_000, paced: int = 1000,
           log: Callable[[str], None] = print) -> dict:
    runs: dict[str, list] = {"paced": [], "burst": [], "dict_floor_kb": []}
    for i in range(max(reps, burst_reps)):
        if i < reps:
            runs["paced"].append(memory_once(entries, paced))
            runs["dict_floor_kb"].append(dict_floor_kb(entries))
        if i < burst_reps:
            runs["burst"].append(memory_once(entries, 0))
    log(f"  memory for {entries:,} entries: {reps} paced fills, {burst_reps} burst fills")
    return {"entries": entries, "paced_batch": paced, **runs}


def throughput(runs: int = 5, messages: int = 50_000, log: Callable[[str], None] = print) -> dict[str, Any]:
    result = nt.measure(messages, runs)
    log(f"  throughput: {runs} runs of {messages:,} cached gets each, node and echo")
    return result


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    out = {"release": release(reps=2 if quick else 5), "memory": memory(reps=1 if quick else 3)}
    json.dump(out, sys.stdout, indent=1)
