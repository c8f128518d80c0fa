#!/usr/bin/env python3
"""The floor for any Python Maelstrom node: a minimal JSON echo loop.

It reads a line, json.loads it, builds the reply a cache hit would get
(get_ok with the value "value-" + key and cache "hit"), json.dumps it compact,
writes it and flushes: no cache, no locks, no threads. The node does all of
this and more.
"""

import argparse
import json
import sys


def compact(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


def main() -> None:
    argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0]).parse_args()
    out = sys.stdout.buffer
    loads, dumps = json.loads, compact
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

    for line in sys.stdin.buffer:
        out.write(answer(line))
        out.flush()


if __name__ == "__main__":
    main()
