"""Windowed features over each device's own trailing readings, kept in ring buffers.

Each (kind, field) that a rule windows over has a ring of the last ``RING`` readings of
every device (right-aligned rows of a ``(devices, RING)`` array). A batch is merged with
the rings of its devices, every window is computed with one vector pass per look-back
offset (newest first), and the rings keep the last ``RING`` readings again.

The reference engine sums in the same order (newest to oldest), so both give
bit-identical floats, which keeps threshold ties from flaking in the property tests.
A window therefore sees at most ``RING`` readings: 64 covers a minute of 1 Hz data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anju.rules.arrays import changes
from anju.rules.expr import Window

__all__ = ["RING", "Ring", "window_features"]

RING = 64


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


def _segments(dev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique devices of a device-sorted array, their first positions and counts."""
    if len(dev) == 0:
        e = np.empty(0, np.int64)
        return e, e, e
    heads = np.flatnonzero(changes(dev))
    counts = np.diff(np.append(heads, len(dev)))
    return dev[heads], heads, counts


# Below this many (row, look-back) cells a batch takes the one-matrix path: a small batch
# pays ~10 numpy calls instead of ~10 per look-back offset (up to 640), which was most of
# the engine's fixed cost per batch; above it, the loop's early exits and memory win.
_MATRIX_CELLS = 1 << 17


def _features(funcs: set[str], t: np.ndarray, ct: np.ndarray, cv: np.ndarray,
              new_pos: np.ndarray, seg0: np.ndarray, lo: np.ndarray) -> dict[str, np.ndarray]:
    """The requested features of each new row."""
    width = min(RING, int((new_pos - seg0).max()) + 1) if len(t) else 0
    if len(t) * width <= _MATRIX_CELLS:
        return _features_matrix(funcs, t, ct, cv, new_pos, seg0, lo, width)
    return _features_loop(funcs, t, ct, cv, new_pos, seg0, lo)


def _features_matrix(funcs: set[str], t: np.ndarray, ct: np.ndarray, cv: np.ndarray,
                     new_pos: np.ndarray, seg0: np.ndarray, lo: np.ndarray,
                     width: int) -> dict[str, np.ndarray]:
    """The loop's figures from one (rows, look-back) matrix. Sums are ``cumsum`` along a
    row, newest first: sequential like the loop and the reference engine (``sum`` would
    add pairwise and differ in the last bit); masked cells add an exact 0.0."""
    n = len(t)
    idx = new_pos[:, None] - np.arange(max(width, 1))[None, :]
    ok = idx >= seg0[:, None]
    idx = np.where(ok, idx, 0)
    ti = ct[idx]
    ok &= ti >= lo[:, None]
    ok = np.logical_and.accumulate(ok, axis=1)  # a window that stopped never restarts
    k = ok.sum(axis=1)
    cnt = k.astype(np.float64)
    last = np.maximum(k - 1, 0)
    oldest = np.where(k > 0, ti[np.arange(n), last], t)
    out: dict[str, np.ndarray] = {"count": cnt, "span": (t - oldest) / 1000.0}
    vi = cv[idx]
    if "wmax" in funcs:
        out["wmax"] = np.where(ok, vi, -np.inf).max(axis=1)
    if "wmin" in funcs:
        out["wmin"] = np.where(ok, vi, np.inf).min(axis=1)
    if "count_if" in funcs:
        out["count_if"] = np.cumsum(np.where(ok, vi, 0.0), axis=1)[:, -1]
    if "slope" in funcs:
        dt = (ti - t[:, None]) / 1000.0
        vz = np.where(ok, vi, 0.0)
        dz = np.where(ok, dt, 0.0)
        sx = np.cumsum(dz, axis=1)[:, -1]
        sy = np.cumsum(vz, axis=1)[:, -1]
        sxx = np.cumsum(dz * dz, axis=1)[:, -1]
        sxy = np.cumsum(dz * vz, axis=1)[:, -1]
        with np.errstate(all="ignore"):
            den = cnt * sxx - sx * sx
            out["slope"] = np.where(den > 0, (cnt * sxy - sx * sy) / np.where(den > 0, den, 1.0),
                                    np.nan)
    return out


def _features_loop(funcs: set[str], t: np.ndarray, ct: np.ndarray, cv: np.ndarray,
                   new_pos: np.ndarray, seg0: np.ndarray, lo: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """The requested features of each new row, one vector pass per look-back offset."""
    n = len(t)
    need_sums = "slope" in funcs
    cnt = np.zeros(n)
    sx, sy, sxx, sxy = (np.zeros(n) for _ in range(4)) if need_sums else (cnt,) * 4
    vmax = np.full(n, -np.inf) if "wmax" in funcs else None
    vmin = np.full(n, np.inf) if "wmin" in funcs else None
    # count_if: the window's values are 1 where its condition held, so the count is a sum
    vsum = np.zeros(n) if "count_if" in funcs else None
    oldest = t.copy()
    rows = np.arange(n)  # rows whose window may still reach further back
    for o in range(RING):
        idx = new_pos[rows] - o
        ok = idx >= seg0[rows]
        idx = np.where(ok, idx, 0)
        ok &= ct[idx] >= lo[rows]
        if not ok.all():
            rows, idx = rows[ok], idx[ok]  # a window that stopped never restarts
            if not len(rows):
                break
        ti = ct[idx]
        vi = cv[idx]
        cnt[rows] += 1.0
        if need_sums:
            dt = (ti - t[rows]) / 1000.0
            sx[rows] += dt
            sy[rows] += vi
            sxx[rows] += dt * dt
            sxy[rows] += dt * vi
        if vmax is not None:
            vmax[rows] = np.maximum(vmax[rows], vi)
        if vmin is not None:
            vmin[rows] = np.minimum(vmin[rows], vi)
        if vsum is not None:
            vsum[rows] += vi
        oldest[rows] = ti
    out: dict[str, np.ndarray] = {"count": cnt, "span": (t - oldest) / 1000.0}
    if vmax is not None:
        out["wmax"] = vmax
    if vmin is not None:
        out["wmin"] = vmin
    if vsum is not None:
        out["count_if"] = vsum
    if need_sums:
        with np.errstate(all="ignore"):
            den = cnt * sxx - sx * sx
            out["slope"] = np.where(den > 0, (cnt * sxy - sx * sy) / np.where(den > 0, den, 1.0),
                                    np.nan)
    return out


def _history(u: np.ndarray, reach: np.ndarray, ring: Ring
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How many ring readings of each device ``u`` are at or after ``reach`` (newest
    first, stopping at the first older one), and each of them as (device row, look-back
    ``j`` from 1, ring slot)."""
    g_n = len(u)
    base = u * RING
    avail = ring.n[u]
    width = int(avail.max()) if g_n else 0
    if g_n * width <= _MATRIX_CELLS:
        jj = np.arange(1, width + 1)
        slot = base[:, None] + (ring.head[u][:, None] - jj[None, :]) % RING
        ok = (jj[None, :] <= avail[:, None]) & (ring.t[slot] >= reach[:, None])
        ok = np.logical_and.accumulate(ok, axis=1)
        g, col = np.nonzero(ok)
        return ok.sum(axis=1), g, col + 1, slot[g, col]
    hist = np.zeros(g_n, np.int64)
    h_g: list[np.ndarray] = []
    h_j: list[np.ndarray] = []
    h_slot: list[np.ndarray] = []
    alive = np.arange(g_n)
    for j in range(1, RING + 1):
        alive = alive[avail[alive] >= j]
        if not len(alive):
            break
        slot1 = base[alive] + (ring.head[u[alive]] - j) % RING
        inside = ring.t[slot1] >= reach[alive]
        alive, slot1 = alive[inside], slot1[inside]
        if not len(alive):
            break
        hist[alive] = j
        h_g.append(alive)
        h_j.append(np.full(len(alive), j))
        h_slot.append(slot1)
    if not h_g:
        e = np.empty(0, np.int64)
        return hist, e, e, e
    return hist, np.concatenate(h_g), np.concatenate(h_j), np.concatenate(h_slot)


def window_features(dev: np.ndarray, t: np.ndarray, v: np.ndarray, ring: Ring,
                    windows: list[Window]) -> dict[str, np.ndarray]:
    """Features of each row (rows sorted by device then time), updating ``ring``."""
    n = len(dev)
    out = {w.key: np.full(n, np.nan) for w in windows}
    if n == 0:
        return out
    u, heads, counts = _segments(dev)
    g_n = len(u)
    # history: newest first, only as far back as the longest window can reach from each
    # device's first new reading (usually one or two readings, not the whole ring)
    reach = t[heads] - round(max(w.seconds for w in windows) * 1000)
    base = u * RING
    hist, g, j, slots = _history(u, reach, ring)
    comb_len = hist + counts
    comb_start = np.cumsum(comb_len) - comb_len
    total = int(comb_len.sum())
    ct = np.empty(total, np.int64)
    cv = np.empty(total)
    if len(g):
        pos = comb_start[g] + hist[g] - j  # oldest first
        ct[pos] = ring.t[slots]
        cv[pos] = ring.v[slots]
    # new rows
    gi = np.repeat(np.arange(g_n), counts)
    within = np.arange(n) - heads[gi]
    new_pos = comb_start[gi] + hist[gi] + within
    ct[new_pos] = t
    cv[new_pos] = v
    seg0 = comb_start[gi]

    by_len: dict[float, list[Window]] = {}
    for w in windows:
        by_len.setdefault(w.seconds, []).append(w)
    for secs, ws in by_len.items():
        funcs = {w.func for w in ws}
        feats = _features(funcs, t, ct, cv, new_pos, seg0, t - round(secs * 1000))
        for w in ws:
            out[w.key] = feats[w.func]
    # write the new readings into the rings (only the last RING of a device matter)
    keep = within >= counts[gi] - RING
    slot = base[gi] + (ring.head[dev] + within) % RING
    ring.t[slot[keep]] = t[keep]
    ring.v[slot[keep]] = v[keep]
    ring.head[u] = (ring.head[u] + counts) % RING
    ring.n[u] = np.minimum(ring.n[u] + counts, RING)
    return out
