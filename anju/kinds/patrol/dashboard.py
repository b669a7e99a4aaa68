"""The patrol check-points' dashboard panels: check-ins and missed rounds."""

from __future__ import annotations

from anju.dashboards.influxql import scope
from anju.dashboards.panels import q, table_panel, timeseries_panel
from anju.dashboards.tuning import DEVICE_SCOPE as _DEVICE_SCOPE
from anju.dashboards.tuning import (
    FieldTuning,
    KindTuning,
    PanelList,
    RulesInForce,
)
from anju.dashboards.tuning import fmt as _g
from anju.devices.spec import KindSpec

__all__ = ["panels", "tuning"]


def tuning(r: RulesInForce) -> KindTuning:
    """No field of a check-point is drawn with limits; the default schedule is noted."""
    every = r.param("patrol.missed", "every_min")
    tol = r.param("patrol.missed", "tolerance_min")
    note = (f"Rule patrol.missed: by default a round every {_g(every)} min, "
            f"± {_g(tol)} min; each route's own schedule is its registry params."
            if every is not None and tol is not None else "")
    return {"event": FieldTuning(note=note)}


def panels(spec: KindSpec, t: KindTuning) -> PanelList:
    """The operator views of patrols: check-ins per building, missed rounds."""
    missed = ("FROM \"alarms\" WHERE \"rule\" = 'patrol.missed' AND \"event\" = 'raised' "
              f"AND {scope('estate', 'building')}")
    return [
        timeseries_panel(
            "Check-ins per building",
            "Guards' check-ins at the check-points of each building (readings with "
            "event = checkin). " + t["event"].note,
            [q('SELECT count("guard_id") FROM "patrol" WHERE ' + _DEVICE_SCOPE
               + ' GROUP BY time($__interval), "building" fill(0)', alias="$tag_building")],
            span=12,
        ),
        table_panel(
            "Missed patrol rounds",
            "Each round not checked in within its tolerance (rule patrol.missed): where, "
            "which check-point and the round it was.",
            [q(f'SELECT "estate", "building", "device", "message" {missed} '
               "ORDER BY time DESC LIMIT 500", table=True)],
            span=12,
        ),
    ]
