"""The window features' two paths (one matrix for small batches, a loop per look-back
offset for large ones) give bit-identical figures on random histories, so which one a
batch takes never changes an alarm."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from anju.rules import windows
from anju.rules.windows import RING


@st.composite
def _histories(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    devices = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ct: list[np.ndarray] = []
    cv: list[np.ndarray] = []
    new_pos: list[np.ndarray] = []
    seg0: list[np.ndarray] = []
    start = 0
    for _ in range(devices):
        length = int(rng.integers(1, 2 * RING))
        steps = rng.choice([0, 1, 250, 1000, 5000, 30_000], size=length)
        times = 1_000_000 + np.cumsum(steps)
        values = rng.normal(20.0, 5.0, length).round(int(rng.integers(0, 3)))
        if rng.random() < 0.2:
            values[rng.integers(0, length)] = np.nan
        fresh = int(rng.integers(1, length + 1))
        ct.append(times.astype(np.int64))
        cv.append(values)
        new_pos.append(np.arange(start + length - fresh, start + length))
        seg0.append(np.full(fresh, start))
        start += length
    c_t, c_v = np.concatenate(ct), np.concatenate(cv)
    pos = np.concatenate(new_pos).astype(np.int64)
    s0 = np.concatenate(seg0).astype(np.int64)
    secs = draw(st.sampled_from([1.0, 10.0, 60.0, 600.0]))
    t = c_t[pos]
    return t, c_t, c_v, pos, s0, t - round(secs * 1000)


@settings(max_examples=200, deadline=None)
@given(_histories())
def test_matrix_path_equals_the_loop_bit_for_bit(h: tuple[np.ndarray, ...]) -> None:
    t, ct, cv, pos, seg0, lo = h
    funcs = {"slope", "wmax", "wmin", "count", "span", "count_if"}
    width = min(RING, int((pos - seg0).max()) + 1)
    a = windows._features_matrix(funcs, t, ct, cv, pos, seg0, lo, width)
    b = windows._features_loop(funcs, t, ct, cv, pos, seg0, lo)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5))
def test_window_features_same_on_either_path_batch_after_batch(seed: int, batches: int) -> None:
    from anju.rules.expr import Window

    rng = np.random.default_rng(seed)
    devices = 8
    wins = [Window(func, "x", secs) for func in ("slope", "wmax", "count", "count_if")
            for secs in (5.0, 60.0)]
    rings = [windows.Ring.empty(devices), windows.Ring.empty(devices)]
    clock = np.full(devices, 1_000_000, np.int64)
    for _ in range(batches):
        n = int(rng.integers(1, 150))
        dev = np.sort(rng.integers(0, devices, n))
        t = np.empty(n, np.int64)
        for i, d in enumerate(dev):
            clock[d] += int(rng.choice([0, 500, 1000, 7000]))
            t[i] = clock[d]
        v = rng.normal(30.0, 8.0, n)
        outs = []
        for ring, cells in zip(rings, (1 << 17, 0), strict=True):
            old = windows._MATRIX_CELLS
            windows._MATRIX_CELLS = cells
            try:
                outs.append(windows.window_features(dev, t, v, ring, wins))
            finally:
                windows._MATRIX_CELLS = old
        for key in outs[0]:
            np.testing.assert_array_equal(outs[0][key], outs[1][key], err_msg=key)
        for name in ("t", "v", "n", "head"):
            np.testing.assert_array_equal(getattr(rings[0], name), getattr(rings[1], name))
