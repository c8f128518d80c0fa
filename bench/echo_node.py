#!/usr/bin/env python3
"""The floor for any Python Maelstrom node: a minimal JSON echo loop.

It reads a line, json.loads it, builds the reply a cache hit would get
(get_ok with the value "value-" + key and cache "hit"), json.dumps it compact,
writes it and flushes: no cache, no locks, no threads. The node does all of
this and more.

With --tuned it does the same work as a tuned node would: its JSON encoder
is built once (json.dumps with separators= builds a new one on every call),
and it answers every line that one read of stdin brings, then writes and
flushes all those replies at once (one write system call per read instead
of one per message): a stricter floor.
"""

import argparse
import json
import sys
from collections.abc import Callable


def compact(obj: dict) -> str:
    """What the plain loop writes: json.dumps compact, which builds an encoder on every call."""
    return json.dumps(obj, separators=(",", ":"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tuned", action="store_true", help="encoder built once, one write per read: stricter")
    tuned = parser.parse_args().tuned
    out = sys.stdout.buffer
    loads = json.loads
    dumps: Callable[[dict], str] = json.JSONEncoder(separators=(",", ":")).encode if tuned else compact
    node_id = None
    msg_id = 0

    def answer(line: bytes) -> bytes:
        nonlocal node_id, msg_id
        msg = loads(line)
        body = msg["body"]
        if body["type"] == "init":
            node_id = body["node_id"]
            reply = {"type": "init_ok", "in_reply_to": body["msg_id"], "msg_id": msg_id}
        else:
            reply = {"type": "get_ok", "in_reply_to": body["msg_id"], "msg_id": msg_id,
                     "value": "value-" + body["key"], "cache": "hit"}
        msg_id += 1
        return dumps({"src": node_id, "dest": msg["src"], "body": reply}).encode() + b"\n"

    if not tuned:
        for line in sys.stdin.buffer:
            out.write(answer(line))
            out.flush()
        return
    read = sys.stdin.buffer.read1  # type: ignore[union-attr]
    pending = b""
    while chunk := read(1 << 16):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        out.write(b"".join(answer(line) for line in lines if line))
        out.flush()
    if pending.strip():
        out.write(answer(pending))
        out.flush()


if __name__ == "__main__":
    main()
