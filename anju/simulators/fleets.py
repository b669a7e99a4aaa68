"""Signal generators, one per device kind, and the incidents each can stage.

Each kind's ``anju/kinds/<kind>/simulator.py`` defines ``FLEET`` (a :class:`Fleet`
subclass) and ``INCIDENTS`` (name → :class:`IncidentType`); this table collects them from
the kind table. ``silent`` (the device stops reporting) applies to every kind.
"""

from __future__ import annotations

from anju.kinds import KINDS, kind_module
from anju.simulators.fleet import (
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

FLEETS: dict[str, type[Fleet]] = {kind: kind_module(kind, "simulator").FLEET for kind in KINDS}

INCIDENT_TYPES: dict[str, IncidentType] = {
    **{name: t for kind in KINDS for name, t in kind_module(kind, "simulator").INCIDENTS.items()},
    "silent": IncidentType("silent", "*", SilentParams, "the device stops reporting"),
}
