"""The fuzzer (tests/support/fuzz.py) for a few seconds, seeded: see that module for what it sends and checks.
A longer run: `python3 bench/run.py fuzz --seconds 300`."""

from __future__ import annotations

import pytest
from support.fuzz import run_once

pytestmark = pytest.mark.process  # starts node processes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_input_and_odd_service_replies_keep_every_promise(seed):
    run = run_once(seed, batches=4, batch_size=200)
    assert not run.failures, "\n".join(run.failures)
    assert run.expected > 250 and run.lines_in > 2000  # it did fuzz
