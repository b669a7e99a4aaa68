"""Small array helpers for device-sorted columns (``np.r_`` is slow for such small jobs)."""

from __future__ import annotations

import numpy as np

__all__ = ["changes", "ends"]


def changes(a: np.ndarray) -> np.ndarray:
    """True where a new value starts (and at 0)."""
    out = np.empty(len(a), bool)
    if len(a):
        out[0] = True
        np.not_equal(a[1:], a[:-1], out=out[1:])
    return out


def ends(a: np.ndarray) -> np.ndarray:
    """True at the last element of each run of equal values."""
    out = np.empty(len(a), bool)
    if len(a):
        out[-1] = True
        np.not_equal(a[1:], a[:-1], out=out[:-1])
    return out
