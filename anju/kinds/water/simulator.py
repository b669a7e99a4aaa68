"""Secondary water-supply pump rooms (二次供水泵房): a reading every 10 s.

The model is a variable-frequency constant-pressure booster set drawing from a storage
tank: the outlet pressure holds its set point (0.33–0.42 MPa) with a small droop at high
flow; at night, when demand is low, the pumps sleep and a pressure vessel carries the
draw until the pressure has fallen 0.05 MPa, then they wake (a "sleep mode" every such
controller has). Demand follows the residential day — a sharp morning peak, a smaller
midday one and a broad evening peak. The tank is refilled from the main through a float
valve with hysteresis (opens below 45 %, closes above 85 %). Quality stays well inside
GB 5749-2022: free chlorine 0.15–0.55 mg/L (≥ 0.05 at the tap), turbidity ≈ 0.25 NTU
(≤ 1), pH 7.0–7.6 (6.5–8.5).

Normal traffic never looks like a burst: the pressure never sits 0.10 MPa below its
maximum of the last 30 s, whatever the flow does.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anju.simulators._noise import normal, uniform
from anju.simulators.fleet import (
    BoundIncident,
    Fleet,
    FleetContext,
    FloatArray,
    IncidentType,
    IntArray,
    Readings,
    local_hour,
)

__all__ = ["INCIDENTS", "WaterFleet", "demand_profile"]

PERIOD_MS = 10_000
_STEP_H = PERIOD_MS / 3_600_000


def demand_profile(hour: FloatArray) -> FloatArray:
    """Residential demand as a fraction of the peak hour, by local hour."""
    return (0.06 + 0.85 * np.exp(-(((hour - 7.3) / 1.1) ** 2))
            + 0.45 * np.exp(-(((hour - 12.0) / 1.3) ** 2))
            + 0.75 * np.exp(-(((hour - 20.0) / 1.6) ** 2)))


class BurstParams(BaseModel):
    """A main bursts downstream of the pump room: flow soars, pressure collapses."""

    model_config = ConfigDict(extra="forbid")
    flow_factor: float = Field(2.5, ge=1.6, le=20, description="flow multiplied by this")
    pressure_to_mpa: float = Field(0.10, ge=0, lt=0.3)
    ramp_s: float = Field(40.0, gt=0, le=300)
    duration_s: float = Field(150.0, gt=0, description="until the section is isolated")


class PumpFaultParams(BaseModel):
    """The duty pump trips; the standby pump takes over after ``switch_s``."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(120.0, gt=0, description="until the fault is reset")
    switch_s: float = Field(20.0, ge=0, le=120)


class RampParams(BaseModel):
    """A value drifts to ``target`` over ``ramp_s``, stays, and comes back."""

    model_config = ConfigDict(extra="forbid")
    target: float | None = None
    ramp_s: float = Field(60.0, gt=0, le=3600)
    duration_s: float = Field(180.0, gt=0, description="from the start of the drift")


class QualityParams(RampParams):
    field: Literal["chlorine_mg_l", "turbidity_ntu", "ph"] = "chlorine_mg_l"
    duration_s: float = Field(900.0, gt=0)


_DEFAULT_TARGET = {"level_low": ("level_pct", 12.0), "overflow": ("level_pct", 98.0),
                   "pressure_high": ("pressure_mpa", 0.65)}
_QUALITY_TARGET = {"chlorine_mg_l": 0.02, "turbidity_ntu": 1.8, "ph": 8.9}

INCIDENTS = {
    t.name: t for t in (
        IncidentType("burst", "water", BurstParams, "a pipe bursts: pressure falls, flow rises"),
        IncidentType("pump_fault", "water", PumpFaultParams, "the duty pump trips"),
        IncidentType("level_low", "water", RampParams, "the inlet fails; the tank drains"),
        IncidentType("overflow", "water", RampParams, "the float valve sticks open"),
        IncidentType("pressure_high", "water", RampParams, "the pressure controller fails high"),
        IncidentType("quality", "water", QualityParams,
                     "chlorine, turbidity or pH out of GB 5749 limits"),
    )
}


def _ramp(ts: IntArray, start: int, ramp_ms: float, dur_ms: float, back_ms: float) -> FloatArray:
    """0 → 1 over ``ramp_ms`` from ``start``, 1 until ``start + dur_ms``, back to 0."""
    up = np.clip((ts - start) / ramp_ms, 0.0, 1.0)
    down = np.clip(1.0 - (ts - start - dur_ms) / back_ms, 0.0, 1.0)
    return np.where(ts - start < dur_ms, up, np.minimum(up, down)) * (ts >= start)


class WaterFleet(Fleet):
    """All pump rooms of a run, stepped together every 10 s of data time."""

    kind = "water"

    def __init__(self, ctx: FleetContext, devices: Any, incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        seed, keys = ctx.seed, self.keys
        n = self.devices.size
        site = ctx.site
        households = np.empty(n)
        for i, d in enumerate(self.devices.tolist()):
            estate = site.estates[site.buildings[int(site.devices.building[d])].estate]
            households[i] = sum(b.floors * 4 for b in estate.buildings.values())
        self.phase = (uniform(seed, keys, 0xF0A5E) * PERIOD_MS).astype(np.int64)
        self.q_peak = households * (0.05 + 0.02 * uniform(seed, keys, 0x0F))  # m³/h
        # Storage of about a quarter of a day's use (GB 50015-2019 §3.8.3: 20–25 %).
        self.volume = np.maximum(households * 0.6 * 0.22, 20.0)  # m³
        self.setpoint = 0.33 + 0.09 * uniform(seed, keys, 0x5E)
        self.qphase = 2 * np.pi * uniform(seed, keys, 0x0A)
        self.level = 45.0 + 40.0 * uniform(seed, keys, 0x1E)
        self.inlet = uniform(seed, keys, 0x11) < 0.5
        self.sleeping = np.zeros(n, dtype=bool)
        self.ran = np.zeros(n, dtype=np.int64)  # steps since the pumps woke
        self.pressure = self.setpoint.copy()
        self.k_next = np.zeros(n, dtype=np.int64)
        self.silent = self.silences()

    # -- normal operation -----------------------------------------------------------------
    def advance(self, t0: int, t1: int) -> Readings:
        n = self.devices.size
        if n == 0:
            return Readings.empty(self.kind)
        base = self.ctx.start_ms + self.phase
        first = base + self.k_next * PERIOD_MS
        counts = np.maximum(-((first - t1) // PERIOD_MS), 0)  # steps due before t1
        # Rows ordered by step then device, so that each step is one contiguous slice.
        jj, loc = np.nonzero(np.arange(int(counts.max(initial=0)))[:, None] < counts[None, :])
        k = self.k_next[loc] + jj
        ts = base[loc] + k * PERIOD_MS
        self.k_next += counts
        cols = self._columns(loc, ts, k)
        bounds = np.r_[0, np.cumsum(np.bincount(jj, minlength=int(counts.max(initial=0))))]
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            self._state(loc[a:b], slice(a, b), cols)
        del cols["_sleep_noise"], cols["_p_noise"]
        out = Readings(self.kind, ts, self.devices[loc], cols)
        keep = out.ts >= t0
        for o in self.silent:
            keep &= ~((out.dev == self.devices[o.local]) & (out.ts >= o.start) & (out.ts < o.end))
        if not keep.all():
            out = out.take(keep)
        for inc in self.incidents:
            if inc.type in INCIDENTS:
                self._apply(inc, out)
        return out

    def _columns(self, loc: IntArray, ts: IntArray, k: IntArray) -> dict[str, FloatArray]:
        """What does not depend on the tank and pump state, for every row at once."""
        seed, keys = self.ctx.seed, self.keys[loc]
        flow = np.maximum(self.q_peak[loc] * demand_profile(local_hour(ts))
                          * (1.0 + 0.04 * normal(seed, keys, k, 0xF1)), 0.0)
        hours = (ts - self.ctx.start_ms) / 3_600_000.0
        wave = np.sin(2 * np.pi * hours / 8.0 + self.qphase[loc])
        n = ts.size
        return {
            "level_pct": np.empty(n),
            "pressure_mpa": np.empty(n),
            "flow_m3h": flow,
            "pump_running": np.empty(n),
            "pump_fault": np.zeros(n),
            "chlorine_mg_l": 0.35 + 0.15 * wave + 0.02 * normal(seed, keys, k, 0xC1),
            "turbidity_ntu": np.maximum(0.25 + 0.1 * wave + 0.03 * normal(seed, keys, k, 0x70),
                                        0.05),
            "ph": 7.3 + 0.2 * wave + 0.03 * normal(seed, keys, k, 0x94),
            # noise the state step draws, consumed below
            "_sleep_noise": uniform(seed, keys, k, 0x9D),
            "_p_noise": normal(seed, keys, k, 0x9E),
        }

    def _state(self, m: IntArray, rows: slice, cols: dict[str, FloatArray]) -> None:
        """One 10 s step of the devices ``m``: pumps' sleep mode, pressure, tank level."""
        flow = cols["flow_m3h"][rows]
        qp, sp = self.q_peak[m], self.setpoint[m]
        sleeping, ran, p = self.sleeping[m], self.ran[m], self.pressure[m]
        # Pumps sleep when demand is below 9 % of the peak after running ≥ 1 min, and
        # wake when the vessel has let the pressure fall 0.05 MPa.
        go_sleep = ~sleeping & (flow < 0.09 * qp) & (ran >= 6)
        p_sleep = p - 0.0025 - 0.001 * cols["_sleep_noise"][rows]
        wake = sleeping & (p_sleep < sp - 0.05)
        sleeping = (sleeping | go_sleep) & ~wake
        p_run = sp - 0.02 * np.minimum(flow / qp, 1.5) + 0.004 * cols["_p_noise"][rows]
        p = np.where(sleeping & ~go_sleep, p_sleep, p_run)
        # Tank: drawn by the demand, refilled at 1.3 × peak through the float valve.
        inlet = self.inlet[m]
        level = self.level[m] + (1.3 * qp * inlet - flow) * _STEP_H / self.volume[m] * 100.0
        self.inlet[m] = np.where(level < 45.0, True, np.where(level > 85.0, False, inlet))
        self.sleeping[m], self.pressure[m], self.level[m] = sleeping, p, level
        self.ran[m] = np.where(sleeping, 0, ran + 1)
        cols["level_pct"][rows] = level
        cols["pressure_mpa"][rows] = p
        cols["pump_running"][rows] = ~sleeping

    # -- incidents ------------------------------------------------------------------------
    def _apply(self, inc: BoundIncident, r: Readings) -> None:
        rows = np.flatnonzero(np.isin(r.dev, inc.devices))
        if not rows.size:
            return
        start = self.ctx.start_ms + inc.at_ms
        ts = r.ts[rows]
        c = r.cols
        p = inc.params
        if inc.type == "burst":
            w = _ramp(ts, start, p.ramp_s * 1000, p.duration_s * 1000, 60_000)
            c["flow_m3h"][rows] *= 1.0 + (p.flow_factor - 1.0) * w
            pr = c["pressure_mpa"][rows]
            c["pressure_mpa"][rows] = pr + (p.pressure_to_mpa - pr) * w
            c["pump_running"][rows] = np.where(w > 0, 1.0, c["pump_running"][rows])
        elif inc.type == "pump_fault":
            on = (ts >= start) & (ts < start + p.duration_s * 1000)
            c["pump_fault"][rows] = np.where(on, 1.0, c["pump_fault"][rows])
            switching = (ts >= start) & (ts < start + p.switch_s * 1000)
            c["pump_running"][rows] = np.where(switching, 0.0,
                                               np.where(on, 1.0, c["pump_running"][rows]))
            # Pressure sags by up to 0.06 MPa until the standby pump is up (never the
            # 0.10 of a burst), and flow with it.
            dip = _ramp(ts, start, max(p.switch_s, 1.0) * 1000, p.switch_s * 1000, 20_000)
            c["pressure_mpa"][rows] -= 0.06 * dip
            c["flow_m3h"][rows] *= 1.0 - 0.2 * dip
        else:
            if inc.type == "quality":
                name = p.field
                target = _QUALITY_TARGET[name] if p.target is None else p.target
            else:
                name, default = _DEFAULT_TARGET[inc.type]
                target = default if p.target is None else p.target
            w = _ramp(ts, start, p.ramp_s * 1000, p.duration_s * 1000, p.ramp_s * 1000)
            v = c[name][rows]
            c[name][rows] = v + (target - v) * w


FLEET = WaterFleet  # the kind table (anju.simulators.fleets) reads this name
