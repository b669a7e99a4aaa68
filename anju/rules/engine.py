"""The vectorised rule engine: every rule over a whole batch with numpy.

State lives in arrays indexed by the registry's dense device index. A batch is sorted
by (device, time) once per kind; late readings (older than the device's newest) are
counted and left out of the rules, never reordered. This module holds the device clocks
and the order of work; each concern has its own module:

* :mod:`anju.rules.state` — state rules: run state and durations (for, tiers, clear);
* :mod:`anju.rules.windows` — windowed features over each device's trailing readings;
* :mod:`anju.rules.offline` — silence past a kind's heartbeats;
* :mod:`anju.rules.events` — one alarm per reading (and trajectory enrichment);
* :mod:`anju.rules.groups` — k members of one floor within a window;
* :mod:`anju.rules.schedule` — rounds due on a device's clock, met by a reading;
* :mod:`anju.rules.clock` — device clocks and their steps (rebased here).

:class:`anju.rules.reference.ReferenceEngine` states the same semantics reading by
reading; property tests hold the two to identical transitions.

Time (DESIGN.md "Time"): each device is judged on its own clock. The caller passes the
receiving clock (``received_ms`` with a batch, ``now_ms`` to a tick: the wall clock live,
the newest data time in replay); between its readings a device's clock advances with it
from the moment its last reading arrived, so durations, clear delays and offline are the
same whether a device's clock is slow, fast, or drained from a backlog.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anju.devices.batch import Batch, KindBatch
from anju.devices.registry import Site
from anju.kinds import KIND_CODES, KINDS
from anju.rules.clock import NEVER
from anju.rules.events import EventRules, enrich_trajectory
from anju.rules.expr import Window
from anju.rules.groups import Group as _Group
from anju.rules.jit import arg
from anju.rules.kind_pass import (
    E_ST,
    E_SUB,
    E_TS,
    E_UP,
    EV_ROW,
    EV_RULE,
    OFF_BACK,
    OFF_DEV,
    OFF_PREV,
    OFF_RULE,
    OFF_T,
    SC_DEV,
    SC_HIT,
    SC_RULE,
    SC_T,
    STEP_BY,
    STEP_DEV,
    STEPS,
    Counts,
    KindPass,
    newest_ts,
)
from anju.rules.model import CompiledRule, RuleSet
from anju.rules.offline import Offline
from anju.rules.program import Conditions, Programs
from anju.rules.render import Renderer
from anju.rules.schedule import ROWS, Schedules
from anju.rules.state import NO_DUE, NO_RUN, KindState
from anju.rules.transition import Transition
from anju.rules.windows import RING, Ring

__all__ = ["NO_RUN", "EngineStats", "RuleEngine", "enrich_trajectory", "served_mask"]


def served_mask(site: Site, estates: Iterable[str] | None) -> np.ndarray:
    """Devices this worker judges: all, or those of its partition's estates."""
    if estates is None:
        return np.ones(len(site.devices), bool)
    idx = {site.estates[e].index for e in estates}
    return np.isin(site.devices.estate, list(idx))


@dataclass
class EngineStats:
    readings: int = 0
    late: int = 0
    clock_steps: int = 0  # devices whose clock jumped (rebased, see anju.rules.clock)
    restored: int = 0  # open alarms taken over from the store at start
    batches: int = 0
    ticks: int = 0
    transitions: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class RuleEngine:
    """Evaluates a :class:`RuleSet` over batches and clock ticks of one site."""

    def __init__(self, site: Site, rules: RuleSet, *, estates: Iterable[str] | None = None
                 ) -> None:
        self.site = site
        # the device table its arrays are laid out in: a registry reload puts a new table
        # in the shared Site before it swaps engines
        self.devices = site.devices
        self.rules = rules
        self.render = Renderer(site)
        self.stats = EngineStats()
        n = len(site.devices)
        self._n = n
        self.served = served_mask(site, estates)
        self._serves_all = bool(self.served.all())
        # per device: newest applied ts (device clock), when it arrived (receiving clock),
        # and the smallest (arrival - ts) seen: how far ahead of us its clock usually runs
        # (rows of one array: a single argument to a kind's compiled pass)
        self._clocks = np.zeros((4, n), np.int64)
        self.newest, self.recv_at, self.skew_base, self.last_seen = self._clocks
        self.newest[:] = NEVER
        self.skew_base[:] = np.iinfo(np.int64).max
        self.received_ms: int | None = None
        self.start_ms: int | None = None
        self._offline = Offline(rules.of_type("offline"), site, self.served)
        self._schedules = Schedules(rules.of_type("schedule"), site, self.served)
        # groups: (estate, building, floor) of each device with a known floor
        self._groups = [_Group(r, site) for r in rules.of_type("group")]
        # state rules of a kind share flat arrays indexed by rule * members + local index
        self._local = np.full(n, -1, np.int64)
        self._kstate: dict[str, KindState] = {}
        self._events: dict[str, EventRules] = {}
        self._pass: dict[str, KindPass] = {}
        self._rings: dict[tuple[str, str], Ring] = {}
        params = dict(site.devices.params)
        nan = np.full(n, np.nan)
        for k in KINDS:
            members = np.flatnonzero(site.devices.kind == KIND_CODES[k])
            self._local[members] = np.arange(len(members))
            krules = [r for r in rules.by_kind(k) if r.type == "state"]
            cols = _Columns.of(k, krules)
            ks = KindState.create(krules, members, cols.programs) if krules else None
            if ks is not None:
                self._kstate[k] = ks
            ev = self._events[k] = EventRules(
                [r for r in rules.by_kind(k) if r.type == "event"], cols.programs)
            sched_rules, sched_table = self._schedules.tables.get(
                k, ([], np.zeros((0, ROWS, 1), np.int64)))
            kp = self._pass[k] = KindPass(
                cols.programs, ks, ev.conditions,
                (Conditions.of(cols.programs, [r.condition for r in sched_rules]),
                 sched_table), self._offline.lim, self._offline.act,
                [(row, params.get(p, nan)) for row, p in cols.params],
                [(ws, row, where, first) for _, ws, row, where, first in cols.windows], n,
                self._local)
            for (fname, *_), ring in zip(cols.windows, kp.rings, strict=True):
                self._rings[(k, fname)] = ring
        self._order = _order_key(rules)

    # offline state by rule id, arrays by device (names kept for the registry reload)
    @property
    def _off_limit(self) -> dict[str, np.ndarray]:
        return self._offline.limit

    @property
    def _off_active(self) -> dict[str, np.ndarray]:
        return self._offline.active

    @property
    def _off_start(self) -> dict[str, np.ndarray]:
        return self._offline.start

    # -- public ----------------------------------------------------------------------------
    def process(self, batch: Batch, received_ms: int | None = None) -> list[Transition]:
        """Applies a batch received at ``received_ms`` (receiving clock; by default the
        batch's newest ``ts``); returns the transitions it caused, ordered by ts."""
        if not batch:
            return []
        # NaN (not measured) and x/0 are values in rule arithmetic, not warnings
        with np.errstate(all="ignore"):
            if received_ms is None:
                received_ms = max(newest_ts(arg(kb.ts, np.int64)) for kb in batch.kinds.values()
                                  if len(kb))
            return self._process(batch, self._receive(received_ms))

    def _process(self, batch: Batch, now: int) -> list[Transition]:
        out: list[Transition] = []
        self.stats.batches += 1
        for kind, kb in batch.kinds.items():
            if len(kb):
                out.extend(self._process_kind(kind, kb, now))
        self._offline.heard(now)
        return self._finish(out)

    def tick(self, now_ms: int) -> list[Transition]:
        """Advances every device to ``now_ms`` on the receiving clock, each on its own
        clock: durations, clear delays, offline."""
        now = self._receive(now_ms)
        self.stats.ticks += 1
        out: list[Transition] = []
        for ks in self._kstate.values():
            out.extend(ks.tick(now, self.newest, self.recv_at, self.render))
        out.extend(self._offline.tick(now, self.last_seen, self.recv_at, self.render))
        out.extend(self._schedules.tick(now, self.newest, self.recv_at, self.render))
        return self._finish(out)

    def restore(self, open_alarms: Iterable[tuple[str, str, int]]) -> int:
        """Takes over open alarms (rule, subject, started_at) from the alarm store at
        start, so that each resumes as active for its subject: it clears once its condition
        has been false for the clear delay (offline: once the device reports), and a repeat
        incident after that raises a new alarm. Returns how many were taken over; alarms of
        unknown rules or devices, and event alarms (closed by acknowledgement), are left."""
        state_rules = {r.id: (k, i) for k, ks in self._kstate.items()
                       for i, r in enumerate(ks.rules)}
        groups = {g.rule.id: g for g in self._groups}
        members: list[tuple[str, int]] = []
        n = 0
        for rule, subject, started in open_alarms:
            dev = self.site.devices.index.get(subject)
            if rule in state_rules and dev is not None:
                k, ri = state_rules[rule]
                ks = self._kstate[k]
                loc = int(self._local[dev])
                if not 0 <= loc < len(ks.members) or int(ks.members[loc]) != dev:
                    continue
                i = ri * len(ks.members) + loc
                ks.st.active[i] = True
                ks.st.alarm_start[i] = started
                ks.touched()
                members.append((rule, dev))
            elif rule in self._off_active and dev is not None:
                self._off_active[rule][dev] = True
                self._off_start[rule][dev] = started
            elif rule in groups and groups[rule].restore(subject, started):
                pass
            else:
                continue
            n += 1
        for g in self._groups:
            g.restore_members(members)
        self.stats.restored += n
        return n

    # -- the receiving clock and device clocks -------------------------------------------------
    def _receive(self, now: int) -> int:
        """The receiving clock, never going back (a wall-clock step must not undo time)."""
        if self.received_ms is None:
            self.start_ms = now
            self.last_seen[:] = now
            self.recv_at[:] = now
        elif now < self.received_ms:
            now = self.received_ms
        self.received_ms = now
        return now

    def _rebase(self, devs: np.ndarray, shift: np.ndarray) -> None:
        """Moves every time a device's state holds by ``shift``: its runs, clear delays and
        windows carry on in the new timeline for as long as they had run in the old."""
        self.newest[devs] += shift
        self.last_seen[devs] += shift
        loc = self._local[devs]
        for ks in self._kstate.values():
            mine = ks.owns(devs, loc)
            if mine.any():
                ks.shift(loc[mine], shift[mine])
        self._offline.shift(devs, shift)
        self._schedules.shift(devs, shift, self.newest)
        for ring in self._rings.values():
            slots = (devs[:, None] * RING + np.arange(RING)[None, :]).ravel()
            ring.t[slots] += np.repeat(shift, RING)

    def _finish(self, out: list[Transition]) -> list[Transition]:
        for g in self._groups:
            out.extend(g.feed(out, self.render))
        out.sort(key=self._order)
        self.stats.transitions += len(out)
        for t in out:
            self.stats.by_rule[t.rule] = self.stats.by_rule.get(t.rule, 0) + 1
        return out

    # -- one kind of a batch -------------------------------------------------------------------
    def _process_kind(self, kind: str, kb: KindBatch, now: int) -> list[Transition]:
        if not self._serves_all:
            keep = self.served[kb.device]
            if not keep.all():
                kb = kb.take(np.flatnonzero(keep))
            if not len(kb):
                return []
        self.stats.readings += len(kb)
        kp = self._pass[kind]
        dev, t, values = arg(kb.device, np.int32), arg(kb.ts, np.int64), arg(kb.values, np.float64)
        if kp.run(dev, t, values, now, True, self._clocks) == STEPS:
            # devices whose clock jumped (on their first reading of the batch): rebased
            # before anything else of the batch is judged, then the pass runs again
            k = Counts.of(kp.buf.ints).steps
            ints = kp.buf.ints
            self._rebase(ints[STEP_DEV, :k].copy(), ints[STEP_BY, :k].copy())
            self.stats.clock_steps += k
            kp.run(dev, t, values, now, False, self._clocks)
        b = kp.buf
        ints, flags = b.ints, b.flags
        c = Counts.of(ints)
        self.stats.late += c.late
        # event rules saw every reading, late ones too: a thrown bottle is news whenever
        out = (self._events[kind].transitions(ints[EV_RULE, :c.events], ints[EV_ROW, :c.events],
                                              kb, self.site, self.render) if c.events else [])
        if c.offline:
            k = c.offline
            out.extend(self._offline.transitions(ints[OFF_RULE, :k], ints[OFF_DEV, :k],
                                                 ints[OFF_T, :k], flags[OFF_BACK, :k],
                                                 ints[OFF_PREV, :k], self.render))
        if c.schedule:
            k = c.schedule
            out.extend(self._schedules.on_hits(
                self._schedules.tables[kind][0], ints[SC_RULE, :k], ints[SC_DEV, :k],
                ints[SC_T, :k], flags[SC_HIT, :k], self.render))
        if c.due < NO_DUE:
            self._kstate[kind].note_due(c.due)
        if c.state:
            ks = self._kstate[kind]
            out.extend(ks.transition(s, "raised" if up else "cleared", ts, st, b.e_val[i],
                                     self.render)
                       for i, (s, up, ts, st) in enumerate(zip(
                           ints[E_SUB, :c.state].tolist(), flags[E_UP, :c.state].tolist(),
                           ints[E_TS, :c.state].tolist(), ints[E_ST, :c.state].tolist(),
                           strict=True)))
        return out


@dataclass
class _Columns:
    """The column matrix a kind's state rules read: its fields, then the registry params
    they name, then their windowed features (grouped by the field they window); the
    kind's programs are over it."""

    programs: Programs
    params: list[tuple[int, str]]  # (row, registry param)
    # (field, its windows, the field's row, the count_if program or -1, first feature row)
    windows: list[tuple[str, list[Window], int, int, int]]

    @classmethod
    def of(cls, kind: str, rules: list[CompiledRule]) -> _Columns:
        layout = [f.name for f in KINDS[kind].columns]
        by_field: dict[str, list[Window]] = {}
        for r in rules:
            for w in r.windows:
                if w not in by_field.setdefault(w.field, []):
                    by_field[w.field].append(w)
        keys = {w.key for ws in by_field.values() for w in ws}
        names = sorted({p for r in rules for p in r.names} - set(layout) - keys)
        params = [(len(layout) + j, p) for j, p in enumerate(names)]
        layout += names
        rows = []
        for ws in by_field.values():
            rows.append(len(layout))
            layout += [w.key for w in ws]
        programs = Programs(layout)
        windows = [(fname, ws, layout.index(fname) if fname in layout else -1,
                    programs.add(ws[0].where, test=True) if ws[0].where is not None else -1,
                    lo) for (fname, ws), lo in zip(by_field.items(), rows, strict=True)]
        return cls(programs, params, windows)


def _order_key(rules: RuleSet) -> Any:
    order = {r.id: r.order for r in rules.rules}

    def key(t: Transition) -> tuple[int, int, str, int]:
        return (t.ts, order.get(t.rule, 0), t.subject, 0 if t.event == "raised" else 1)

    return key
