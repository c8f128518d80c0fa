"""A fuzzer for the node: `python3 main.py --origin lin-kv`, fed mutated and odd input.

One *run* is one node process. It is sent a few requests before `init` (some with
a `dest` that is no string), then `init`, then batches. A batch mixes:

* valid requests, one line each (compact or spaced), with odd but well-formed
  fields: deep, huge, lone-surrogate or object keys, numbers no double holds,
  bad ttls, unknown types, cluster messages. Each must get exactly one reply;
* the same pretty-printed over several lines (expected to be answered when it
  follows a valid one-line request, which closes any fragment left open);
* mutations of valid messages, one-line and pretty-printed (bytes flipped,
  spans cut, doubled or replaced, lines cut short or split);
* random bytes, unfinished fragments, blank lines;
* replies that no request asked for, with odd `in_reply_to`s;
* hostile senders: replies forged to the node's real pending RPCs from anyone but
  where each went, and `cf_*` requests from made-up ids (each must be answered).

The node's origin is a fake lin-kv service played here, which answers its RPCs
correctly most of the time and otherwise oddly: wrong types, odd error codes,
values no double holds or nested too deep, duplicate or late replies, odd
`in_reply_to`s, garbage, or nothing at all.

Checked for every run (a failure is a string in `Run.failures`):

* every line the node writes is valid JSON (UTF-8, no NaN/Infinity), an object
  with a string `src`, a `dest` and an object `body` with an integer `msg_id`;
* `msg_id`s count 0, 1, 2, ... with no gap (replies and RPCs alike);
* each request that can be answered gets exactly one reply; a request sent before
  init with a `dest` that is no string gets none;
* after each batch, a probe `get` (for a fresh key) is answered;
* at end of input the node exits 0, and nothing on its stderr is a traceback.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .net import feed

MAIN = Path(__file__).resolve().parents[2] / "main.py"
CLIENTS = ("c1", "c2", "c3")  # the senders of requests that must be answered
MUTANT_CLIENTS = ("m1", "m2")  # the senders of mutated lines, so a mutant never counts as an expected request
FORGED = "forged-reply"  # the value of every forged reply: no client may ever be sent it
INF = "\x00INF\x00"  # stands for 1e400 in a value until the text is made


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def strict_decode(line: bytes) -> Any:
    return json.loads(line.decode("utf-8"), parse_constant=_not_json)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def to_text(value: Any, rng: random.Random, indent: Any = None) -> str:
    """JSON text of `value`, with INF markers written as 1e400 (json.dumps would write Infinity)."""
    separators = (",", ":") if indent is None and rng.random() < 0.7 else None
    try:
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5, indent=indent, separators=separators)
    except UnicodeEncodeError:
        text = json.dumps(value, indent=indent, separators=separators)
    return text.replace(json.dumps(INF), rng.choice(["1e400", "-1e400", "1E+999"]))


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf] if depth % 2 else {"a": leaf}
    return leaf


@dataclass
class Run:
    """What one run sent, saw and found wrong."""

    seed: int
    lines_in: int = 0
    lines_out: int = 0
    expected: int = 0
    hostile: int = 0  # forged replies and cf_* requests from made-up ids sent
    failures: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(text[:3000])


class Node:
    """The node process, its checked output, and the fake lin-kv service behind it."""

    def __init__(self, run: Run, args: list[str], rng: random.Random, odd_rate: float) -> None:
        self.run, self.rng, self.odd_rate = run, random.Random(rng.random()), odd_rate
        self.stderr = tempfile.TemporaryFile()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CF_")}
        self.proc = subprocess.Popen([sys.executable, str(MAIN), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.replies: dict[tuple[str, str], int] = {}  # (client, canonical in_reply_to) -> replies seen
        self.arrived = threading.Condition()
        self.next_msg_id = 0
        self.rpcs: list[tuple[str, Any]] = []  # (dest, msg_id) of the node's latest RPCs: for forged replies
        self.store: dict[str, Any] = {}  # the service's data
        self.timers: list[threading.Timer] = []
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer.start()
        self.reader.start()

    # -- input: one writer thread, so each item goes in whole ----------------

    def send(self, data: bytes) -> None:
        self.run.lines_in += data.count(b"\n")
        self.inbox.put(data)

    def _write(self) -> None:
        feed(self.proc, self.inbox)

    # -- output: every line checked --------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.run.lines_out += 1
            try:
                self._check(line)
            except Exception as exc:  # a bug here must show as a failure, not a silent hang
                self.run.fail(f"checking {line[:200]!r} raised {exc!r}")

    def _check(self, line: bytes) -> None:
        try:
            msg = strict_decode(line)
        except (ValueError, RecursionError) as exc:
            self.run.fail(f"not JSON ({exc}): {line[:200]!r}")
            return
        body = msg.get("body") if isinstance(msg, dict) else None
        if not isinstance(body, dict) or "dest" not in msg:
            self.run.fail(f"not a message: {line[:200]!r}")
            return
        if type(body.get("msg_id")) is not int or body["msg_id"] != self.next_msg_id:
            self.run.fail(f"msg_id {body.get('msg_id')!r} where {self.next_msg_id} was due: {line[:200]!r}")
        if type(body.get("msg_id")) is int:
            self.next_msg_id = body["msg_id"] + 1
        if not isinstance(msg.get("src"), str):
            self.run.fail(f"src is no string: {line[:200]!r}")
        if msg["dest"] in ("lin-kv", "n2") and "in_reply_to" not in body:
            self.rpcs = [*self.rpcs[-31:], (msg["dest"], body.get("msg_id"))]
            (self._serve if msg["dest"] == "lin-kv" else self._peer)(msg["src"], body)
            return
        if body.get("value") == FORGED:
            self.run.fail(f"a forged reply's value was served: {line[:200]!r}")
        key = (canonical(msg["dest"]), canonical(body.get("in_reply_to")))
        with self.arrived:
            self.replies[key] = self.replies.get(key, 0) + 1
            self.arrived.notify_all()

    def count(self, client: Any, msg_id: Any) -> int:
        with self.arrived:
            return self.replies.get((canonical(client), canonical(msg_id)), 0)

    def wait_replies(self, keys: list[tuple[Any, Any]], timeout: float) -> list[tuple[Any, Any]]:
        """The keys still unanswered after waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        wanted = [(canonical(c), canonical(m)) for c, m in keys]
        with self.arrived:
            self.arrived.wait_for(lambda: all(k in self.replies for k in wanted), max(0.0, deadline - time.monotonic()))
            return [key for key, k in zip(keys, wanted, strict=True) if k not in self.replies]

    # -- the fake lin-kv service ------------------------------------------------

    def _serve(self, node: str, body: dict) -> None:
        rng, msg_id = self.rng, body.get("msg_id")
        reply = self._answer(body)
        if str(body.get("key", "")).startswith("probe-") or rng.random() >= self.odd_rate:
            self._reply(node, {**reply, "in_reply_to": msg_id})
            return
        odd = rng.randrange(12)
        if odd == 0:
            return  # never answer: the node's origin timeout must
        if odd == 1:  # answer late, after the node has given up
            timer = threading.Timer(rng.uniform(0.2, 1.0), self._reply, (node, {**reply, "in_reply_to": msg_id}))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
        elif odd == 2:  # twice
            self._reply(node, {**reply, "in_reply_to": msg_id})
            self._reply(node, {**reply, "in_reply_to": msg_id})
        elif odd == 3:  # the wrong type
            self._reply(node, {"type": rng.choice(["read_ok", "write_ok", "cas_ok", "error", "", None, 5]),
                               "in_reply_to": msg_id, **({"value": 1} if rng.random() < 0.5 else {})})
        elif odd == 4:  # an odd error code
            code = rng.choice([0, 10, 11, 12, 13, 20, 22, 30, -1, "20", 1.5, None, True, 10**30])
            self._reply(node, {"type": "error", "in_reply_to": msg_id, "code": code, "text": "odd"})
        elif odd == 5:  # an odd value
            value = rng.choice([INF, nested(rng.choice([127, 129, 300])), 10**rng.randrange(30, 4000), "\ud800",
                                {"\ud800": [None, -0.0]}, "x" * rng.randrange(10_000)])
            self._reply(node, {"type": rng.choice(["read_ok", "cas_ok"]), "in_reply_to": msg_id, "value": value})
        elif odd == 6:  # an odd in_reply_to (and then maybe the real reply)
            other = rng.choice([True, False, None, float(msg_id or 0), str(msg_id), [msg_id], msg_id + 10**6])
            self._reply(node, {**reply, "in_reply_to": other})
            if rng.random() < 0.5:
                self._reply(node, {**reply, "in_reply_to": msg_id})
        elif odd == 7:  # garbage on the line where a reply should be
            self.send(rng.choice([b"\n", b"{\n", b"}\n", b'{"src":"lin-kv"\n', bytes(rng.randrange(256)
                                                                                     for _ in range(40)) + b"\n"]))
        elif odd == 8:  # the reply pretty-printed
            text = to_text({"src": "lin-kv", "dest": node, "body": {**reply, "in_reply_to": msg_id}}, rng, indent=2)
            self.send(text.encode("utf-8", "backslashreplace") + b"\n")
        elif odd == 9:  # a body that is no object, or no body
            self.send(to_text({"src": "lin-kv", "dest": node, "body": rng.choice([[msg_id], "read_ok", None])},
                              rng).encode("utf-8", "backslashreplace") + b"\n")
        else:  # a reply missing a field, or with extra ones
            reply = dict(reply)
            if reply and rng.random() < 0.5:
                reply.pop(rng.choice(list(reply)))
            else:
                reply["extra"] = INF
            self._reply(node, {**reply, "in_reply_to": msg_id})

    def _peer(self, node: str, body: dict) -> None:
        """Play n2, a peer that owns half the keys: it answers cf_fetch and cf_drop, sometimes oddly."""
        rng, msg_id, type_ = self.rng, body.get("msg_id"), body.get("type")
        if type_ == "cf_fetch":
            reply = {"type": "cf_fetch_ok", "value": "from-n2", "ttl_left": rng.choice([0, 0.5, 5])}
        elif type_ == "cf_read":
            reply = {"type": "cf_read_ok", "value": "from-n2", "lease": rng.choice([0, 0.3, 5])}
        else:  # cf_drop, cf_update, cf_revoke, and whatever else a node may ask
            reply = {"type": f"{type_}_ok"}
        if str(body.get("key", "")).startswith("probe-") or rng.random() >= self.odd_rate:
            self._reply(node, {**reply, "in_reply_to": msg_id}, "n2")
            return
        odd = rng.randrange(6)
        if odd == 0:
            return  # a dead peer: the node must act alone after --peer-timeout
        if odd == 1:
            reply["ttl_left" if type_ == "cf_fetch" else "lease"] = rng.choice([INF, 10**400, 10**20, -5, "5", None,
                                                                                 True, 1e300, [1]])
        elif odd == 2:
            reply = {"type": "error", "code": rng.choice([0, 11, 20, 13, 22, "0", None]), "text": "odd",
                     **({"ttl_left": rng.choice([1, INF, -1])} if rng.random() < 0.7 else {})}
        elif odd == 3:
            reply["type"] = rng.choice(["cf_drop_ok", "cf_fetch_ok", "read_ok", None])
        elif odd == 4:
            reply["value"] = rng.choice([INF, nested(200), "\ud800", 10**rng.randrange(20, 4000)])
        else:
            reply.pop("ttl_left", None)
            reply.pop("value", None)
        self._reply(node, {**reply, "in_reply_to": msg_id}, "n2")

    def _answer(self, body: dict) -> dict:
        type_, key = body.get("type"), canonical(body.get("key"))
        if type_ == "read":
            if str(body.get("key", "")).startswith("probe-"):
                return {"type": "read_ok", "value": "probe-value"}
            if key not in self.store:
                return {"type": "error", "code": 20, "text": "key does not exist"}
            return {"type": "read_ok", "value": self.store[key]}
        if type_ == "write":
            self.store[key] = body.get("value")
            return {"type": "write_ok"}
        if type_ == "cas":
            if key not in self.store:
                return {"type": "error", "code": 20, "text": "key does not exist"}
            if canonical(self.store[key]) != canonical(body.get("from")):
                return {"type": "error", "code": 22, "text": "mismatch"}
            self.store[key] = body.get("to")
            return {"type": "cas_ok"}
        return {"type": "error", "code": 10, "text": "unsupported"}

    def _reply(self, node: str, body: dict, src: str = "lin-kv") -> None:
        body = {"msg_id": next(_service_ids), **body}
        self.send(to_text({"src": src, "dest": node, "body": body}, self.rng).encode("utf-8", "backslashreplace")
                  + b"\n")

    # -- the end ------------------------------------------------------------------

    def close(self, timeout: float) -> int | None:
        self.inbox.put(None)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self.reader.join(5)
        for timer in self.timers:
            timer.cancel()
        return code

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


_service_ids = itertools.count()


class Generator:
    """Requests, valid and odd, and the ways to spoil them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.msg_ids = itertools.count(10**8)
        self.keys = ["k", "k2", "\ud800", 1, 1.0, True, None, [1, 2], {"b": 1, "a": [None]}, "é", "x" * 300]

    def key(self) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.8:
            return rng.choice(self.keys)
        return rng.choice([nested(rng.choice([5, 128, 129, 400])), INF, 10**rng.randrange(20, 4000), -0.0,
                           "k" * rng.randrange(1, 50_000), {"\ud800": "\udfff"}, [INF]])

    def value(self) -> Any:
        rng = self.rng
        return rng.choice([1, "v", None, [1, {"a": 2}], self.key(), 10**rng.randrange(1, 400), -1.5e300, "\ud83d"])

    def body(self) -> dict:
        rng = self.rng
        type_ = rng.choice(["get", "get", "get", "read", "read", "write", "cas", "invalidate", "stats", "stats",
                            "cf_fetch", "cf_drop", "cf_read", "cf_update", "cf_revoke", "init", "frobnicate",
                            "get_ok", ""])
        body: dict[str, Any] = {"type": type_, "msg_id": next(self.msg_ids)}
        if type_ == "init":
            body.update(node_id=rng.choice(["n1", "n2", 5, "x" * 5000]), node_ids=rng.choice([["n1"], [], "n1"]))
        elif type_ != "stats" or rng.random() < 0.5:
            if rng.random() < 0.95:
                body["key"] = self.key()
        if type_ == "write" and rng.random() < 0.95:
            body["value"] = self.value()
        if type_ == "cas":
            body.update({"from": self.value(), "to": self.value()})
            if rng.random() < 0.1:
                del body[rng.choice(["from", "to"])]
        if type_ in ("get", "read") and rng.random() < 0.3:
            body["ttl"] = rng.choice([0, 0.001, 5, 1e14, 1e15, -1, "5", True, None, [1], INF, 10**400, 10**20])
        if rng.random() < 0.05:
            body["extra"] = self.value()
        return body

    def request(self, client: str | None = None, dest: Any = "n1") -> tuple[dict, str]:
        client = client or self.rng.choice(CLIENTS)
        return {"src": client, "dest": dest, "body": self.body()}, client

    def line(self, msg: dict, indent: Any = None) -> bytes:
        return to_text(msg, self.rng, indent).encode("utf-8", "backslashreplace") + b"\n"

    def mutant(self) -> bytes:
        """A valid message, one-line or pretty-printed, spoiled 1-3 times."""
        rng = self.rng
        msg, _ = self.request(rng.choice(MUTANT_CLIENTS))
        data = bytearray(self.line(msg, indent=rng.choice([None, None, 2, 4, "\t"])))
        for _ in range(rng.randint(1, 3)):
            if not data:
                break
            i = rng.randrange(len(data))
            j = min(len(data), i + rng.randint(1, 20))
            action = rng.randrange(7)
            if action == 0:
                data[i] = rng.randrange(256)
            elif action == 1:
                del data[i:j]
            elif action == 2:
                data[i:i] = data[i:j]
            elif action == 3:
                data[i:j] = rng.choice([b"\n", b"{", b"}", b"[", b'"', b"1e400", b"null", b"\\ud800", b",", b":"])
            elif action == 4:
                data = data[:i] + b"\n"
            elif action == 5:
                data[i:i] = b"\n"
            else:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        return bytes(data) + (b"" if data.endswith(b"\n") else b"\n")

    def noise(self) -> bytes:
        rng = self.rng
        kind = rng.randrange(5)
        if kind == 0:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(200))) + b"\n"
        if kind == 1:
            return "".join(rng.choice('{}[]":,\n 1tn\\') for _ in range(rng.randrange(60))).encode() + b"\n"
        if kind == 2:  # an unfinished fragment
            msg, _ = self.request(rng.choice(MUTANT_CLIENTS))
            lines = self.line(msg, indent=2).splitlines(keepends=True)
            return b"".join(lines[:rng.randrange(1, len(lines))])
        if kind == 3:
            return rng.choice([b"\n", b"   \n", b"\r\n", b"\n\n\n"])
        reply_to = rng.choice([0, 1, 2, True, None, 1.0, "1", 10**30, -1])  # replies that no request asked for
        return self.line({"src": rng.choice(["lin-kv", "n2", "c1"]), "dest": "n1",
                          "body": {"type": rng.choice(["read_ok", "error", "cf_fetch_ok"]), "in_reply_to": reply_to,
                                   "msg_id": 1, "value": self.value(), "code": 20}})


def run_once(seed: int, batches: int = 4, batch_size: int = 150, odd_rate: float = 0.3) -> Run:
    """One node's life under fuzz; the Run holds its counts and what failed. Odd seeds make
    the node one of two (n1, n2), n2 played here: half the keys are n2's, asked for by cf_fetch."""
    rng = random.Random(seed)
    run = Run(seed)
    node_ids = ["n1", "n2"] if seed % 2 else ["n1"]
    args = ["--origin", "lin-kv", "--origin-timeout", "0.3", "--peer-timeout", "0.2"]
    args += rng.choice([[], ["--max-waiters", "3"], ["--ttl", "0.2", "--grace", "1", "--stale-if-error", "5"],
                        ["--error-ttl", "0.2", "--negative-ttl", "0"], ["--early-refresh", "1", "--jitter", "0.5"],
                        ["--max-entries", "3"]])
    node = Node(run, args, rng, odd_rate)
    gen = Generator(rng)
    try:
        _before_init(node, gen, run, node_ids)
        for batch in range(batches):
            _batch(node, gen, run, batch, batch_size)
        code = node.close(timeout=15)
        if code != 0:
            run.fail(f"exit code {code} at end of input")
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
    stderr = node.stderr_text()
    if "Traceback" in stderr:
        at = stderr.index("Traceback")
        run.fail(f"a traceback on stderr: {stderr[max(0, at - 200):at + 1500]}")
    return run


def _before_init(node: Node, gen: Generator, run: Run, node_ids: list[str]) -> None:
    rng = gen.rng
    answered, unanswered = [], []
    for _ in range(8):
        dest = rng.choice(["n1", "n7", None, 5, {"a": 1}, [], True])
        msg, client = gen.request(dest=dest)
        while msg["body"]["type"] == "init":  # (an init here would make later requests answerable)
            msg, client = gen.request(dest=dest)
        node.send(gen.line(msg))
        (answered if isinstance(dest, str) else unanswered).append((client, msg["body"]["msg_id"]))
    init = {"src": "c0", "dest": "n1", "body": {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": node_ids}}
    node.send(gen.line(init, indent=rng.choice([None, 2])))
    missing = node.wait_replies([*answered, ("c0", 1)], timeout=10)
    if missing:
        run.fail(f"before init: no reply to {missing}")
    for client, msg_id in unanswered:
        if node.count(client, msg_id):
            run.fail(f"before init: a reply to {msg_id}, sent to a dest that is no string")
    run.expected += len(answered) + 1


def _hostile(node: Node, gen: Generator, run: Run) -> list[tuple[str, int]]:
    """A forged reply to one of the node's pending RPCs, from anyone but where it went; or a
    cf_* request from a made-up id. Returns the request to expect a reply to, if one was sent."""
    rng = gen.rng
    run.hostile += 1
    if node.rpcs and rng.random() < 0.6:
        dest, msg_id = rng.choice(node.rpcs)
        src = rng.choice([s for s in ("lin-kv", "n2", "c1", "x9") if s != dest])
        body: dict[str, Any] = rng.choice([
            {"type": "read_ok", "value": FORGED}, {"type": "cf_fetch_ok", "value": FORGED, "ttl_left": 1e9},
            {"type": "cf_read_ok", "value": FORGED, "lease": 1e9},
            {"type": rng.choice(["write_ok", "cas_ok", "cf_update_ok", "cf_revoke_ok"])}])
        node.send(gen.line({"src": src, "dest": "n1", "body": {**body, "in_reply_to": msg_id, "msg_id": 1}}))
        return []
    msg, _ = gen.request(client=f"x{rng.randrange(1000)}")
    msg["body"]["type"] = rng.choice(["cf_fetch", "cf_drop", "cf_read", "cf_update", "cf_revoke", "cf_other"])
    node.send(gen.line(msg))
    return [(msg["src"], msg["body"]["msg_id"])]


def _batch(node: Node, gen: Generator, run: Run, batch: int, size: int) -> None:
    rng = gen.rng
    expected: list[tuple[str, int]] = []
    clean = False  # the last item was a whole one-line request: no fragment is open
    for _ in range(size):
        roll = rng.random()
        if roll < 0.35 or (roll < 0.5 and not clean):
            msg, client = gen.request()
            node.send(gen.line(msg))
            expected.append((client, msg["body"]["msg_id"]))
            clean = True
            continue
        if roll < 0.5:
            msg, client = gen.request()
            node.send(gen.line(msg, indent=rng.choice([1, 2, 4, "\t"])))
            expected.append((client, msg["body"]["msg_id"]))
        elif roll < 0.8:
            node.send(gen.mutant())
        elif roll < 0.87:
            expected.extend(_hostile(node, gen, run))
        else:
            node.send(gen.noise())
        clean = False
    probe = {"src": "c1", "dest": "n1", "body": {"type": "get", "msg_id": next(gen.msg_ids), "key": f"probe-{batch}"}}
    node.send(gen.line(probe))
    expected.append(("c1", probe["body"]["msg_id"]))
    missing = node.wait_replies(expected, timeout=10)
    if ("c1", probe["body"]["msg_id"]) in missing:
        run.fail(f"batch {batch}: the probe get was not answered")
    if missing:
        run.fail(f"batch {batch}: {len(missing)} requests got no reply, e.g. {missing[:3]}")
    doubled = [key for key in expected if node.count(*key) > 1]
    if doubled:
        run.fail(f"batch {batch}: more than one reply to {doubled[:3]}")
    run.expected += len(expected)
