"""Schedule rules (``patrol.missed``): rounds due on a device's clock, each to be met by a
reading within its tolerance.

A device's rounds fall every ``every_min`` minutes from ``from_hour`` until (not at)
``to_hour`` of its local day, local being UTC + ``utc_offset_h``; the window may wrap past
midnight (22 → 6 is 22:00, 00:00, 02:00, 04:00 every two hours). Each of the five numbers
is the device's registry param of that name where it has one, else the rule's param, so
each route carries its own schedule.

Judged in data time (DESIGN.md "Time"), per device: the round due at ``T`` is met by a
reading where the condition holds with ``ts`` in ``[T − tol, T + tol]``; it is judged once
the device's clock is past ``T + tol`` — on a later reading, or on a tick by the device
clock (``newest + (now − received)``) — and a missed round raises once, at ``T + tol``
(closed by acknowledgement, like an event). A device is watched from its first reading:
rounds due before ``first + tol`` are not judged, since nobody could say whether they were
done; a clock step restarts the watch from the device's rebased clock.

Rounds are rare (hours apart), so the common path is a compiled pass over the batch in
the kind's pass (:func:`scan`); only devices whose next deadline falls inside the batch
are walked reading by reading, here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from anju.devices.registry import Site
from anju.kinds import KIND_CODES
from anju.rules.clock import NEVER
from anju.rules.jit import arg, compiled
from anju.rules.model import SCHEDULE_PARAMS, CompiledRule
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["DAY_MS", "Schedules", "due_label", "scan", "schedule_of"]

DAY_MS = 86_400_000
_UNSET = NEVER  # next round of a device not watched yet
_FAR = np.iinfo(np.int64).max
# rows of a kind's schedule table: the schedule (see schedule_of), then the state
EVERY, START, LENGTH, OFF, TOL, OK, NEXT_DUE, LAST_HIT = range(8)
ROWS = 8
_ROW = {"every": EVERY, "start": START, "length": LENGTH, "off": OFF, "tol": TOL, "ok": OK}


def schedule_of(rule: CompiledRule, site: Site) -> dict[str, np.ndarray]:
    """Per device, the rule's schedule in ms: ``every``, ``start`` (from local midnight),
    ``length`` (of the daily window), ``off`` (UTC offset), ``tol``; ``ok`` where the
    device is of the rule's kind and its schedule is usable (every > 0, all numbers known)."""
    d = site.devices
    n = len(d)
    val: dict[str, np.ndarray] = {}
    for name in SCHEDULE_PARAMS:
        reg = d.params.get(name)
        default = np.full(n, float(rule.params[name]))
        val[name] = default if reg is None else np.where(np.isnan(reg), default, reg)
    finite = np.ones(n, bool)
    for v in val.values():
        finite &= np.isfinite(v)
    safe = {k: np.where(finite, v, 0.0) for k, v in val.items()}
    every = np.round(safe["every_min"] * 60_000).astype(np.int64)
    start = np.round(safe["from_hour"] * 3_600_000).astype(np.int64) % DAY_MS
    end = np.round(safe["to_hour"] * 3_600_000).astype(np.int64) % DAY_MS
    length = (end - start) % DAY_MS
    length[length == 0] = DAY_MS  # from == to: all day
    tol = np.round(safe["tolerance_min"] * 60_000).astype(np.int64)
    off = np.round(safe["utc_offset_h"] * 3_600_000).astype(np.int64)
    ok = finite & (every > 0) & (tol >= 0) & (d.kind == KIND_CODES[rule.kind])
    return {"every": np.where(ok, every, 1), "start": start, "length": length, "off": off,
            "tol": np.where(ok, tol, 0), "ok": ok}


@compiled("i8(i8, i8, i8, i8, i8)")
def next_round(after: Any, every: Any, start: Any, length: Any, off: Any
               ) -> int:  # pragma: no cover  (compiled)
    """The first round due strictly after ``after`` (ms) of one device's schedule."""
    day = (after + off) // DAY_MS  # integer // floors, as Python's does
    best = _FAR
    for dd in range(-1, 2):  # yesterday's window may run past midnight into today
        s = (day + dd) * DAY_MS + start - off
        k = max(0, (after - s) // every + 1)
        t = s + k * every
        if k * every < length and t < best:
            best = t
    return best


def due_label(t: int, off: int) -> str:
    """The local time of day a round was due, ``HH:MM``."""
    return datetime.fromtimestamp((t + off) / 1000, UTC).strftime("%H:%M")


class Schedules:
    """The schedule rules of a rule set and their state (arrays by device)."""

    def __init__(self, rules: list[CompiledRule], site: Site, served: np.ndarray) -> None:
        self.rules = rules
        n = len(site.devices)
        self.sched: dict[str, dict[str, np.ndarray]] = {}
        self.next_due: dict[str, np.ndarray] = {}  # the next round to judge; _UNSET
        self.last_hit: dict[str, np.ndarray] = {}  # ts of the newest matching reading
        self.kinds = {r.kind for r in rules}  # kinds with a schedule rule
        # per kind, its rules' arrays as one (rules, ROWS, devices) table for the kind's
        # compiled pass (anju.rules.kind_pass); the dicts above hold views of its rows
        self.tables: dict[str, tuple[list[CompiledRule], np.ndarray]] = {}
        for kind in sorted(self.kinds):
            mine = [r for r in rules if r.kind == kind]
            table = np.zeros((len(mine), ROWS, n), np.int64)
            for j, r in enumerate(mine):
                s = schedule_of(r, site)
                s["ok"] &= served
                for name, row in _ROW.items():
                    table[j, row] = s[name]
                table[j, NEXT_DUE] = _UNSET
                table[j, LAST_HIT] = NEVER
                self.sched[r.id] = {name: table[j, row] if name != "ok" else s["ok"]
                                    for name, row in _ROW.items()}
                self.next_due[r.id] = table[j, NEXT_DUE]
                self.last_hit[r.id] = table[j, LAST_HIT]
            self.tables[kind] = (mine, table)

    def _next(self, rid: str, dev: int, after: int) -> int:
        s = self.sched[rid]
        return next_round(after, int(s["every"][dev]), int(s["start"][dev]),
                          int(s["length"][dev]), int(s["off"][dev]))

    def on_hits(self, rules: list[CompiledRule], rule: np.ndarray, dev: np.ndarray,
                t: np.ndarray, hit: np.ndarray, render: Renderer) -> list[Transition]:
        """Readings a kind's compiled pass left to us (:func:`scan`): each of a device
        whose round's tolerance ended within the batch, in order: the rounds it ends are
        judged, then it counts as a check-in if its condition held."""
        out: list[Transition] = []
        for ri, dv, ti, h in zip(rule.tolist(), dev.tolist(), t.tolist(), hit.tolist(),
                                 strict=True):
            r = rules[ri]
            out.extend(self._judge(r, dv, ti, render))
            if h:
                lh = self.last_hit[r.id]
                lh[dv] = max(int(lh[dv]), ti)
        return out

    def tick(self, now: int, newest: np.ndarray, recv_at: np.ndarray, render: Renderer
             ) -> list[Transition]:
        """The rounds whose tolerance ended on each device's clock by receiving time ``now``."""
        out: list[Transition] = []
        due = np.empty(len(newest), np.int64)
        for r in self.rules:
            k = _ended(self.next_due[r.id], arg(self.sched[r.id]["tol"], np.int64), newest,
                       recv_at, now, due)
            for dv in due[:k].tolist():
                out.extend(self._judge(r, dv, int(newest[dv] + (now - recv_at[dv])), render))
        return out

    def _judge(self, r: CompiledRule, dv: int, clock: int, render: Renderer
               ) -> list[Transition]:
        """Judges, in order, the device's rounds whose tolerance ended before ``clock``."""
        s = self.sched[r.id]
        nd, lh = self.next_due[r.id], self.last_hit[r.id]
        tol, off = int(s["tol"][dv]), int(s["off"][dv])
        out: list[Transition] = []
        while int(nd[dv]) + tol < clock:
            due = int(nd[dv])
            last = int(lh[dv])
            if last < due - tol:
                details = {"due": due_label(due, off), "due_ms": due,
                           "tolerance_min": tol / 60_000,
                           "last_checkin_ms": None if last == NEVER else last}
                out.append(render.device(r, dv, "raised", due + tol, due, math.nan, details))
            nd[dv] = self._next(r.id, dv, due)
        return out

    def shift(self, devs: np.ndarray, shift: np.ndarray, newest: np.ndarray) -> None:
        """A clock step (``newest`` already rebased): matching readings move with the clock,
        and the watch restarts from the device's new clock."""
        for r in self.rules:
            nd, lh, tol = self.next_due[r.id], self.last_hit[r.id], self.sched[r.id]["tol"]
            watched = devs[nd[devs] != _UNSET]
            if not len(watched):
                continue
            had = watched[lh[watched] != NEVER]
            lh[had] += shift[np.isin(devs, had)]
            for d in watched.tolist():
                nd[d] = self._next(r.id, d, int(newest[d] + tol[d]) - 1)


@compiled("i8(i8[::1], i8[::1], i8[::1], i8[::1], i8, i8[::1])")
def _ended(next_due: Any, tol: Any, newest: Any, recv_at: Any, now: Any, due: Any
           ) -> int:  # pragma: no cover  (compiled)
    # watched devices whose round's tolerance ended on their own clock
    k = 0
    for d in range(len(next_due)):
        if next_due[d] == NEVER or newest[d] == NEVER:  # not watched yet / no clock yet
            continue
        if newest[d] + (now - recv_at[d]) > next_due[d] + tol[d]:
            due[k] = d
            k += 1
    return k


@compiled("i8(i8[::1], i8[::1], f8[::1], i8[:, ::1], i8, i8[::1], i8[::1], i8[::1],"
          " b1[::1], i8)")
def scan(dev: Any, t: Any, hit: Any, table: Any, ri: Any, out_rule: Any, out_dev: Any,
         out_t: Any, out_hit: Any, k: Any) -> int:  # pragma: no cover  (compiled)
    """One schedule rule over a kind's kept readings (sorted by device then time; ``hit``
    1.0 where its condition holds, its fields measured): a device's watch starts at its
    first reading, check-ins advance ``LAST_HIT``, and the readings of a device whose
    round's tolerance ended within the batch go to ``out_*`` (from ``k``) for
    :meth:`Schedules.on_hits`, which judges them in order; the new ``k``."""
    n = len(dev)
    every, start, length, off, tol = table[EVERY], table[START], table[LENGTH], table[OFF], \
        table[TOL]
    ok, nd, lh = table[OK], table[NEXT_DUE], table[LAST_HIT]
    i = 0
    while i < n:
        d = dev[i]
        j = i
        while j < n and dev[j] == d:
            j += 1
        if ok[d]:
            if nd[d] == _UNSET:
                nd[d] = next_round(t[i] + tol[d] - 1, every[d], start[d], length[d], off[d])
            if t[j - 1] > nd[d] + tol[d]:  # a round ends within the batch: judged in order
                for r in range(i, j):
                    out_rule[k] = ri
                    out_dev[k] = d
                    out_t[k] = t[r]
                    out_hit[k] = hit[r] == 1.0
                    k += 1
            else:
                for r in range(i, j):
                    if hit[r] == 1.0 and t[r] > lh[d]:
                        lh[d] = t[r]
        i = j
    return k
