"""Incidents of supervision (issue 18) rather than of a device's signals.

* ``gateway_silent`` — a building's gateway goes quiet: every device behind it stops being
  heard for ``duration_s``. The scenario names the building (``building: e001/b02``); its
  traffic goes through the gateway (batches on ``anju/{estate}/{building}/batch/{gateway}``)
  for the whole run, so the pipeline watches that gateway.
* ``maintenance`` — a maintenance window over a device, opened by the property company
  ``window_after_s`` after ``at`` for ``duration_s``; with ``overdue`` (an elevator), its
  last maintenance record is set so that it turns overdue (TSG T5002's 15 days, or the
  site's limit) at ``at``, and the window's end maintains it. The device's signals are
  unchanged: a scenario stages faults inside the window with incidents of their own.

The fleets leave both to others: the traffic routes a ``gateway_silent`` building through
its gateway (:class:`anju.simulators.traffic.Traffic`) and mutes it (``Fleet.silences``);
whoever runs the pipeline applies ``maintenance`` (:func:`maintenance_actions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from anju.simulators.fleet import IncidentType

__all__ = [
    "INCIDENTS",
    "GatewaySilentParams",
    "MaintenanceAction",
    "MaintenanceParams",
    "maintenance_actions",
]


class GatewaySilentParams(BaseModel):
    """``gateway_silent``: the building's gateway stops sending."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float | None = Field(None, gt=0, description="silent this long; None: to the end")


class MaintenanceParams(BaseModel):
    """``maintenance``: a window over the device, and optionally an overdue record first."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(60.0, gt=0)
    window_after_s: float = Field(0.0, ge=0, description="the window opens this long after at")
    overdue: bool = Field(False, description="an elevator whose last maintenance turns "
                                             "overdue at `at`")
    by: str = "维保公司"
    reason: str = "半月维保"


INCIDENTS = {
    "gateway_silent": IncidentType("gateway_silent", "*", GatewaySilentParams,
                                   "a building's gateway goes quiet", devices=(0, 0),
                                   building=True),
    "maintenance": IncidentType("maintenance", "*", MaintenanceParams,
                                "a maintenance window over a device"),
}


@dataclass(frozen=True)
class MaintenanceAction:
    """What a ``maintenance`` incident asks of the alarm store before the run (data ms)."""

    incident: str
    device: str
    from_ms: int
    to_ms: int
    by: str
    reason: str
    maintained_at_ms: int | None  # the elevator's last maintenance record, if overdue


def maintenance_actions(incidents: list[tuple[str, str, int, MaintenanceParams]],
                        start_ms: int, overdue_limit_ms: Callable[[str], int | None]
                        ) -> list[MaintenanceAction]:
    """The windows and records of ``(id, device, at_ms, params)`` for a run starting at
    ``start_ms`` (data time); ``overdue_limit_ms(device)`` is its overdue limit."""
    out = []
    for iid, dev, at_ms, p in incidents:
        at = start_ms + at_ms
        frm = at + round(p.window_after_s * 1000)
        # exactly the limit old at `at`: the first tick after `at` finds it overdue
        limit = overdue_limit_ms(dev) if p.overdue else None
        rec = at - limit if limit is not None else None
        out.append(MaintenanceAction(iid, dev, frm, frm + round(p.duration_s * 1000), p.by,
                                     p.reason, rec))
    return out
