"""The cameras' dashboard panels: falls by origin floor, e-bikes charging indoors."""

from __future__ import annotations

from grafana_foundation_sdk.builders import histogram

from anju.dashboards.influxql import influx_ref, scope
from anju.dashboards.panels import q, table_panel, timeseries_panel
from anju.dashboards.tuning import KindTuning, PanelList, RulesInForce
from anju.devices.spec import KindSpec

__all__ = ["panels", "tuning"]


def tuning(r: RulesInForce) -> KindTuning:
    """No field of a camera is drawn with limits."""
    return {}


def panels(spec: KindSpec, t: KindTuning) -> PanelList:
    """The operator views of cameras: falling objects by origin floor and over time."""
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
        table_panel(
            "E-bikes charging indoors and fire risks",
            "Each e-bike seen charging in a corridor or lobby (camera.ebike_charging) and "
            "each floor where one charged while a detector saw the temperature rise "
            "(fire.ebike_risk, critical).",
            [q("SELECT \"rule\", \"estate\", \"building\", \"floor\", \"severity\", "
               "\"message\" FROM \"alarms\" WHERE (\"rule\" = 'camera.ebike_charging' OR "
               "\"rule\" = 'fire.ebike_risk') AND \"event\" = 'raised' AND "
               f"{scope('estate', 'building')} ORDER BY time DESC LIMIT 500", table=True)],
        ),
    ]
