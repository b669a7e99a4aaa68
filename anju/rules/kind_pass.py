"""A kind's readings of a batch in one compiled call: from decoded columns to transitions.

Between a batch's decoded columns and its alarm transitions a kind goes through a dozen
steps: event conditions on every reading, sorting by (device, time), device clock steps,
late readings, offline gaps, each device's newest reading, registry params, windowed
features and the state rules' run machinery. Each step was already a compiled loop, but
called one by one from Python they cost ~15 calls and ~90 µs a kind a batch, most of it
call overhead and scratch arrays: the live path's small batches pay that every few
milliseconds. :func:`kind_pass` runs them all in one call; Python only turns its hits into
transitions (rare) and rebases devices whose clock jumped (rarer still: the pass stops
before changing anything and says so, the engine rebases and calls again).

:class:`KindPass` holds what the call takes for one kind: the kind's programs
(:mod:`anju.rules.program`: its state, event and ``count_if`` conditions over one column
layout), the tables of its rules and scratch buffers that grow with the largest batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numba
import numpy as np

from anju.rules.clock import advance, in_order, step_scan
from anju.rules.events import event_hits
from anju.rules.jit import compiled
from anju.rules.offline import gap_scan
from anju.rules.program import Conditions, Programs, holds, run_program
from anju.rules.schedule import scan
from anju.rules.state import NO_DUE, KindState, state_pass
from anju.rules.windows import RING, Ring, features, window_plan

__all__ = ["STEPS", "Counts", "KindPass", "kind_pass", "newest_ts"]

STEPS = -1  # kind_pass's answer when devices' clocks jumped: rebase them, call again

# A call's arguments are few on purpose: numba unboxes each array argument (~0.1 µs),
# and with each table and buffer its own argument the call cost ~75 of them. The kind's
# static tables are one int64 array of segments; the outputs are rows of a few arrays.

# segments of the table (``seg(tab, i)``), in this order
(CODE, LO, HI, EV_P, EV_LO, EV_HI, EV_REQ, PARAM_ROWS, W_SRC, W_WHERE, W_FIRST, W_L_LO,
 W_L_HI, W_LENS, W_F_LO, W_F_HI, W_LEN, W_FUNC, COND_P, REQ_LO, REQ_HI, REQ_ROWS, FOR_MS,
 CLEAR_MS, TIER_LO, TIER_HI, TIER_PROG, TIER_MS, OUT_P, SC_P, SC_LO, SC_HI, SC_REQ,
 SCALARS) = range(34)
# scalars (the last segment)
DEPTH, NROWS, MEMBERS, WIDTH = range(4)
# rows of the int64 outputs
(STEP_DEV, STEP_BY, EV_RULE, EV_ROW, OFF_RULE, OFF_DEV, OFF_T, OFF_PREV, E_SUB, E_TS, E_ST,
 SC_RULE, SC_DEV, SC_T, COUNTS) = range(15)
# rows of the bool outputs
OFF_BACK, E_UP, SC_HIT = range(3)


class Counts(NamedTuple):
    """What a call found (the ``COUNTS`` row of its int64 outputs)."""

    final: int  # readings kept (sorted, not late)
    late: int
    steps: int  # devices whose clock jumped (the call answered STEPS)
    events: int  # event hits
    offline: int  # offline gaps
    state: int  # state transitions
    schedule: int  # readings left to Schedules.on_hits (a round ended within the batch)
    due: int  # earliest receiving time a state subject of the batch's can come due in a tick

    @classmethod
    def of(cls, ints: np.ndarray) -> Counts:
        return cls._make(ints[COUNTS, :8].tolist())


def _table(segments: list[Any]) -> np.ndarray:
    """Segments of int64 one after the other, after a header of their bounds."""
    parts = [np.asarray(p, np.int64).ravel() for p in segments]
    head = len(parts) + 1
    bounds = np.cumsum([head] + [len(p) for p in parts])
    return np.concatenate([bounds, *parts]).astype(np.int64)


@numba.njit(inline="always", cache=True)
def seg(tab: Any, i: Any) -> Any:  # pragma: no cover  (compiled)
    return tab[tab[i]:tab[i + 1]]


@dataclass
class _Buffers:
    """Outputs of the pass, sized for the largest batch seen (regrown on demand)."""

    cap: int
    ints: np.ndarray  # int64 rows (STEP_DEV …)
    flags: np.ndarray  # bool rows (OFF_BACK, E_UP, SC_HIT)
    e_val: np.ndarray  # float64 (transitions, width): each state transition's outputs

    @classmethod
    def of(cls, cap: int, rules: tuple[int, int, int, int], width: int) -> _Buffers:
        # Sized for the worst case (every reading a hit of every rule, two state
        # transitions a reading a rule): large for big batches, but np.zeros and a large
        # np.empty are mapped lazily, so only the pages a call writes are ever resident.
        events, offline, state, schedule = rules
        wide = max(1, cap * max(events, offline, 2 * state, schedule, 1))
        return cls(cap, np.zeros((15, wide), np.int64), np.zeros((3, wide), np.bool_),
                   np.empty((max(1, 2 * cap * state), width)))


class KindPass:
    """One kind's arguments to :func:`kind_pass`: its table (programs, rule tables, window
    plans), windows' rings (as rows of 2-D arrays, one a windowed field), registry params
    and buffers."""

    def __init__(self, programs: Programs, state: KindState | None, events: Conditions,
                 schedules: tuple[Conditions, np.ndarray], offline_lim: np.ndarray,
                 offline_active: np.ndarray,
                 params: list[tuple[int, np.ndarray]],
                 windows: list[tuple[list[Any], int, int, int]], devices: int,
                 local_of: np.ndarray) -> None:
        self.state = state
        code, lo, hi, self._consts = programs.arrays
        self._off = (offline_lim, offline_active)
        self._params = (np.stack([a for _, a in params]).astype(np.float64) if params
                        else np.empty((0, devices)))
        self._local_of = local_of
        # windows: a row each; lens and funcs flat with [lo, hi) bounds
        src, where, first, l_lo, l_hi, f_lo, f_hi = ([] for _ in range(7))
        lens: list[int] = []
        w_len: list[int] = []
        w_func: list[int] = []
        for ws, value_row, where_prog, first_row in windows:
            ln, wl, wf = window_plan(ws)
            src.append(value_row)
            where.append(where_prog)
            first.append(first_row)
            l_lo.append(len(lens))
            lens += ln.tolist()
            l_hi.append(len(lens))
            f_lo.append(len(w_len))
            w_len += wl.tolist()
            w_func += wf.tolist()
            f_hi.append(len(w_len))
        nw = len(windows)
        # np.zeros: pages are taken from the OS only once a device's ring is written
        self._ring = (np.zeros((nw, devices * RING), np.int64), np.zeros((nw, devices * RING)),
                      np.zeros((nw, devices), np.int64), np.zeros((nw, devices), np.int64))
        self.rings = [Ring(*(a[e] for a in self._ring)) for e in range(nw)]
        if state is not None:
            tb, st = state.table, state.st
            rule_tables: list[Any] = [
                tb.cond.prog, tb.cond.lo, tb.cond.hi, tb.cond.rows, tb.for_ms, tb.clear_ms,
                tb.tier_lo, tb.tier_hi, tb.tier_prog, tb.tier_ms, tb.outputs]
            self._state: tuple[np.ndarray, ...] = (st.pol, st.active, st.times, st.out)
            n_state, width, members = len(state.rules), state.width, len(state.members)
        else:
            rule_tables = [[]] * 11
            self._state = (np.empty(0, np.int8), np.empty(0, np.bool_),
                           np.empty((4, 0), np.int64), np.empty((0, 1)))
            n_state, width, members = 0, 1, 0
        self._tab = _table([
            code, lo, hi, events.prog, events.lo, events.hi, events.rows,
            [r for r, _ in params], src, where, first, l_lo, l_hi, lens, f_lo, f_hi, w_len,
            w_func, *rule_tables, schedules[0].prog, schedules[0].lo, schedules[0].hi,
            schedules[0].rows, [max(1, programs.depth), len(programs.layout), members, width]])
        self._schedules = schedules[1]
        self._sizes = (len(events.prog), len(offline_lim), n_state, len(schedules[0].prog))
        self._width = width
        self._grow(64)

    def _grow(self, n: int) -> _Buffers:
        cap = 64
        while cap < n:
            cap *= 2
        b = self.buf = _Buffers.of(cap, self._sizes, self._width)
        # the call's arguments after the batch's own, in kind_pass's order
        self._tail = (self._local_of, self._tab, self._consts, self._params, *self._off,
                      self._schedules, *self._ring, *self._state, b.ints, b.flags, b.e_val)
        return b

    def run(self, dev: np.ndarray, t: np.ndarray, values: np.ndarray, now: int,
            check_steps: bool, clocks: np.ndarray) -> int:
        """Runs the pass over a kind's readings (``dev`` int32, ``t`` int64, ``values``
        rows × fields, all C-contiguous); ``clocks``: the engine's (4, devices) newest,
        recv_at, skew_base, last_seen. :data:`STEPS` or 0; the results are in
        :attr:`buf`."""
        if len(t) > self.buf.cap:
            self._grow(len(t))
        return kind_pass(dev, t, values, now, check_steps, clocks, *self._tail)


@numba.njit(cache=True, error_model="numpy")
def _windows(tab: Any, code: Any, lo: Any, hi: Any, consts: Any, m: Any, dev: Any, t: Any,
             rt: Any, rv: Any, rn: Any, rhead: Any, depth: Any
             ) -> None:  # pragma: no cover  (compiled: tests hold it to the oracle)
    """The windowed features' rows of ``m``, each windowed field's ring updated."""
    nk = len(t)
    w_src, w_where, w_first = seg(tab, W_SRC), seg(tab, W_WHERE), seg(tab, W_FIRST)
    w_l_lo, w_l_hi, w_lens = seg(tab, W_L_LO), seg(tab, W_L_HI), seg(tab, W_LENS)
    w_f_lo, w_f_hi = seg(tab, W_F_LO), seg(tab, W_F_HI)
    w_len, w_func = seg(tab, W_LEN), seg(tab, W_FUNC)
    if not len(w_src):
        return
    stack = np.empty((depth, nk))
    v = np.empty(nk)
    for e in range(len(w_src)):
        if w_where[e] >= 0:  # the 0/1 column of a count_if condition (never missing)
            p = w_where[e]
            run_program(code, lo[p], hi[p], consts, m, stack, v)
        else:
            v[:] = m[w_src[e]]
        lens = w_lens[w_l_lo[e]:w_l_hi[e]]
        wl = w_len[w_f_lo[e]:w_f_hi[e]]
        wf = w_func[w_f_lo[e]:w_f_hi[e]]
        feats = m[w_first[e]:w_first[e] + len(wl)]
        has = 0
        for i in range(nk):
            has += not np.isnan(v[i])
        if has == nk:
            features(dev, t, v, rt[e], rv[e], rn[e], rhead[e], lens, wl, wf, feats)
            continue
        # a reading without the field neither enters the ring nor has features
        rows = np.flatnonzero(~np.isnan(v))
        part = np.empty((len(wl), len(rows)))
        features(dev[rows], t[rows], v[rows], rt[e], rv[e], rn[e], rhead[e], lens, wl, wf,
                 part)
        feats[:] = np.nan
        for a in range(len(wl)):
            for b in range(len(rows)):
                feats[a, rows[b]] = part[a, b]


@compiled("i8(i8[::1])")
def newest_ts(ts: Any) -> int:  # pragma: no cover  (compiled)
    """The largest of a batch's times (numpy's max costs ~3 µs a call on small arrays)."""
    m = ts[0]
    for x in ts:
        if x > m:
            m = x
    return m


@compiled("i8(i4[::1], i8[::1], f8[:, ::1], i8, b1, i8[:, ::1], i8[::1], i8[::1], f8[::1],"
          " f8[:, ::1], i8[:, ::1], b1[:, ::1], i8[:, :, ::1], i8[:, ::1], f8[:, ::1],"
          " i8[:, ::1], i8[:, ::1], i1[::1], b1[::1], i8[:, ::1], f8[:, ::1], i8[:, ::1],"
          " b1[:, ::1], f8[:, ::1])", ieee=True)
def kind_pass(dev_in: Any, t_in: Any, values: Any, now: Any, check_steps: Any, clocks: Any,
              local_of: Any, tab: Any, consts: Any, params: Any, off_lim: Any, off_act: Any,
              sched: Any, rt: Any, rv: Any, rn: Any, rhead: Any, pol: Any, active: Any,
              times: Any, sout: Any, ints: Any, flags: Any, e_val: Any
              ) -> int:  # pragma: no cover  (compiled: tests hold it to the oracle)
    n = len(t_in)
    nf = values.shape[1]
    code, lo, hi = seg(tab, CODE), seg(tab, LO), seg(tab, HI)
    sc = seg(tab, SCALARS)
    depth, nrows = sc[DEPTH], sc[NROWS]
    newest, recv_at, skew_base, last_seen = clocks[0], clocks[1], clocks[2], clocks[3]
    counts = ints[COUNTS]
    counts[:7] = 0
    counts[7] = NO_DUE
    # event rules see every reading in arrival order, late ones too
    ev_p = seg(tab, EV_P)
    if len(ev_p):
        m0 = np.empty((nf, n))
        for i in range(n):
            for j in range(nf):
                m0[j, i] = values[i, j]
        counts[3] = event_hits(code, lo, hi, consts, m0, np.empty((depth, n)), ev_p,
                               seg(tab, EV_LO), seg(tab, EV_HI), seg(tab, EV_REQ),
                               ints[EV_RULE], ints[EV_ROW])
    # sorted by (device, time); a stable sort keeps ties in arrival order
    dev = np.empty(n, np.int64)
    for i in range(n):
        dev[i] = dev_in[i]
    t = t_in
    order = np.arange(n)
    if not in_order(dev, t):
        tmin = t.min()
        order = np.argsort((dev << 42) | (t - tmin), kind="mergesort")
        dev = dev[order]
        t = t[order]
    if check_steps:
        k = step_scan(newest, recv_at, skew_base, dev, t, now, ints[STEP_DEV], ints[STEP_BY])
        if k:
            counts[2] = k
            return STEPS
    # late readings (older than the device's newest applied) leave the rules
    keep = np.empty(n, np.int64)
    nk = 0
    for i in range(n):
        if t[i] >= newest[dev[i]]:
            keep[nk] = i
            nk += 1
    counts[1] = n - nk
    counts[0] = nk
    if nk == 0:
        return 0
    if nk < n:
        dev = dev[keep[:nk]]
        t = t[keep[:nk]]
    # offline: gaps before the readings and devices they bring back, then the clocks
    k = 0
    for r in range(off_lim.shape[0]):
        g = gap_scan(dev, t, now, newest, last_seen, recv_at, off_lim[r], off_act[r],
                     ints[OFF_DEV, k:], flags[OFF_BACK, k:], ints[OFF_PREV, k:])
        ints[OFF_RULE, k:k + g] = r
        k += g
    for i in range(k):  # rows of this pass mean nothing to the caller: device and time
        row = ints[OFF_DEV, i]
        ints[OFF_T, i] = t[row]
        ints[OFF_DEV, i] = dev[row]
    counts[4] = k
    advance(dev, t, now, newest, recv_at, last_seen)
    # the column matrix: fields, registry params, windowed features
    m = np.empty((nrows, nk))
    for i in range(nk):
        s = order[keep[i]]
        for j in range(nf):
            m[j, i] = values[s, j]
    sc_p = seg(tab, SC_P)
    if len(sc_p):  # schedule rules: conditions over the fields (the matrix's first rows)
        sc_lo, sc_hi, sc_req = seg(tab, SC_LO), seg(tab, SC_HI), seg(tab, SC_REQ)
        hit = np.empty(nk)
        valid = np.empty(nk, np.bool_)
        stack = np.empty((depth, nk))
        k = 0
        for r in range(len(sc_p)):
            holds(code, lo, hi, consts, m, stack, sc_p, sc_lo, sc_hi, sc_req, r, hit, valid)
            k = scan(dev, t, hit, sched[r], r, ints[SC_RULE], ints[SC_DEV], ints[SC_T],
                     flags[SC_HIT], k)
        counts[6] = k
    param_rows = seg(tab, PARAM_ROWS)
    for j in range(len(param_rows)):
        pv = params[j]
        mr = m[param_rows[j]]
        for i in range(nk):
            mr[i] = pv[dev[i]]
    _windows(tab, code, lo, hi, consts, m, dev, t, rt, rv, rn, rhead, depth)
    cond_p = seg(tab, COND_P)
    if len(cond_p):
        local = np.empty(nk, np.int64)
        lead = np.empty(nk, np.int64)  # device clock - receiving clock, after advance
        for i in range(nk):
            local[i] = local_of[dev[i]]
            lead[i] = newest[dev[i]] - recv_at[dev[i]]
        due_min = np.full(1, NO_DUE, np.int64)
        counts[5] = state_pass(
            code, lo, hi, consts, m, np.empty((depth, nk)), local, t, sc[MEMBERS], cond_p,
            seg(tab, REQ_LO), seg(tab, REQ_HI), seg(tab, REQ_ROWS), seg(tab, FOR_MS),
            seg(tab, CLEAR_MS), seg(tab, TIER_LO), seg(tab, TIER_HI), seg(tab, TIER_PROG),
            seg(tab, TIER_MS), seg(tab, OUT_P).reshape((len(cond_p), sc[WIDTH])), pol,
            times[0], times[1], active, times[2], times[3], sout, ints[E_SUB],
            flags[E_UP], ints[E_TS], ints[E_ST], e_val, lead, due_min)
        counts[7] = due_min[0]
    return 0
