"""A flood of misses over distinct keys: `python3 bench/flood.py [--gets 1000000] [-- node flags...]`.

Writes init and then `--gets` gets for distinct keys to one node as fast as it
reads them, and reads every reply. Prints the node's peak RSS (VmHWM), how many
replies were values, error 11 (over --max-pending) and error 0 (the origin
timed out), and for error 0 how late it came: the time from the get's write to
its reply, less the --origin-timeout given (a get is read as soon as it is
written, bar the pipe's 64 KiB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=1_000_000)
    parser.add_argument("--origin-timeout", type=float, default=1.0)
    parser.add_argument("flags", nargs="*", help="more node flags (after --)")
    args = parser.parse_args()
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--origin-timeout", str(args.origin_timeout),
                             *args.flags], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    written = [0.0] * (args.gets + 2)
    counts: Counter[str] = Counter()
    late: list[float] = []
    peak = [0.0]

    def write() -> None:
        assert proc.stdin is not None
        proc.stdin.write(b'{"src":"c0","dest":"n1","body":{"type":"init","msg_id":0,"node_id":"n1",'
                         b'"node_ids":["n1"]}}\n')
        batch = 1000
        for start in range(1, args.gets + 1, batch):
            ids = range(start, min(start + batch, args.gets + 1))
            data = b"".join(b'{"src":"c1","dest":"n1","body":{"type":"get","msg_id":%d,"key":"k%d"}}\n' % (i, i)
                            for i in ids)
            proc.stdin.write(data)
            proc.stdin.flush()
            now = time.monotonic()
            for i in ids:
                written[i] = now
            peak[0] = max(peak[0], peak_rss_mb(proc.pid))
        proc.stdin.close()

    writer = threading.Thread(target=write)
    started = time.monotonic()
    writer.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        body = json.loads(line)["body"]
        if body["in_reply_to"] == 0:
            continue
        if body["type"] == "get_ok":
            counts["value"] += 1
        else:
            counts[f"error {body['code']}"] += 1
            if body["code"] == 0:
                late.append(time.monotonic() - written[body["in_reply_to"]] - args.origin_timeout)
    writer.join()
    peak[0] = max(peak[0], peak_rss_mb(proc.pid))
    proc.wait()
    late.sort()
    worst = f"{late[-1]:.3f}s, median {late[len(late) // 2]:.3f}s" if late else "-"
    print(f"{args.gets} gets in {time.monotonic() - started:.1f}s: peak RSS {peak[0]:.0f} MB; {dict(counts)}; "
          f"error 0 late by at most {worst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
