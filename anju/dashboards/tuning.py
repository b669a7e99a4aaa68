"""Hand-tuned limits and extra panels for the known kinds, keyed by kind name.

The generic per-field panels of :mod:`anju.dashboards.kinds` need nothing from here; this
adds what an operator of each kind asks for: the rule thresholds of CONTRACT §5 and the
GB 5749-2022 water-quality limits drawn on the charts, and views that are not one field
(elevator trips, smoke by floor, falling objects by origin floor). A kind missing here
still gets its full generic dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import histogram
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.influxql import influx_ref, scope
from anju.dashboards.panels import (
    q,
    stat_panel,
    state_timeline,
    table_panel,
    thresholds,
    timeseries_panel,
)
from anju.devices.spec import KindSpec

__all__ = ["EXTRAS", "TUNING", "FieldTuning", "PanelBuilder", "PanelList"]

PanelBuilder = cogbuilder.Builder[dash.Panel]
PanelList = list[PanelBuilder]
_DEVICE_SCOPE = scope("estate", "building", "device")


@dataclass(frozen=True, slots=True)
class FieldTuning:
    """How to draw one field: aggregates, limits (base colour + steps), axis range, a note."""

    aggs: tuple[str, ...] = ()
    base: str = "green"
    steps: tuple[tuple[float, str], ...] = ()
    min_val: float | None = None
    max_val: float | None = None
    note: str = ""

    def limits(self) -> db.ThresholdsConfig | None:
        """The thresholds to draw, or None when the field has no limits."""
        return thresholds(self.base, *self.steps) if self.steps else None


TUNING: dict[str, dict[str, FieldTuning]] = {
    "elevator": {
        # Signed speed: the mean of a run up and a run down is 0, so show both extremes.
        "speed_mps": FieldTuning(aggs=("max", "min")),
        "accel_rms_mg": FieldTuning(
            aggs=("max",), steps=((150.0, "red"),),
            note="Rule elevator.vibration: above 150 mg for 5 s."),
    },
    "smoke": {
        "smoke_db_m": FieldTuning(
            aggs=("max",), steps=((0.15, "orange"),),
            note="Rule smoke.alarm: at or above 0.15 dB/m for 10 s."),
        "temp_c": FieldTuning(
            aggs=("max",), steps=((57.0, "red"),),
            note="Rule heat.fixed: at or above 57 °C."),
        "battery_pct": FieldTuning(
            aggs=("min",), base="red", steps=((20.0, "green"),), min_val=0, max_val=100,
            note="Rule smoke.battery_low: below 20 %."),
    },
    "water": {
        "level_pct": FieldTuning(
            base="red", steps=((20.0, "green"), (95.0, "yellow")), min_val=0, max_val=100,
            note="Rules water.level_low (< 20 %) and water.overflow (> 95 %)."),
        "pressure_mpa": FieldTuning(
            aggs=("min", "max"), base="red", steps=((0.15, "green"), (0.60, "red")),
            note="Rules water.pressure_low (< 0.15 MPa) and water.pressure_high (> 0.60 MPa)."),
        # GB 5749-2022 (生活饮用水卫生标准) table A: free chlorine in the supply 0.05–2 mg/L,
        # turbidity ≤ 1 NTU, pH 6.5–8.5.
        "chlorine_mg_l": FieldTuning(
            base="red", steps=((0.05, "green"), (2.0, "red")),
            note="GB 5749-2022: free chlorine 0.05–2 mg/L (rule water.chlorine)."),
        "turbidity_ntu": FieldTuning(
            aggs=("max",), steps=((1.0, "red"),), min_val=0,
            note="GB 5749-2022: turbidity ≤ 1 NTU (rule water.turbidity)."),
        "ph": FieldTuning(
            base="red", steps=((6.5, "green"), (8.5, "red")),
            note="GB 5749-2022: pH 6.5–8.5 (rule water.ph)."),
    },
}


def _elevator(spec: KindSpec) -> PanelList:
    motion = dash.RangeMap(options=dash.DashboardRangeMapOptions(
        from_val=None, to=-0.05, result=dash.ValueMappingResult(text="↓ down", color="blue",
                                                                index=0)))
    stopped = dash.RangeMap(options=dash.DashboardRangeMapOptions(
        from_val=-0.05, to=0.05, result=dash.ValueMappingResult(text="stopped",
                                                                color="green", index=1)))
    up = dash.RangeMap(options=dash.DashboardRangeMapOptions(
        from_val=0.05, to=None, result=dash.ValueMappingResult(text="↑ up", color="purple",
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
            "Highest RMS car vibration across the selected cars; rule elevator.vibration "
            "fires above 150 mg held for 5 s.",
            [q(f'SELECT max("accel_rms_mg") FROM "elevator" WHERE {_DEVICE_SCOPE} '
               "GROUP BY time($__interval) fill(null)", alias="worst")],
            unit="suffix: mg", limits=thresholds("green", (150.0, "red")),
        ),
    ]


def _smoke(spec: KindSpec) -> PanelList:
    by_floor = 'GROUP BY time($__interval), "building", "floor" fill(null)'
    return [
        timeseries_panel(
            "Smoke by floor",
            "Highest obscuration among the detectors of each building and floor; "
            "smoke.alarm at 0.15 dB/m.",
            [q(f'SELECT max("smoke_db_m") FROM "smoke" WHERE {_DEVICE_SCOPE} ' + by_floor,
               alias="$tag_building F$tag_floor")],
            unit="suffix: dB/m", limits=thresholds("green", (0.15, "orange")),
        ),
        timeseries_panel(
            "Temperature by floor",
            "Highest temperature among the detectors of each building and floor; "
            "heat.fixed at 57 °C.",
            [q(f'SELECT max("temp_c") FROM "smoke" WHERE {_DEVICE_SCOPE} ' + by_floor,
               alias="$tag_building F$tag_floor")],
            unit="celsius", limits=thresholds("green", (57.0, "red")),
        ),
        table_panel(
            "Floors: worst smoke and temperature",
            "Per building and floor, the highest smoke and temperature in the time range.",
            [q('SELECT max("smoke_db_m") AS "smoke_db_m", max("temp_c") AS "temp_c" '
               f'FROM "smoke" WHERE {_DEVICE_SCOPE} GROUP BY "building", "floor"', table=True)],
            span=12, hide_time=True,
        ),
        table_panel(
            "Batteries below 20 %",
            "Detectors whose last battery reading is below 20 % (rule smoke.battery_low).",
            [q('SELECT "battery_pct" FROM (SELECT last("battery_pct") AS "battery_pct" '
               f'FROM "smoke" WHERE {_DEVICE_SCOPE} GROUP BY "estate", "building", "device") '
               'WHERE "battery_pct" < 20 GROUP BY "estate", "building", "device"', table=True)],
            span=12, hide_time=True,
        ),
    ]


def _water(spec: KindSpec) -> PanelList:
    quality = stat_panel(
        "Water quality now (GB 5749-2022)",
        "Last free chlorine, turbidity and pH across the selected pump rooms: red outside "
        "GB 5749-2022 (chlorine 0.05–2 mg/L, turbidity ≤ 1 NTU, pH 6.5–8.5).",
        [
            q(f'SELECT last("chlorine_mg_l") AS "chlorine_mg_l" FROM "water" '
              f'WHERE {_DEVICE_SCOPE} GROUP BY "device"', "A", alias="$tag_device $col"),
            q(f'SELECT last("turbidity_ntu") AS "turbidity_ntu" FROM "water" '
              f'WHERE {_DEVICE_SCOPE} GROUP BY "device"', "B", alias="$tag_device $col"),
            q(f'SELECT last("ph") AS "ph" FROM "water" WHERE {_DEVICE_SCOPE} GROUP BY "device"',
              "C", alias="$tag_device $col"),
        ],
        span=24, height=5,
    )
    for pattern, tuned in ((".* chlorine_mg_l$", TUNING["water"]["chlorine_mg_l"]),
                           (".* turbidity_ntu$", TUNING["water"]["turbidity_ntu"]),
                           (".* ph$", TUNING["water"]["ph"])):
        limits = tuned.limits()
        assert limits is not None
        quality = quality.override_by_regexp(pattern, [
            dash.DynamicConfigValue(id_val="thresholds", value=limits.build()),
        ])
    return [
        quality,
        timeseries_panel(
            "Pressure and flow",
            "Outlet pressure (left) against supply flow: a pressure drop while flow jumps is "
            "rule water.burst.",
            [
                q(f'SELECT mean("pressure_mpa") AS "pressure_mpa" FROM "water" '
                  f'WHERE {_DEVICE_SCOPE} GROUP BY time($__interval), "device" fill(null)',
                  "A", alias="$tag_device $col"),
                q(f'SELECT mean("flow_m3h") AS "flow_m3h" FROM "water" WHERE {_DEVICE_SCOPE} '
                  'GROUP BY time($__interval), "device" fill(null)', "B",
                  alias="$tag_device $col"),
            ],
            span=24,
        ).override_by_regexp(".* flow_m3h$", [
            dash.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            dash.DynamicConfigValue(id_val="unit", value="suffix: m³/h"),
        ]),
    ]


def _camera(spec: KindSpec) -> PanelList:
    falls = ("FROM \"alarms\" WHERE \"rule\" = 'camera.falling_object' AND \"event\" = 'raised' "
             f"AND {scope('estate', 'building')}")
    return [
        histogram.Panel()
        .title("Falling objects by origin floor")
        .description("How many falling-object alarms each origin floor produced in the time "
                     "range (floor recovered from the track, rule camera.falling_object).")
        .datasource(influx_ref())
        .with_target(q(f'SELECT "floor" {falls}', table=True))
        .bucket_size(1)
        .span(12)
        .height(8),
        timeseries_panel(
            "Falling objects: floor over time",
            "Each dot is one falling object at the time it fell, at its origin floor.",
            [q(f'SELECT "floor" {falls} GROUP BY "building"', alias="$tag_building")],
            points=True, span=12,
        ),
        table_panel(
            "Falling-object events",
            "Each falling object: where, which camera, the origin floor and the alarm text.",
            [q(f'SELECT "estate", "building", "floor", "device", "value", "message" {falls} '
               "ORDER BY time DESC LIMIT 500", table=True)],
        ),
    ]


EXTRAS: dict[str, Callable[[KindSpec], PanelList]] = {
    "elevator": _elevator,
    "smoke": _smoke,
    "water": _water,
    "camera": _camera,
}
