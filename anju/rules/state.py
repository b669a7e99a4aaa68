"""State rules of one kind: run state and durations over (rule, member device) pairs.

A state rule raises when its condition has held for its duration (``for``, or the shortest
``for_when`` tier that applies) and clears once the condition has been false for
``clear_after``. Each batch runs one compiled pass (numba) over all the kind's rules:

* the condition over all rows (a program of :mod:`anju.rules.program` over the kind's
  column matrix: fields, registry params and the windowed features the engine computed
  with :mod:`anju.rules.windows`);
* a rule with no true reading and no subject of the batch's devices with a pending run or
  an active alarm is skipped — in normal traffic that is nearly every rule;
* the others' rows go through the reference engine's run machinery: a due check — "time ≥
  run start + duration" — before and after each reading.

Written with numpy it took ~60 array calls a rule (runs, a search for each run's first
due check, a forward-filled latch), then, with the run machinery compiled, still ~10 a
rule for conditions, durations and outputs: most of a small batch's cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anju.rules.clock import NEVER
from anju.rules.jit import arg, compiled
from anju.rules.model import CompiledRule
from anju.rules.program import Conditions, Programs, measured, run_program
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["NO_DUE", "NO_RUN", "KindState", "StateArrays", "state_pass"]

NO_RUN = -1
NO_DUE = int(np.iinfo(np.int64).max)  # no subject can come due: ticks skip the kind


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
    times: np.ndarray  # int64 (4, subjects): start, dur, alarm_start, last_t are its rows

    @classmethod
    def empty(cls, size: int, width: int) -> StateArrays:
        # the int64 arrays are rows of one, a single argument to the compiled pass
        times = np.zeros((4, size), np.int64)
        times[1] = -1
        return cls(pol=np.full(size, NO_RUN, np.int8), start=times[0], dur=times[1],
                   active=np.zeros(size, bool), alarm_start=times[2], last_t=times[3],
                   out=np.full((size, width), np.nan), times=times)


@dataclass
class KindState:
    """State of a kind's state rules: flat arrays over (rule, member device) pairs."""

    rules: list[CompiledRule]
    members: np.ndarray  # global index of each local device
    st: StateArrays
    width: int  # outputs per rule (value + details), padded to the widest rule
    programs: Programs  # conditions, tiers and outputs over the kind's column layout

    def __post_init__(self) -> None:
        self.table = _RuleTable.build(self.rules, self.programs, self.width)
        self._members = arg(self.members, np.int64)
        self._due = np.empty(len(self.st.pol), np.int64)
        # The receiving time before which no subject can come due in a tick: a lower bound,
        # lowered by every pass (``note_due``) and made exact by every scanning tick. The
        # smallest int64 until then, and after any change made outside the pass and the
        # tick (restore, a clock step's shift): the next tick scans.
        self.next_due = NEVER

    def note_due(self, at: int) -> None:
        """A pass left a subject that comes due at receiving time ``at`` (or later)."""
        if at < self.next_due:
            self.next_due = at

    def touched(self) -> None:
        """The arrays were changed outside the pass and the tick: the next tick scans."""
        self.next_due = NEVER

    @classmethod
    def create(cls, rules: list[CompiledRule], members: np.ndarray, programs: Programs
               ) -> KindState:
        size = len(rules) * len(members)
        width = max(len(r.outputs) for r in rules)
        return cls(rules, members, StateArrays.empty(size, width), width, programs)

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
        self.touched()

    # -- a clock tick ----------------------------------------------------------------------
    def tick(self, now: int, newest: np.ndarray, recv_at: np.ndarray, render: Renderer
             ) -> list[Transition]:
        """Runs come due at receiving time ``now``, each on its device's own clock
        (``newest + (now - recv_at)``; ``now`` for a device that has not reported)."""
        if now < self.next_due:  # nothing can be due yet: no scan over every subject
            return []
        st = self.st
        due = self._due
        nxt = np.empty(1, np.int64)
        k = _due(st.pol, st.active, st.start, st.dur, self._members, newest, recv_at, now,
                 due, nxt)
        self.next_due = int(nxt[0])  # the subjects made due below are settled: none pending
        out: list[Transition] = []
        for i in due[:k].tolist():
            at = int(st.start[i] + st.dur[i])
            if st.pol[i] == 1:
                st.active[i] = True
                st.alarm_start[i] = st.start[i]
                out.append(self.transition(i, "raised", max(at, int(st.last_t[i])),
                                           int(st.start[i]), st.out[i], render))
            else:
                st.active[i] = False
                out.append(self.transition(i, "cleared", max(at, int(st.last_t[i])),
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


@dataclass(frozen=True)
class _RuleTable:
    """A kind's state rules as arrays for the compiled pass (programs by index)."""

    cond: Conditions  # each rule's condition and the fields it requires
    for_ms: np.ndarray
    clear_ms: np.ndarray
    tier_lo: np.ndarray  # each rule's for_when tiers: tier_*[tier_lo[r]:tier_hi[r]]
    tier_hi: np.ndarray
    tier_prog: np.ndarray
    tier_ms: np.ndarray
    outputs: np.ndarray  # (rules, width): program of each output, -1 for none (NaN)

    @classmethod
    def build(cls, rules: list[CompiledRule], programs: Programs, width: int) -> _RuleTable:
        cond = Conditions.of(programs, [r.condition for r in rules])
        tier_lo: list[int] = []
        tier_hi: list[int] = []
        tier_prog: list[int] = []
        tier_ms: list[int] = []
        outputs = np.full((len(rules), width), -1, np.int64)
        for ri, r in enumerate(rules):
            tier_lo.append(len(tier_prog))
            for when, secs in r.for_when:
                tier_prog.append(programs.add(when, test=True))
                tier_ms.append(_ms(secs))
            tier_hi.append(len(tier_prog))
            for j, e in enumerate(r.outputs):
                if e is not None:
                    outputs[ri, j] = programs.add(e, test=False)

        def i8(xs: list[int]) -> np.ndarray:
            return np.array(xs, np.int64)

        return cls(cond, i8([_ms(r.for_s) for r in rules]),
                   i8([_ms(r.clear_after_s) for r in rules]), i8(tier_lo), i8(tier_hi),
                   i8(tier_prog), i8(tier_ms), outputs)


# explicit signatures: compiled once at import (cached on disk), never again mid-traffic
@compiled("i8(i8, i8[::1], i8[::1], f8[::1], b1[::1], i8[::1], f8[:, ::1], i1[::1], i8[::1],"
           " i8[::1], b1[::1], i8[::1], i8[::1], f8[:, ::1], i8[::1], b1[::1], i8[::1], i8[::1],"
           " f8[:, ::1], i8, i8[::1], i8[::1])")
def _runs(base: Any, local: Any, t: Any, cond: Any, valid: Any, dur: Any, outs: Any,
          pol: Any, start: Any, sdur: Any, active: Any, alarm_start: Any, last_t: Any,
          sout: Any, e_sub: Any, e_up: Any, e_ts: Any, e_st: Any, e_val: Any, k: Any,
          lead: Any, due_min: Any
          ) -> int:  # pragma: no cover  (compiled: tests hold it to the reference engine)
    # The reference engine's _state and _advance, row by row: a due check before the
    # reading (on the run so far) and after it (on the run it continues or starts).
    # ``due_min`` takes the earliest receiving time at which a subject of these rows can
    # come due in a tick (its device's clock leads the receiving one by ``lead``): the
    # tick's skip bound (KindState.next_due). Invalid rows count too: their device's
    # clock moved.
    for i in range(len(t)):
        s = base + local[i]
        now = t[i]
        for phase in range(2 if valid[i] else 0):
            if phase == 1:
                p = 1 if cond[i] == 1.0 else 0
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
        if pol[s] >= 0 and sdur[s] >= 0 and active[s] != (pol[s] == 1):
            due_min[0] = min(due_min[0], start[s] + sdur[s] - lead[i])
    return k


@compiled("i8(i8[::1], i8[::1], i8[::1], f8[::1], f8[:, ::1], f8[:, ::1], i8[::1], i8[::1], i8,"
           " i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1],"
           " i8[::1], i8[:, ::1], i1[::1], i8[::1], i8[::1], b1[::1], i8[::1], i8[::1],"
           " f8[:, ::1], i8[::1], b1[::1], i8[::1], i8[::1], f8[:, ::1], i8[::1], i8[::1])")
def state_pass(code: Any, lo: Any, hi: Any, consts: Any, cols: Any, stack: Any, local: Any, t: Any,
          nm: Any, cond_p: Any, req_lo: Any, req_hi: Any, req_rows: Any, for_ms: Any,
          clear_ms: Any, tier_lo: Any, tier_hi: Any, tier_prog: Any, tier_ms: Any,
          out_p: Any, pol: Any, start: Any, sdur: Any, active: Any, alarm_start: Any,
          last_t: Any, sout: Any, e_sub: Any, e_up: Any, e_ts: Any, e_st: Any, e_val: Any,
          lead: Any, due_min: Any
          ) -> int:  # pragma: no cover  (compiled: tests hold it to the reference engine)
    n = len(t)
    width = out_p.shape[1]
    cond = np.empty(n)
    tmp = np.empty(n)
    dur = np.empty(n, np.int64)
    valid = np.empty(n, np.bool_)
    outs = np.empty((n, width))
    k = 0
    for ri in range(len(cond_p)):
        base = ri * nm
        p = cond_p[ri]
        run_program(code, lo[p], hi[p], consts, cols, stack, cond)
        # a rule with no true reading and no subject of the batch's devices with a pending
        # run or an open alarm has nothing to do: false readings on a quiet subject change
        # nothing that could ever produce a transition, so its state is left as it is
        hot = False
        for i in range(n):
            s = base + local[i]
            if cond[i] == 1.0 or pol[s] == 1 or active[s]:
                hot = True
                break
        if not hot:
            continue
        measured(cols, req_rows, req_lo[ri], req_hi[ri], valid)
        for i in range(n):
            dur[i] = for_ms[ri]
        for j in range(tier_lo[ri], tier_hi[ri]):  # the shortest applicable tier wins
            p = tier_prog[j]
            run_program(code, lo[p], hi[p], consts, cols, stack, tmp)
            for i in range(n):
                if tmp[i] == 1.0 and tier_ms[j] < dur[i]:
                    dur[i] = tier_ms[j]
        for i in range(n):
            if cond[i] != 1.0:
                dur[i] = clear_ms[ri]
        for j in range(width):
            p = out_p[ri, j]
            if p < 0:
                for i in range(n):
                    outs[i, j] = np.nan
            else:
                run_program(code, lo[p], hi[p], consts, cols, stack, tmp)
                for i in range(n):
                    outs[i, j] = tmp[i]
        k = _runs(base, local, t, cond, valid, dur, outs, pol, start, sdur, active,
                  alarm_start, last_t, sout, e_sub, e_up, e_ts, e_st, e_val, k, lead, due_min)
    return k


@compiled("i8(i1[::1], b1[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8, i8[::1],"
          " i8[::1])")
def _due(pol: Any, active: Any, start: Any, dur: Any, members: Any, newest: Any,
         recv_at: Any, now: Any, due: Any, nxt: Any) -> int:  # pragma: no cover  (compiled)
    # Only a subject whose alarm flag differs from its run's polarity can change: a true
    # run not yet raised, or a false run under an open alarm; it does once its device's
    # clock (newest + (now - recv_at); now for a device that has not reported) reaches
    # the run's start + duration, i.e. once the receiving clock reaches start + duration
    # - (newest - recv_at). ``nxt`` gets the earliest such time of those not due yet.
    nm = len(members)
    k = 0
    nxt[0] = NO_DUE
    for s in range(len(pol)):
        p = pol[s]
        if p < 0 or dur[s] < 0 or active[s] == (p == 1):
            continue
        d = members[s % nm]
        nw = newest[d]
        at = start[s] + dur[s] - (nw - recv_at[d]) if nw != NEVER else start[s] + dur[s]
        if now >= at:
            due[k] = s
            k += 1
        elif at < nxt[0]:
            nxt[0] = at
    return k
