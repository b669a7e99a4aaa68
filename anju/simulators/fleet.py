"""What every signal generator shares: readings as columns, the run's context, incidents.

A *fleet* simulates all the devices of one kind that a publisher serves. ``advance(t0,
t1)`` returns every reading with ``t0 ≤ ts < t1`` (data time, ms), so windows can be
chained without gaps or overlaps. Values come from counter-based noise
(:mod:`anju.simulators._noise`) or a per-device generator, never from a generator shared
between devices: a device's traffic is the same whichever other devices are simulated
with it, and however the run is cut into windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from anju.devices.registry import Site
from anju.kinds import KINDS
from anju.simulators._noise import device_key, uniform

__all__ = [
    "LOCAL_UTC_OFFSET_S",
    "BoundIncident",
    "CadenceFleet",
    "Fleet",
    "FleetContext",
    "IncidentType",
    "Override",
    "Readings",
    "SilentParams",
    "local_hour",
    "outside_spans",
]

#: Estates are in China (UTC+8, no daylight saving): daily cycles follow local time.
LOCAL_UTC_OFFSET_S = 8 * 3600

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def local_hour(ts_ms: npt.ArrayLike) -> FloatArray:
    """Hour of the local day (0–24, fractional) of data times in ms."""
    s = np.asarray(ts_ms, dtype=np.int64) // 1000 + LOCAL_UTC_OFFSET_S
    return (s % 86400).astype(np.float64) / 3600.0


def outside_spans(local: IntArray, ts: IntArray,
                  spans: dict[int, list[tuple[int, int]]]) -> npt.NDArray[np.bool_]:
    """Rows not inside any ``[lo, hi)`` span of their own device (``spans`` by local
    index): where a fleet keeps its ordinary traffic away from a staged incident."""
    keep = np.ones(len(ts), bool)
    for loc, own in spans.items():
        mine = local == loc
        for lo, hi in own:
            keep &= ~(mine & (ts >= lo) & (ts < hi))
    return keep


@dataclass
class Readings:
    """Readings of one kind as columns; ``dev`` is the site device index.

    ``cols`` are float64 with NaN for "not sent" (booleans 0/1, enums their index in the
    field's choices, as in :mod:`anju.devices.batch`); ``extra`` holds non-columnar
    fields (a camera's track) per row, or None.
    """

    kind: str
    ts: IntArray
    dev: IntArray
    cols: dict[str, FloatArray]
    extra: npt.NDArray[np.object_] | None = None

    def __len__(self) -> int:
        return int(self.ts.size)

    @classmethod
    def empty(cls, kind: str) -> Readings:
        return cls(kind, np.empty(0, np.int64), np.empty(0, np.int64), {})

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> Readings:
        """The rows ``idx`` (an index array, a boolean mask or a slice)."""
        return Readings(self.kind, self.ts[idx], self.dev[idx],
                        {k: v[idx] for k, v in self.cols.items()},
                        None if self.extra is None else self.extra[idx])

    @classmethod
    def concat(cls, kind: str, parts: list[Readings]) -> Readings:
        """Rows of all parts; a column missing from a part is NaN there."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(kind)
        if len(parts) == 1:
            return parts[0]
        names: dict[str, None] = {}
        for p in parts:
            names.update(dict.fromkeys(p.cols))
        cols = {n: np.concatenate([p.cols[n] if n in p.cols else np.full(len(p), np.nan)
                                   for p in parts]) for n in names}
        extra = None
        if any(p.extra is not None for p in parts):
            extra = np.concatenate([p.extra if p.extra is not None
                                    else np.full(len(p), None, dtype=object) for p in parts])
        return cls(kind, np.concatenate([p.ts for p in parts]),
                   np.concatenate([p.dev for p in parts]), cols, extra)


@dataclass(frozen=True)
class FleetContext:
    """The run a fleet belongs to: site, seed and data-time span (ms)."""

    site: Site
    seed: int
    start_ms: int
    end_ms: int

    def key(self, device: int) -> int:
        return device_key(self.site.devices.ids[device])

    def building_of(self, device: int) -> tuple[str, str, int, float, int]:
        """(estate, building, floors, floor_height_m, basements) of a device."""
        b = self.site.buildings[int(self.site.devices.building[device])]
        return b.estate, b.id, b.floors, b.floor_height_m, b.basements


@dataclass(frozen=True)
class BoundIncident:
    """An incident of a scenario bound to a site: device indices and validated params."""

    id: str
    type: str
    kind: str
    at_ms: int  # data-time offset from the run's start
    devices: tuple[int, ...]
    params: Any  # the type's params model instance
    floor: int | None = None  # camera.falling_object: the floor it comes from


class SilentParams(BaseModel):
    """``silent``: the device stops reporting (battery pulled, radio dead)."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float | None = Field(None, gt=0, description="silent this long; None: to the end")


@dataclass(frozen=True)
class IncidentType:
    """An incident a scenario may ask for: which kind it happens to and its params."""

    name: str
    kind: str  # a device kind, or "*" for any
    params: type[BaseModel]
    doc: str
    min_at_s: float = 0.0  # how much run it needs before `at` to set the scene
    devices: tuple[int, int] = (1, 1)  # how many devices it involves, min and max
    needs_floor: bool = False
    building: bool = False  # the scenario names a building (estate/building), not devices


@dataclass
class Override:
    """Readings of one device that an incident replaces or adds in ``[start, end)`` (ms).

    ``period`` None with ``keep_normal`` True adds one reading at ``start``; with
    ``keep_normal`` False it only removes (silence). ``fn(ts, cols)`` edits the normal
    model's values at the override's times and returns them.
    """

    local: int  # the device's position in its fleet
    start: int
    end: int
    period: int | None
    fn: Callable[[IntArray, dict[str, FloatArray]], dict[str, FloatArray]] | None = None
    keep_normal: bool = False
    extra: Callable[[IntArray], list[dict[str, Any] | None]] | None = None

    def times(self, t0: int, t1: int) -> IntArray:
        """This override's reading times within ``[t0, t1)``."""
        lo, hi = max(t0, self.start), min(t1, self.end)
        if lo >= hi:
            return np.empty(0, np.int64)
        if self.period is None:
            if self.fn is None and self.extra is None:
                return np.empty(0, np.int64)
            return np.array([self.start], np.int64) if lo <= self.start < hi else np.empty(0,
                                                                                          np.int64)
        k0 = math.ceil((lo - self.start) / self.period)
        k1 = math.ceil((hi - self.start) / self.period)
        return self.start + np.arange(k0, k1, dtype=np.int64) * self.period


class Fleet:
    """Base of the per-kind simulators."""

    kind: ClassVar[str]

    def __init__(self, ctx: FleetContext, devices: npt.ArrayLike,
                 incidents: list[BoundIncident]) -> None:
        self.ctx = ctx
        self.devices = np.asarray(devices, dtype=np.int64)
        self.local = {int(d): i for i, d in enumerate(self.devices.tolist())}
        self.keys = np.array([ctx.key(int(d)) for d in self.devices], dtype=np.uint64)
        self.incidents = [i for i in incidents if any(d in self.local for d in i.devices)]

    def advance(self, t0: int, t1: int) -> Readings:  # pragma: no cover - abstract
        raise NotImplementedError

    def silences(self) -> list[Override]:
        """Overrides that drop the readings of silenced devices."""
        out: list[Override] = []
        for inc in self.incidents:
            if inc.type not in ("silent", "gateway_silent"):
                continue
            start = self.ctx.start_ms + inc.at_ms
            dur = inc.params.duration_s
            end = self.ctx.end_ms + 1 if dur is None else start + int(dur * 1000)
            out.extend(Override(self.local[d], start, end, None) for d in inc.devices
                       if d in self.local)
        return out


class CadenceFleet(Fleet):
    """A kind whose devices report on a fixed period and whose values are a closed-form
    function of time plus noise, so an incident can ask for them at any instant."""

    period_ms: ClassVar[int]

    def __init__(self, ctx: FleetContext, devices: npt.ArrayLike,
                 incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        self.phase = (uniform(ctx.seed, self.keys, 0xF0A5E) * self.period_ms).astype(np.int64)
        self.overrides = self.silences()

    def model(self, local: IntArray, ts: IntArray) -> dict[str, FloatArray]:  # pragma: no cover
        raise NotImplementedError

    def advance(self, t0: int, t1: int) -> Readings:
        n = self.devices.size
        if n == 0 or t1 <= t0:
            return Readings.empty(self.kind)
        base = self.ctx.start_ms + self.phase
        k0 = -((base - t0) // self.period_ms)  # ceil((t0 - base) / P)
        k1 = -((base - t1) // self.period_ms)
        counts = np.maximum(k1 - k0, 0)
        local = np.repeat(np.arange(n, dtype=np.int64), counts)
        offsets = np.cumsum(counts) - counts
        k = k0[local] + (np.arange(local.size, dtype=np.int64) - offsets[local])
        ts = base[local] + k * self.period_ms
        keep = np.ones(ts.size, dtype=bool)
        parts: list[Readings] = []
        for o in self.overrides:
            if o.start >= t1 or o.end <= t0:
                continue
            if not o.keep_normal:
                keep &= ~((local == o.local) & (ts >= o.start) & (ts < o.end))
            times = o.times(t0, t1)
            if times.size and (o.fn is not None or o.extra is not None):
                loc = np.full(times.size, o.local, dtype=np.int64)
                cols = self.model(loc, times)
                if o.fn is not None:
                    cols = o.fn(times, cols)
                extra = None
                if o.extra is not None:
                    extra = np.empty(times.size, dtype=object)
                    extra[:] = o.extra(times)
                parts.append(Readings(self.kind, times, self.devices[loc], cols, extra))
        local, ts = local[keep], ts[keep]
        parts.insert(0, Readings(self.kind, ts, self.devices[local], self.model(local, ts)))
        return Readings.concat(self.kind, parts)


def kind_fields(kind: str) -> tuple[str, ...]:
    """The payload field names of a kind, in the contract's order."""
    return tuple(f.name for f in KINDS[kind].fields)
