"""The elevator's dashboard panels: limits drawn from its rules, car state and trips."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.panels import q, state_timeline, timeseries_panel
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
    """How to draw the elevator's fields, with the limits of the rules in force."""
    vib = r.param("elevator.vibration", "limit_mg")
    return {
        # Signed speed: the mean of a run up and a run down is 0, so show both extremes.
        "speed_mps": FieldTuning(aggs=("max", "min")),
        "accel_rms_mg": FieldTuning(
            aggs=("max",), steps=_limit((vib, "red")),
            note=f"Rule elevator.vibration: above {_g(vib)} mg"
                 f"{r.held('elevator.vibration')}." if vib is not None else ""),
    }


# Grafana reads a null range end as 0, not as open (getValueMappingResult): open ends are
# numbers far beyond any car's speed.
_OPEN_END = 1e9


def panels(spec: KindSpec, t: KindTuning) -> PanelList:
    """The operator views of elevators: car state, trips, worst vibration."""
    motion = dash.RangeMap(options=dash.DashboardRangeMapOptions(
        from_val=-_OPEN_END, to=-0.05, result=dash.ValueMappingResult(text="↓ down", color="blue",
                                                                index=0)))
    stopped = dash.RangeMap(options=dash.DashboardRangeMapOptions(
        from_val=-0.05, to=0.05, result=dash.ValueMappingResult(text="stopped",
                                                                color="green", index=1)))
    up = dash.RangeMap(options=dash.DashboardRangeMapOptions(
        from_val=0.05, to=_OPEN_END, result=dash.ValueMappingResult(text="↑ up", color="purple",
                                                               index=2)))
    group = 'GROUP BY time($__interval), "device" fill(previous)'
    return [
        state_timeline(
            "Car state",
            "Per car: motion (from speed_mps), door and passenger presence, last value in "
            "each interval. A door open while moving is rule elevator.door_open_moving.",
            [
                q(f'SELECT last("speed_mps") AS "motion" FROM "elevator" WHERE {_DEVICE_SCOPE} '
                  + group, "A", alias="$tag_device $col"),
                q(f'SELECT last("door_open") AS "door" FROM "elevator" WHERE {_DEVICE_SCOPE} '
                  + group, "B", alias="$tag_device $col"),
                q(f'SELECT last("occupied") AS "occupied" FROM "elevator" '
                  f"WHERE {_DEVICE_SCOPE} " + group, "C", alias="$tag_device $col"),
            ],
            span=24, height=10,
        # The motion lanes read speed through ranges; the other lanes are booleans.
        ).override_by_regexp(".* motion$", [
            dash.DynamicConfigValue(id_val="mappings", value=[motion, stopped, up]),
        ]),
        timeseries_panel(
            "Trips",
            "Trips per interval and car: a trip is a door-open stop at another floor than "
            "the car's previous door-open stop.",
            [q('SELECT count("d") FROM (SELECT difference("floor") AS "d" FROM "elevator" '
               f'WHERE "door_open" = true AND {_DEVICE_SCOPE} GROUP BY "device") '
               'WHERE "d" <> 0 AND $timeFilter GROUP BY time($__interval), "device" fill(0)',
               alias="$tag_device")],
            bars=True,
        ),
        timeseries_panel(
            "Vibration (worst car)",
            "Highest RMS car vibration across the selected cars. "
            + t["accel_rms_mg"].note,
            [q(f'SELECT max("accel_rms_mg") FROM "elevator" WHERE {_DEVICE_SCOPE} '
               "GROUP BY time($__interval) fill(null)", alias="worst")],
            unit="suffix:mg", limits=t["accel_rms_mg"].limits(),
        ),
    ]
