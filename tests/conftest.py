"""Fixtures shared by every test: the doubles of `support/doubles.py`, made fresh
for each test and released after it. Harness code lives in `support/`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.doubles import AsyncBackend, Backend, FakeClock, FakeRandom


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rand() -> FakeRandom:
    return FakeRandom()


@pytest.fixture
def backend() -> Iterator[Backend]:
    origin = Backend()
    yield origin
    origin.release_all()  # never leave a client thread stuck in the origin


@pytest.fixture
def async_backend() -> Iterator[AsyncBackend]:
    origin = AsyncBackend()
    yield origin
    if origin.start_gate is not None:
        origin.start_gate.set()
