"""Elevators: trips with door cycles, passengers, speed ramps and car vibration.

Each car is a small discrete-event simulation with its own random generator. Passenger
calls arrive as a Poisson process whose rate follows the residential day (down to the
lobby and garage in the morning, up in the evening); a call that finds the car busy
waits for it. A trip is: travel empty to the caller's landing if needed, a door cycle
(opening 2 s, dwell, closing 2 s) while the passenger boards, a trapezoidal speed
profile (0.8–1.0 m/s², never above rated speed) to the destination, and a door cycle
while they leave.

The monitoring terminal reports every 1 s while the car moves, its doors are open or
something is wrong, and every 30 s when it is idle (CONTRACT §2). An idle car stands
level at a landing (speed 0, in the door zone, doors closed, empty), so normal traffic
satisfies no rule of CONTRACT §5; a car never stands still with its doors closed and a
passenger inside for more than a second.

Incidents (scripted episodes that take the car over, then hand it back idle):
``trapped``, ``door_open_moving``, ``overspeed``, ``vibration``, ``overtravel``,
``power_failure``, ``ebike``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anju.simulators.fleet import (
    LOCAL_UTC_OFFSET_S,
    BoundIncident,
    Fleet,
    FleetContext,
    FloatArray,
    IncidentType,
    IntArray,
    Readings,
)

__all__ = ["INCIDENTS", "ElevatorFleet", "Motion"]

IDLE_PERIOD_MS = 30_000
ACTIVE_PERIOD_MS = 1_000
_RESERVE_MS = 90_000  # a car is kept free of passenger trips this long before an episode
_ZONE_M = 0.1  # half-height of the unlocking zone around a landing (GB 7588: ≤ 0.2 m)
_PEAK_TRIPS_PER_H = 30.0
_QUEUE_GIVE_UP_MS = 120_000  # a caller left waiting longer takes the stairs or another car


class Motion:
    """A trapezoidal (or, on short hops, triangular) speed profile over ``distance`` m."""

    def __init__(self, distance: float, v_max: float, accel: float) -> None:
        self.distance = distance
        self.accel = accel
        if distance <= 0:
            self.v_peak, self.t_acc, self.t_cruise = 0.0, 0.0, 0.0
        elif distance < v_max * v_max / accel:
            self.v_peak = math.sqrt(distance * accel)
            self.t_acc, self.t_cruise = self.v_peak / accel, 0.0
        else:
            self.v_peak = v_max
            self.t_acc = v_max / accel
            self.t_cruise = (distance - v_max * v_max / accel) / v_max
        self.duration = 2 * self.t_acc + self.t_cruise

    def at(self, tau: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Distance travelled and speed (≥ 0) at times ``tau`` (s) from departure."""
        a, ta, tc, vp, total = self.accel, self.t_acc, self.t_cruise, self.v_peak, self.duration
        t = np.clip(tau, 0.0, total)
        s = np.where(t < ta, 0.5 * a * t * t,
                     np.where(t < ta + tc, 0.5 * a * ta * ta + vp * (t - ta),
                              self.distance - 0.5 * a * (total - t) ** 2))
        v = np.where(t < ta, a * t, np.where(t < ta + tc, vp, a * (total - t)))
        return s, v

    def time_at(self, s: float) -> float:
        """When the car has travelled ``s`` m."""
        grid = np.linspace(0.0, self.duration, 2001)
        dist, _ = self.at(grid)
        return float(np.interp(s, dist, grid))


# -- incidents ----------------------------------------------------------------------------
class TrappedParams(BaseModel):
    """The car stops between floors with a passenger inside; rescued after ``duration_s``."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(120.0, ge=5, le=7200)
    alarm_button_after_s: float | None = Field(None, ge=0,
                                               description="the passenger presses the button")


class MomentParams(BaseModel):
    """A fault that lasts ``duration_s`` during a trip."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(2.5, gt=0, le=20)
    factor: float = Field(1.25, gt=1.0, le=2.0, description="overspeed: × rated speed")


class VibrationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level_mg: float = Field(220.0, gt=150, le=2000)


class HoldParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(20.0, gt=0, le=3600)


INCIDENTS = {
    t.name: t for t in (
        IncidentType("trapped", "elevator", TrappedParams,
                     "stops between floors with a passenger inside", min_at_s=30),
        IncidentType("door_open_moving", "elevator", MomentParams,
                     "the door contact opens while the car travels", min_at_s=30),
        IncidentType("overspeed", "elevator", MomentParams,
                     "the car runs faster than rated for a moment", min_at_s=30),
        IncidentType("vibration", "elevator", VibrationParams,
                     "a trip with heavy vibration (worn guide shoes)", min_at_s=30),
        IncidentType("overtravel", "elevator", HoldParams,
                     "the car runs past the top landing and stops there", min_at_s=60),
        IncidentType("power_failure", "elevator", HoldParams,
                     "mains power lost while the car stands at a landing", min_at_s=30),
        IncidentType("ebike", "elevator", HoldParams,
                     "a rider wheels an e-bike into the car, then backs out", min_at_s=30),
    )
}


# -- the car ------------------------------------------------------------------------------
@dataclass
class _Phase:
    """``dur`` seconds of the car's life; ``fn(tau)`` gives its state at local times (s).

    State keys: ``pos`` (m above the lowest landing), ``speed`` (m/s, signed), ``door``,
    ``occ``; optional ``zone``, ``floor``, ``power``, ``button``, ``ebike``, ``accel``
    and ``fast`` (speed may exceed rated: an overspeed fault).
    """

    dur: float
    fn: Callable[[FloatArray], dict[str, FloatArray]]
    motion: Motion | None = None


def _const(tau: FloatArray, v: float) -> FloatArray:
    return np.full(tau.size, float(v))


def _hour(ts_ms: int) -> float:
    """Local hour of a data time (scalar :func:`local_hour`, without numpy's overhead)."""
    return ((ts_ms // 1000 + LOCAL_UTC_OFFSET_S) % 86400) / 3600.0


def _trip_profile(hour: float) -> float:
    """Passenger calls as a fraction of the peak rate, by local hour."""
    return float(0.05 + 0.9 * math.exp(-(((hour - 7.6) / 1.0) ** 2))
                 + 0.35 * math.exp(-(((hour - 12.2) / 1.5) ** 2))
                 + 0.8 * math.exp(-(((hour - 19.0) / 2.0) ** 2)))


_OPTIONAL = ("zone", "floor", "power", "button", "ebike", "accel", "fast")


class _Car:
    """One car: its own generator, position, pending calls and scripted episodes."""

    def __init__(self, ctx: FleetContext, device: int, episodes: list[BoundIncident]) -> None:
        self.ctx = ctx
        self.device = device
        _, _, _, fh, _ = ctx.building_of(device)
        d = ctx.site.devices
        self.rated = float(d.param("rated_speed_mps")[device])
        top = int(d.param("top_floor")[device])
        bottom = int(d.param("bottom_floor")[device])
        # Landings bottom to top; Chinese buildings have no floor 0.
        self.landings = [f for f in range(bottom, top + 1) if f != 0]
        self.fh = fh
        # Comfort: 0.8 m/s² on ordinary cars, 1.0 on fast ones (GB/T 10058 ride quality).
        self.accel = 0.8 if self.rated <= 1.75 else 1.0
        self.rng = np.random.default_rng([ctx.seed, ctx.key(device), 0xE1E])
        self.lobby = self.landings.index(1) if 1 in self.landings else 0
        self.at = int(self.rng.integers(len(self.landings)))  # landing index
        self.cursor = ctx.start_ms + int(self.rng.integers(IDLE_PERIOD_MS))
        self.next_call = self._draw_call(ctx.start_ms)
        self.episodes = sorted(episodes, key=lambda e: e.at_ms)
        self.pending: list[Readings] = []

    # -- geometry ---------------------------------------------------------------------
    def pos(self, landing: int) -> float:
        return landing * self.fh

    def _far(self) -> int:
        """The landing farthest from the car: a long trip whatever the building."""
        n = len(self.landings)
        return n - 1 if self.at < n / 2 else 0

    # -- passengers -------------------------------------------------------------------
    def _draw_call(self, after: int) -> int:
        """The next passenger call after ``after`` (thinned Poisson, rate by local hour)."""
        t = after
        while True:
            t += int(self.rng.exponential(3_600_000 / _PEAK_TRIPS_PER_H)) + 1
            if self.rng.random() < _trip_profile(_hour(t)):
                return t

    def _od(self, t: int) -> tuple[int, int]:
        """Origin and destination landings of a call at ``t``."""
        hour = _hour(t)
        n, lobby, rng = len(self.landings), self.lobby, self.rng
        r = rng.random()
        # Landings above the lobby are homes; the lobby and below, ground and garage.
        upper, ground = int(rng.integers(lobby + 1, n)), int(rng.integers(0, lobby + 1))
        if 6.5 <= hour < 9.5 and r < 0.75:
            o, dst = upper, ground
        elif 17.0 <= hour < 21.0 and r < 0.7:
            o, dst = ground, upper
        else:
            o, dst = int(rng.integers(n)), int(rng.integers(n))
        return o, dst if dst != o else (o + 1) % n

    # -- phases -----------------------------------------------------------------------
    def _door(self, landing: int, dwell: float, occ_before: bool, occ_after: bool,
              occ_until: float | None = None, ebike: tuple[float, float] | None = None) -> _Phase:
        """Doors open (2 s), dwell, close (2 s); passengers swap a second after opening."""
        p = self.pos(landing)

        def fn(tau: FloatArray) -> dict[str, FloatArray]:
            occ = np.where(tau < 3.0, float(occ_before), float(occ_after))
            if occ_until is not None:
                occ = np.where((tau >= 2.0) & (tau < occ_until), 1.0, 0.0)
            out = {"pos": _const(tau, p), "speed": _const(tau, 0.0), "door": _const(tau, 1.0),
                   "occ": occ}
            if ebike is not None:
                out["ebike"] = ((tau >= ebike[0]) & (tau < ebike[1])).astype(np.float64)
            return out
        return _Phase(4.0 + dwell, fn)

    def _rest(self, pos: float, dur: float, occ: bool,
              **extra: float | Callable[[FloatArray], FloatArray]) -> _Phase:
        """Standing still with the doors closed."""
        def fn(tau: FloatArray) -> dict[str, FloatArray]:
            out = {"pos": _const(tau, pos), "speed": _const(tau, 0.0), "door": _const(tau, 0.0),
                   "occ": _const(tau, float(occ))}
            for k, v in extra.items():
                out[k] = v(tau) if callable(v) else _const(tau, v)
            return out
        return _Phase(dur, fn)

    def _move(self, p0: float, p1: float, occ: bool,
              mod: Callable[[FloatArray, dict[str, FloatArray]], None] | None = None) -> _Phase:
        """A run from ``p0`` to ``p1`` at 98 % of rated speed at most."""
        m = Motion(abs(p1 - p0), self.rated * 0.98, self.accel)
        sign = 1.0 if p1 >= p0 else -1.0

        def fn(tau: FloatArray) -> dict[str, FloatArray]:
            s, v = m.at(tau)
            out = {"pos": p0 + sign * s, "speed": sign * v, "door": _const(tau, 0.0),
                   "occ": _const(tau, float(occ))}
            if mod is not None:
                mod(tau, out)
            return out
        return _Phase(m.duration, fn, m)

    def _creep(self, p0: float, p1: float, v: float, occ: bool, floor: float | None) -> _Phase:
        """A slow run at constant speed (rescue, or past the end of the shaft)."""
        dur = abs(p1 - p0) / v
        sign = 1.0 if p1 >= p0 else -1.0

        def fn(tau: FloatArray) -> dict[str, FloatArray]:
            out = {"pos": p0 + sign * v * np.minimum(tau, dur), "speed": _const(tau, sign * v),
                   "door": _const(tau, 0.0), "occ": _const(tau, float(occ))}
            if floor is not None:
                out["floor"] = _const(tau, floor)
            return out
        return _Phase(dur, fn)

    def _trip(self, t: int) -> list[_Phase]:
        o, dst = self._od(t)
        phases = []
        if o != self.at:
            phases.append(self._rest(self.pos(self.at), 1.0, False))
            phases.append(self._move(self.pos(self.at), self.pos(o), False))
        phases += [self._door(o, float(self.rng.uniform(3.0, 8.0)), False, True),
                   self._rest(self.pos(o), 1.0, True),
                   self._move(self.pos(o), self.pos(dst), True),
                   self._door(dst, float(self.rng.uniform(3.0, 6.0)), True, False)]
        self.at = dst
        return phases

    # -- incidents --------------------------------------------------------------------
    def _episode(self, inc: BoundIncident) -> tuple[list[_Phase], float]:
        """The phases of an incident and the offset (s) of its moment ``at`` in them."""
        p = inc.params
        here = self.pos(self.at)
        board = [self._door(self.at, 3.0, False, True), self._rest(here, 1.0, True)]
        lead = board[0].dur + board[1].dur
        far = self._far()
        if inc.type == "trapped":
            sign = 1 if far > self.at else -1
            move = self._move(here, self.pos(far), True)
            assert move.motion is not None
            move.dur = move.motion.time_at(1.5 * self.fh)  # stops midway between landings
            stop = here + sign * 1.5 * self.fh
            button = p.alarm_button_after_s

            def pressed(tau: FloatArray) -> FloatArray:
                return np.zeros(tau.size) if button is None else (tau >= button) * 1.0

            rescue = self.at + 2 * sign
            self.at = rescue
            return [*board, move,
                    self._rest(stop, p.duration_s, True, zone=0.0, button=pressed),
                    self._creep(stop, self.pos(rescue), 0.25, True, None),
                    self._door(rescue, 6.0, True, False)], lead + move.dur
        if inc.type in ("door_open_moving", "overspeed"):
            move = self._move(here, self.pos(far), True)
            m = move.motion
            assert m is not None
            t_on = m.t_acc + 0.5 if m.t_cruise > p.duration_s + 1.0 else m.t_acc * 0.6
            t_off = t_on + p.duration_s
            rated, factor, door = self.rated, p.factor, inc.type == "door_open_moving"
            inner = move.fn

            def faulty(tau: FloatArray) -> dict[str, FloatArray]:
                out = inner(tau)
                on = (tau >= t_on) & (tau < t_off)
                sign = np.sign(out["speed"])
                if door:
                    out["door"] = np.where(on, 1.0, out["door"])
                    out["speed"] = np.where(on, sign * np.maximum(np.abs(out["speed"]), 0.5),
                                            out["speed"])
                else:
                    out["speed"] = np.where(on, sign * rated * factor, out["speed"])
                    out["fast"] = on * 1.0
                return out

            self.at = far
            return [*board, _Phase(move.dur, faulty), self._door(far, 4.0, True, False)], \
                lead + t_on
        if inc.type == "vibration":
            level, rng = p.level_mg, self.rng

            def shaking(tau: FloatArray, out: dict[str, FloatArray]) -> None:
                out["accel"] = level + 15.0 * np.abs(rng.standard_normal(tau.size))

            move = self._move(here, self.pos(far), True, mod=shaking)
            self.at = far
            return [*board, move, self._door(far, 4.0, True, False)], lead
        if inc.type == "overtravel":
            top = len(self.landings) - 1
            phases = []
            if self.at != top:
                phases = [self._rest(here, 1.0, False), self._move(here, self.pos(top), False)]
            lead = sum(ph.dur for ph in phases)
            over = self.pos(top) + 0.8
            beyond = float(self.landings[top] + 1)
            self.at = top
            return [*phases,
                    self._creep(self.pos(top), over, 0.5, False, beyond),
                    self._rest(over, p.duration_s, False, zone=0.0, floor=beyond),
                    self._creep(over, self.pos(top), 0.25, False, beyond),
                    self._rest(self.pos(top), 1.0, False)], lead
        if inc.type == "power_failure":
            return [self._rest(here, p.duration_s, False, power=0.0)], 0.0
        if inc.type == "ebike":
            # The rider wheels in as the doors finish opening; the car refuses to leave
            # and announces it until they back out.
            dwell = p.duration_s + 2.0
            return [self._door(self.at, dwell, False, False, occ_until=2.0 + p.duration_s,
                               ebike=(2.0, 2.0 + p.duration_s))], 2.0
        raise ValueError(f"unknown elevator incident {inc.type!r}")

    # -- sampling ---------------------------------------------------------------------
    def _run(self, t0: int, phases: list[_Phase]) -> int:
        """Samples ``phases`` every second from ``t0``; returns when they end (ms)."""
        durs = np.array([ph.dur for ph in phases])
        ends = np.cumsum(durs)
        total_ms = round(float(ends[-1]) * 1000)
        n = max(1, -(-total_ms // ACTIVE_PERIOD_MS))
        tau = np.arange(n, dtype=np.float64) * (ACTIVE_PERIOD_MS / 1000)
        which = np.minimum(np.searchsorted(ends, tau, side="right"), len(phases) - 1)
        starts = ends - durs
        cols: dict[str, FloatArray] = {k: np.full(n, np.nan) for k in
                                       ("pos", "speed", "door", "occ", *_OPTIONAL)}
        for i in np.unique(which).tolist():
            sel = which == i
            for k, v in phases[i].fn(tau[sel] - starts[i]).items():
                cols[k][sel] = v
        self.pending.append(self._readings(t0 + (tau * 1000).astype(np.int64), cols))
        return t0 + total_ms

    def _idle(self, t0: int, t1: int, landing: int) -> None:
        """An idle car reports every 30 s: level at ``landing``, doors closed, empty."""
        if t1 <= t0:
            return
        ts = np.arange(t0, t1, IDLE_PERIOD_MS, dtype=np.int64)
        n = ts.size
        cols = {k: np.full(n, np.nan) for k in _OPTIONAL}
        cols.update(pos=np.full(n, self.pos(landing)), speed=np.zeros(n), door=np.zeros(n),
                    occ=np.zeros(n))
        self.pending.append(self._readings(ts, cols))

    def _readings(self, ts: IntArray, c: dict[str, FloatArray]) -> Readings:
        n = ts.size
        rng = self.rng
        pos = c["pos"]
        nearest = np.clip(np.rint(pos / self.fh), 0, len(self.landings) - 1)
        floor = np.where(np.isnan(c["floor"]),
                         np.asarray(self.landings, dtype=np.float64)[nearest.astype(np.int64)],
                         c["floor"])
        zone = np.where(np.isnan(c["zone"]),
                        (np.abs(pos - nearest * self.fh) <= _ZONE_M) * 1.0, c["zone"])
        speed = c["speed"] * (1.0 + 0.003 * rng.standard_normal(n))
        fast = ~np.isnan(c["fast"]) & (c["fast"] > 0)
        # A healthy drive never exceeds rated speed; only a fault phase may.
        speed = np.where(fast, speed, np.clip(speed, -self.rated, self.rated))
        moving = np.abs(speed) > 0.01
        accel = np.where(moving, np.maximum(12.0 + 18.0 * np.abs(speed) / self.rated
                                            + 3.0 * rng.standard_normal(n), 3.0),
                         2.5 + 0.8 * np.abs(rng.standard_normal(n)))
        accel = np.where(np.isnan(c["accel"]), accel, c["accel"])
        cols = {
            "floor": floor,
            "speed_mps": speed,
            "door_open": c["door"],
            "in_door_zone": zone,
            "occupied": c["occ"],
            "alarm_button": np.where(np.isnan(c["button"]), 0.0, c["button"]),
            "power_ok": np.where(np.isnan(c["power"]), 1.0, c["power"]),
            "accel_rms_mg": accel,
            "ebike": np.where(np.isnan(c["ebike"]), 0.0, c["ebike"]),
        }
        return Readings("elevator", ts, np.full(n, self.device, dtype=np.int64), cols)

    # -- driving ----------------------------------------------------------------------
    def fill(self, until: int) -> None:
        """Simulates until the car's timeline reaches ``until``."""
        while self.cursor < until:
            ep = self.episodes[0] if self.episodes else None
            ep_at = None if ep is None else self.ctx.start_ms + ep.at_ms
            start = max(self.next_call, self.cursor)
            here = self.at
            trip: list[_Phase] | None = None
            if ep_at is None or start < ep_at - _RESERVE_MS:
                trip = self._trip(start)
                if ep_at is not None and start + sum(p.dur for p in trip) * 1000 > \
                        ep_at - _RESERVE_MS:
                    self.at, trip = here, None  # it would run into the episode
            if trip is not None:
                self._idle(self.cursor, start, here)
                self.cursor = self._run(start, trip)
                self.next_call = self._draw_call(self.next_call)
            else:
                assert ep is not None and ep_at is not None
                self.episodes.pop(0)
                phases, offset = self._episode(ep)
                t0 = max(ep_at - round(offset * 1000), self.cursor)
                self._idle(self.cursor, t0, here)
                self.cursor = self._run(t0, phases)
            while self.next_call < self.cursor - _QUEUE_GIVE_UP_MS:
                self.next_call = self._draw_call(self.next_call)

    def take(self, t1: int) -> list[Readings]:
        """The pending readings before ``t1``."""
        out: list[Readings] = []
        while self.pending and int(self.pending[0].ts[-1]) < t1:
            out.append(self.pending.pop(0))
        if self.pending and int(self.pending[0].ts[0]) < t1:
            head = self.pending[0]
            cut = int(np.searchsorted(head.ts, t1))
            out.append(head.take(slice(0, cut)))
            self.pending[0] = head.take(slice(cut, None))
        return out


class ElevatorFleet(Fleet):
    """All cars of a run."""

    kind = "elevator"

    def __init__(self, ctx: FleetContext, devices: Any, incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        self.cars = [_Car(ctx, int(d), [i for i in self.incidents
                                        if i.type in INCIDENTS and i.devices[0] == d])
                     for d in self.devices.tolist()]
        self.silent = self.silences()

    def advance(self, t0: int, t1: int) -> Readings:
        parts: list[Readings] = []
        for car in self.cars:
            car.fill(t1)
            parts.extend(car.take(t1))
        out = Readings.concat(self.kind, parts)
        if self.silent and len(out):
            keep = np.ones(len(out), dtype=bool)
            for o in self.silent:
                keep &= ~((out.dev == self.devices[o.local]) & (out.ts >= o.start)
                          & (out.ts < o.end))
            out = out.take(keep)
        return out


FLEET = ElevatorFleet  # the kind table (anju.simulators.fleets) reads this name
