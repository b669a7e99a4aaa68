"""Smoke and heat detectors: a heartbeat every 60 s and a report at once on any change.

Normal readings: optical obscuration a little above zero with sensor noise (a clean
chamber reads 0.01–0.03 dB/m; GB 4715-2005 alarm thresholds are 0.1–0.2 dB/m), the
landing's temperature following the day (coolest before dawn, warmest mid-afternoon) and
a lithium battery draining a few hundredths of a percent a day.

Incidents: ``fire`` (smoke, then heat, spreading from detector to detector across a
floor; reports every 5 s while it lasts, as detectors in alarm do), ``battery_low``,
``tamper`` (detector lifted off its base), ``warming`` (the air warms fast with no smoke
yet: a lithium pack overheating on a charger near the detector) and the generic ``silent``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anju.simulators._noise import normal, uniform
from anju.simulators.fleet import (
    BoundIncident,
    CadenceFleet,
    FleetContext,
    FloatArray,
    IncidentType,
    IntArray,
    Override,
    local_hour,
)

__all__ = ["INCIDENTS", "SmokeFleet"]

_REF_MS = 1_767_196_800_000  # 2026-01-01T00:00+08:00: battery levels count from here
_DAY_MS = 86_400_000


class FireParams(BaseModel):
    """Smoke, then heat, at each detector in turn (``spread_s`` apart)."""

    model_config = ConfigDict(extra="forbid")
    spread_s: float = Field(40.0, ge=0, description="delay from one detector to the next")
    smoke_peak_db_m: float = Field(0.6, gt=0.15, le=5)
    smoke_rise_s: float = Field(20.0, gt=0, le=600, description="time to reach the peak")
    heat_c_per_min: float = Field(20.0, ge=0, le=200, description="0: a smouldering fire")
    heat_delay_s: float = Field(10.0, ge=0, description="heat follows smoke after this")
    max_temp_c: float = Field(95.0, gt=0, le=300)
    period_s: float = Field(5.0, ge=1, le=60, description="report period while in alarm")
    duration_s: float | None = Field(None, gt=0, description="put out after; None: burns on")


class WarmingParams(BaseModel):
    """The temperature rises at ``heat_c_per_min`` up to ``max_temp_c``, without smoke."""

    model_config = ConfigDict(extra="forbid")
    heat_c_per_min: float = Field(12.0, gt=0, le=200)
    max_temp_c: float = Field(45.0, gt=0, le=300, description="stays below heat.fixed's 57")
    period_s: float = Field(5.0, ge=1, le=60, description="report period while warming")
    duration_s: float = Field(300.0, gt=0, description="warm this long, then back to normal")


class BatteryLowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level_pct: float = Field(18.0, ge=0, lt=20)


class TamperParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(60.0, gt=0, description="off its base this long")
    period_s: float = Field(10.0, ge=1, le=60, description="report period while tampered")


INCIDENTS = {
    t.name: t for t in (
        IncidentType("fire", "smoke", FireParams,
                     "smoke then heat at each listed detector in turn (one floor)",
                     devices=(1, 16)),
        IncidentType("warming", "smoke", WarmingParams,
                     "temperature rising fast without smoke (a battery overheating nearby)",
                     devices=(1, 16)),
        IncidentType("battery_low", "smoke", BatteryLowParams, "battery drops below 20 %"),
        IncidentType("tamper", "smoke", TamperParams, "detector removed from its base"),
    )
}


class SmokeFleet(CadenceFleet):
    """All smoke detectors of a run."""

    kind = "smoke"
    period_ms: ClassVar[int] = 60_000

    def __init__(self, ctx: FleetContext, devices: Any, incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        seed, keys = ctx.seed, self.keys
        site = ctx.site
        bkeys = np.array([int(site.devices.building[d]) for d in self.devices], dtype=np.int64)
        # A building's landings share its climate: base 16–24 °C (season, heating) and a
        # daily swing of 1–3 °C; each detector sits a little warmer or cooler.
        self.temp_base = (16.0 + 8.0 * uniform(seed, bkeys, 0x7E)
                          + 0.4 * normal(seed, keys, 0x7F))
        self.temp_amp = 1.0 + 2.0 * uniform(seed, bkeys, 0xA3)
        self.smoke_base = 0.008 + 0.012 * uniform(seed, keys, 0x5A)
        self.batt0 = 35.0 + 65.0 * uniform(seed, keys, 0xBA)
        self.drain = (0.005 + 0.02 * uniform(seed, keys, 0xD7)) / _DAY_MS
        for inc in self.incidents:
            self._bind(inc)

    def model(self, local: IntArray, ts: IntArray) -> dict[str, FloatArray]:
        seed, keys = self.ctx.seed, self.keys[local]
        hour = local_hour(ts)
        temp = (self.temp_base[local] + self.temp_amp[local] * np.cos(2 * np.pi * (hour - 15) / 24)
                + 0.05 * normal(seed, keys, ts, 0x7))
        smoke = np.clip(self.smoke_base[local] + 0.004 * normal(seed, keys, ts, 0x5), 0.0, 0.045)
        batt = np.maximum(self.batt0[local] - self.drain[local] * (ts - _REF_MS), 21.0)
        return {
            "smoke_db_m": smoke,
            "temp_c": temp,
            "battery_pct": batt,
            "tamper": np.zeros(ts.size),
        }

    # -- incidents ------------------------------------------------------------------------
    def _bind(self, inc: BoundIncident) -> None:
        at = self.ctx.start_ms + inc.at_ms
        end = self.ctx.end_ms + 1
        p = inc.params
        if inc.type == "fire":
            for n, dev in enumerate(inc.devices):
                if dev not in self.local:
                    continue
                start = at + int(n * p.spread_s * 1000)
                stop = end if p.duration_s is None else start + int(p.duration_s * 1000)
                self.overrides.append(Override(self.local[dev], start, stop,
                                               int(p.period_s * 1000), _fire(start, p)))
        elif inc.type == "warming":
            stop = at + int(p.duration_s * 1000)
            for dev in inc.devices:
                if dev in self.local:
                    self.overrides.append(Override(self.local[dev], at, stop,
                                                   int(p.period_s * 1000), _warm(at, p)))
        elif inc.type == "battery_low":
            level = p.level_pct
            for dev in inc.devices:
                if dev in self.local:
                    self.overrides.append(Override(self.local[dev], at, end, self.period_ms,
                                                   _set("battery_pct", level)))
        elif inc.type == "tamper":
            stop = at + int(p.duration_s * 1000)
            for dev in inc.devices:
                if dev in self.local:
                    # Readings while off the base, then one reporting it back (a change).
                    grid = int(p.period_s * 1000)

                    def tampered(ts: IntArray, cols: dict[str, FloatArray],
                                 stop: int = stop) -> dict[str, FloatArray]:
                        cols["tamper"] = (ts < stop).astype(np.float64)
                        return cols

                    self.overrides.append(Override(self.local[dev], at, stop, grid, tampered))
                    self.overrides.append(Override(self.local[dev], stop, stop + 1, None,
                                                   tampered, keep_normal=True))


def _set(name: str, value: float) -> Any:
    def fn(ts: IntArray, cols: dict[str, FloatArray]) -> dict[str, FloatArray]:
        cols[name] = np.full(ts.size, value)
        return cols
    return fn


def _fire(start: int, p: FireParams) -> Any:
    def fn(ts: IntArray, cols: dict[str, FloatArray]) -> dict[str, FloatArray]:
        tau = (ts - start) / 1000.0
        rise = np.clip(tau / p.smoke_rise_s, 0.0, 1.0)
        cols["smoke_db_m"] = cols["smoke_db_m"] + (p.smoke_peak_db_m - cols["smoke_db_m"]) * rise
        heat = p.heat_c_per_min / 60.0 * np.maximum(tau - p.heat_delay_s, 0.0)
        cols["temp_c"] = np.minimum(cols["temp_c"] + heat, np.maximum(p.max_temp_c,
                                                                      cols["temp_c"]))
        return cols
    return fn


def _warm(start: int, p: WarmingParams) -> Any:
    def fn(ts: IntArray, cols: dict[str, FloatArray]) -> dict[str, FloatArray]:
        heat = p.heat_c_per_min / 60.0 * (ts - start) / 1000.0
        cols["temp_c"] = np.minimum(cols["temp_c"] + heat, np.maximum(p.max_temp_c,
                                                                      cols["temp_c"]))
        return cols
    return fn


FLEET = SmokeFleet  # the kind table (anju.simulators.fleets) reads this name
