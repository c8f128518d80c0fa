"""A small Maelstrom-style network for end-to-end tests of main.py.

Maelstrom starts each node as a process, writes JSON lines to its stdin, reads
JSON lines from its stdout and routes every message by its `dest`. This module
does the same, in-process, so a test can see the whole cluster work:

    with Net(args=["--sim-latency", "0.2"]) as net:      # starts n1, sends init
        reply = net.call("n1", {"type": "get", "key": "k"})
        assert reply["cache"] == "miss"

Routing (one reader thread per node, one writer thread per node's stdin):

* to another node id       -> that node's stdin (unless the link is cut)
* to "lin-kv" (or seq-kv, lww-kv) -> `net.kv`, a KV service played here
* to anything else         -> a client: kept by (client, in_reply_to) for `reply()`

Nothing ever blocks on a node's stdin except that node's own writer thread, so a
burst written to one node can never deadlock the routing of another's output.

`net.kv` plays Maelstrom's lin-kv: read (error 20 if the key is missing), write,
cas (20 if missing, 22 if `from` does not match). It counts what it is asked and
can be told to answer late (`latency`), to fail (`fail = "error"`: error `fail_code`, 11, or
`fail = "drop"`: never answer) or to park its replies until `release()` (`hold`).

Every stdout line that does not parse as a message, and every second reply to the
same request, is recorded in `net.problems`; tests assert it stays empty.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MAIN = Path(__file__).resolve().parents[2] / "main.py"
SERVICES = ("lin-kv", "seq-kv", "lww-kv")

Body = dict[str, Any]
Message = dict[str, Any]


def encode(msg: Message) -> bytes:
    """One message as one compact JSON line."""
    # backslashreplace: a lone surrogate ("\ud800", valid JSON) goes as its \u escape, as the node writes it
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def decode(line: bytes) -> Any:
    """Strict JSON: UTF-8, and no NaN or Infinity (Python's json would accept them)."""
    return json.loads(line.decode("utf-8"), parse_constant=_not_json)


class KV:
    """Maelstrom's lin-kv service, with knobs for latency and failure."""

    def __init__(self, deliver: Callable[[Message], None]) -> None:
        self.data: dict[str, Any] = {}  # canonical JSON key -> value
        self.latency = 0.0  # seconds before each reply is delivered (from a timer thread)
        self.fail: str | None = None  # None, "error" (reply error `fail_code`) or "drop" (never reply)
        self.fail_code = 11
        self.hold = False  # park replies (computed now) until release()
        self.request_delay = 0.0  # seconds each request takes to reach the service (from a timer thread)
        self.arrived = 0  # requests handed to the service, whether or not handled yet
        self.requests: list[Body] = []  # every request received, in order
        self.delivered = 0  # replies handed to the network so far
        self._parked: list[Message] = []
        self._timers: list[threading.Timer] = []
        self._changed = threading.Condition()
        self._deliver = deliver
        self._msg_ids = itertools.count()

    # -- the test's view --------------------------------------------------

    def set(self, key: Any, value: Any) -> None:
        """Change a value behind the cache's back, as another client of the service would."""
        with self._changed:
            self.data[canonical(key)] = value

    def count(self, type_: str = "read") -> int:
        with self._changed:
            return sum(1 for body in self.requests if body.get("type") == type_)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() (called under the service's lock) holds, else fail."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError("the KV service never reached the awaited state")

    def wait_count(self, type_: str, n: int, timeout: float = 5.0) -> None:
        self.wait_until(lambda: sum(1 for b in self.requests if b.get("type") == type_) >= n, timeout)

    def release(self) -> None:
        """Deliver every parked reply now (new ones are parked again while `hold` is set)."""
        with self._changed:
            parked, self._parked = self._parked, []
        for msg in parked:
            self._send(msg)

    # -- the service ------------------------------------------------------

    def handle(self, msg: Message) -> None:
        with self._changed:
            self.arrived += 1
            self._changed.notify_all()
            delay = self.request_delay
        if delay > 0:
            timer = threading.Timer(delay, self._handle, (msg,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
            return
        self._handle(msg)

    def _handle(self, msg: Message) -> None:
        body = msg["body"]
        with self._changed:
            self.requests.append(body)
            self._changed.notify_all()
            if self.fail == "drop":
                return
            failing = self._error(self.fail_code, "the service is failing (test)")
            reply = self._answer(body) if self.fail is None else failing
            reply["in_reply_to"] = body.get("msg_id")
            reply["msg_id"] = next(self._msg_ids)
            out = {"src": msg["dest"], "dest": msg["src"], "body": reply}
            if self.hold:
                self._parked.append(out)
                return
            if self.latency > 0:
                timer = threading.Timer(self.latency, self._send, (out,))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
                return
        self._send(out)

    def _answer(self, body: Body) -> Body:
        """The reply under the lock: reads see the data as it is when the request arrives."""
        type_, key = body.get("type"), canonical(body.get("key"))
        if type_ == "read":
            if key not in self.data:
                return self._error(20, "key does not exist")
            return {"type": "read_ok", "value": self.data[key]}
        if type_ == "write":
            self.data[key] = body.get("value")
            return {"type": "write_ok"}
        if type_ == "cas":
            if key not in self.data:
                if not body.get("create_if_not_exists"):
                    return self._error(20, "key does not exist")
            elif canonical(self.data[key]) != canonical(body.get("from")):
                return self._error(22, f"expected {body.get('from')!r}, had {self.data[key]!r}")
            self.data[key] = body.get("to")
            return {"type": "cas_ok"}
        return self._error(10, f"unsupported request type {type_!r}")

    @staticmethod
    def _error(code: int, text: str) -> Body:
        return {"type": "error", "code": code, "text": text}

    def _send(self, msg: Message) -> None:
        self._deliver(msg)
        with self._changed:
            self.delivered += 1
            self._changed.notify_all()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


def feed(proc: subprocess.Popen, inbox: queue.Queue[bytes | None]) -> None:
    """Write what `inbox` holds to the process's stdin, in order, each item whole, until
    None comes; then close stdin (end of input). A node that is gone ends it quietly:
    its exit code tells the test."""
    stdin = proc.stdin
    assert stdin is not None
    try:
        while (data := inbox.get()) is not None:
            stdin.write(data)
            stdin.flush()
    except OSError:
        pass
    finally:
        try:
            stdin.close()
        except OSError:
            pass


class _Process:
    """One node: its process, its stdin queue and writer thread, its reader thread."""

    def __init__(self, node_id: str, cmd: list[str], env: dict[str, str], route: Callable[[str, bytes], None]):
        self.node_id = node_id
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: logs can never fill up and block the node
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.lines: list[bytes] = []  # every stdout line, newline included, in order
        self._route = route
        self.writer = threading.Thread(target=self._write, name=f"{node_id}-stdin", daemon=True)
        self.reader = threading.Thread(target=self._read, name=f"{node_id}-stdout", daemon=True)
        self.writer.start()
        self.reader.start()

    def _write(self) -> None:
        feed(self.proc, self.inbox)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._route(self.node_id, line)

    def stderr_text(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


class Net:
    """N node processes (n1..nN), clients, a lin-kv service and the links between them.

    `args` and `env` (CF_* variables; the test's own CF_* are never inherited) go to
    every node; `cmd` replaces `python3 main.py`; with `init` (the default) each node
    is sent init, listing every node id, from client c0 and must answer init_ok.
    """

    def __init__(self, nodes: int = 1, args: Iterable[str] = (), env: dict[str, str] | None = None,
                 cmd: list[str] | None = None, init: bool = True, timeout: float = 10.0) -> None:
        self.node_ids = [f"n{i}" for i in range(1, nodes + 1)]
        self.kv = KV(self._route_message)
        self.problems: list[str] = []  # unparseable output, duplicate replies
        self.client_messages: list[Message] = []  # everything sent to clients, in arrival order
        self._replies: dict[tuple[Any, Any], Body] = {}
        self._arrived = threading.Condition()
        self._cut: set[frozenset[str]] = set()
        self._msg_ids = itertools.count(1)
        self.exit_codes: dict[str, int] | None = None
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("CF_")}  # no stray configuration
        self._command = [*(cmd or [sys.executable, str(MAIN)]), *args]
        self._env = {**base_env, **(env or {})}
        self.nodes: dict[str, _Process] = {}
        self.killed: list[_Process] = []  # the processes `restart` replaced, for their logs
        try:
            for node_id in self.node_ids:
                self.nodes[node_id] = _Process(node_id, self._command, self._env, self._route_line)
            if init:
                for node_id in self.node_ids:
                    self._init(node_id, timeout)
        except BaseException:
            self.close()
            raise

    def _init(self, node_id: str, timeout: float) -> None:
        reply = self.call(node_id, {"type": "init", "node_id": node_id, "node_ids": self.node_ids},
                          timeout=timeout, client="c0")
        assert reply["type"] == "init_ok", reply

    def restart(self, node_id: str, timeout: float = 10.0) -> None:
        """Kill the node's process (SIGKILL: nothing flushed, nothing said) and start a fresh one with
        the same id, which gets init again. Messages already on their way reach the new process."""
        old = self.nodes[node_id]
        old.proc.kill()
        old.proc.wait()
        old.inbox.put(None)
        self.killed.append(old)
        self.nodes[node_id] = _Process(node_id, self._command, self._env, self._route_line)
        self._init(node_id, timeout)

    def pause(self, node_id: str, seconds: float) -> None:
        """SIGSTOP the node's process for `seconds`, then SIGCONT it (its clocks run on meanwhile)."""
        proc = self.nodes[node_id].proc
        proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)  # the fault itself: the process stays stopped this long
        finally:
            proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- routing ----------------------------------------------------------

    def _route_line(self, node_id: str, line: bytes) -> None:
        try:
            msg = decode(line)
            assert isinstance(msg, dict) and isinstance(msg.get("body"), dict) and "dest" in msg
        except (ValueError, AssertionError):
            self._problem(f"{node_id} wrote a line that is not a message: {line[:300]!r}")
            return
        try:
            self._route_message(msg)
        except Exception as exc:  # keep reading: a routing failure must show up in the test, not hang it
            self._problem(f"routing {line[:200]!r} failed: {exc!r}")

    def _problem(self, text: str) -> None:
        with self._arrived:
            self.problems.append(text)
            self._arrived.notify_all()

    def _route_message(self, msg: Message) -> None:
        src, dest = msg.get("src"), msg["dest"]
        if frozenset((src, dest)) in self._cut:
            return
        if dest in self.nodes:
            self.nodes[dest].inbox.put(encode(msg))
        elif dest in SERVICES:
            self.kv.handle(msg)
        else:  # a client
            key = (dest, canonical(msg["body"].get("in_reply_to")))  # so 1, 1.0 and true stay apart
            with self._arrived:
                self.client_messages.append(msg)
                if key in self._replies:
                    self.problems.append(f"a second reply to {key}: {msg}")  # (the lock is held already)
                else:
                    self._replies[key] = msg["body"]
                self._arrived.notify_all()

    def cut(self, node: str, *others: str) -> None:
        """Drop every message between `node` and `others` (default: every other node and the services).
        Clients are never cut off, so a test can still watch what the node does."""
        for other in others or [*self.node_ids, *SERVICES]:
            if other != node:
                self._cut.add(frozenset((node, other)))

    def heal(self) -> None:
        self._cut.clear()

    # -- clients ----------------------------------------------------------

    def send_raw(self, node: str, data: bytes) -> None:
        """Write bytes to a node's stdin as they are (for malformed input)."""
        self.nodes[node].inbox.put(data)

    def send(self, node: str, body: Body, client: str = "c1") -> int:
        """Send one request from `client`; returns its msg_id."""
        return self.send_many(node, [body], client)[0]

    def send_many(self, node: str, bodies: Iterable[Body], client: str = "c1") -> list[int]:
        """Write a burst of requests in one write; returns their msg_ids, in order."""
        msg_ids, chunk = [], []
        for body in bodies:
            body = {**body, "msg_id": next(self._msg_ids)}
            msg_ids.append(body["msg_id"])
            chunk.append(encode({"src": client, "dest": node, "body": body}))
        self.nodes[node].inbox.put(b"".join(chunk))
        return msg_ids

    def reply(self, msg_id: int, timeout: float = 5.0, client: str = "c1") -> Body:
        return self.replies([msg_id], timeout, client)[0]

    def replies(self, msg_ids: Iterable[int], timeout: float = 5.0, client: str = "c1") -> list[Body]:
        """The replies to these requests, in the same order. Raises TimeoutError if one is missing at the
        deadline, and AssertionError at once if a node writes a line that is not a message meanwhile."""
        deadline = time.monotonic() + timeout
        out = []
        with self._arrived:
            problems = len(self.problems)
            for msg_id in msg_ids:
                key = (client, canonical(msg_id))
                arrived = self._arrived.wait_for(
                    lambda key=key: key in self._replies or len(self.problems) > problems,  # type: ignore[misc]
                    deadline - time.monotonic())
                if len(self.problems) > problems:
                    raise AssertionError(f"while waiting for a reply to {msg_id}: {self.problems[problems:]}")
                if not arrived:
                    raise TimeoutError(f"no reply to {client}'s msg {msg_id} within {timeout}s")
                out.append(self._replies[key])
        return out

    def has_reply(self, msg_id: int, client: str = "c1") -> bool:
        with self._arrived:
            return (client, canonical(msg_id)) in self._replies

    def call(self, node: str, body: Body, timeout: float = 5.0, client: str = "c1") -> Body:
        """Send one request and wait for its reply body."""
        return self.reply(self.send(node, body, client), timeout, client)

    # -- looking at the nodes ---------------------------------------------

    def lines(self, node: str = "n1") -> list[bytes]:
        return list(self.nodes[node].lines)

    def stderr(self, node: str = "n1") -> str:
        return self.nodes[node].stderr_text()

    def pid(self, node: str = "n1") -> int:
        return self.nodes[node].proc.pid

    def poll(self, node: str = "n1") -> int | None:
        """The node's exit code if it has exited, else None."""
        return self.nodes[node].proc.poll()

    def close(self, timeout: float = 15.0) -> dict[str, int]:
        """Close every stdin (after what is queued), wait for the exits; returns {node: exit code}."""
        if self.exit_codes is not None:
            return self.exit_codes
        for node in self.nodes.values():
            node.inbox.put(None)
        codes = {}
        deadline = time.monotonic() + timeout
        for node_id, node in self.nodes.items():
            try:
                codes[node_id] = node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                codes[node_id] = node.proc.wait()
                self.problems.append(f"{node_id} did not exit within {timeout}s of end of input: killed")
            node.reader.join(5)
            node.writer.join(5)
        self.kv.close()
        self.exit_codes = codes
        return codes
