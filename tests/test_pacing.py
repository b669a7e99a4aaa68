"""The rules' pacing learns a batch's fixed cost apart from its cost per reading
(anju.app.pacing): only the fixed part is worth spacing batches for."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anju.app.pacing import BatchCost


@settings(max_examples=60, deadline=None)
@given(fixed_us=st.floats(10, 2000), per_us=st.floats(0.01, 5),
       seed=st.integers(0, 2**31))
def test_the_fixed_part_is_found_whatever_the_batch_sizes(fixed_us: float, per_us: float,
                                                          seed: int) -> None:
    rng = random.Random(seed)
    cost = BatchCost()
    for _ in range(200):
        n = rng.choice([1, 3, 10, 100, 1000, 4000])
        noise = rng.uniform(0.95, 1.05)
        cost.add(n, (fixed_us + per_us * n) * noise * 1e-6)
    # within the noise of the costs (±5 % of a batch of up to 4 000 readings)
    assert cost.fixed * 1e6 == pytest.approx(fixed_us, abs=0.05 * (fixed_us + per_us * 4000))


def test_batches_of_one_size_count_their_whole_cost_as_fixed() -> None:
    cost = BatchCost()
    for _ in range(50):
        cost.add(10, 200e-6)
    assert cost.fixed == pytest.approx(200e-6)


def test_large_batches_cost_per_reading_are_not_spaced() -> None:
    """Gateway traffic: batches of thousands of readings, ~1 ms each, nearly all of it
    per reading; the old pacing spaced them by the whole millisecond."""
    cost = BatchCost()
    for i in range(100):
        n = (2000, 4000, 3000)[i % 3]
        cost.add(n, 50e-6 + 0.25e-6 * n)
    assert cost.fixed == pytest.approx(50e-6, rel=0.01)
    assert cost.c > 10 * cost.fixed
