"""Hand-tuned limits and extra panels for the known kinds, keyed by kind name.

The generic per-field panels of :mod:`anju.dashboards.kinds` need nothing from here; this
adds what an operator of each kind asks for: the rule thresholds drawn on the charts, and
views that are not one field (elevator trips, smoke by floor, falling objects by origin
floor). Every threshold is read from the rules in force — the catalogue with the site's
overrides (``anju dashboards build --site DIR``) — so a dashboard never shows a limit the
engine does not apply; a rule the site disables draws no line. A kind missing here still
gets its full generic dashboard.
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
from anju.rules.model import RuleSet

__all__ = ["EXTRAS", "FieldTuning", "KindTuning", "PanelBuilder", "PanelList", "tuning_for"]

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

    def step(self, i: int = 0) -> float | None:
        """The ``i``-th limit, or None when the rule that sets it is not in force."""
        return self.steps[i][0] if len(self.steps) > i else None


KindTuning = dict[str, FieldTuning]


def _g(v: float) -> str:
    return f"{v:g}"


class _Rules:
    """Parameters of the rules in force; None for a rule that is disabled or unknown."""

    def __init__(self, rules: RuleSet) -> None:
        self._by_id = {r.id: r for r in rules.rules}

    def param(self, rule: str, name: str) -> float | None:
        r = self._by_id.get(rule)
        return None if r is None else r.params.get(name)

    def held(self, rule: str) -> str:
        r = self._by_id.get(rule)
        return f" for {_g(r.for_s)} s" if r is not None and r.for_s else ""


def _limit(*pairs: tuple[float | None, str]) -> tuple[tuple[float, str], ...]:
    return tuple((v, c) for v, c in pairs if v is not None)


def _band(low: float | None, high: float | None, base: str = "red") -> tuple[
        str, tuple[tuple[float, str], ...]]:
    """Base colour and steps of an acceptable band [low, high]: red outside it."""
    if low is None:
        return "green", _limit((high, "red"))
    return base, _limit((low, "green"), (high, "red"))


def tuning_for(rules: RuleSet) -> dict[str, KindTuning]:
    """Per kind and field, how to draw it, with the limits of ``rules`` (the rules in force)."""
    r = _Rules(rules)
    vib = r.param("elevator.vibration", "limit_mg")
    smoke = r.param("smoke.alarm", "threshold")
    heat = r.param("heat.fixed", "limit_c")
    battery = r.param("smoke.battery_low", "min_pct")
    level_lo, level_hi = r.param("water.level_low", "min_pct"), r.param("water.overflow",
                                                                           "max_pct")
    p_lo, p_hi = r.param("water.pressure_low", "min_mpa"), r.param("water.pressure_high",
                                                                    "max_mpa")
    cl_lo, cl_hi = r.param("water.chlorine", "min_mg_l"), r.param("water.chlorine", "max_mg_l")
    turb = r.param("water.turbidity", "max_ntu")
    ph_lo, ph_hi = r.param("water.ph", "min_ph"), r.param("water.ph", "max_ph")
    cl_base, cl_steps = _band(cl_lo, cl_hi)
    ph_base, ph_steps = _band(ph_lo, ph_hi)
    p_base, p_steps = _band(p_lo, p_hi)
    lv_base, lv_steps = ("red", _limit((level_lo, "green"), (level_hi, "yellow"))
                         ) if level_lo is not None else ("green", _limit((level_hi, "yellow")))
    return {
        "elevator": {
            # Signed speed: the mean of a run up and a run down is 0, so show both extremes.
            "speed_mps": FieldTuning(aggs=("max", "min")),
            "accel_rms_mg": FieldTuning(
                aggs=("max",), steps=_limit((vib, "red")),
                note=f"Rule elevator.vibration: above {_g(vib)} mg"
                     f"{r.held('elevator.vibration')}." if vib is not None else ""),
        },
        "smoke": {
            "smoke_db_m": FieldTuning(
                aggs=("max",), steps=_limit((smoke, "orange")),
                note=f"Rule smoke.alarm: at or above {_g(smoke)} dB/m"
                     f"{r.held('smoke.alarm')}." if smoke is not None else ""),
            "temp_c": FieldTuning(
                aggs=("max",), steps=_limit((heat, "red")),
                note=f"Rule heat.fixed: at or above {_g(heat)} °C{r.held('heat.fixed')}."
                if heat is not None else ""),
            "battery_pct": FieldTuning(
                aggs=("min",), base="red" if battery is not None else "green",
                steps=_limit((battery, "green")), min_val=0, max_val=100,
                note=f"Rule smoke.battery_low: below {_g(battery)} %."
                if battery is not None else ""),
        },
        "water": {
            "level_pct": FieldTuning(
                base=lv_base, steps=lv_steps, min_val=0, max_val=100,
                note=" ".join(t for t in (
                    f"Rule water.level_low: below {_g(level_lo)} %." if level_lo is not None
                    else "",
                    f"Rule water.overflow: above {_g(level_hi)} %." if level_hi is not None
                    else "") if t)),
            "pressure_mpa": FieldTuning(
                aggs=("min", "max"), base=p_base, steps=p_steps,
                note=" ".join(t for t in (
                    f"Rule water.pressure_low: below {_g(p_lo)} MPa." if p_lo is not None
                    else "",
                    f"Rule water.pressure_high: above {_g(p_hi)} MPa." if p_hi is not None
                    else "") if t)),
            # GB 5749-2022 (生活饮用水卫生标准) table A: free chlorine in the supply 0.05–2 mg/L,
            # turbidity ≤ 1 NTU, pH 6.5–8.5 — the catalogue's defaults of these rules.
            "chlorine_mg_l": FieldTuning(
                base=cl_base, steps=cl_steps,
                note=f"Rule water.chlorine: free chlorine {_g(cl_lo)}–{_g(cl_hi)} mg/L "
                     "(GB 5749-2022)." if cl_lo is not None and cl_hi is not None else ""),
            "turbidity_ntu": FieldTuning(
                aggs=("max",), steps=_limit((turb, "red")), min_val=0,
                note=f"Rule water.turbidity: at most {_g(turb)} NTU (GB 5749-2022)."
                if turb is not None else ""),
            "ph": FieldTuning(
                base=ph_base, steps=ph_steps,
                note=f"Rule water.ph: pH {_g(ph_lo)}–{_g(ph_hi)} (GB 5749-2022)."
                if ph_lo is not None and ph_hi is not None else ""),
        },
    }


# Grafana reads a null range end as 0, not as open (getValueMappingResult): open ends are
# numbers far beyond any car's speed.
_OPEN_END = 1e9


def _elevator(spec: KindSpec, t: KindTuning) -> PanelList:
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


def _smoke(spec: KindSpec, t: KindTuning) -> PanelList:
    by_floor = 'GROUP BY time($__interval), "building", "floor" fill(null)'
    panels: PanelList = [
        timeseries_panel(
            "Smoke by floor",
            "Highest obscuration among the detectors of each building and floor. "
            + t["smoke_db_m"].note,
            [q(f'SELECT max("smoke_db_m") FROM "smoke" WHERE {_DEVICE_SCOPE} ' + by_floor,
               alias="$tag_building F$tag_floor")],
            unit="suffix:dB/m", limits=t["smoke_db_m"].limits(),
        ),
        timeseries_panel(
            "Temperature by floor",
            "Highest temperature among the detectors of each building and floor. "
            + t["temp_c"].note,
            [q(f'SELECT max("temp_c") FROM "smoke" WHERE {_DEVICE_SCOPE} ' + by_floor,
               alias="$tag_building F$tag_floor")],
            unit="celsius", limits=t["temp_c"].limits(),
        ),
        table_panel(
            "Floors: worst smoke and temperature",
            "Per building and floor, the highest smoke and temperature in the time range.",
            [q('SELECT max("smoke_db_m") AS "smoke_db_m", max("temp_c") AS "temp_c" '
               f'FROM "smoke" WHERE {_DEVICE_SCOPE} GROUP BY "building", "floor"', table=True)],
            span=12, hide_time=True,
        ),
    ]
    low = t["battery_pct"].step()
    if low is not None:  # rule smoke.battery_low in force
        panels.append(table_panel(
            f"Batteries below {_g(low)} %",
            f"Detectors whose last battery reading is below {_g(low)} % "
            "(rule smoke.battery_low).",
            [q('SELECT "battery_pct" FROM (SELECT last("battery_pct") AS "battery_pct" '
               f'FROM "smoke" WHERE {_DEVICE_SCOPE} GROUP BY "estate", "building", "device") '
               f'WHERE "battery_pct" < {low!r} GROUP BY "estate", "building", "device"',
               table=True)],
            span=12, hide_time=True,
        ))
    return panels


def _water(spec: KindSpec, t: KindTuning) -> PanelList:
    quality = stat_panel(
        "Water quality now (GB 5749-2022)",
        "Last free chlorine, turbidity and pH across the selected pump rooms, red outside "
        "the limits of the water-quality rules. " + " ".join(
            t[f].note for f in ("chlorine_mg_l", "turbidity_ntu", "ph") if t[f].note),
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
    for pattern, tuned in ((".* chlorine_mg_l$", t["chlorine_mg_l"]),
                           (".* turbidity_ntu$", t["turbidity_ntu"]),
                           (".* ph$", t["ph"])):
        limits = tuned.limits()
        if limits is None:  # the rule is disabled at this site
            continue
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
            dash.DynamicConfigValue(id_val="unit", value="suffix:m³/h"),
        ]),
    ]


def _camera(spec: KindSpec, t: KindTuning) -> PanelList:
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


EXTRAS: dict[str, Callable[[KindSpec, KindTuning], PanelList]] = {
    "elevator": _elevator,
    "smoke": _smoke,
    "water": _water,
    "camera": _camera,
}
