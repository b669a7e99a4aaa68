"""The smoke and heat detectors' dashboard panels: limits from their rules, floors."""

from __future__ import annotations

from anju.dashboards.panels import q, table_panel, timeseries_panel
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
    """How to draw the detectors' fields, with the limits of the rules in force."""
    smoke = r.param("smoke.alarm", "threshold")
    heat = r.param("heat.fixed", "limit_c")
    battery = r.param("smoke.battery_low", "min_pct")
    return {
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
    }


def panels(spec: KindSpec, t: KindTuning) -> PanelList:
    """The operator views of detectors: smoke and heat by floor, low batteries."""
    # fill(none): no row for an empty interval (the lines connect nulls anyway); cheap on
    # "All" over hours
    by_floor = 'GROUP BY time($__interval), "building", "floor" fill(none)'
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
