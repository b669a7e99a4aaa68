"""Fire-lane cameras (消防车通道): a heartbeat every 60 s, every 30 s while occupied.

Normal traffic: the lane is free but for short stops — a delivery van, a taxi dropping a
resident — of 40 s to 3 min, in about one half-hour in four by day and one in twenty at
night, each seen by the heartbeats that fall inside it (one vehicle, the camera's dwell
timer counting). A stop is always shorter than firelane.blocked's five minutes, so normal
traffic raises nothing; stops are kept away from a staged incident so that it is judged
alone.

Incident ``lane_blocked``: a vehicle parks in the lane at ``at`` (or, with ``since_s``, had
already been parked that long when the camera's report at ``at`` says so), reported at
once and every ``period_s`` while it stays; a last report when it leaves.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anju.simulators._noise import uniform
from anju.simulators.fleet import (
    BoundIncident,
    CadenceFleet,
    FleetContext,
    FloatArray,
    IncidentType,
    IntArray,
    Override,
    local_hour,
    outside_spans,
)

__all__ = ["INCIDENTS", "FirelaneFleet"]

_SLOT_MS = 1_800_000  # at most one short stop per half hour
_STOP_MIN_MS, _STOP_MAX_MS = 40_000, 180_000  # well under the rule's 300 s
_QUIET_MS = 600_000  # no short stop this close to a staged incident


class LaneBlockedParams(BaseModel):
    """A vehicle parked in the fire lane."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float | None = Field(None, gt=0, description="it leaves after; None: stays")
    since_s: float = Field(0.0, ge=0, le=86_400,
                           description="already parked this long at `at` (the camera's timer)")
    vehicles: int = Field(1, ge=1, le=20)
    period_s: float = Field(30.0, ge=1, le=60, description="report period while occupied")


INCIDENTS = {
    t.name: t for t in (
        IncidentType("lane_blocked", "firelane", LaneBlockedParams,
                     "a vehicle parks in the fire lane (for `duration_s`, or to the end)"),
    )
}


class FirelaneFleet(CadenceFleet):
    """All fire-lane cameras of a run."""

    kind = "firelane"
    period_ms: ClassVar[int] = 60_000

    def __init__(self, ctx: FleetContext, devices: Any, incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        # per device: [start, end) spans around staged incidents where no short stop happens
        self.quiet: dict[int, list[tuple[int, int]]] = {}
        for inc in self.incidents:
            if inc.type in INCIDENTS:
                self._bind(inc)

    def model(self, local: IntArray, ts: IntArray) -> dict[str, FloatArray]:
        seed, keys = self.ctx.seed, self.keys[local]
        slot = ts // _SLOT_MS
        hour = local_hour(ts)
        chance = np.where((hour >= 7) & (hour < 22), 0.25, 0.05)
        has = uniform(seed, keys, slot, 0xF1) < chance
        length = _STOP_MIN_MS + (uniform(seed, keys, slot, 0xF2)
                                 * (_STOP_MAX_MS - _STOP_MIN_MS)).astype(np.int64)
        begin = slot * _SLOT_MS + (uniform(seed, keys, slot, 0xF3)
                                   * (_SLOT_MS - length)).astype(np.int64)
        stopped = has & (ts >= begin) & (ts < begin + length)
        stopped &= outside_spans(local, ts, self.quiet)
        dwell = np.where(stopped, (ts - begin) // 1000, 0)
        return {
            "occupied": stopped.astype(np.float64),
            "vehicles": stopped.astype(np.float64),
            "occupied_s": dwell.astype(np.float64),
        }

    def _bind(self, inc: BoundIncident) -> None:
        p: LaneBlockedParams = inc.params
        at = self.ctx.start_ms + inc.at_ms
        end = self.ctx.end_ms + 1 if p.duration_s is None else at + int(p.duration_s * 1000)
        since_ms = int(p.since_s * 1000)
        for dev in inc.devices:
            if dev not in self.local:
                continue
            loc = self.local[dev]
            self.quiet.setdefault(loc, []).append((at - since_ms - _QUIET_MS, end + _QUIET_MS))
            # reported at once, then every period_s while it stays (normal reports dropped)
            self.overrides.append(Override(loc, at, end, int(p.period_s * 1000),
                                           _parked(at - since_ms, p.vehicles)))
            if p.duration_s is not None:  # the report of the lane freed
                self.overrides.append(Override(loc, end, end + 1, None, _free,
                                               keep_normal=True))


def _parked(since: int, vehicles: int) -> Any:
    def fn(ts: IntArray, cols: dict[str, FloatArray]) -> dict[str, FloatArray]:
        cols["occupied"] = np.ones(ts.size)
        cols["vehicles"] = np.full(ts.size, float(vehicles))
        cols["occupied_s"] = ((ts - since) // 1000).astype(np.float64)
        return cols
    return fn


def _free(ts: IntArray, cols: dict[str, FloatArray]) -> dict[str, FloatArray]:
    cols["occupied"] = np.zeros(ts.size)
    cols["vehicles"] = np.zeros(ts.size)
    cols["occupied_s"] = np.zeros(ts.size)
    return cols


FLEET = FirelaneFleet  # the kind table (anju.simulators.fleets) reads this name
