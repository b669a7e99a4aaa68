"""Signal generators, one module per device kind, and the incidents each can stage.

Each module defines a fleet class and ``INCIDENTS`` (name → :class:`IncidentType`); this
table collects them. ``silent`` (the device stops reporting) applies to every kind.
"""

from __future__ import annotations

from anju.simulators.kinds import camera, elevator, smoke, supervision, water
from anju.simulators.kinds._base import (
    BoundIncident,
    Fleet,
    FleetContext,
    IncidentType,
    Readings,
    SilentParams,
)

__all__ = [
    "FLEETS",
    "INCIDENT_TYPES",
    "BoundIncident",
    "Fleet",
    "FleetContext",
    "IncidentType",
    "Readings",
]

FLEETS: dict[str, type[Fleet]] = {
    "camera": camera.CameraFleet,
    "elevator": elevator.ElevatorFleet,
    "smoke": smoke.SmokeFleet,
    "water": water.WaterFleet,
}

INCIDENT_TYPES: dict[str, IncidentType] = {
    **camera.INCIDENTS,
    **elevator.INCIDENTS,
    **smoke.INCIDENTS,
    **water.INCIDENTS,
    **supervision.INCIDENTS,
    "silent": IncidentType("silent", "*", SilentParams, "the device stops reporting"),
}
