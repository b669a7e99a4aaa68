"""The scalar reference engine: the rule semantics, one reading at a time, in plain Python.

It is written to be obviously right, not fast: the oracle of the vectorised engine's
property tests and the baseline of ``anju bench rules``. For each state rule and device:

    on a reading at t:  advance(t); apply the reading; advance(t)
    apply:              a new run starts when the condition changes; the run's duration
                        is ``for`` (shortest applicable ``for_when`` tier) while true and
                        ``clear_after`` while false; the reading's outputs are kept
    advance(now):       if now ≥ run start + duration: a true run raises (unless raised),
                        a false run clears (if raised), at ts = max(due, last reading)

Readings older than the device's newest are late: counted, not applied (event rules
still see them). Offline: a device whose newest reading is more than ``heartbeats`` ×
its heartbeat old is offline from then on; its next reading clears it.

Time: each device on its own clock (:mod:`anju.rules.clock`): ``now`` passed to a tick or
with a batch is the receiving clock, and a device's clock is its newest ``ts`` advanced by
the receiving clock since that reading arrived; a clock step rebases the device.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anju.devices.batch import Batch
from anju.devices.registry import Site
from anju.kinds import KINDS
from anju.rules.clock import CLOCK_STEP_MS
from anju.rules.events import enrich_trajectory
from anju.rules.model import CompiledRule, RuleSet
from anju.rules.render import Renderer
from anju.rules.transition import Transition
from anju.rules.windows import RING

__all__ = ["ReferenceEngine"]


@dataclass
class _Run:
    pol: int = -1  # -1 no reading yet, 0 false, 1 true
    start: int = 0
    dur: int = -1
    active: bool = False
    alarm_start: int = 0
    last_t: int = 0
    out: tuple[float, ...] = ()


@dataclass
class _Offline:
    active: bool = False
    start: int = 0


@dataclass
class _GroupState:
    active: bool = False
    started: int = 0


@dataclass
class _Device:
    newest: int | None = None
    last_seen: int = 0
    recv_at: int = 0  # receiving clock when ``newest`` arrived (start until then)
    skew_base: float = math.inf  # smallest (arrival - ts) seen
    rings: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _window(ring: deque[tuple[int, float]], t: int, func: str, seconds: float) -> float:
    """A windowed feature at the newest reading, summing from newest to oldest."""
    lo = t - _ms(seconds)
    n = sx = sy = sxx = sxy = 0.0
    vmax, vmin = -math.inf, math.inf
    oldest = t
    for ti, vi in reversed(ring):
        if ti < lo:
            break
        dt = (ti - t) / 1000.0
        n += 1
        sx += dt
        sy += vi
        sxx += dt * dt
        sxy += dt * vi
        vmax = max(vmax, vi) if vi > vmax else vmax
        vmin = min(vmin, vi) if vi < vmin else vmin
        oldest = ti
    if func == "count":
        return n
    if func == "count_if":  # values are 1 where the condition held, 0 elsewhere
        return sy
    if func == "span":
        return (t - oldest) / 1000.0
    if func == "wmax":
        return vmax
    if func == "wmin":
        return vmin
    den = n * sxx - sx * sx
    return (n * sxy - sx * sy) / den if den > 0 else math.nan


class ReferenceEngine:
    """Same interface as :class:`~anju.rules.engine.RuleEngine`, one reading at a time."""

    def __init__(self, site: Site, rules: RuleSet, *, estates: Iterable[str] | None = None
                 ) -> None:
        self.site = site
        self.rules = rules
        self.render = Renderer(site)
        d = site.devices
        self.kinds = [list(KINDS)[k] for k in d.kind.tolist()]
        self.estate_of = [site.buildings[b].estate for b in d.building.tolist()]
        self.served = (lambda i: True) if estates is None else (
            lambda i, s=set(estates): self.estate_of[i] in s)  # type: ignore[misc]
        self.devices: dict[int, _Device] = {}
        self.runs: dict[tuple[str, int], _Run] = {}
        self.offline: dict[tuple[str, int], _Offline] = {}
        self.groups: dict[tuple[str, int, int], _GroupState] = {}
        self.member_active: dict[tuple[str, int], int] = {}
        self.last_clear: dict[tuple[str, int], int] = {}
        self.start_ms: int | None = None
        self.received_ms: int | None = None
        self.late = 0
        self.clock_steps = 0
        self._rules_of = {k: rules.by_kind(k) for k in KINDS}
        self._offline_rules = rules.of_type("offline")
        self._group_rules = rules.of_type("group")
        self._order = {r.id: r.order for r in rules.rules}

    # -- public ----------------------------------------------------------------------------
    def process(self, batch: Batch, received_ms: int | None = None) -> list[Transition]:
        out: list[Transition] = []
        if not batch:
            return out
        if received_ms is None:
            received_ms = max(int(kb.ts.max()) for kb in batch.kinds.values() if len(kb))
        now = self._receive(received_ms)
        for kind, kb in batch.kinds.items():
            extras = dict(zip(kb.extra_rows.tolist(), kb.extras, strict=True))
            rows = sorted(range(len(kb)), key=lambda i: (int(kb.device[i]), int(kb.ts[i]), i))
            stepped: set[int] = set()
            for i in rows:
                dev = int(kb.device[i])
                if not self.served(dev):
                    continue
                t = int(kb.ts[i])
                if dev not in stepped:  # a clock step is judged on its first reading
                    stepped.add(dev)
                    self._clock_step(dev, t, now)
                reading = {f.name: float(kb.values[i, j])
                           for j, f in enumerate(kb.kind.columns)}
                out.extend(self._reading(kind, dev, t, reading, extras.get(i), now))
        return self._finish(out)

    def tick(self, now_ms: int) -> list[Transition]:
        now = self._receive(now_ms)
        out: list[Transition] = []
        rules = {r.id: r for r in self.rules.rules}
        for (rule_id, dev), run in self.runs.items():
            out.extend(self._advance(rules[rule_id], dev, run, self._device_now(dev, now)))
        for r in self.rules.of_type("offline"):
            for dev in range(len(self.site.devices)):
                out.extend(self._offline_tick(r, dev, now))
        return self._finish(out)

    # -- clocks ------------------------------------------------------------------------------
    def _receive(self, now: int) -> int:
        if self.received_ms is None:
            self.start_ms = now
        now = max(now, self.received_ms or now)
        self.received_ms = now
        return now

    def _device(self, dev: int) -> _Device:
        start = self.start_ms or 0
        return self.devices.setdefault(dev, _Device(last_seen=start, recv_at=start))

    def _device_now(self, dev: int, now: int) -> int:
        st = self.devices.get(dev)
        if st is None or st.newest is None:
            return now
        return st.newest + (now - st.recv_at)

    def _clock_step(self, dev: int, t: int, now: int) -> None:
        st = self._device(dev)
        lag = now - t
        if st.newest is not None:
            expected = st.newest + (now - st.recv_at)
            back = t < st.newest - CLOCK_STEP_MS
            fwd = lag < -CLOCK_STEP_MS and lag < st.skew_base - CLOCK_STEP_MS \
                and t > expected + CLOCK_STEP_MS
            if back or fwd:
                self._rebase(dev, t - expected)
                st.skew_base = lag
                self.clock_steps += 1
                return
        st.skew_base = min(st.skew_base, lag)

    def _rebase(self, dev: int, shift: int) -> None:
        st = self.devices[dev]
        assert st.newest is not None
        st.newest += shift
        st.last_seen += shift
        for (_rule, d), run in self.runs.items():
            if d == dev:
                run.start += shift
                run.last_t += shift
                run.alarm_start += shift
        for (_rule, d), off in self.offline.items():
            if d == dev:
                off.start += shift
        for name, ring in st.rings.items():
            st.rings[name] = deque(((ti + shift, v) for ti, v in ring), maxlen=RING)

    # -- readings ----------------------------------------------------------------------------
    def _reading(self, kind: str, dev: int, t: int, reading: dict[str, float],
                 extra: dict[str, Any] | None, now: int) -> list[Transition]:
        out: list[Transition] = []
        st = self._device(dev)
        env: dict[str, Any] = dict(reading)
        for p in KINDS[kind].params:
            col = self.site.devices.params.get(p.name)
            env[p.name] = float(col[dev]) if col is not None else math.nan
        for r in self._rules_of[kind]:
            if r.type == "event" and self._valid(r, env) and r.condition is not None \
                    and r.condition.test_scalar(env):
                out.append(self._event(r, dev, t, env, extra))
        if st.newest is not None and t < st.newest:
            self.late += 1
            return out
        # the gap before it: on the device's clock once it has reported, before that on
        # the receiving clock since start
        prev = st.last_seen if st.newest is not None else t - (now - st.recv_at)
        for r in self._offline_rules:
            out.extend(self._offline_reading(r, dev, t, prev))
        st.newest = t
        st.recv_at = now
        st.last_seen = t
        # windows: push the reading once per windowed field, then compute each feature
        state_rules = [r for r in self._rules_of[kind] if r.type == "state"]
        windows = {w.key: w for r in state_rules for w in r.windows}
        # a window reads a field, or 1/0 where a count_if condition holds (never missing)
        values = {w.field: w.value_scalar(env) for w in windows.values()}
        for fname, v in values.items():
            if not math.isnan(v):
                st.rings.setdefault(fname, deque(maxlen=RING)).append((t, v))
        for key, w in windows.items():
            ring = st.rings.get(w.field)
            env[key] = math.nan if math.isnan(values[w.field]) or not ring \
                else _window(ring, t, w.func, w.seconds)
        for r in state_rules:
            if self._valid(r, env):
                out.extend(self._state(r, dev, t, env))
        return out

    def _valid(self, r: CompiledRule, env: dict[str, Any]) -> bool:
        assert r.condition is not None
        return all(not math.isnan(env[f]) for f in r.condition.required)

    def _event(self, r: CompiledRule, dev: int, t: int, env: dict[str, Any],
               extra: dict[str, Any] | None) -> Transition:
        value = float(r.value.scalar(env)) if r.value is not None else None
        details: dict[str, Any] = {name: e.scalar(env) for name, e in r.details}
        floor = None
        if r.enrich == "trajectory":
            more, floor, _ = enrich_trajectory(self.site, dev, extra)
            details.update(more)
        details = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in details.items()}
        return self.render.device(r, dev, "raised", t, t, value, details, floor)

    def _state(self, r: CompiledRule, dev: int, t: int, env: dict[str, Any]
               ) -> list[Transition]:
        assert r.condition is not None
        run = self.runs.setdefault((r.id, dev), _Run())
        out = self._advance(r, dev, run, t)
        cond = r.condition.test_scalar(env)
        pol = 1 if cond else 0
        if run.pol != pol:
            run.pol = pol
            run.start = t
        if cond:
            dur = _ms(r.for_s)
            for when, secs in r.for_when:
                if when.test_scalar(env):
                    dur = min(dur, _ms(secs))
        else:
            dur = _ms(r.clear_after_s)
        run.dur = dur
        run.last_t = t
        run.out = tuple(float(e.scalar(env)) if e is not None else math.nan
                        for e in r.outputs)
        out.extend(self._advance(r, dev, run, t))
        return out

    def _advance(self, r: CompiledRule, dev: int, run: _Run, now: int) -> list[Transition]:
        if run.pol < 0 or run.dur < 0 or now < run.start + run.dur:
            return []
        ts = max(run.start + run.dur, run.last_t)
        if run.pol == 1 and not run.active:
            run.active = True
            run.alarm_start = run.start
            return [self._state_t(r, dev, "raised", ts, run.start, run)]
        if run.pol == 0 and run.active:
            run.active = False
            return [self._state_t(r, dev, "cleared", ts, run.alarm_start, run)]
        return []

    def _state_t(self, r: CompiledRule, dev: int, event: str, ts: int, started: int,
                 run: _Run) -> Transition:
        vals = run.out or (math.nan,) * len(r.outputs)
        details = {name: (None if math.isnan(vals[j + 1]) else vals[j + 1])
                   for j, (name, _) in enumerate(r.details)}
        return self.render.device(r, dev, event, ts, started, vals[0], details)

    # -- offline -----------------------------------------------------------------------------
    def _limit(self, r: CompiledRule, dev: int) -> int | None:
        kind = self.kinds[dev]
        if (r.kind != "*" and r.kind != kind) or not self.served(dev):
            return None
        return round(KINDS[kind].heartbeat_s * r.heartbeats * 1000)

    def _last_seen(self, dev: int) -> int:
        st = self.devices.get(dev)
        return st.last_seen if st is not None else (self.start_ms or 0)

    def _offline_tick(self, r: CompiledRule, dev: int, now: int) -> list[Transition]:
        """Silent for longer than the limit on the receiving clock since its last reading
        arrived (on its own clock, the same thing)."""
        lim = self._limit(r, dev)
        if lim is None:
            return []
        off = self.offline.setdefault((r.id, dev), _Offline())
        st = self.devices.get(dev)
        recv_at = st.recv_at if st is not None else (self.start_ms or 0)
        last = self._last_seen(dev)
        if not off.active and now - recv_at > lim:
            off.active = True
            off.start = last + lim
            return [self._offline_t(r, dev, "raised", off.start, off.start, last)]
        return []

    def _offline_reading(self, r: CompiledRule, dev: int, t: int, prev: int
                         ) -> list[Transition]:
        """A reading ``t`` after a gap since ``prev``: a gap longer than the limit was an
        offline spell (raised and cleared now); an open offline alarm clears."""
        lim = self._limit(r, dev)
        if lim is None:
            return []
        off = self.offline.setdefault((r.id, dev), _Offline())
        out: list[Transition] = []
        if not off.active and t - prev > lim:
            off.active = True
            off.start = prev + lim
            out.append(self._offline_t(r, dev, "raised", off.start, off.start, prev))
        if off.active:
            off.active = False
            out.append(self._offline_t(r, dev, "cleared", t, off.start, prev))
        return out

    def _offline_t(self, r: CompiledRule, dev: int, event: str, ts: int, started: int,
                   last_seen: int) -> Transition:
        return self.render.device(r, dev, event, ts, started, None, {"last_seen": last_seen})

    # -- groups ------------------------------------------------------------------------------
    def _finish(self, out: list[Transition]) -> list[Transition]:
        for g in self._group_rules:
            out.extend(self._group(g, out))
        out.sort(key=lambda t: (t.ts, self._order.get(t.rule, 0), t.subject,
                                0 if t.event == "raised" else 1))
        return out

    def _group(self, g: CompiledRule, transitions: list[Transition]) -> list[Transition]:
        d = self.site.devices
        hits = sorted((t for t in transitions if t.rule in g.members and t.device is not None),
                      key=lambda t: (t.ts, 0 if t.event == "cleared" else 1, t.device or ""))
        out: list[Transition] = []
        for h in hits:
            dev = d.index[h.device]  # type: ignore[index]
            if self.kinds[dev] != g.kind or math.isnan(d.floor[dev]):
                continue
            key = (g.id, int(d.building[dev]), int(d.floor[dev]))
            members = [i for i in range(len(d)) if self.kinds[i] == g.kind
                       and int(d.building[i]) == key[1] and d.floor[i] == key[2]]
            state = self.groups.setdefault(key, _GroupState())
            if h.event == "raised":
                self.member_active[(g.id, dev)] = self.member_active.get((g.id, dev), 0) + 1
                live = [i for i in members if self.member_active.get((g.id, i), 0) > 0
                        or self.last_clear.get((g.id, i), -(2**62)) >= h.ts - _ms(g.within_s)]
                if len(live) >= g.min_members and not state.active:
                    state.active = True
                    state.started = h.ts
                    out.append(self._group_t(g, key, "raised", h.ts, state.started, live))
            else:
                self.member_active[(g.id, dev)] = max(
                    0, self.member_active.get((g.id, dev), 0) - 1)
                self.last_clear[(g.id, dev)] = h.ts
                if state.active and not any(self.member_active.get((g.id, i), 0) > 0
                                            for i in members):
                    state.active = False
                    out.append(self._group_t(g, key, "cleared", h.ts, state.started, []))
        return out

    def _group_t(self, g: CompiledRule, key: tuple[str, int, int], event: str, ts: int,
                 started: int, live: list[int]) -> Transition:
        b = self.site.buildings[key[1]]
        details = {"devices": [self.site.devices.ids[i] for i in live]}
        return self.render.group(g, b.estate, b.id, key[2], event, ts, started,
                                 float(len(live)), details)
