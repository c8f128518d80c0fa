"""The linearizability checker (tests/support/linearizability.py) on histories made by hand,
and against a brute-force search on small random ones."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support.linearizability import CAS, FAIL, INFO, OK, READ, WRITE, Op, check, step


def op(f: str, value: Any, call: float, ret: float | None, status: str = OK, key: Any = "k", p: int = 0) -> Op:
    return Op(key, f, value, status, call, ret, p)


def r(value: Any, call: float, ret: float, **kw: Any) -> Op:
    return op(READ, value, call, ret, **kw)


def w(value: Any, call: float, ret: float | None, **kw: Any) -> Op:
    return op(WRITE, value, call, ret, **kw)


def cas(a: Any, b: Any, call: float, ret: float | None, **kw: Any) -> Op:
    return op(CAS, (a, b), call, ret, **kw)


def valid(*ops: Op) -> bool:
    return check(ops).valid


# -- sequential histories ---------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    assert valid()


def test_a_read_sees_the_last_completed_write() -> None:
    assert valid(w(1, 0, 1), r(1, 2, 3))
    assert valid(w(1, 0, 1), w(2, 2, 3), r(2, 4, 5))


def test_a_stale_read_after_a_completed_write_is_caught() -> None:
    result = check([w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)])
    assert not result.valid
    text = result.explain()
    assert "read 1" in text and "no linearization" in text


def test_a_key_starts_absent() -> None:
    assert valid(r(None, 0, 1))
    assert not valid(r(0, 0, 1))  # nothing was ever written
    assert not valid(w(3, 0, 1), r(None, 2, 3))  # once written, it exists


def test_cas_needs_the_key_and_the_value() -> None:
    assert not valid(cas(None, 1, 0, 1))  # cas on an absent key never succeeds
    assert not valid(cas(0, 1, 0, 1))
    assert valid(w(0, 0, 1), cas(0, 1, 2, 3), r(1, 4, 5))
    assert not valid(w(0, 0, 1), cas(2, 1, 2, 3))  # an ok cas from a value the register never held
    assert not valid(w(0, 0, 1), cas(0, 1, 2, 3), r(0, 4, 5))


def test_a_failed_op_never_happened() -> None:
    assert valid(w(1, 0, 1), w(2, 2, 3, status=FAIL), r(1, 4, 5))
    assert not valid(w(1, 0, 1), w(2, 2, 3, status=FAIL), r(2, 4, 5))
    assert valid(w(0, 0, 1), cas(3, 4, 2, 3, status=FAIL), r(0, 4, 5))


# -- concurrency --------------------------------------------------------------


def test_concurrent_ops_may_take_effect_in_either_order() -> None:
    # Two overlapping writes; a read after both can see either, but two reads in a row cannot flip back.
    assert valid(w(1, 0, 10, p=1), w(2, 1, 11, p=2), r(1, 12, 13))
    assert valid(w(1, 0, 10, p=1), w(2, 1, 11, p=2), r(2, 12, 13))
    assert not valid(w(1, 0, 10, p=1), w(2, 1, 11, p=2), r(2, 12, 13), r(1, 14, 15))
    # A read overlapping a write may see the old or the new value.
    assert valid(w(0, 0, 1), w(1, 2, 10, p=1), r(0, 3, 4, p=2))
    assert valid(w(0, 0, 1), w(1, 2, 10, p=1), r(1, 3, 4, p=2))
    # ... but once one read saw the new value, a later read may not see the old one.
    assert not valid(w(0, 0, 1), w(1, 2, 10, p=1), r(1, 3, 4, p=2), r(0, 5, 6, p=3))


def test_the_order_must_hold_across_several_overlapping_ops() -> None:
    # cas 0->1 and cas 1->2 overlap; a read of 2 forces cas 0->1 first.
    assert valid(w(0, 0, 1), cas(0, 1, 2, 10, p=1), cas(1, 2, 3, 11, p=2), r(2, 12, 13))
    # Both cas from 0 cannot both succeed.
    assert not valid(w(0, 0, 1), cas(0, 1, 2, 10, p=1), cas(0, 2, 3, 11, p=2))


def test_a_read_returning_before_a_write_starts_cannot_see_it() -> None:
    assert not valid(w(0, 0, 1), r(5, 2, 3, p=1), w(5, 4, 5, p=2))


# -- unknown outcomes ---------------------------------------------------------


def test_an_unknown_write_may_take_effect_later_or_never() -> None:
    never = [w(1, 0, 1), w(2, 2, None, status=INFO), r(1, 10, 11), r(1, 12, 13)]
    later = [w(1, 0, 1), w(2, 2, None, status=INFO), r(1, 10, 11), r(2, 12, 13)]
    assert valid(*never) and valid(*later)
    # Once it showed, the old value cannot come back: it happened only once.
    assert not valid(*later, r(1, 14, 15))
    # Not before it was called.
    assert not valid(w(1, 0, 1), r(2, 2, 3), w(2, 4, None, status=INFO))


def test_an_unknown_cas_happens_only_if_its_from_matches() -> None:
    assert valid(w(0, 0, 1), cas(0, 3, 2, None, status=INFO), r(3, 5, 6))
    assert not valid(w(1, 0, 1), cas(0, 3, 2, None, status=INFO), r(3, 5, 6))


def test_an_ok_op_and_an_info_op_of_the_same_process() -> None:
    # process 1 timed out on write 2, then wrote 3: the write of 2 may land after 3.
    assert valid(w(2, 0, None, status=INFO, p=1), w(3, 5, 6, p=1), r(2, 7, 8, p=2))


def test_an_info_read_constrains_nothing() -> None:
    assert valid(w(1, 0, 1), op(READ, 4, 2, None, status=INFO))


def test_keys_are_independent() -> None:
    assert valid(w(1, 0, 1, key="a"), w(2, 0, 1, key="b"), r(1, 2, 3, key="a"), r(2, 2, 3, key="b"))
    result = check([w(1, 0, 1, key="a"), r(2, 2, 3, key="a"), w(2, 0, 1, key="b")])
    assert not result.valid and [f.key for f in result.failures] == ["a"]


def test_a_cache_that_does_not_drop_on_write_is_caught() -> None:
    """The canonical cache bug: node A caches 1; a write of 2 through node B completes; A serves 1."""
    history = [w(1, 0, 1, p=0), r(1, 2, 3, p=1), w(2, 4, 5, p=0), r(1, 6, 7, p=1)]
    assert not valid(*history)


def test_long_histories_check_quickly() -> None:
    """A few thousand ops on one key, 10 processes overlapping, some unknown: well under the budget."""
    import random

    rng = random.Random(7)
    ops: list[Op] = [w(0, 0, 1)]
    value, t = 0, 2.0
    for i in range(3000):
        p = i % 10
        kind = rng.random()
        if kind < 0.5:
            ops.append(r(value, t, t + 3, p=p))
        elif kind < 0.8:
            value = rng.randrange(5)
            ops.append(w(value, t, t + 3, p=p, status=INFO if rng.random() < 0.01 else OK))
        else:
            new = rng.randrange(5)
            ops.append(cas(value, new, t, t + 3, p=p))
            value = new
        t += 1.0  # each op overlaps the two before and after it
    started = time.monotonic()
    result = check(ops)
    assert result.valid, result.explain()
    assert time.monotonic() - started < 20  # typically well under a second


# -- against brute force --------------------------------------------------------


def brute_force(ops: Sequence[Op]) -> bool:
    """Try every order of every subset that holds all ok ops (info ops may be left out)."""
    ops = [o for o in ops if o.status != FAIL and not (o.status == INFO and o.f == READ)]
    known = [o for o in ops if o.status == OK]
    unknown = [o for o in ops if o.status == INFO]
    for n in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, n):
            for order in itertools.permutations([*known, *chosen]):
                if _legal(order):
                    return True
    return False


def _legal(order: Sequence[Op]) -> bool:
    state: Any = None
    for i, a in enumerate(order):
        # real time: nothing later in the order may have returned before a was called
        if any(b.ret is not None and b.ret < a.call for b in order[i + 1:]):
            return False
        ok, state = step(state, a)
        if not ok:
            return False
    return True


@st.composite
def small_histories(draw: st.DrawFn) -> list[Op]:
    n = draw(st.integers(1, 6))
    ops = []
    for i in range(n):
        call = draw(st.integers(0, 10))
        length = draw(st.integers(0, 5))
        status = draw(st.sampled_from([OK, OK, OK, INFO, FAIL]))
        f = draw(st.sampled_from([READ, WRITE, CAS]))
        value: Any = draw(st.integers(0, 2))
        if f == CAS:
            value = (value, draw(st.integers(0, 2)))
        elif f == READ:
            value = draw(st.one_of(st.none(), st.integers(0, 2)))
        ops.append(Op("k", f, value, status, call, None if status == INFO else call + length, i))
    return ops


@settings(max_examples=400, deadline=None)
@given(small_histories())
def test_agrees_with_brute_force(ops: list[Op]) -> None:
    assert check(ops).valid == brute_force(ops)
