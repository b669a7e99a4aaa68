"""Windowed features over each device's own trailing readings, kept in ring buffers.

Each (kind, field) that a rule windows over has a ring of the last ``RING`` readings of
every device (a circular buffer per device in flat arrays). Each new reading goes into its
device's ring, then every window is computed over the ring from newest to oldest, as the
reference engine does, in the same order and arithmetic, so both give bit-identical
floats (threshold ties never flake in the property tests). A window therefore sees at
most ``RING`` readings: 64 covers a minute of 1 Hz data.

The loop is compiled with numba: it is one sequential pass per reading (the reference's
own loop), which numpy could only express as ~60 array calls a batch of index
arithmetic, most of the engine's fixed cost on the live path's small batches (measured:
~200 µs a call for 100 readings with numpy, ~10 µs compiled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from anju.rules.expr import Window
from anju.rules.jit import arg, compiled

__all__ = ["RING", "Ring", "window_features"]

RING = 64

# function codes of the compiled loop
_FUNCS = {"count": 0, "span": 1, "wmax": 2, "wmin": 3, "count_if": 4, "slope": 5}


@dataclass
class Ring:
    """The last ``RING`` (ts, value) pairs of each device, a circular buffer per device
    (flat arrays: device ``d``'s slot ``s`` is at ``d * RING + s``)."""

    t: np.ndarray  # int64 (devices * RING)
    v: np.ndarray  # float64 (devices * RING)
    n: np.ndarray  # int64 (devices,): how many slots hold readings
    head: np.ndarray  # int64 (devices,): the slot the next reading goes to

    @classmethod
    def empty(cls, devices: int) -> Ring:
        return cls(np.zeros(devices * RING, np.int64), np.zeros(devices * RING),
                   np.zeros(devices, np.int64), np.zeros(devices, np.int64))


# An explicit signature compiles once, at import (cached on disk): an argument of another
# type is an error, never a fresh compilation of a second or more in the middle of traffic.
@compiled("void(i8[::1], i8[::1], f8[::1], i8[::1], f8[::1], i8[::1], i8[::1], i8[::1], i8[::1],"
           " i8[::1], f8[:, ::1])")
def features(dev: Any, t: Any, v: Any, rt: Any, rv: Any, rn: Any, rhead: Any,
              lens_ms: Any, w_len: Any, w_func: Any, out: Any) -> None:  # pragma: no cover
    # (compiled: coverage cannot see inside; tests hold it to the reference engine)
    sums = np.empty((len(lens_ms), 8))
    for i in range(len(dev)):
        d = dev[i]
        base = d * RING
        ti = t[i]
        h = rhead[d]
        rt[base + h] = ti
        rv[base + h] = v[i]
        h = (h + 1) % RING
        rhead[d] = h
        avail = min(rn[d] + 1, RING)
        rn[d] = avail
        for k in range(len(lens_ms)):
            lo = ti - lens_ms[k]
            n = 0.0
            sx = 0.0
            sy = 0.0
            sxx = 0.0
            sxy = 0.0
            vmax = -np.inf
            vmin = np.inf
            oldest = ti
            for j in range(1, avail + 1):
                s = base + (h - j) % RING
                tj = rt[s]
                if tj < lo:
                    break
                vj = rv[s]
                dt = (tj - ti) / 1000.0
                n += 1.0
                sx += dt
                sy += vj
                sxx += dt * dt
                sxy += dt * vj
                if vj > vmax:
                    vmax = vj
                if vj < vmin:
                    vmin = vj
                oldest = tj
            sums[k, 0] = n
            sums[k, 1] = (ti - oldest) / 1000.0
            sums[k, 2] = vmax
            sums[k, 3] = vmin
            sums[k, 4] = sy
            den = n * sxx - sx * sx
            sums[k, 5] = (n * sxy - sx * sy) / den if den > 0 else np.nan
        for w in range(len(w_len)):
            out[w, i] = sums[w_len[w], w_func[w]]


_PLANS: dict[tuple[Window, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def window_plan(windows: list[Window]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compiled loop's arguments for a list of windows (distinct lengths, each
    window's length and function), made once per list."""
    key = tuple(windows)
    plan = _PLANS.get(key)
    if plan is None:
        lens = sorted({round(w.seconds * 1000) for w in windows})
        plan = _PLANS[key] = (
            np.array(lens, np.int64),
            np.array([lens.index(round(w.seconds * 1000)) for w in windows], np.int64),
            np.array([_FUNCS[w.func] for w in windows], np.int64))
    return plan


def window_features(dev: np.ndarray, t: np.ndarray, v: np.ndarray, ring: Ring,
                    windows: list[Window], out: np.ndarray) -> None:
    """Features of each row (each device's rows in time order) into ``out`` (a row per
    window, a column per reading), updating ``ring``."""
    lens, w_len, w_func = window_plan(windows)
    features(arg(dev, np.int64), arg(t, np.int64), arg(v, np.float64), ring.t, ring.v, ring.n,
              ring.head, lens, w_len, w_func, out)
