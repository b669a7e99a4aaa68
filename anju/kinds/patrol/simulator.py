"""Patrol check-points (巡更点): a heartbeat every 5 minutes and the guards' check-ins.

Each point's route schedule is its registry params (the defaults of the schema's examples
where it has none: every 2 h from 22:00 to 06:00, ± 30 min). The guard walks every round:
he reaches a point a fixed part of the tolerance after the round is due (10–50 %, the
point's place along the route), and the point reports a ``checkin`` with his badge.

Incident: ``missed_round`` — the guard skips the listed points for the first ``rounds``
rounds due at or after the incident (asleep in the guard room, or never left it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anju.kinds import KINDS
from anju.simulators._noise import uniform
from anju.simulators.fleet import (
    BoundIncident,
    CadenceFleet,
    FleetContext,
    FloatArray,
    IncidentType,
    IntArray,
    Readings,
)

__all__ = ["INCIDENTS", "PatrolFleet", "next_round"]

_SPEC = KINDS["patrol"]
_CHECKIN = float(_SPEC.field("event").choices.index("checkin"))
_DAY_MS = 86_400_000
_FAR = np.iinfo(np.int64).max


class MissedRoundParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(1, ge=1, le=100, description="rounds skipped, from the first due at `at`")


INCIDENTS = {
    t.name: t for t in (
        IncidentType("missed_round", "patrol", MissedRoundParams,
                     "the guard skips the listed check-points for the next `rounds` rounds",
                     devices=(1, 64)),
    )
}


def next_round(after: IntArray, every: IntArray, start: IntArray, length: IntArray,
               off: IntArray) -> IntArray:
    """The first round due strictly after ``after`` (ms), per point: the schedule of
    CONTRACT's patrol params (the rule engine's :mod:`anju.rules.schedule` judges the same
    calendar; a kind's simulator may not import the engine)."""
    day = (after + off) // _DAY_MS
    best = np.full(after.shape, _FAR, np.int64)
    for dd in (-1, 0, 1):
        s = (day + dd) * _DAY_MS + start - off
        k = np.maximum(0, (after - s) // every + 1)
        t = s + k * every
        best = np.where((k * every < length) & (t < best), t, best)
    return best


class PatrolFleet(CadenceFleet):
    """All patrol check-points of a run."""

    kind = "patrol"
    period_ms: ClassVar[int] = 300_000

    def __init__(self, ctx: FleetContext, devices: Any, incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        d = ctx.site.devices

        def param(name: str) -> FloatArray:
            example = next(p.example for p in _SPEC.params if p.name == name)
            col = d.params.get(name)
            if col is None:
                return np.full(self.devices.size, example)
            v = col[self.devices]
            return np.where(np.isnan(v), example, v)

        self.every = np.maximum(np.round(param("every_min") * 60_000), 1).astype(np.int64)
        self.start = np.round(param("from_hour") * 3_600_000).astype(np.int64) % _DAY_MS
        end = np.round(param("to_hour") * 3_600_000).astype(np.int64) % _DAY_MS
        length = (end - self.start) % _DAY_MS
        self.length = np.where(length == 0, _DAY_MS, length)
        self.off = np.round(param("utc_offset_h") * 3_600_000).astype(np.int64)
        tol = np.round(param("tolerance_min") * 60_000).astype(np.int64)
        # where along the route the point is: 10–50 % of the tolerance after the round is due
        self.delay = (tol * (0.1 + 0.4 * uniform(ctx.seed, self.keys, 0x9A7))).astype(np.int64)
        self.guard = 1 + (uniform(ctx.seed, self.keys, 0x6D) * 20).astype(np.int64)
        # a reader's battery, 60–100 %, reported with each heartbeat (months per percent)
        self.battery = np.round(60.0 + 40.0 * uniform(ctx.seed, self.keys, 0xBA7), 1)
        # (local point, due time of a round it skips)
        self.skipped: set[tuple[int, int]] = set()
        # windows are chained: (t, the first round per point whose check-in is ≥ t)
        self._cursor: tuple[int, IntArray] | None = None
        for inc in self.incidents:
            if inc.type != "missed_round":
                continue
            for dev in inc.devices:
                if dev not in self.local:
                    continue
                i = self.local[dev]
                due = ctx.start_ms + inc.at_ms - 1
                for _ in range(inc.params.rounds):
                    due = int(self._next(np.array([i]), np.array([due]))[0])
                    self.skipped.add((i, due))

    def _next(self, local: IntArray, after: IntArray) -> IntArray:
        return next_round(after, self.every[local], self.start[local], self.length[local],
                          self.off[local])

    def model(self, local: IntArray, ts: IntArray) -> dict[str, FloatArray]:
        return {"event": np.zeros(ts.size),  # heartbeat
                "battery_pct": self.battery[local].astype(np.float64)}

    def advance(self, t0: int, t1: int) -> Readings:
        base = super().advance(t0, t1)
        n = self.devices.size
        if n == 0 or t1 <= t0:
            return base
        # check-ins in [t0, t1): rounds due in [t0 - delay, t1 - delay)
        local = np.arange(n, dtype=np.int64)
        if self._cursor is not None and self._cursor[0] == t0:
            due = self._cursor[1]
        else:
            due = self._next(local, t0 - self.delay - 1)
        if int((due + self.delay).min()) >= t1:  # no check-in in this window (most of them)
            self._cursor = (t1, due)
            return base
        rows: list[IntArray] = []
        times: list[IntArray] = []
        while True:
            live = due + self.delay < t1
            if not live.any():
                break
            loc = local[live]
            rows.append(loc)
            times.append(due[live] + self.delay[live])
            due = np.where(live, self._next(local, due), due)
        self._cursor = (t1, due)
        loc, ts = np.concatenate(rows), np.concatenate(times)
        if self.skipped:
            keep = np.array([(int(i), int(t - self.delay[i])) not in self.skipped
                             for i, t in zip(loc.tolist(), ts.tolist(), strict=True)], bool)
            loc, ts = loc[keep], ts[keep]
        if self._silenced(loc, ts).any():
            keep = ~self._silenced(loc, ts)
            loc, ts = loc[keep], ts[keep]
        cols = {"event": np.full(ts.size, _CHECKIN), "guard_id": self.guard[loc].astype(float)}
        return Readings.concat(self.kind, [base, Readings(self.kind, ts, self.devices[loc], cols)])

    def _silenced(self, loc: IntArray, ts: IntArray) -> np.ndarray:
        """Check-ins at a point while it is silent (a ``silent`` incident) are not heard."""
        out = np.zeros(ts.size, bool)
        for o in self.overrides:
            if not o.keep_normal and o.fn is None:
                out |= (loc == o.local) & (ts >= o.start) & (ts < o.end)
        return out


FLEET = PatrolFleet  # the kind table (anju.simulators.fleets) reads this name
