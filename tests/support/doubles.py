"""Test doubles for the library: a fake clock, an injectable random, and two
controllable origins (a blocking callable and a `start_fetch` one).

Nothing here sleeps to synchronise: calls are held on Events, observed through
queues and counters, and `wait_until` polls with a generous deadline.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

WAIT = 10.0  # generous bound for anything that should happen "soon" (2 busy cores)


class FakeClock:
    """The proxy's `clock`: time moves only when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeRandom:
    """The proxy's `random`: returns `value` (settable), counts its calls."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.value


def wait_until(predicate: Callable[[], bool], what: str = "condition", timeout: float = WAIT) -> None:
    """Poll `predicate` until true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """Run fn in a daemon thread; the Future holds its result or whatever it raised."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - tests inspect SystemExit and friends too
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="test-client").start()
    return future


def outcome(future: Future, timeout: float = WAIT) -> Any:
    """The value the future's call returned, or the exception it raised."""
    exc = future.exception(timeout)
    return exc if exc is not None else future.result(0)


class Backend:
    """A blocking origin, `backend(key) -> value`.

    * values: `"value-<key>"` unless `values[key]` says otherwise; keys in
      `missing` raise KeyError.
    * `plan[key]`: outcomes used one per call before falling back to the value:
      an exception instance is raised, a callable is called, anything else returned.
    * `hold(key)` makes calls for that key wait until `release(key)`.
    * `calls`, `entered` (a queue of keys, one per call), and the most calls of
      one key ever running at once (`max_active`).
    """

    def __init__(self) -> None:
        self.values: dict[Hashable, Any] = {}
        self.missing: set[Hashable] = set()
        self.plan: dict[Hashable, deque[Any]] = defaultdict(deque)
        self.delay = 0.0  # seconds of simulated origin latency (never used to synchronise)
        self.calls: Counter[Hashable] = Counter()
        self.entered: queue.Queue[Hashable] = queue.Queue()
        self.active: Counter[Hashable] = Counter()
        self.max_active: Counter[Hashable] = Counter()
        self.threads: list[int] = []
        self._gates: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()

    def hold(self, key: Hashable) -> None:
        self._gates[key] = threading.Event()

    def release(self, key: Hashable) -> None:
        self._gates.pop(key, threading.Event()).set()

    def release_all(self) -> None:
        for key in list(self._gates):
            self.release(key)

    def wait_entered(self, key: Hashable, timeout: float = WAIT) -> None:
        """Wait until the next call to enter the backend is for `key`."""
        got = self.entered.get(timeout=timeout)
        assert got == key, f"expected a backend call for {key!r}, got one for {got!r}"

    def __call__(self, key: Hashable) -> Any:
        with self._lock:
            self.calls[key] += 1
            self.active[key] += 1
            self.max_active[key] = max(self.max_active[key], self.active[key])
            self.threads.append(threading.get_ident())
            step = self.plan[key].popleft() if self.plan.get(key) else None
            gate = self._gates.get(key)
        try:
            self.entered.put(key)
            if gate is not None:
                assert gate.wait(3 * WAIT), "a held backend call was never released"
            if self.delay:
                time.sleep(self.delay)
            if isinstance(step, BaseException):
                raise step
            if callable(step):
                return step()
            if step is not None:
                return step
            if key in self.missing:
                raise KeyError(key)
            return self.values.get(key, f"value-{key}")
        finally:
            with self._lock:
                self.active[key] -= 1


class AsyncBackend:
    """A non-blocking origin, `start_fetch(key, done)`: each fetch waits in
    `pending` until the test calls `finish` (or never, to model a lost reply)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Hashable, Callable[..., None]]] = []
        self.started: Counter[Hashable] = Counter()
        self.start_error: BaseException | None = None  # raised by start_fetch instead
        self.start_gate: threading.Event | None = None  # start_fetch waits on it first
        self.entered: queue.Queue[Hashable] = queue.Queue()
        self._lock = threading.Lock()

    def start_fetch(self, key: Hashable, done: Callable[..., None]) -> None:
        with self._lock:
            self.started[key] += 1
        self.entered.put(key)
        if self.start_gate is not None:
            assert self.start_gate.wait(3 * WAIT), "a held start_fetch was never released"
        if self.start_error is not None:
            raise self.start_error
        with self._lock:
            self.pending.append((key, done))

    def pending_keys(self) -> list[Hashable]:
        with self._lock:
            return [key for key, _ in self.pending]

    def finish(self, key: Hashable, result: Any, ttl: float | None = None, newest: bool = False) -> None:
        """Complete the oldest (or newest) pending fetch of `key` with `result`."""
        with self._lock:
            indexes = [i for i, (k, _) in enumerate(self.pending) if k == key]
            assert indexes, f"no fetch of {key!r} is pending"
            _, done = self.pending.pop(indexes[-1] if newest else indexes[0])
        if ttl is None:
            done(result)
        else:
            done(result, ttl=ttl)


class Recorder:
    """An `on_answer` callback that records each answer and the thread it ran on."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.threads: list[int] = []
        self.arrived = threading.Semaphore(0)

    def __call__(self, answer: Any) -> None:
        self.answers.append(answer)
        self.threads.append(threading.get_ident())
        self.arrived.release()

    def wait(self, count: int = 1, timeout: float = WAIT) -> list[Any]:
        for _ in range(count):
            assert self.arrived.acquire(timeout=timeout), "on_answer was not called in time"
        return self.answers
