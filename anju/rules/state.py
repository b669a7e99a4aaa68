"""State rules of one kind: run state and durations over (rule, member device) pairs.

A state rule raises when its condition has held for its duration (``for``, or the shortest
``for_when`` tier that applies) and clears once the condition has been false for
``clear_after``. Each batch runs one pass:

* the condition over all rows (compiled numpy expression), plus windowed features
  computed by the engine (:mod:`anju.rules.windows`);
* subjects with no true reading, no pending run and no active alarm only keep their run
  state — in normal traffic that is nearly every device, and it costs a few vector
  operations;
* the others are cut into runs of equal condition (a virtual row per subject carries the
  run left over from earlier batches), and each run's first due check — "time ≥ run start
  + duration" evaluated before and after each reading — is found with one search;
* a set/reset latch, forward-filled per subject, turns due runs into raised / cleared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anju.rules.arrays import changes as _changes
from anju.rules.arrays import shift as _shift
from anju.rules.arrays import shift_left as _shift_left
from anju.rules.clock import NEVER
from anju.rules.model import CompiledRule
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["NO_RUN", "KindState", "StateArrays"]

NO_RUN = -1


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


@dataclass
class StateArrays:
    """Flat arrays indexed by ``rule index * members + local device index``."""

    pol: np.ndarray  # int8: -1 no reading yet, 0 condition false, 1 true
    start: np.ndarray  # int64: when the current run began
    dur: np.ndarray  # int64 ms: the run's duration to act (for / clear_after); -1 never
    active: np.ndarray  # bool: alarm raised
    alarm_start: np.ndarray  # int64
    last_t: np.ndarray  # int64: last applied reading
    out: np.ndarray  # float64 (subjects, outputs): value and details of the last reading


@dataclass
class KindState:
    """State of a kind's state rules: flat arrays over (rule, member device) pairs."""

    rules: list[CompiledRule]
    members: np.ndarray  # global index of each local device
    st: StateArrays
    width: int  # outputs per rule (value + details), padded to the widest rule

    def __post_init__(self) -> None:
        # flat index of each rule's first subject
        self._rule_base = np.arange(len(self.rules), dtype=np.int64) * len(self.members)

    @classmethod
    def create(cls, rules: list[CompiledRule], members: np.ndarray) -> KindState:
        size = len(rules) * len(members)
        width = max(len(r.outputs) for r in rules)
        st = StateArrays(
            pol=np.full(size, NO_RUN, np.int8), start=np.zeros(size, np.int64),
            dur=np.full(size, -1, np.int64), active=np.zeros(size, bool),
            alarm_start=np.zeros(size, np.int64), last_t=np.zeros(size, np.int64),
            out=np.full((size, width), np.nan))
        return cls(rules, members, st, width)

    def owns(self, devs: np.ndarray, local: np.ndarray) -> np.ndarray:
        """Which of the global devices ``devs`` (with their ``local`` indices) are members."""
        nm = len(self.members)
        if not nm:
            return np.zeros(len(devs), bool)
        inside = (local >= 0) & (local < nm)
        return inside & (self.members[np.where(inside, local, 0)] == devs)

    def shift(self, local: np.ndarray, shift: np.ndarray) -> None:
        """Moves the times held for the member devices ``local`` by ``shift`` each."""
        nm = len(self.members)
        idx = (np.arange(len(self.rules))[:, None] * nm + local[None, :]).ravel()
        sh = np.tile(shift, len(self.rules))
        for a in (self.st.start, self.st.last_t, self.st.alarm_start):
            a[idx] += sh

    # -- a batch ---------------------------------------------------------------------------
    def process(self, local: np.ndarray, t: np.ndarray, cols: dict[str, Any],
                render: Renderer) -> list[Transition]:
        """All state rules of the kind over readings sorted by device then time (``local``:
        each row's member index): conditions per rule, then one pass of the run machinery
        over the busy (rule, device) pairs of them all."""
        nm = len(self.members)
        parts: list[tuple[np.ndarray, ...]] = []
        # subjects with a pending run or an open alarm, among the batch's devices only; a
        # rule with none of them and no true reading has nothing to do: false readings on
        # a quiet subject change nothing that could ever produce a transition, so its
        # state is left as it is
        dev_head = _changes(local)
        ordinal = np.cumsum(dev_head) - 1  # each row's device among the batch's devices
        idx = self._rule_base[:, None] + local[dev_head][None, :]
        hot = (self.st.pol[idx] == 1) | self.st.active[idx]
        hot_rule = hot.any(axis=1)
        # rows where a rule's fields are measured, shared by rules reading the same fields
        subsets: dict[frozenset[str], tuple[Any, ...]] = {}
        for ri, r in enumerate(self.rules):
            assert r.condition is not None
            cond = r.condition.test_vector(cols)
            if not hot_rule[ri] and not cond.any():
                continue
            if cond.shape != t.shape:
                cond = np.broadcast_to(cond, t.shape)
            need = r.condition.required
            sub_rows = subsets.get(need)
            if sub_rows is None:
                valid = None
                for f in need:
                    ok = ~np.isnan(cols[f])
                    valid = ok if valid is None else valid & ok
                rows = None if valid is None or valid.all() else np.flatnonzero(valid)
                rl = local if rows is None else local[rows]
                heads = np.flatnonzero(_changes(rl))
                counts = _shift_left(heads, len(rl)) - heads
                ro = ordinal if rows is None else ordinal[rows]
                sub_rows = subsets[need] = (rows, rl, heads, counts, ro[heads])
            rows, rl, heads, counts, head_ord = sub_rows
            rc = cond if rows is None else cond[rows]
            if not len(rc) or not (hot_rule[ri] or rc.any()):
                continue
            busy = np.logical_or.reduceat(rc, heads) | hot[ri, head_ord]
            if not busy.any():
                continue
            sel = np.flatnonzero(np.repeat(busy, counts))
            src = sel if rows is None else rows[sel]
            sub = {k: cols[k][src] for k in r.names}
            c = rc[sel]
            outs = np.full((len(sel), self.width), np.nan)
            outs[:, :len(r.outputs)] = _outputs(r, sub, len(sel))
            parts.append((rl[sel] + ri * nm, t[src], c, _durations(r, c, sub), outs))
        if not parts:
            return []
        key, tt, cc, dd, oo = (np.concatenate(x) for x in zip(*parts, strict=True))
        return self._runs(key, tt, cc, dd, oo, render)

    def _runs(self, dev: np.ndarray, t: np.ndarray, cond: np.ndarray, dur: np.ndarray,
              outs: np.ndarray, render: Renderer) -> list[Transition]:
        """The run machinery over readings sorted by subject key (rule, device), then time."""
        st = self.st
        m = len(t)
        heads = np.flatnonzero(_changes(dev))
        udev = dev[heads]
        g = len(udev)
        # combined rows: one virtual row per subject (its state), then its readings
        size = m + g
        vpos = heads + np.arange(g)
        real = np.ones(size, bool)
        real[vpos] = False
        rpos = np.flatnonzero(real)
        ct = np.empty(size, np.int64)
        cpol = np.empty(size, np.int8)
        cdur = np.empty(size, np.int64)
        cout = np.empty((size, self.width))
        ct[vpos], ct[rpos] = st.start[udev], t
        cpol[vpos], cpol[rpos] = st.pol[udev], cond.astype(np.int8)
        cdur[vpos], cdur[rpos] = st.dur[udev], dur
        cout[vpos], cout[rpos] = st.out[udev], outs
        # the virtual row stands for the last applied reading: its time for the ts rule
        capplied = ct.copy()
        capplied[vpos] = st.last_t[udev]

        seg_first = np.zeros(size, bool)
        seg_first[vpos] = True
        run_head = seg_first | _changes(cpol)
        rh = np.flatnonzero(run_head)
        run_id = np.cumsum(run_head) - 1
        nruns = len(rh)
        rstart = ct[rh]  # virtual rows carry their run's start
        rpol = cpol[rh]
        rlast = _shift_left(rh, size) - 1
        seg_last_row = _shift_left(vpos, size) - 1
        rseg = np.cumsum(seg_first)[rh] - 1
        r_is_seg_last = rlast == seg_last_row[rseg]
        # checks: F_i (before applying row i; belongs to the run of row i-1) and
        # S_i (after applying row i; belongs to the run of row i); both "now ≥ start + dur"
        prev_start = _shift(rstart[run_id], 0)
        prev_dur = _shift(cdur, -1)
        f_ok = real & ~seg_first & (prev_dur >= 0) & (_shift(cpol, 0) >= 0) \
            & (ct >= prev_start + np.maximum(prev_dur, 0))
        s_ok = real & (cpol >= 0) & (cdur >= 0) & (ct >= rstart[run_id] + np.maximum(cdur, 0))
        checks = np.empty(2 * size, bool)
        checks[0::2], checks[1::2] = f_ok, s_ok
        lo = 2 * rh + 1
        hi = np.where(r_is_seg_last, 2 * rlast + 1, 2 * rlast + 2)
        trues = np.flatnonzero(checks)
        if len(trues):
            k = np.searchsorted(trues, lo)
            has = k < len(trues)
            p = np.where(has, trues[np.minimum(k, len(trues) - 1)], 0)
        else:
            has = np.zeros(nruns, bool)
            p = np.zeros(nruns, np.int64)
        trig = has & (p <= hi) & (rpol >= 0)
        row = p // 2
        is_s = (p % 2) == 1
        # F: due = start + duration of the previous row, value from the previous row
        vrow = np.maximum(np.where(is_s, row, row - 1), 0)
        ts = np.maximum(rstart + cdur[vrow], capplied[vrow])
        ev = np.where(trig, rpol, -1).astype(np.int8)  # 1 set, 0 reset, -1 nothing
        # latch: the state before each run is the last event of an earlier run of the
        # same subject, or the stored flag for its first run
        first_run = _changes(rseg)
        src = _shift(ev, -1)
        src[first_run] = st.active[udev[rseg[first_run]]].astype(np.int8)
        before_val = src[np.maximum.accumulate(np.where(src >= 0, np.arange(nruns), -1))]
        raise_r = (ev == 1) & (before_val == 0)
        clear_r = (ev == 0) & (before_val == 1)
        after = np.where(ev >= 0, ev, before_val)
        # the alarm a clear closes started at the subject's latest raise before it
        last_raise = np.maximum.accumulate(np.where(raise_r, np.arange(nruns), -1))
        seg_start_run = np.maximum.accumulate(np.where(first_run, np.arange(nruns), -1))
        has_prev_raise = last_raise >= seg_start_run

        out: list[Transition] = []
        for i in np.flatnonzero(raise_r | clear_r).tolist():
            subject = int(udev[rseg[i]])
            if raise_r[i]:
                started = int(rstart[i])
            elif has_prev_raise[i]:
                started = int(rstart[last_raise[i]])
            else:
                started = int(st.alarm_start[subject])
            out.append(self.transition(subject, "raised" if raise_r[i] else "cleared",
                                       int(ts[i]), started, cout[int(vrow[i])], render))
        # new state from each subject's last run
        lr = _shift_left(np.flatnonzero(first_run), nruns) - 1
        segs = rseg[lr]
        d = udev[segs]
        st.pol[d] = rpol[lr]
        st.start[d] = rstart[lr]
        st.dur[d] = cdur[seg_last_row[segs]]
        st.active[d] = after[lr].astype(bool)
        st.alarm_start[d] = np.where(has_prev_raise[lr], rstart[np.maximum(last_raise[lr], 0)],
                                     st.alarm_start[d])
        st.last_t[d] = ct[seg_last_row[segs]]
        st.out[d] = cout[seg_last_row[segs]]
        return out

    # -- a clock tick ----------------------------------------------------------------------
    def tick(self, now: int, newest: np.ndarray, recv_at: np.ndarray, render: Renderer
             ) -> list[Transition]:
        """Runs come due at receiving time ``now``, each on its device's own clock
        (``newest + (now - recv_at)``; ``now`` for a device that has not reported)."""
        st = self.st
        # only a subject whose alarm flag differs from its run's polarity can change: a
        # true run not yet raised, or a false run (or none) under an open alarm
        cand = np.flatnonzero(st.active != (st.pol == 1))
        if not len(cand):
            return []
        cand = cand[(st.pol[cand] >= 0) & (st.dur[cand] >= 0)]
        devs = self.members[cand % len(self.members)]
        nw = newest[devs]
        dev_now = np.where(nw != NEVER, nw + (now - recv_at[devs]), now)
        due_c = st.start[cand] + st.dur[cand]
        ok = dev_now >= due_c
        if not ok.any():
            return []
        out: list[Transition] = []
        for i in cand[ok & (st.pol[cand] == 1)].tolist():
            due = int(st.start[i] + st.dur[i])
            st.active[i] = True
            st.alarm_start[i] = st.start[i]
            out.append(self.transition(i, "raised", max(due, int(st.last_t[i])),
                                       int(st.start[i]), st.out[i], render))
        for i in cand[ok & (st.pol[cand] == 0)].tolist():
            due = int(st.start[i] + st.dur[i])
            st.active[i] = False
            out.append(self.transition(i, "cleared", max(due, int(st.last_t[i])),
                                       int(st.alarm_start[i]), st.out[i], render))
        return out

    def transition(self, subject: int, event: str, ts: int, started: int, vals: np.ndarray,
                   render: Renderer) -> Transition:
        """The transition of flat subject ``subject`` with its reading's outputs ``vals``."""
        nm = len(self.members)
        r = self.rules[subject // nm]
        d = int(self.members[subject % nm])
        details = {name: _num(vals[j + 1]) for j, (name, _) in enumerate(r.details)}
        return render.device(r, d, event, ts, started, float(vals[0]), details)


def _durations(r: CompiledRule, cond: np.ndarray, cols: dict[str, Any]) -> np.ndarray:
    d = np.full(len(cond), _ms(r.for_s), np.int64)
    # tiers: the shortest applicable duration wins
    for when, secs in r.for_when:
        w = when.test_vector(cols)
        d = np.where(w, np.minimum(d, _ms(secs)), d)
    return np.where(cond, d, _ms(r.clear_after_s))


def _outputs(r: CompiledRule, cols: dict[str, Any], n: int) -> np.ndarray:
    out = np.full((n, len(r.outputs)), np.nan)
    for j, e in enumerate(r.outputs):
        if e is not None:
            out[:, j] = np.broadcast_to(np.asarray(e.vector(cols), np.float64), (n,))
    return out
