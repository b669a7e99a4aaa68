"""The access-control doors' dashboard panels: events by type, doors held open."""

from __future__ import annotations

from anju.dashboards.influxql import scope
from anju.dashboards.panels import q, ref_id, table_panel, timeseries_panel
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

# what each event means to a guard, in the order the panel stacks them
_EVENTS = ("granted", "denied", "forced", "tamper")


def tuning(r: RulesInForce) -> KindTuning:
    """How to draw the doors' fields, with the default limit of access.held_open."""
    held = r.param("access.held_open", "default_s")
    return {
        "open_s": FieldTuning(
            aggs=("max",), steps=_limit((held, "orange")), min_val=0,
            note=f"Rule access.held_open: open at least the door's held_open_s "
                 f"({_g(held)} s when not given)." if held is not None else ""),
    }


def panels(spec: KindSpec, t: KindTuning) -> PanelList:
    """The operator views of doors: events by type, longest open, access alarms."""
    alarms = ("FROM \"alarms\" WHERE \"rule\" =~ /^access\\./ AND \"event\" = 'raised' "
              f"AND {scope('estate', 'building')}")
    return [
        timeseries_panel(
            "Door events",
            "Credentials granted and denied, doors forced and controllers tampered with, per "
            "interval across the selected doors. Five denied in a minute at one door is rule "
            "access.denied_burst.",
            [q(f'SELECT count("event") FROM "access" WHERE "event" = \'{e}\' AND '
               f'{_DEVICE_SCOPE} GROUP BY time($__interval) fill(0)', ref_id(i),
               alias=e) for i, e in enumerate(_EVENTS)],
            bars=True,
        ),
        timeseries_panel(
            "Doors open longest",
            "How long each door has been open, as its controller counts it. "
            + t["open_s"].note,
            [q(f'SELECT max("open_s") FROM "access" WHERE {_DEVICE_SCOPE} '
               'GROUP BY time($__interval), "device" fill(null)', alias="$tag_device")],
            unit="s", limits=t["open_s"].limits(), min_val=0,
        ),
        table_panel(
            "Access alarms",
            "Each access alarm in the time range (forced, tamper, held open, denied bursts): "
            "where, which door, and the alarm text.",
            [q(f'SELECT "estate", "building", "device", "zone", "rule", "value", "message" '
               f"{alarms} ORDER BY time DESC LIMIT 500", table=True)],
        ),
    ]
