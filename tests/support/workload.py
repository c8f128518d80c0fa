"""Maelstrom's lin-kv workload, emulated around real node processes, and its history.

What follows Maelstrom (jepsen-io/maelstrom at cb7f072) and jepsen (c4c7473d):

* Network (maelstrom/net.clj). Every message between two non-clients (node to
  node, node to lin-kv and back) gets a latency drawn from the test's
  distribution, in whole milliseconds: `constant` (the mean), `uniform`
  (incanter's integer-distribution 0..2*mean, an integer in [0, 2*mean)), or
  `exponential` (rate 1/mean, truncated to a long). A message that involves a
  client has latency 0. Each receiver has one priority queue ordered by
  deadline, and one thread that takes the head, sleeps until its deadline and
  delivers it: so messages reorder whenever their latencies differ.
* Partitions (jepsen.nemesis.combined/partition-package, maelstrom's
  jepsen-net): a grudge maps a receiver to the senders it drops; it is checked
  when a message is taken off the queue, so it also drops messages already in
  flight. Only nodes are in a grudge: links to clients and to lin-kv are never
  cut. Shapes: `one` (one node isolated), `minority-third` (up to but not
  including a third of the nodes split off: nothing at 3 nodes), `majority`
  (a clean split, the smaller half first), `majorities-ring` (each node sees a
  majority, and no two the same one: one-way cuts, as jepsen's
  majorities-ring-perfect). The nemesis alternates start (a random shape) and
  stop, each after a wait uniform in [0, 2*interval) (gen/stagger).
* Process faults (not in Maelstrom; jepsen's kill and pause nemeses): every
  `fault_interval` seconds a random node is killed (SIGKILL; a fresh process
  starts, gets `init` again and rejoins; what was on its way to the dead process
  is lost with it) or paused (SIGSTOP for up to `max_pause` seconds, then
  SIGCONT), one fault at a time, alongside any partitions.
* lin-kv (maelstrom/service.clj): one store, one thread taking messages in
  deadline order and answering each at once (so it is linearizable); read of a
  missing key is error 20, cas 20 or 22. Played by net.KV.
* Clients (maelstrom/workload/lin_kv.clj, client.clj, jepsen's interpreter):
  concurrency 2n by default; client thread t always talks to node t mod n and
  waits for one reply at a time, for max(10 x mean latency, 1 s). Errors:
  codes 1, 10, 11, 12, 14, 20, 21, 22, 30 are definite (`fail`); anything else
  and a timeout is `fail` for a read (idempotent) and `info` for write and cas.
  After an `info` the thread's process becomes process + concurrency.
* Generator (jepsen.tests.linearizable-register, jepsen.independent): threads
  in groups of 2n; each group works on one key at a time, keys 0, 1, 2, ...; in
  a group the first n threads read, the other n write or cas (gen/mix of w,
  cas, cas); values 0-4. A key's generator is process-limited to 20 distinct
  processes (Maelstrom passes no per-key-limit), then the group takes the next
  key. Operations come at a global rate, each after a wait uniform in
  [0, 2/rate) (gen/stagger), to a free thread.

A hostile client (`hostile=True`, not Maelstrom's: its clients never send these)
sends, all through the run, the attacks of docs/protocol.md's Trust section: cf_* requests from
clients and made-up ids, cf_read/cf_update from a node to a node that does not
own the key, and replies forged to the nodes' real pending requests (the net
sees every request a node sends) from anyone but where each request went, and
replies sprayed at guessed msg_ids. None of it may change a history.

Also a read-heavy mix for benchmarks (`mix="read-heavy"`): any thread, a key
among `keys`, reads with probability `read_fraction`, else write or cas as above.

Counts, as Maelstrom's net checker does (messages sent, by unique id, over the
invoked operations): `origin` (to or from lin-kv), `peer` (node to node),
`servers` (both), `client`.

    result = run(Workload(nodes=3, latency=Latency(10, "uniform"), time_limit=5, seed=1))
    assert result.check().valid
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collapsed_forwarding.keys import cache_key
from collapsed_forwarding.node.forwarding import owner

from .linearizability import CAS, FAIL, INFO, OK, READ, WRITE, Op, Result, check
from .net import SERVICES, Message, Net, encode

DEFINITE = {1, 10, 11, 12, 14, 20, 21, 22, 30}  # maelstrom resources/errors.edn
SHAPES = ("one", "minority-third", "majority", "majorities-ring")
Grudge = dict[str, set[str]]  # receiver -> the senders it drops


def is_client(node_id: Any) -> bool:
    return isinstance(node_id, str) and node_id.startswith("c")


@dataclass(frozen=True)
class Latency:
    """Maelstrom's --latency (mean, ms) and --latency-dist."""

    mean_ms: float = 0.0
    dist: str = "constant"

    def draw(self, rng: random.Random) -> float:
        """One message's latency in seconds."""
        if self.mean_ms <= 0:
            return 0.0
        if self.dist == "constant":
            ms = float(int(self.mean_ms))
        elif self.dist == "uniform":
            ms = float(rng.randrange(0, int(2 * self.mean_ms)))
        elif self.dist == "exponential":
            ms = float(int(rng.expovariate(1.0 / self.mean_ms)))
        else:
            raise ValueError(f"unknown latency distribution {self.dist!r}")
        return ms / 1000.0

    @property
    def client_timeout(self) -> float:
        """lin_kv.clj: (max (* 10 (:mean (:latency test))) 1000) ms."""
        return max(10 * self.mean_ms, 1000) / 1000.0


# -- partitions (jepsen.nemesis, jepsen.nemesis.combined) -----------------------------------


def complete_grudge(components: Sequence[Sequence[str]]) -> Grudge:
    universe = {n for c in components for n in c}
    return {n: universe - set(c) for c in components for n in c}


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """jepsen's majorities-ring-perfect (exact for up to 5 nodes): the middle node of each
    ring window of a majority drops everything from outside its window."""
    ring = list(nodes)
    rng.shuffle(ring)
    n, m = len(ring), len(ring) // 2 + 1
    grudge: Grudge = {}
    for i in range(n):
        window = [ring[(i + j) % n] for j in range(m)]
        grudge[window[m // 2]] = set(ring) - set(window)
    return grudge


def grudge_for(shape: str, nodes: Sequence[str], rng: random.Random) -> Grudge:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    if shape == "one":
        loner = rng.choice(list(nodes))
        return complete_grudge([[loner], [n for n in nodes if n != loner]])
    if shape == "majority":
        half = len(shuffled) // 2
        return complete_grudge([shuffled[:half], shuffled[half:]])
    if shape == "minority-third":
        third = (len(shuffled) - 1) // 3
        return complete_grudge([shuffled[:third], shuffled[third:]])
    if shape == "majorities-ring":
        return majorities_ring(nodes, rng)
    raise ValueError(f"unknown partition shape {shape!r}")


# -- the network ---------------------------------------------------------------------------


class _Inbox:
    """One receiver's queue, ordered by deadline, emptied by one thread (net.clj's recv!)."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Message]] = []
        self.ready = threading.Condition()
        self.closed = False


class LatencyNet(Net):
    """maelstrom_net.Net with Maelstrom's latency, reordering and one-way partitions between
    non-clients, and message counts. Clients' messages go straight through, as in Maelstrom."""

    def __init__(self, nodes: int = 1, latency: Latency = Latency(), seed: int = 0, **kw: Any) -> None:
        self.latency = latency
        self.rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.grudge: Grudge = {}
        self.counts: Counter[str] = Counter()
        # The same messages by kind and type ("peer cf_read", "origin read_ok"): where an op's messages go
        self.counts_by_type: Counter[str] = Counter()
        # (src, dest, type, msg_id) of the latest requests nodes sent: a hostile client forges replies to them
        self.node_requests: deque[tuple[str, str, str, int]] = deque(maxlen=256)
        self._seq = itertools.count()
        self._born: dict[str, int] = {}  # node -> the first message sequence number its current process gets
        self._inboxes: dict[str, _Inbox] = {}
        self._threads: list[threading.Thread] = []
        for dest in [*(f"n{i}" for i in range(1, nodes + 1)), *SERVICES]:
            inbox = self._inboxes[dest] = _Inbox()
            thread = threading.Thread(target=self._deliver_loop, args=(dest, inbox), name=f"net-{dest}", daemon=True)
            self._threads.append(thread)
            thread.start()
        try:
            super().__init__(nodes=nodes, **kw)
        except BaseException:
            self._stop_delivery()
            raise

    def _route_message(self, msg: Message) -> None:
        src, dest = msg.get("src"), msg["dest"]
        body = msg["body"]
        self._count(src, dest, body.get("type"))
        if src in self._inboxes and "in_reply_to" not in body and type(body.get("msg_id")) is int:
            self.node_requests.append((src, dest, str(body.get("type")), body["msg_id"]))
        if is_client(src) or is_client(dest) or dest not in self._inboxes:
            super()._route_message(msg)
            return
        with self._rng_lock:
            delay = self.latency.draw(self.rng)
        inbox = self._inboxes[dest]
        with inbox.ready:
            heapq.heappush(inbox.heap, (time.monotonic() + delay, next(self._seq), msg))
            inbox.ready.notify()

    def _count(self, src: Any, dest: Any, type_: Any = None) -> None:
        if is_client(src) or is_client(dest):
            kind = "client"
        elif src in SERVICES or dest in SERVICES:
            kind = "origin"
        else:
            kind = "peer"
        with self._rng_lock:
            self.counts[kind] += 1
            self.counts_by_type[f"{kind} {type_}"] += 1

    def _deliver_loop(self, dest: str, inbox: _Inbox) -> None:
        while True:
            with inbox.ready:
                while not inbox.heap and not inbox.closed:
                    inbox.ready.wait()
                if inbox.closed:
                    return
                deadline, seq, msg = heapq.heappop(inbox.heap)
            pause = deadline - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # as net.clj's recv!: the head is held until due, whatever comes meanwhile
            src = msg.get("src")
            dead = seq < self._born.get(dest, 0)  # sent to a process since killed: lost with it
            if dead or src in self.grudge.get(dest, ()) or frozenset((src, dest)) in self._cut:
                with self._rng_lock:
                    self.counts["dropped"] += 1
                continue
            try:
                if dest in SERVICES:
                    self.kv.handle(msg)
                else:
                    self.nodes[dest].inbox.put(encode(msg))
            except Exception as exc:  # keep delivering: the failure shows up in net.problems
                self._problem(f"delivering {msg} failed: {exc!r}")

    def restart(self, node_id: str, timeout: float = 10.0) -> None:
        """As Net.restart; what was on its way to the killed process is lost with it, as on a
        connection that died with it (a reply to the old process never reaches the new one)."""
        self._born[node_id] = next(self._seq)
        super().restart(node_id, timeout)

    def partition(self, grudge: Grudge) -> None:
        self.grudge = {dest: set(srcs) for dest, srcs in grudge.items() if srcs}

    def heal_partition(self) -> None:
        self.grudge = {}

    def _stop_delivery(self) -> None:
        for inbox in self._inboxes.values():
            with inbox.ready:
                inbox.closed = True
                inbox.ready.notify_all()

    def close(self, timeout: float = 15.0) -> dict[str, int]:
        try:
            return super().close(timeout)
        finally:
            self._stop_delivery()


# -- the workload --------------------------------------------------------------------------


@dataclass
class Workload:
    nodes: int = 3
    latency: Latency = field(default_factory=Latency)
    time_limit: float = 3.0  # seconds of operations
    rate: float = 100.0  # operations per second, over all threads
    concurrency: int | None = None  # default 2n
    mix: str = "maelstrom"  # or "read-heavy"
    keys: int = 10  # read-heavy: how many keys
    read_fraction: float = 0.9  # read-heavy: share of reads
    process_limit: int = 20
    per_key_limit: int | None = None  # maelstrom: none
    nemesis: Sequence[str] = ()  # partition shapes to draw from; empty: no faults
    nemesis_interval: float = 0.5  # mean seconds between partition starts and stops (Maelstrom: 10)
    faults: Sequence[str] = ()  # process faults to draw from: "kill" (and restart), "pause" (SIGSTOP, SIGCONT)
    fault_interval: tuple[float, float] = (1.0, 2.0)  # seconds between process faults, uniform in this range
    max_pause: float = 2.0  # a pause lasts uniform [0, max_pause) seconds
    seed: int = 0
    hostile: bool = False  # a client that forges cf_* requests and replies throughout (see above)
    hostile_rate: float = 300.0  # its messages per second
    args: Sequence[str] = ("--origin", "lin-kv")
    env: dict[str, str] | None = None
    cmd: list[str] | None = None  # replaces `python3 main.py`


@dataclass
class Event:
    """One operation as the client saw it (times: monotonic seconds; order: a global sequence)."""

    process: int
    thread: int
    node: str
    f: str
    key: Any
    value: Any
    call: int
    call_time: float
    status: str = ""
    ret: int | None = None
    ret_time: float | None = None
    error: Any = None


@dataclass
class RunResult:
    workload: Workload
    events: list[Event]
    counts: Counter[str]
    partitions: list[tuple[float, str, Grudge]]
    problems: list[str]
    duration: float
    exit_codes: dict[str, int]
    hostile: Counter[str] = field(default_factory=Counter)  # what the hostile client sent, by kind
    faults: list[tuple[float, str, str]] = field(default_factory=list)  # (when, "kill" or "pause", node)
    counts_by_type: Counter[str] = field(default_factory=Counter)  # counts' messages by kind and body type
    node_ids: list[str] = field(default_factory=list)  # as every node's init listed them

    def ops(self) -> list[Op]:
        out = []
        for i, e in enumerate(self.events):
            status = e.status if e.status else INFO  # never answered by the end: unknown
            ret = e.ret if status == OK else None
            out.append(Op(e.key, e.f, e.value, status, e.call, ret, e.process, i))
        return out

    def check(self) -> Result:
        return check(self.ops())

    @property
    def invoked(self) -> int:
        return len(self.events)

    def per_op(self, kind: str) -> float:
        count = self.counts["origin"] + self.counts["peer"] if kind == "servers" else self.counts[kind]
        return count / self.invoked if self.invoked else math.nan

    def latencies(self, fs: Sequence[str]) -> list[float]:
        """Seconds from invoke to completion of every completed op (timeouts at the timeout)."""
        return [e.ret_time - e.call_time for e in self.events if e.f in fs and e.ret_time is not None]

    def outcomes(self) -> Counter[str]:
        return Counter(f"{e.f}:{e.status or INFO}" for e in self.events)

    def per_op_by_type(self) -> dict[str, float]:
        """Messages per invoked operation by kind and body type, most first."""
        return {k: round(c / self.invoked, 3) for k, c in self.counts_by_type.most_common()
                if self.invoked and not k.startswith("client")}

    def summary(self) -> dict[str, Any]:
        reads, writes = self.latencies([READ]), self.latencies([WRITE, CAS])
        return {
            "ops": self.invoked, "origin_per_op": self.per_op("origin"), "servers_per_op": self.per_op("servers"),
            "read_p50_ms": percentile(reads, 50) * 1000, "read_p99_ms": percentile(reads, 99) * 1000,
            "write_p50_ms": percentile(writes, 50) * 1000, "write_p99_ms": percentile(writes, 99) * 1000,
            "outcomes": dict(self.outcomes()), "partitions": sum(1 for p in self.partitions if p[1] != "heal"),
            **({"hostile": dict(self.hostile)} if self.hostile else {}),
            "kills": sum(1 for f in self.faults if f[1] == "kill"),
            "pauses": sum(1 for f in self.faults if f[1] == "pause"),
        }


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] if p < 100 else max(values)


class _Runner:
    def __init__(self, w: Workload, net: LatencyNet) -> None:
        self.w, self.net = w, net
        self.n = w.nodes
        self.concurrency = w.concurrency or 2 * self.n
        group = 2 * self.n
        if w.mix == "maelstrom" and self.concurrency % group:
            raise ValueError(f"jepsen.independent needs a concurrency that is a multiple of {group}")
        self.rng = random.Random(w.seed * 7919 + 1)
        self.timeout = w.latency.client_timeout
        self.lock = threading.Condition()
        self.events: list[Event] = []
        self.seq = itertools.count()
        self.free = set(range(self.concurrency))
        self.process = list(range(self.concurrency))
        self.work: list[list[Event | None]] = [[] for _ in range(self.concurrency)]
        # jepsen.independent: one key per group of 2n threads; keys 0, 1, 2, ...
        groups = max(1, self.concurrency // group)
        self.group_key = list(range(groups))
        self.next_key = groups
        self.group_processes: list[set[int]] = [set() for _ in range(groups)]
        self.group_ops = [0] * groups
        self.group_limit = [self._key_limit() for _ in range(groups)]
        self.partitions: list[tuple[float, str, Grudge]] = []
        self.faults: list[tuple[float, str, str]] = []
        self.stop = threading.Event()

    def _key_limit(self) -> float:
        if self.w.per_key_limit is None:
            return math.inf
        return int((0.9 + 0.1 * self.rng.random()) * self.w.per_key_limit)

    # -- generator -------------------------------------------------------------------------

    def _op_for(self, thread: int) -> tuple[str, Any, Any]:
        """(f, key, value) for a free thread (under self.lock)."""
        rng = self.rng
        if self.w.mix == "read-heavy":
            key: Any = rng.randrange(self.w.keys)
            return (READ, key, None) if rng.random() < self.w.read_fraction else self._update(key)
        group, rank = divmod(thread, 2 * self.n)
        process = self.process[thread]
        seen = self.group_processes[group]
        process_limited = process not in seen and len(seen) >= self.w.process_limit
        if process_limited or self.group_ops[group] >= self.group_limit[group]:
            self.group_key[group], self.next_key = self.next_key, self.next_key + 1
            seen.clear()
            self.group_ops[group] = 0
            self.group_limit[group] = self._key_limit()
        seen.add(process)
        self.group_ops[group] += 1
        key = self.group_key[group]
        return (READ, key, None) if rank < self.n else self._update(key)  # gen/reserve n r (mix [w cas cas])

    def _update(self, key: Any) -> tuple[str, Any, Any]:
        rng = self.rng
        if rng.randrange(3) == 0:
            return WRITE, key, rng.randrange(5)
        return CAS, key, (rng.randrange(5), rng.randrange(5))

    def generate(self, until: float) -> None:
        next_at = time.monotonic()
        while True:
            next_at += self.rng.uniform(0, 2 / self.w.rate)
            if next_at >= until:
                break
            time.sleep(max(0.0, next_at - time.monotonic()))
            with self.lock:
                if not self.lock.wait_for(lambda: bool(self.free), until - time.monotonic()):
                    break
                thread = self.rng.choice(sorted(self.free))
                self.free.discard(thread)
                f, key, value = self._op_for(thread)
                event = Event(self.process[thread], thread, self.net.node_ids[thread % self.n], f, key, value,
                              next(self.seq), time.monotonic())
                self.events.append(event)
                self.work[thread].append(event)
                self.lock.notify_all()
        with self.lock:
            for queue in self.work:
                queue.append(None)
            self.lock.notify_all()

    # -- clients ---------------------------------------------------------------------------

    def client(self, thread: int) -> None:
        client_id = f"c{100 + thread}"
        while True:
            with self.lock:
                self.lock.wait_for(lambda: bool(self.work[thread]))
                event = self.work[thread].pop(0)
            if event is None:
                return
            self._perform(event, client_id)
            with self.lock:
                if event.status == INFO:
                    self.process[thread] += self.concurrency
                self.free.add(thread)
                self.lock.notify_all()

    def _perform(self, e: Event, client_id: str) -> None:
        body: dict[str, Any] = {"type": e.f, "key": e.key}
        if e.f == WRITE:
            body["value"] = e.value
        elif e.f == CAS:
            body["from"], body["to"] = e.value
        try:
            reply: dict[str, Any] | None = self.net.call(e.node, body, timeout=self.timeout, client=client_id)
        except TimeoutError:
            reply = None
        except AssertionError as exc:  # a problem elsewhere on the net: this op's fate is unknown
            self.net.problems.append(f"{client_id}: {exc}")
            reply = None
        with self.lock:
            e.ret, e.ret_time = next(self.seq), time.monotonic()
            e.status, e.error, value = _outcome(e.f, reply)
            if e.f == READ and e.status == OK:
                e.value = value

    # -- nemesis ---------------------------------------------------------------------------

    def nemesis(self, until: float) -> None:
        rng = random.Random(self.w.seed * 104729 + 3)
        cut = False
        while not self.stop.wait(rng.uniform(0, 2 * self.w.nemesis_interval)):
            if time.monotonic() >= until:
                break
            if cut:
                self.net.heal_partition()
                self.partitions.append((time.monotonic(), "heal", {}))
            else:
                shape = rng.choice(list(self.w.nemesis))
                grudge = grudge_for(shape, self.net.node_ids, rng)
                self.net.partition(grudge)
                self.partitions.append((time.monotonic(), shape, grudge))
            cut = not cut


    def process_faults(self, until: float) -> None:
        """Kill (then restart) or pause a random node, one fault at a time, every fault_interval."""
        rng = random.Random(self.w.seed * 15485863 + 5)
        while not self.stop.wait(rng.uniform(*self.w.fault_interval)):
            if time.monotonic() >= until:
                break
            node, fault = rng.choice(self.net.node_ids), rng.choice(list(self.w.faults))
            self.faults.append((time.monotonic(), fault, node))
            try:
                if fault == "kill":
                    self.net.restart(node)
                else:
                    self.net.pause(node, rng.uniform(0, self.w.max_pause))
            except Exception as exc:  # a node that will not come back shows up in net.problems
                self.net.problems.append(f"{fault} of {node} failed: {exc!r}")


def _outcome(f: str, reply: dict[str, Any] | None) -> tuple[str, Any, Any]:
    """(status, error, value read) as maelstrom's client/with-errors records it."""
    if reply is None:
        return (FAIL if f == READ else INFO), "net-timeout", None
    if reply.get("type") == "error":
        code = reply.get("code")
        definite = code in DEFINITE
        return (FAIL if definite or f == READ else INFO), code, None
    expected = {READ: "read_ok", WRITE: "write_ok", CAS: "cas_ok"}[f]
    if reply.get("type") != expected:
        return (FAIL if f == READ else INFO), f"unexpected {reply.get('type')!r}", None
    return OK, None, reply.get("value")


# What a forged reply to each request says: the most harmful answer it could be taken for.
FORGED_REPLY: dict[str, dict[str, Any]] = {
    "read": {"type": "read_ok", "value": 666},
    "write": {"type": "write_ok"},
    "cas": {"type": "cas_ok"},
    "cf_read": {"type": "cf_read_ok", "value": 666, "lease": 1e9},
    "cf_fetch": {"type": "cf_fetch_ok", "value": 666, "ttl_left": 1e9},
    "cf_update": {"type": "cf_update_ok"},
    "cf_revoke": {"type": "cf_revoke_ok"},
    "cf_drop": {"type": "cf_drop_ok"},
}


class Hostile:
    """The trust attacks, sent at random during a run (see the module's docstring). Requests go
    from client ids (c9, made-up cx<n>), so their replies never count as the workload's."""

    def __init__(self, net: LatencyNet, keys: list[Any], seed: int, rate: float) -> None:
        self.net, self.keys, self.rate = net, keys, rate  # keys: the workload's keys in use now
        self.rng = random.Random(seed * 31337 + 7)
        self.sent: Counter[str] = Counter()
        self._msg_ids = itertools.count(1_000_000)

    def run(self, until: float, stop: threading.Event) -> None:
        attacks = [self.client_request, self.node_request_to_a_non_owner, self.forged_reply, self.sprayed_reply]
        while not stop.wait(self.rng.uniform(0, 2 / self.rate)) and time.monotonic() < until:
            try:
                self.rng.choice(attacks)()
            except Exception as exc:  # shows in the test's problems, not as a dead thread
                self.net.problems.append(f"hostile client failed: {exc!r}")
                return

    def _send(self, src: str, dest: str, body: dict[str, Any], kind: str) -> None:
        self.sent[kind] += 1
        self.net.nodes[dest].inbox.put(encode({"src": src, "dest": dest, "body": body}))

    def _key(self) -> Any:
        return self.rng.choice(self.keys)

    def client_request(self) -> None:
        """A1, A3, A3b, A7: any cf_* request, from c9 or a made-up id, to any node."""
        rng = self.rng
        type_ = rng.choice(["cf_update", "cf_read", "cf_fetch", "cf_drop", "cf_revoke"])
        body: dict[str, Any] = {"type": type_, "key": self._key(), "msg_id": next(self._msg_ids)}
        if type_ == "cf_update":
            body.update(kind="write", value=rng.choice([666, rng.randrange(5)]))
        src = rng.choice(["c9", f"cx{rng.randrange(2000)}"])
        self._send(src, rng.choice(self.net.node_ids), body, f"{type_} from a client")

    def node_request_to_a_non_owner(self) -> None:
        """A2: cf_update or cf_read of a key, as a node would send it, to a node that does not own it."""
        key = self._key()
        key_owner = owner(cache_key(key), self.net.node_ids)
        others = [n for n in self.net.node_ids if n != key_owner]
        if len(others) < 2:
            return
        src, dest = self.rng.sample(others, 2)
        body: dict[str, Any] = {"type": "cf_update", "key": key, "kind": "write", "value": 666}
        if self.rng.random() < 0.5:
            body = {"type": "cf_read", "key": key}
        self._send(src, dest, {**body, "msg_id": next(self._msg_ids)}, f"{body['type']} to a non-owner")

    def forged_reply(self) -> None:
        """A4, A5, A6, A8: a reply to a request a node really sent, from anyone but its dest."""
        recent = [r for r in list(self.net.node_requests)[-64:] if r[2] in FORGED_REPLY]
        if not recent:
            return
        kind = self.rng.choice(sorted({r[2] for r in recent}))  # each kind as often: cf_revoke is rare
        node, dest, type_, msg_id = self.rng.choice([r for r in recent if r[2] == kind])
        reply = FORGED_REPLY[type_]
        impostors = ["c9", *(n for n in [*self.net.node_ids, *SERVICES] if n not in (node, dest))]
        self._send(self.rng.choice(impostors), node, {**reply, "in_reply_to": msg_id, "msg_id": next(self._msg_ids)},
                   f"forged {reply['type']}")

    def sprayed_reply(self) -> None:
        """A5's spray: a read_ok for a guessed msg_id."""
        node = self.rng.choice(self.net.node_ids)
        recent = [m for n, _, _, m in self.net.node_requests if n == node]
        guess = max(recent, default=0) + self.rng.randrange(-5, 20)
        self._send("c9", node, {"type": "read_ok", "in_reply_to": guess, "msg_id": next(self._msg_ids),
                                "value": 666}, "sprayed read_ok")


def run(w: Workload) -> RunResult:
    """Start the nodes, run the workload for w.time_limit, wait for every op, stop the nodes."""
    net = LatencyNet(nodes=w.nodes, latency=w.latency, seed=w.seed, args=list(w.args), env=w.env, cmd=w.cmd)
    try:
        net.counts.clear()  # init is not part of the workload
        net.counts_by_type.clear()
        runner = _Runner(w, net)
        start = time.monotonic()
        until = start + w.time_limit
        clients = [threading.Thread(target=runner.client, args=(t,), daemon=True) for t in range(runner.concurrency)]
        for thread in clients:
            thread.start()
        nemeses = []
        if w.nemesis:
            nemeses.append(threading.Thread(target=runner.nemesis, args=(until,), daemon=True))
        if w.faults:
            nemeses.append(threading.Thread(target=runner.process_faults, args=(until,), daemon=True))
        for nemesis in nemeses:
            nemesis.start()
        hostile = None
        if w.hostile:
            keys = runner.group_key if w.mix == "maelstrom" else list(range(w.keys))
            hostile = Hostile(net, keys, w.seed, w.hostile_rate)
            threading.Thread(target=hostile.run, args=(until, runner.stop), daemon=True).start()
        runner.generate(until)
        for thread in clients:
            thread.join(runner.timeout + 10)
        runner.stop.set()
        for nemesis in nemeses:
            nemesis.join(w.max_pause + 15)
        net.heal_partition()
        duration = time.monotonic() - start
        counts = Counter(net.counts)
        counts_by_type = Counter(net.counts_by_type)
    finally:
        codes = net.close()
    return RunResult(w, runner.events, counts, runner.partitions, list(net.problems), duration, codes,
                     Counter(hostile.sent) if hostile is not None else Counter(), runner.faults, counts_by_type,
                     list(net.node_ids))


if __name__ == "__main__":  # a quick look: python3 tests/support/workload.py [nodes] [mean_ms] [dist] [seconds]
    argv = sys.argv[1:]
    latency = Latency(float(argv[1]) if len(argv) > 1 else 10, argv[2] if len(argv) > 2 else "uniform")
    workload = Workload(nodes=int(argv[0]) if argv else 3, latency=latency,
                        time_limit=float(argv[3]) if len(argv) > 3 else 3)
    result = run(workload)
    print(result.summary())
    print(result.check().explain())
