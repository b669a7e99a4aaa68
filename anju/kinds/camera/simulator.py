"""Falling-object cameras (高空抛物): a heartbeat every 60 s, and events.

``falling_object`` carries the tracker's image track of an object released from a given
floor, made by :func:`anju.rules.trajectory.simulate_track` from the camera's own
calibration (tracker noise of about a pixel and, sometimes, one glitched point: a bird,
a reflection). ``obstructed`` is a view blocked by laundry or a parked truck.
``ebike_charging``: a corridor or lobby camera (one with a floor) sees an e-bike plugged
into a charger; its analytics report it once, when the charging starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anju.kinds import KINDS
from anju.simulators._noise import device_key
from anju.simulators.fleet import (
    BoundIncident,
    CadenceFleet,
    FleetContext,
    FloatArray,
    IncidentType,
    IntArray,
    Override,
)

__all__ = ["INCIDENTS", "CameraFleet", "camera_track"]

_EVENTS = KINDS["camera"].field("event").choices


class FallingObjectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    noise_px: float = Field(1.0, ge=0, le=20, description="tracker noise, px")
    glitch_prob: float = Field(0.05, ge=0, le=1, description="chance of one wild point")
    glitch: bool | None = Field(None, description="force (true) or forbid (false) a glitch")
    confidence: float = Field(0.9, ge=0, le=1)


class ObstructedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EbikeChargingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confidence: float = Field(0.85, ge=0, le=1)


INCIDENTS = {
    t.name: t for t in (
        IncidentType("falling_object", "camera", FallingObjectParams,
                     "an object thrown from `floor` of the building the camera faces",
                     needs_floor=True),
        IncidentType("obstructed", "camera", ObstructedParams, "the camera's view is blocked"),
        IncidentType("ebike_charging", "camera", EbikeChargingParams,
                     "a corridor camera sees an e-bike plugged into a charger"),
    )
}


def camera_track(ctx: FleetContext, inc: BoundIncident) -> list[list[float]]:
    """The track of a falling_object incident: the same for the same seed and incident."""
    from anju.rules.trajectory import Calibration, simulate_track

    dev = inc.devices[0]
    devices = ctx.site.devices
    cal = Calibration.from_params({name: float(devices.param(name)[dev]) for name in (
        "mount_height_m", "distance_m", "tilt_deg", "focal_px", "cy_px")})
    _, _, _, floor_h, _ = ctx.building_of(dev)
    p: FallingObjectParams = inc.params
    rng = np.random.default_rng([ctx.seed, device_key(inc.id), 0xCA3])
    glitch = p.glitch_prob if p.glitch is None else (1.0 if p.glitch else 0.0)
    assert inc.floor is not None
    return simulate_track(rng, cal, inc.floor, floor_h, noise_px=p.noise_px, glitch_prob=glitch)


class CameraFleet(CadenceFleet):
    """All cameras of a run."""

    kind = "camera"
    period_ms: ClassVar[int] = 60_000

    def __init__(self, ctx: FleetContext, devices: Any, incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        for inc in self.incidents:
            dev = inc.devices[0]
            if dev not in self.local or inc.type not in INCIDENTS:
                continue
            at = ctx.start_ms + inc.at_ms
            if inc.type == "falling_object":
                self.overrides.append(Override(
                    self.local[dev], at, at + 1, None,
                    _event("falling_object", inc.params.confidence), keep_normal=True,
                    extra=_track(camera_track(ctx, inc))))
            elif inc.type == "ebike_charging":
                self.overrides.append(Override(
                    self.local[dev], at, at + 1, None,
                    _event("ebike_charging", inc.params.confidence), keep_normal=True))
            else:
                self.overrides.append(Override(self.local[dev], at, at + 1, None,
                                               _event("obstructed", None), keep_normal=True))

    def model(self, local: IntArray, ts: IntArray) -> dict[str, FloatArray]:
        return {"event": np.zeros(ts.size)}  # heartbeat


def _track(track: list[list[float]]) -> Callable[[IntArray], list[dict[str, Any] | None]]:
    def extra(ts: IntArray) -> list[dict[str, Any] | None]:
        return [{"track": track}] * ts.size
    return extra


def _event(name: str, confidence: float | None) -> Any:
    code = float(_EVENTS.index(name))

    def fn(ts: IntArray, cols: dict[str, FloatArray]) -> dict[str, FloatArray]:
        cols["event"] = np.full(ts.size, code)
        if confidence is not None:
            cols["confidence"] = np.full(ts.size, confidence)
        return cols
    return fn


FLEET = CameraFleet  # the kind table (anju.simulators.fleets) reads this name
