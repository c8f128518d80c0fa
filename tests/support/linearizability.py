"""A linearizability checker for histories of a key-value store of cas registers.

The search is Wing & Gong's, with Lowe's memoisation, as Porcupine and Knossos
(its `wgl` checker) do it:

* Every operation is a call entry and a return entry in one list, in time order.
* Walk the list: at a call entry, try to linearize that operation now (the model
  must accept it from the current state). If it can be, and the pair (set of
  operations linearized so far, model state) was never reached before, take it
  out of the list, remember the choice, and start again from the head.
  Otherwise move on to the next entry.
* At a return entry, the operation it ends was not linearized before it
  returned: undo the last choice and try the entry after it.
* The history is linearizable when the list holds no more operations whose
  outcome is known.

The set of linearized operations is a bitset held in one int; the cache of seen
(bitset, state) pairs is what keeps the search polynomial on real histories.

Histories are split by key first (P-compositionality: a history of independent
registers is linearizable iff each register's is), as jepsen's `independent`
checker does.

The model is Knossos's cas-register, except that it starts *absent* (None),
as a key of Maelstrom's lin-kv does:

* read v: legal iff the register holds v (v None: the key does not exist);
* write v: always legal, the register holds v;
* cas (a, b): legal iff the register exists and holds a; then it holds b.

Outcomes:

* ``ok``: the operation took effect, once, between its call and its return;
* ``fail``: a definite error, so it never took effect: dropped before the search;
* ``info``: unknown (a timeout): it may take effect at any moment after its call,
  or never. Its return entry is at +infinity, after every known return, so the
  search may leave it out altogether. An ``info`` read constrains nothing and
  is dropped.

Knossos differs in one respect that a Maelstrom run never exercises: it accepts
a read of nil (nothing read) from any state. Maelstrom records a read that gets
an error (key-does-not-exist included) as ``fail``, so its histories hold no
such read; here a read of None claims the key is absent, which is stricter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

READ, WRITE, CAS = "read", "write", "cas"
OK, FAIL, INFO = "ok", "fail", "info"
ABSENT = None


@dataclass(frozen=True)
class Op:
    """One client operation on one key.

    `value`: for read, the value read (None: the key does not exist); for write,
    the value written; for cas, the pair (from, to). `call` and `ret` are
    comparable times (ret None for info). An operation A precedes B in real
    time iff A.ret < B.call.
    """

    key: Hashable
    f: str
    value: Any
    status: str
    call: float
    ret: float | None = None
    process: Any = None
    index: int = 0  # position in the caller's history, for the explanation

    def describe(self) -> str:
        shown = f"{self.value[0]!r}->{self.value[1]!r}" if self.f == CAS else repr(self.value)
        ret = "?" if self.ret is None else f"{self.ret:.6g}"
        return f"#{self.index} p{self.process} {self.f} {shown} {self.status} [{self.call:.6g}, {ret}]"


def step(state: Any, op: Op) -> tuple[bool, Any]:
    """The cas register: (legal?, state after)."""
    if op.f == READ:
        return state == op.value and (state is None) == (op.value is None), state
    if op.f == WRITE:
        return True, op.value
    if op.f == CAS:
        expected, new = op.value
        if state is not None and state == expected:
            return True, new
        return False, state
    raise ValueError(f"unknown operation {op.f!r}")


@dataclass
class KeyResult:
    key: Hashable
    valid: bool
    ops: int
    explored: int  # (bitset, state) pairs cached
    explanation: str = ""


@dataclass
class Result:
    valid: bool
    keys: dict[Hashable, KeyResult] = field(default_factory=dict)

    @property
    def failures(self) -> list[KeyResult]:
        return [r for r in self.keys.values() if not r.valid]

    def explain(self) -> str:
        if self.valid:
            return f"linearizable: {len(self.keys)} keys, {sum(r.ops for r in self.keys.values())} ops"
        return "\n\n".join(f"key {r.key!r}: {r.explanation}" for r in self.failures)


class _Entry:
    """A node of the doubly linked list of call and return entries."""

    __slots__ = ("op", "id", "is_call", "match", "prev", "next")

    def __init__(self, op: Op | None, id_: int, is_call: bool) -> None:
        self.op, self.id, self.is_call = op, id_, is_call
        self.match: _Entry | None = None  # a call's return entry
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build_list(ops: Sequence[Op]) -> _Entry:
    """Entries in time order; a call before a return at the same time (they overlap then)."""
    events: list[tuple[float, int, int, _Entry]] = []
    for i, op in enumerate(ops):
        call, ret = _Entry(op, i, True), _Entry(op, i, False)
        call.match = ret
        events.append((op.call, 0, i, call))
        events.append((float("inf") if op.ret is None else op.ret, 1, i, ret))
    events.sort(key=lambda e: e[:3])
    head = _Entry(None, -1, False)
    prev = head
    for *_, entry in events:
        prev.next, entry.prev = entry, prev
        prev = entry
    return head


def _lift(call: _Entry) -> None:
    """Take a call and its return out of the list."""
    ret = call.match
    assert call.prev is not None and ret is not None and ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    """Put them back (in the reverse order of _lift)."""
    ret = call.match
    assert call.prev is not None and ret is not None and ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def check_key(key: Hashable, ops: Sequence[Op], initial: Any = ABSENT, max_states: int = 5_000_000) -> KeyResult:
    """Wing & Gong / Lowe search over one key's operations (fail and info reads already dropped)."""
    head = _build_list(ops)
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[_Entry, Any]] = []  # the choices made: (call entry, state before it)
    linearized, state = 0, initial
    best: tuple[int, list[int], Any, _Entry | None] = (-1, [], initial, None)
    entry = head.next
    while entry is not None:
        op = entry.op
        assert op is not None
        if entry.is_call:
            legal, after = step(state, op)
            bit = 1 << entry.id
            if legal and (linearized | bit, after) not in seen:
                if len(seen) >= max_states:
                    return KeyResult(key, False, len(ops), len(seen), f"gave up after {max_states} states")
                seen.add((linearized | bit, after))
                stack.append((entry, state))
                linearized |= bit
                state = after
                _lift(entry)
                entry = head.next
            else:
                entry = entry.next
            continue
        if op.ret is None:  # an unknown outcome's return: every known operation is linearized
            return KeyResult(key, True, len(ops), len(seen))
        if len(stack) > best[0]:  # the deepest dead end is the most telling one
            best = (len(stack), [e.id for e, _ in stack], state, entry)
        if not stack:
            return KeyResult(key, False, len(ops), len(seen), _explain(ops, best))
        call, state = stack.pop()
        linearized &= ~(1 << call.id)
        _unlift(call)
        entry = call.next
    return KeyResult(key, True, len(ops), len(seen))


def _explain(ops: Sequence[Op], best: tuple[int, list[int], Any, _Entry | None]) -> str:
    depth, order, state, stuck = best
    assert stuck is not None and stuck.op is not None
    # What could have gone next: every operation called before the stuck one returned, not yet linearized.
    done = set(order)
    blocking = stuck.op
    assert blocking.ret is not None
    candidates = [op for i, op in enumerate(ops) if i not in done and op.call < blocking.ret]
    shown = order[-8:]
    lines = [f"no linearization: the longest legal prefix has {depth} ops"
             + (f" (last {len(shown)} shown)" if len(shown) < depth else "") + ":"]
    lines += [f"  {ops[i].describe()}" for i in shown]
    lines.append(f"leaving the register at {state!r}; then")
    lines.append(f"  {blocking.describe()}")
    lines.append("must take effect before it returns, but from there no order of")
    lines += [f"  {op.describe()}" for op in candidates[:8]]
    if len(candidates) > 8:
        lines.append(f"  ... and {len(candidates) - 8} more")
    lines.append("is legal.")
    return "\n".join(lines)


def prepare(ops: Iterable[Op]) -> dict[Hashable, list[Op]]:
    """Split by key, dropping what the search ignores: failed ops and reads of unknown outcome."""
    by_key: dict[Hashable, list[Op]] = defaultdict(list)
    for op in ops:
        if op.status == FAIL or (op.status == INFO and op.f == READ):
            continue
        if op.status not in (OK, INFO):
            raise ValueError(f"unknown status {op.status!r} in {op}")
        if op.status == OK and (op.ret is None or op.ret < op.call):
            raise ValueError(f"an ok operation needs call <= ret: {op}")
        by_key[op.key].append(op if op.status == OK else _unknown(op))
    return by_key


def _unknown(op: Op) -> Op:
    return Op(op.key, op.f, op.value, INFO, op.call, None, op.process, op.index)


def check(ops: Iterable[Op], initial: Any = ABSENT) -> Result:
    """Is this history of (independent) cas registers linearizable? Every key is checked."""
    result = Result(True)
    for key, key_ops in prepare(ops).items():
        key_result = check_key(key, key_ops, initial)
        result.keys[key] = key_result
        result.valid = result.valid and key_result.valid
    return result
