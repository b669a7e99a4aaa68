"""State rules of one kind: run state and durations over (rule, member device) pairs.

A state rule raises when its condition has held for its duration (``for``, or the shortest
``for_when`` tier that applies) and clears once the condition has been false for
``clear_after``. Each batch runs one pass:

* the condition over all rows (compiled numpy expression), plus windowed features
  computed by the engine (:mod:`anju.rules.windows`);
* a rule with no true reading and no subject of the batch's devices with a pending run or
  an active alarm is skipped — in normal traffic that is nearly every rule, and it costs
  a few vector operations;
* the others' rows go through the reference engine's run machinery in one compiled loop
  (numba): a due check — "time ≥ run start + duration" — before and after each reading.
  Written with numpy it took ~60 array calls a rule (runs, a search for each run's first
  due check, a forward-filled latch), most of a small batch's cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anju.rules.arrays import changes as _changes
from anju.rules.clock import NEVER
from anju.rules.jit import arg, compiled
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
        each row's member index): conditions per rule with numpy, then the run machinery
        over each rule's rows in one compiled loop."""
        nm = len(self.members)
        # subjects with a pending run or an open alarm, among the batch's devices only; a
        # rule with none of them and no true reading has nothing to do: false readings on
        # a quiet subject change nothing that could ever produce a transition, so its
        # state is left as it is
        st = self.st
        pairs = self._rule_base[:, None] + local[_changes(local)][None, :]
        hot_rule = ((st.pol[pairs] == 1) | st.active[pairs]).any(axis=1)
        n = len(t)
        # rows where a rule's fields are measured, shared by rules reading the same fields
        valid_of: dict[frozenset[str], np.ndarray] = {}
        out: list[Transition] = []
        for ri, r in enumerate(self.rules):
            assert r.condition is not None
            cond = r.condition.test_vector(cols)
            if not hot_rule[ri] and not cond.any():
                continue
            cond = np.broadcast_to(cond, t.shape)
            valid = valid_of.get(r.condition.required)
            if valid is None:
                valid = valid_of[r.condition.required] = r.condition.measured(cols, n)
            outs = _outputs(r, cols, n, self.width)
            ev = _run_rows(ri * nm, local, t, cond, valid,
                           _durations(r, cond, cols, n), outs, st.pol, st.start, st.dur,
                           st.active, st.alarm_start, st.last_t, st.out)
            subject, raised, ts, started, vals = ev
            for k in range(len(subject)):
                out.append(self.transition(int(subject[k]), "raised" if raised[k] else
                                           "cleared", int(ts[k]), int(started[k]), vals[k],
                                           render))
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


def _durations(r: CompiledRule, cond: np.ndarray, cols: dict[str, Any], n: int
               ) -> np.ndarray:
    d = np.full(n, _ms(r.for_s), np.int64)
    # tiers: the shortest applicable duration wins
    for when, secs in r.for_when:
        w = when.test_vector(cols)
        d = np.where(w, np.minimum(d, _ms(secs)), d)
    return np.where(cond, d, _ms(r.clear_after_s))


def _outputs(r: CompiledRule, cols: dict[str, Any], n: int, width: int) -> np.ndarray:
    """Value and details of each row, NaN-padded to ``width`` (the kind's widest rule)."""
    out = np.full((n, width), np.nan)
    for j, e in enumerate(r.outputs):
        if e is not None:
            out[:, j] = np.broadcast_to(np.asarray(e.vector(cols), np.float64), (n,))
    return out


def _run_rows(base: int, local: np.ndarray, t: np.ndarray, cond: np.ndarray,
              valid: np.ndarray, dur: np.ndarray, outs: np.ndarray, pol: np.ndarray,
              start: np.ndarray, sdur: np.ndarray, active: np.ndarray,
              alarm_start: np.ndarray, last_t: np.ndarray, sout: np.ndarray
              ) -> tuple[np.ndarray, ...]:
    """Applies one rule's rows to its subjects' runs; returns its transitions as arrays
    (flat subject, raised?, ts, started, outputs)."""
    n = len(t)
    e_sub = np.empty(2 * n, np.int64)
    e_up = np.empty(2 * n, np.bool_)
    e_ts = np.empty(2 * n, np.int64)
    e_st = np.empty(2 * n, np.int64)
    e_val = np.empty((2 * n, outs.shape[1]))
    k = _runs(base, arg(local, np.int64), arg(t, np.int64), arg(cond, np.bool_),
              arg(valid, np.bool_), arg(dur, np.int64), arg(outs, np.float64), pol, start,
              sdur, active, alarm_start, last_t, sout, e_sub, e_up, e_ts, e_st, e_val)
    return e_sub[:k], e_up[:k], e_ts[:k], e_st[:k], e_val[:k]


# explicit signature: compiled once at import (cached on disk), never again mid-traffic
@compiled("i8(i8, i8[::1], i8[::1], b1[::1], b1[::1], i8[::1], f8[:, ::1], i1[::1], i8[::1],"
           " i8[::1], b1[::1], i8[::1], i8[::1], f8[:, ::1], i8[::1], b1[::1], i8[::1], i8[::1],"
           " f8[:, ::1])")
def _runs(base: Any, local: Any, t: Any, cond: Any, valid: Any, dur: Any, outs: Any,
          pol: Any, start: Any, sdur: Any, active: Any, alarm_start: Any, last_t: Any,
          sout: Any, e_sub: Any, e_up: Any, e_ts: Any, e_st: Any, e_val: Any
          ) -> int:  # pragma: no cover  (compiled: tests hold it to the reference engine)
    # The reference engine's _state and _advance, row by row: a due check before the
    # reading (on the run so far) and after it (on the run it continues or starts).
    k = 0
    for i in range(len(t)):
        if not valid[i]:
            continue
        s = base + local[i]
        now = t[i]
        for phase in range(2):
            if phase == 1:
                p = 1 if cond[i] else 0
                if pol[s] != p:
                    pol[s] = p
                    start[s] = now
                sdur[s] = dur[i]
                last_t[s] = now
                sout[s, :] = outs[i, :]
            if pol[s] < 0 or sdur[s] < 0 or now < start[s] + sdur[s]:
                continue
            due = max(start[s] + sdur[s], last_t[s])
            if pol[s] == 1 and not active[s]:
                active[s] = True
                alarm_start[s] = start[s]
                e_up[k] = True
                e_st[k] = start[s]
            elif pol[s] == 0 and active[s]:
                active[s] = False
                e_up[k] = False
                e_st[k] = alarm_start[s]
            else:
                continue
            e_sub[k] = s
            e_ts[k] = due
            e_val[k, :] = sout[s, :]
            k += 1
    return k
