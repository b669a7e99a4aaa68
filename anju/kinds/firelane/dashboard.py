"""The fire-lane cameras' dashboard panels: which lanes are occupied, for how long."""

from __future__ import annotations

from anju.dashboards.influxql import scope
from anju.dashboards.panels import q, state_timeline, table_panel, timeseries_panel
from anju.dashboards.tuning import (
    DEVICE_SCOPE as _DEVICE_SCOPE,
)
from anju.dashboards.tuning import (
    FieldTuning,
    KindTuning,
    PanelList,
    RulesInForce,
)
from anju.dashboards.tuning import (
    fmt as _g,
)
from anju.dashboards.tuning import (
    limit as _limit,
)
from anju.devices.spec import KindSpec

__all__ = ["panels", "tuning"]


def tuning(r: RulesInForce) -> KindTuning:
    """How to draw the cameras' fields, with the limit of firelane.blocked in force."""
    blocked = r.param("firelane.blocked", "blocked_s")
    return {
        "vehicles": FieldTuning(aggs=("max",), min_val=0),
        "occupied_s": FieldTuning(
            aggs=("max",), steps=_limit((blocked, "red")), min_val=0,
            note=f"Rule firelane.blocked: occupied{r.held('firelane.blocked')} "
                 f"(or the camera's own timer at {_g(blocked)} s)."
            if blocked is not None else ""),
    }


def panels(spec: KindSpec, t: KindTuning) -> PanelList:
    """The operator views of fire lanes: occupation by lane, dwell, blocked alarms."""
    group = 'GROUP BY time($__interval), "device" fill(previous)'
    blocked = ("FROM \"alarms\" WHERE \"rule\" = 'firelane.blocked' AND \"event\" = 'raised' "
               f"AND {scope('estate', 'building')}")
    return [
        state_timeline(
            "Fire lanes occupied",
            "Per fire-lane camera: whether something stands in the lane (last report in "
            "each interval). A lane must be kept clear (消防法 第二十八条).",
            [q(f'SELECT last("occupied") AS "occupied" FROM "firelane" WHERE {_DEVICE_SCOPE} '
               + group, alias="$tag_device")],
            span=12,
        ),
        timeseries_panel(
            "Occupied for (camera's timer)",
            "How long each lane has been continuously occupied, as its camera counts it. "
            + t["occupied_s"].note,
            [q(f'SELECT max("occupied_s") FROM "firelane" WHERE {_DEVICE_SCOPE} '
               'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device")],
            unit="s", limits=t["occupied_s"].limits(), min_val=0,
        ),
        table_panel(
            "Fire lanes blocked",
            "Each firelane.blocked alarm in the time range: where, which camera, how many "
            "vehicles, and the alarm text.",
            [q(f'SELECT "estate", "building", "device", "zone", "value", "message" {blocked} '
               "ORDER BY time DESC LIMIT 500", table=True)],
        ),
    ]
