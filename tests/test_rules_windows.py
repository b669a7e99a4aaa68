"""The compiled window loop gives the reference engine's figures bit for bit, batch after
batch, with the rings carried between batches, so the two engines agree on every
threshold tie."""

from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from anju.rules import windows
from anju.rules.expr import Window
from anju.rules.reference import _window
from anju.rules.windows import RING


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_window_features_equal_the_reference_bit_for_bit(seed: int, batches: int) -> None:
    rng = np.random.default_rng(seed)
    devices = 6
    wins = [Window(func, "x", secs)
            for func in ("slope", "wmax", "wmin", "count", "span", "count_if")
            for secs in (1.0, 5.0, 60.0, 600.0)]
    ring = windows.Ring.empty(devices)
    ref: list[deque[tuple[int, float]]] = [deque(maxlen=RING) for _ in range(devices)]
    clock = np.full(devices, 1_000_000, np.int64)
    decimals = int(rng.integers(0, 3))
    for _ in range(batches):
        n = int(rng.integers(1, 2 * RING))
        dev = np.sort(rng.integers(0, devices, n))
        t = np.empty(n, np.int64)
        for i, d in enumerate(dev):
            clock[d] += int(rng.choice([0, 1, 250, 1000, 5000, 30_000]))
            t[i] = clock[d]
        v = rng.normal(20.0, 5.0, n).round(decimals)
        got = np.empty((len(wins), n))
        windows.window_features(dev, t, v, ring, wins, got)
        for i, d in enumerate(dev.tolist()):
            ref[d].append((int(t[i]), float(v[i])))
            for j, w in enumerate(wins):
                want = _window(ref[d], int(t[i]), w.func, w.seconds)
                np.testing.assert_array_equal(got[j, i], want,
                                              err_msg=f"{w.key} row {i}")
