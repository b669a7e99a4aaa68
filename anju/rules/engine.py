"""The vectorised rule engine: every rule over a whole batch with numpy.

State lives in arrays indexed by the registry's dense device index. A batch is sorted
by (device, time) once per kind; late readings (older than the device's newest) are
counted and left out of the rules, never reordered. Each state rule then runs one pass:

* the condition over all rows (compiled numpy expression), plus windowed features from
  :mod:`anju.rules.windows`;
* devices with no true reading, no pending run and no active alarm only update their
  run state — in normal traffic that is nearly every device, and it costs a few vector
  operations;
* the others are cut into runs of equal condition (a virtual row per device carries the
  run left over from earlier batches), and each run's first due check — "time ≥ run start
  + duration" evaluated before and after each reading — is found with one search;
* a set/reset latch, forward-filled per device, turns due runs into raised / cleared.

:class:`anju.rules.reference.ReferenceEngine` states the same semantics reading by
reading; property tests hold the two to identical transitions.

Time (DESIGN.md "Time"): each device is judged on its own clock. The caller passes the
receiving clock (``received_ms`` with a batch, ``now_ms`` to a tick: the wall clock live,
the newest data time in replay); between its readings a device's clock advances with it
from the moment its last reading arrived, so durations, clear delays and offline are the
same whether a device's clock is slow, fast, or drained from a backlog
(:mod:`anju.rules.clock` holds the rules for clock steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anju.devices.batch import Batch, KindBatch
from anju.devices.registry import Site
from anju.kinds import KIND_CODES, KINDS
from anju.rules.arrays import changes as _changes
from anju.rules.arrays import ends as _ends
from anju.rules.arrays import shift as _shift
from anju.rules.arrays import shift_left as _shift_left
from anju.rules.clock import CLOCK_STEP_MS, NEVER
from anju.rules.model import CompiledRule, RuleSet
from anju.rules.render import Renderer
from anju.rules.transition import Transition
from anju.rules.windows import RING, Ring, window_features

__all__ = ["NO_RUN", "EngineStats", "RuleEngine", "enrich_trajectory", "served_mask"]

NO_RUN = -1


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


@dataclass
class _KindState:
    """State of a kind's state rules: flat arrays over (rule, member device) pairs."""

    rules: list[CompiledRule]
    members: np.ndarray  # global index of each local device
    st: _StateArrays
    width: int  # outputs per rule (value + details), padded to the widest rule

    @classmethod
    def create(cls, rules: list[CompiledRule], members: np.ndarray) -> _KindState:
        size = len(rules) * len(members)
        width = max(len(r.outputs) for r in rules)
        st = _StateArrays(
            pol=np.full(size, NO_RUN, np.int8), start=np.zeros(size, np.int64),
            dur=np.full(size, -1, np.int64), active=np.zeros(size, bool),
            alarm_start=np.zeros(size, np.int64), last_t=np.zeros(size, np.int64),
            out=np.full((size, width), np.nan))
        return cls(rules, members, st, width)


@dataclass
class _StateArrays:
    pol: np.ndarray  # int8: -1 no reading yet, 0 condition false, 1 true
    start: np.ndarray  # int64: when the current run began
    dur: np.ndarray  # int64 ms: the run's duration to act (for / clear_after); -1 never
    active: np.ndarray  # bool: alarm raised
    alarm_start: np.ndarray  # int64
    last_t: np.ndarray  # int64: last applied reading
    out: np.ndarray  # float64 (devices, outputs): value and details of the last reading


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def enrich_trajectory(site: Site, dev: int, extra: dict[str, Any] | None
                      ) -> tuple[dict[str, Any], int | None, float | None]:
    """Origin floor of a falling object from its track (CONTRACT §2): details, floor, apex."""
    from anju.rules.trajectory import Calibration, fit_fall

    track = (extra or {}).get("track")
    if not track:
        return {"error": "no track"}, None, None
    d = site.devices
    params = {k: float(d.params[k][dev]) for k in
              ("mount_height_m", "distance_m", "tilt_deg", "focal_px", "cy_px")}
    b = site.buildings[int(d.building[dev])]
    try:
        fit = fit_fall(track, Calibration.from_params(params), b.floors, b.floor_height_m)
    except ValueError as exc:
        return {"error": str(exc)[:200]}, None, None
    details = {"floor": fit.floor, "apex_m": round(fit.apex_m, 2),
               "apex_se_m": round(fit.apex_se_m, 2), "origin_floor": fit.floor,
               "points": fit.points, "inliers": fit.inliers}
    return details, fit.floor, fit.apex_m


class RuleEngine:
    """Evaluates a :class:`RuleSet` over batches and clock ticks of one site."""

    def __init__(self, site: Site, rules: RuleSet, *, estates: Iterable[str] | None = None
                 ) -> None:
        self.site = site
        self.rules = rules
        self.render = Renderer(site)
        self.stats = EngineStats()
        n = len(site.devices)
        self._n = n
        self.served = served_mask(site, estates)
        # per device: newest applied ts (device clock), when it arrived (receiving clock),
        # and the smallest (arrival - ts) seen: how far ahead of us its clock usually runs
        self.newest = np.full(n, NEVER, np.int64)
        self.recv_at = np.zeros(n, np.int64)
        self.skew_base = np.full(n, np.iinfo(np.int64).max, np.int64)
        self.received_ms: int | None = None
        self.start_ms: int | None = None
        # state rules of a kind share flat arrays indexed by rule * members + local index
        self._local = np.full(n, -1, np.int64)
        self._kstate: dict[str, _KindState] = {}
        for k in KINDS:
            members = np.flatnonzero(site.devices.kind == KIND_CODES[k])
            self._local[members] = np.arange(len(members))
            krules = [r for r in rules.by_kind(k) if r.type == "state"]
            if krules:
                self._kstate[k] = _KindState.create(krules, members)
        self._rings: dict[tuple[str, str], Ring] = {}
        self._window_fields: dict[str, dict[str, list[Any]]] = {}
        self._event_rules = {k: [r for r in rules.by_kind(k) if r.type == "event"] for k in KINDS}
        # offline
        self._offline = rules.of_type("offline")
        hb = np.array([KINDS[k].heartbeat_s for k in KINDS])
        kinds = site.devices.kind.astype(np.int64)
        self._off_limit: dict[str, np.ndarray] = {}
        self._off_active: dict[str, np.ndarray] = {}
        self._off_start: dict[str, np.ndarray] = {}
        for r in self._offline:
            applies = np.ones(n, bool) if r.kind == "*" else kinds == KIND_CODES[r.kind]
            lim = np.where(applies & self.served, np.round(hb[kinds] * r.heartbeats * 1000),
                           -1).astype(np.int64)
            self._off_limit[r.id] = lim
            self._off_active[r.id] = np.zeros(n, bool)
            self._off_start[r.id] = np.zeros(n, np.int64)
        self.last_seen = np.zeros(n, np.int64)
        # groups: (estate, building, floor) of each device with a known floor
        self._groups = [_Group(r, site) for r in rules.of_type("group")]
        self._params = dict(site.devices.params)
        self._nan = np.full(n, np.nan)
        self._state_rules_of = {k: [r for r in rules.by_kind(k) if r.type == "state"]
                                for k in KINDS}
        self._names = {r.id: r.names for r in rules.rules}
        self._kind_params = {
            k: sorted({p for r in self._state_rules_of[k] for p in r.names}
                      & {p.name for p in KINDS[k].params}) for k in KINDS}

    # -- public ----------------------------------------------------------------------------
    def process(self, batch: Batch, received_ms: int | None = None) -> list[Transition]:
        """Applies a batch received at ``received_ms`` (receiving clock; by default the
        batch's newest ``ts``); returns the transitions it caused, ordered by ts."""
        if not batch:
            return []
        # NaN (not measured) and x/0 are values in rule arithmetic, not warnings
        with np.errstate(all="ignore"):
            if received_ms is None:
                received_ms = max(int(kb.ts.max()) for kb in batch.kinds.values() if len(kb))
            return self._process(batch, self._receive(received_ms))

    def _process(self, batch: Batch, now: int) -> list[Transition]:
        out: list[Transition] = []
        self.stats.batches += 1
        for kind, kb in batch.kinds.items():
            if len(kb):
                out.extend(self._process_kind(kind, kb, now))
        return self._finish(out)

    def tick(self, now_ms: int) -> list[Transition]:
        """Advances every device to ``now_ms`` on the receiving clock, each on its own
        clock: durations, clear delays, offline."""
        now = self._receive(now_ms)
        self.stats.ticks += 1
        out: list[Transition] = []
        seen = self.newest != NEVER
        dev_now = np.where(seen, self.newest + (now - self.recv_at), now)
        for ks in self._kstate.values():
            out.extend(self._tick_state(ks, dev_now))
        for r in self._offline:
            out.extend(self._tick_offline(r, now))
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

    # -- internals ---------------------------------------------------------------------------
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

    def _clock_steps(self, dev: np.ndarray, t: np.ndarray, now: int) -> None:
        """Rebases devices whose clock jumped since their last reading (first reading of
        each device in the batch; see :mod:`anju.rules.clock`)."""
        first = _changes(dev)
        fd, ft = dev[first], t[first]
        newest = self.newest[fd]
        seen = newest != NEVER
        expected = np.where(seen, newest + (now - self.recv_at[fd]), ft)
        lag = now - ft
        back = seen & (ft < newest - CLOCK_STEP_MS)
        fwd = seen & (lag < -CLOCK_STEP_MS) & (lag < self.skew_base[fd] - CLOCK_STEP_MS) \
            & (ft > expected + CLOCK_STEP_MS)
        step = back | fwd
        if step.any():
            sd = fd[step]
            self._rebase(sd, (ft - expected)[step])
            self.skew_base[sd] = lag[step]
            self.stats.clock_steps += len(sd)
        keep = ~step
        self.skew_base[fd[keep]] = np.minimum(self.skew_base[fd[keep]], lag[keep])

    def _rebase(self, devs: np.ndarray, shift: np.ndarray) -> None:
        """Moves every time a device's state holds by ``shift``: its runs, clear delays and
        windows carry on in the new timeline for as long as they had run in the old."""
        self.newest[devs] += shift
        self.last_seen[devs] += shift
        for ks in self._kstate.values():
            loc = self._local[devs]
            nm = len(ks.members)
            inside = (loc >= 0) & (loc < nm)
            mine = inside & (ks.members[np.where(inside, loc, 0)] == devs) if nm \
                else np.zeros(len(devs), bool)
            if not mine.any():
                continue
            idx = (np.arange(len(ks.rules))[:, None] * nm + loc[mine][None, :]).ravel()
            sh = np.tile(shift[mine], len(ks.rules))
            for a in (ks.st.start, ks.st.last_t, ks.st.alarm_start):
                a[idx] += sh
        for start in self._off_start.values():
            start[devs] += shift
        for ring in self._rings.values():
            slots = (devs[:, None] * RING + np.arange(RING)[None, :]).ravel()
            ring.t[slots] += np.repeat(shift, RING)

    def _finish(self, out: list[Transition]) -> list[Transition]:
        for g in self._groups:
            out.extend(g.feed(out, self.render))
        out.sort(key=_order_key(self.rules))
        self.stats.transitions += len(out)
        for t in out:
            self.stats.by_rule[t.rule] = self.stats.by_rule.get(t.rule, 0) + 1
        return out

    def _process_kind(self, kind: str, kb: KindBatch, now: int) -> list[Transition]:
        keep = self.served[kb.device]
        if not keep.all():
            kb = kb.take(np.flatnonzero(keep))
        if not len(kb):
            return []
        self.stats.readings += len(kb)
        # event rules see every reading, late ones too: a thrown bottle is news whenever
        out: list[Transition] = self._events(kind, kb)
        # one int64 key sorts by (device, time); a stable sort keeps ties in arrival order
        dev = kb.device.astype(np.int64)
        key = (dev << 42) | (kb.ts - int(kb.ts.min()))
        if len(key) > 1 and not (key[1:] >= key[:-1]).all():
            order = np.argsort(key, kind="stable")
            dev, t, values = dev[order], kb.ts[order], kb.values[order]
        else:
            t, values = kb.ts, kb.values
        self._clock_steps(dev, t, now)
        # late readings: older than the newest already applied for the device
        late = t < self.newest[dev]
        if late.any():
            self.stats.late += int(late.sum())
            rows = np.flatnonzero(~late)
            dev, t, values = dev[rows], t[rows], values[rows]
        if not len(t):
            return out
        # newest per device: t is sorted within each device
        last = _ends(dev)
        out.extend(self._offline_on_readings(dev, t, now))
        self.newest[dev[last]] = t[last]
        self.recv_at[dev[last]] = now

        rules = self._state_rules_of[kind]
        if not rules:
            return out
        cols: dict[str, Any] = {f.name: values[:, i] for i, f in enumerate(kb.kind.columns)}
        for p in self._kind_params[kind]:
            cols[p] = self._params.get(p, self._nan)[dev]
        self._windows(kind, rules, dev, t, cols)
        out.extend(self._state_rules(self._kstate[kind], dev, t, cols))
        return out

    def _windows(self, kind: str, rules: list[CompiledRule], dev: np.ndarray, t: np.ndarray,
                 cols: dict[str, Any]) -> None:
        by_field = self._window_fields.get(kind)
        if by_field is None:
            by_field = {}
            for r in rules:
                for w in r.windows:
                    if w not in by_field.setdefault(w.field, []):
                        by_field[w.field].append(w)
            self._window_fields[kind] = by_field
        for fname, ws in by_field.items():
            ring = self._rings.get((kind, fname))
            if ring is None:
                ring = self._rings[(kind, fname)] = Ring.empty(self._n)
            v = cols[fname]
            has = ~np.isnan(v)
            rows = np.flatnonzero(has)
            feats = window_features(dev[rows], t[rows], v[rows], ring, ws)
            for key, arr in feats.items():
                full = np.full(len(t), np.nan)
                full[rows] = arr
                cols[key] = full

    def _events(self, kind: str, kb: KindBatch) -> list[Transition]:
        rules = self._event_rules[kind]
        if not rules:
            return []
        cols: dict[str, Any] = {f.name: kb.values[:, i] for i, f in enumerate(kb.kind.columns)}
        extras = dict(zip(kb.extra_rows.tolist(), kb.extras, strict=True))
        out = []
        for r in rules:
            assert r.condition is not None
            valid = np.ones(len(kb), bool)
            for f in r.condition.required:
                valid &= ~np.isnan(cols[f])
            hit = np.flatnonzero(valid & r.condition.test_vector(cols))
            for i in hit.tolist():
                out.append(self._event_transition(r, int(kb.device[i]), int(kb.ts[i]),
                                                  {k: float(v[i]) for k, v in cols.items()},
                                                  extras.get(i)))
        return out

    def _event_transition(self, r: CompiledRule, dev: int, ts: int, row: dict[str, float],
                          extra: dict[str, Any] | None) -> Transition:
        value = float(r.value.scalar(row)) if r.value is not None else None
        details = {name: e.scalar(row) for name, e in r.details}
        floor = None
        if r.enrich == "trajectory":
            more, floor, _apex = enrich_trajectory(self.site, dev, extra)
            details.update(more)
        details = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in details.items()}
        return self.render.device(r, dev, "raised", ts, ts, value, details, floor)

    # -- offline ---------------------------------------------------------------------------
    def _offline_on_readings(self, dev: np.ndarray, t: np.ndarray, now: int
                             ) -> list[Transition]:
        out: list[Transition] = []
        first = _changes(dev)
        # the gap before a device's first reading: on its own clock when it has reported
        # before, else on the receiving clock since start (its clock is unknown yet)
        seen = self.newest[dev] != NEVER
        before = np.where(seen, self.last_seen[dev], t - (now - self.recv_at[dev]))
        prev = np.where(first, before, _shift(t, 0))
        last = _ends(dev)
        for r in self._offline:
            lim = self._off_limit[r.id][dev]
            act = self._off_active[r.id]
            start = self._off_start[r.id]
            gap = (lim >= 0) & (t - prev > lim)
            was = first & act[dev]
            # a first reading of a device already offline clears it
            for i in np.flatnonzero(was).tolist():
                d = int(dev[i])
                out.append(self._offline_t(r, d, "cleared", int(t[i]), int(start[d]),
                                           int(prev[i])))
            for i in np.flatnonzero(gap & ~was).tolist():
                d = int(dev[i])
                due = int(prev[i] + lim[i])
                out.append(self._offline_t(r, d, "raised", due, due, int(prev[i])))
                out.append(self._offline_t(r, d, "cleared", int(t[i]), due, int(prev[i])))
            act[dev[first]] = False
        self.last_seen[dev[last]] = t[last]
        return out

    def _tick_offline(self, r: CompiledRule, now: int) -> list[Transition]:
        lim = self._off_limit[r.id]
        act = self._off_active[r.id]
        # silent on its own clock ⇔ silent on the receiving clock since its last reading
        due = np.flatnonzero((lim >= 0) & ~act & (now - self.recv_at > lim))
        out = []
        for d in due.tolist():
            ts = int(self.last_seen[d] + lim[d])
            act[d] = True
            self._off_start[r.id][d] = ts
            out.append(self._offline_t(r, d, "raised", ts, ts, int(self.last_seen[d])))
        return out

    def _offline_t(self, r: CompiledRule, d: int, event: str, ts: int, started: int,
                   last_seen: int) -> Transition:
        return self.render.device(r, d, event, ts, started, None, {"last_seen": last_seen})

    # -- state rules -------------------------------------------------------------------------
    def _state_rules(self, ks: _KindState, dev: np.ndarray, t: np.ndarray,
                     cols: dict[str, Any]) -> list[Transition]:
        """All state rules of a kind: conditions per rule, then one pass of the run
        machinery over the busy (rule, device) pairs of them all."""
        st = ks.st
        nm = len(ks.members)
        local = self._local[dev]
        parts: list[tuple[np.ndarray, ...]] = []
        # subjects with a pending run or an open alarm; a rule with none of them and no
        # true reading has nothing to do: false readings on a quiet subject change nothing
        # that could ever produce a transition, so its state is left as it is
        hot = ((st.pol == 1) | st.active).reshape(len(ks.rules), nm)
        hot_rule = hot.any(axis=1)
        # rows where a rule's fields are measured, shared by rules reading the same fields
        subsets: dict[frozenset[str], tuple[Any, ...]] = {}
        for ri, r in enumerate(ks.rules):
            assert r.condition is not None
            cond = r.condition.test_vector(cols)
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
                sub_rows = subsets[need] = (rows, rl, heads, counts)
            rows, rl, heads, counts = sub_rows
            rc = cond if rows is None else cond[rows]
            if not len(rc) or not (hot_rule[ri] or rc.any()):
                continue
            busy = np.logical_or.reduceat(rc, heads) | hot[ri, rl[heads]]
            if not busy.any():
                continue
            sel = np.flatnonzero(np.repeat(busy, counts))
            src = sel if rows is None else rows[sel]
            sub = {k: cols[k][src] for k in self._names[r.id]}
            c = rc[sel]
            outs = np.full((len(sel), ks.width), np.nan)
            outs[:, :len(r.outputs)] = self._outputs(r, sub, len(sel))
            parts.append((rl[sel] + ri * nm, t[src], c, self._durations(r, c, sub), outs))
        if not parts:
            return []
        key, tt, cc, dd, oo = (np.concatenate(x) for x in zip(*parts, strict=True))
        return self._runs(ks, key, tt, cc, dd, oo)

    def _durations(self, r: CompiledRule, cond: np.ndarray, cols: dict[str, Any]) -> np.ndarray:
        d = np.full(len(cond), _ms(r.for_s), np.int64)
        # tiers: the shortest applicable duration wins
        for when, secs in r.for_when:
            w = when.test_vector(cols)
            d = np.where(w, np.minimum(d, _ms(secs)), d)
        return np.where(cond, d, _ms(r.clear_after_s))

    def _outputs(self, r: CompiledRule, cols: dict[str, Any], n: int) -> np.ndarray:
        out = np.full((n, len(r.outputs)), np.nan)
        for j, e in enumerate(r.outputs):
            if e is not None:
                out[:, j] = np.broadcast_to(np.asarray(e.vector(cols), np.float64), (n,))
        return out

    def _runs(self, ks: _KindState, dev: np.ndarray, t: np.ndarray, cond: np.ndarray,
              dur: np.ndarray, outs: np.ndarray) -> list[Transition]:
        """The run machinery over readings sorted by subject key (rule, device), then time."""
        st = ks.st
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
        cout = np.empty((size, ks.width))
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
            out.append(self._state_t(ks, subject, "raised" if raise_r[i] else "cleared",
                                     int(ts[i]), started, cout[int(vrow[i])]))
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

    def _tick_state(self, ks: _KindState, dev_now: np.ndarray) -> list[Transition]:
        st = ks.st
        now = np.tile(dev_now[ks.members], len(ks.rules))
        due = st.start + st.dur
        ok = (st.pol >= 0) & (st.dur >= 0) & (now >= due)
        out: list[Transition] = []
        if not ok.any():
            return out
        for i in np.flatnonzero(ok & (st.pol == 1) & ~st.active).tolist():
            st.active[i] = True
            st.alarm_start[i] = st.start[i]
            out.append(self._state_t(ks, i, "raised", max(int(due[i]), int(st.last_t[i])),
                                     int(st.start[i]), st.out[i]))
        for i in np.flatnonzero(ok & (st.pol == 0) & st.active).tolist():
            st.active[i] = False
            out.append(self._state_t(ks, i, "cleared", max(int(due[i]), int(st.last_t[i])),
                                     int(st.alarm_start[i]), st.out[i]))
        return out

    def _state_t(self, ks: _KindState, subject: int, event: str, ts: int, started: int,
                 vals: np.ndarray) -> Transition:
        nm = len(ks.members)
        r = ks.rules[subject // nm]
        d = int(ks.members[subject % nm])
        details = {name: _num(vals[j + 1]) for j, (name, _) in enumerate(r.details)}
        return self.render.device(r, d, event, ts, started, float(vals[0]), details)


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _order_key(rules: RuleSet) -> Any:
    order = {r.id: r.order for r in rules.rules}

    def key(t: Transition) -> tuple[int, int, str, int]:
        return (t.ts, order.get(t.rule, 0), t.subject, 0 if t.event == "raised" else 1)

    return key


class _Group:
    """A group rule (``smoke.fire_confirmed``): k members of one floor within a window.

    Members' raised / cleared transitions are rare, so they are fed one by one in time
    order; the per-floor counts are arrays indexed by a dense group id.
    """

    def __init__(self, rule: CompiledRule, site: Site) -> None:
        self.rule = rule
        self.site = site
        d = site.devices
        n = len(d)
        keys: dict[tuple[int, int], int] = {}
        gid = np.full(n, -1, np.int64)
        floor = d.floor
        kind_ok = d.kind == KIND_CODES[rule.kind]
        for i in np.flatnonzero(kind_ok & ~np.isnan(floor)).tolist():
            key = (int(d.building[i]), int(floor[i]))
            gid[i] = keys.setdefault(key, len(keys))
        self.gid = gid
        self.keys = list(keys)
        ng = len(keys)
        self.member_active = np.zeros(n, np.int32)  # active member alarms per device
        self.last_clear = np.full(n, np.iinfo(np.int64).min // 2, np.int64)
        self.active = np.zeros(ng, bool)
        self.started = np.zeros(ng, np.int64)
        order = np.argsort(gid, kind="stable")
        order = order[gid[order] >= 0]
        self.members_sorted = order
        self.bounds = np.searchsorted(gid[order], np.arange(ng + 1))
        self.within_ms = _ms(rule.within_s)
        self.index = d.index

    def restore(self, subject: str, started: int) -> bool:
        """An open alarm of this rule on ``estate/building/floor``: active again."""
        estate, _, rest = subject.partition("/")
        building, _, floor = rest.partition("/")
        b = next((i for i, b in enumerate(self.site.buildings)
                  if b.estate == estate and b.id == building), None)
        try:
            g = self.keys.index((b, int(floor))) if b is not None else -1
        except ValueError:
            g = -1
        if g < 0:
            return False
        self.active[g] = True
        self.started[g] = started
        return True

    def restore_members(self, open_members: list[tuple[str, int]]) -> None:
        """Member alarms still open at start count as active members again, so that the
        group clears when the last of them clears."""
        for rule, dev in open_members:
            if rule in self.rule.members and self.gid[dev] >= 0:
                self.member_active[dev] += 1

    def feed(self, transitions: list[Transition], render: Renderer) -> list[Transition]:
        hits = [t for t in transitions if t.rule in self.rule.members and t.device is not None]
        if not hits:
            return []
        hits.sort(key=lambda t: (t.ts, 0 if t.event == "cleared" else 1, t.device or ""))
        out: list[Transition] = []
        for h in hits:
            dev = self.index[h.device]  # type: ignore[index]
            g = int(self.gid[dev])
            if g < 0:
                continue
            members = self.members_sorted[self.bounds[g]:self.bounds[g + 1]]
            if h.event == "raised":
                self.member_active[dev] += 1
                live = (self.member_active[members] > 0) | \
                    (self.last_clear[members] >= h.ts - self.within_ms)
                n_live = int(live.sum())
                if n_live >= self.rule.min_members and not self.active[g]:
                    self.active[g] = True
                    self.started[g] = h.ts
                    out.append(self._t(g, "raised", h.ts, n_live, members[live], render))
            else:
                self.member_active[dev] = max(0, self.member_active[dev] - 1)
                self.last_clear[dev] = h.ts
                if self.active[g] and not (self.member_active[members] > 0).any():
                    self.active[g] = False
                    out.append(self._t(g, "cleared", h.ts, 0, members[:0], render))
        return out

    def _t(self, g: int, event: str, ts: int, n: int, members: np.ndarray,
           render: Renderer) -> Transition:
        b_idx, floor = self.keys[g]
        b = self.site.buildings[b_idx]
        details = {"devices": [self.site.devices.ids[i] for i in members.tolist()]}
        return render.group(self.rule, b.estate, b.id, floor, event, ts,
                            int(self.started[g]), float(n), details)
