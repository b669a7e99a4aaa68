"""The city overview and the estate → building drill-down, one target per kind of the table."""

from __future__ import annotations

from collections.abc import Mapping

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.alarms import ALARMS_UID, OPEN_WINDOW, open_alarm_targets
from anju.dashboards.influxql import ident, prometheus_ref, scope
from anju.dashboards.kinds import presence_field
from anju.dashboards.panels import (
    Target,
    new_dashboard,
    q,
    ref_id,
    severity_overrides,
    stat_panel,
    table_panel,
    tag_variable,
    timeseries_panel,
)
from anju.dashboards.pipeline import PIPELINE_UID
from anju.devices.spec import KindSpec

__all__ = ["ESTATE_UID", "OVERVIEW_UID", "estate_dashboard", "overview_dashboard"]

OVERVIEW_UID = "anju-overview"
ESTATE_UID = "anju-estate"


def _count_by(kinds: Mapping[str, KindSpec], what: str, where: str,
              group_by: tuple[str, ...] = (), table: bool = False) -> list[Target]:
    """Per kind: how many distinct ``what`` tag values reported (optionally per group)."""
    inner = ", ".join(ident(t) for t in (*group_by, what))
    outer = (" GROUP BY " + ", ".join(ident(t) for t in group_by)) if group_by else ""
    return [
        q(f"SELECT count(\"n\") AS {ident(name)} FROM (SELECT count("
          f"{ident(presence_field(spec).name)}) AS \"n\" FROM {ident(name)} WHERE {where} "
          f"GROUP BY {inner}){outer}", ref_id(i), table=table, alias=None if table else "$col")
        for i, (name, spec) in enumerate(kinds.items())
    ]


def _readings_per_s(kinds: Mapping[str, KindSpec], where: str) -> list[Target]:
    return [
        q(f"SELECT count({ident(presence_field(spec).name)}) * 1000 / $__interval_ms "
          f"AS {ident(name)} FROM {ident(name)} WHERE {where} "
          "GROUP BY time($__interval) fill(0)", ref_id(i), alias="$col")
        for i, (name, spec) in enumerate(kinds.items())
    ]


def _link_to(uid: str, title: str) -> db.DashboardLink:
    return (db.DashboardLink(title).type(dash.DashboardLinkType.LINK).url(f"/d/{uid}")
            .include_vars(True).keep_time(True))


def overview_dashboard(kinds: Mapping[str, KindSpec]) -> db.Dashboard:
    """The city at a glance: who reports, what is open, how fast data flows."""
    where = scope("estate")
    d = (
        new_dashboard(OVERVIEW_UID, "anju · city overview",
                      "Estates and devices reporting, open alarms, message rates.",
                      ["overview"])
        .with_variable(tag_variable("estate", "Estate"))
        .link(_link_to(ESTATE_UID, "Estate drill-down"))
        .link(_link_to(ALARMS_UID, "Alarms"))
        .link(_link_to(PIPELINE_UID, "Pipeline health"))
        .link(db.DashboardLink("Kinds").type(dash.DashboardLinkType.DASHBOARDS)
              .tags(["anju-kind"]).as_dropdown(True).include_vars(True).keep_time(True))
        .with_row(db.Row("Now"))
        .with_panel(stat_panel(
            "Estates reporting",
            "Estates with at least one reading of each kind in the time range.",
            _count_by(kinds, "estate", where)))
        .with_panel(stat_panel(
            "Devices reporting",
            "Devices with at least one reading in the time range, by kind.",
            _count_by(kinds, "device", where)))
        .with_panel(severity_overrides(stat_panel(
            "Open alarms by severity",
            f"Alarms not yet cleared (last event within {OPEN_WINDOW}), by severity; "
            "acknowledged ones apart.",
            open_alarm_targets(where, ("severity",)), span=12, time_from=OPEN_WINDOW)))
        .with_row(db.Row("Flow"))
        .with_panel(timeseries_panel(
            "Readings stored per second, by kind",
            "Readings that reached InfluxDB, per second, per kind.",
            _readings_per_s(kinds, where), unit="suffix:/s", span=8))
        .with_panel(timeseries_panel(
            "MQTT messages per second",
            "Messages the pipeline received from the broker (Prometheus, "
            "anju_mqtt_messages_total).",
            [prometheus.Dataquery().expr("sum(rate(anju_mqtt_messages_total[$__rate_interval]))")
             .legend_format("messages/s").ref_id("A").datasource(prometheus_ref())],
            unit="suffix:/s", span=8).datasource(prometheus_ref()))
        .with_panel(severity_overrides(timeseries_panel(
            "Alarms raised by severity",
            "Alarms raised per interval across the city.",
            [q(f"SELECT count(\"alarm_id\") FROM \"alarms\" WHERE \"event\" = 'raised' AND "
               f"{where} GROUP BY time($__interval), \"severity\" fill(0)",
               alias="$tag_severity")],
            bars=True, span=8)))
        .with_row(db.Row("Estates"))
        .with_panel(table_panel(
            "Devices reporting by estate",
            "Per estate and kind, devices that reported in the time range; a silent estate "
            "stands out. Click an estate to drill down.",
            _count_by(kinds, "device", where, ("estate",), table=True),
            span=14, merge=True,
        ).override_by_name("estate", [dash.DynamicConfigValue(id_val="links", value=[{
            "title": "Estate drill-down",
            "url": f"/d/{ESTATE_UID}?var-estate=${{__value.raw}}&${{__url_time_range}}",
        }])]))
        .with_panel(table_panel(
            "Open alarms by estate",
            f"Alarms not yet cleared (last event within {OPEN_WINDOW}), per estate: "
            "unacknowledged and acknowledged.",
            open_alarm_targets(where, ("estate",), table=True),
            span=10, merge=True, time_from=OPEN_WINDOW))
    )
    return d


def estate_dashboard(kinds: Mapping[str, KindSpec]) -> db.Dashboard:
    """One estate (or a few), building by building."""
    where = scope("estate", "building")
    return (
        new_dashboard(ESTATE_UID, "anju · estate and building",
                      "Drill-down: pick an estate, then buildings.", ["estate"])
        .with_variable(tag_variable("estate", "Estate"))
        .with_variable(tag_variable("building", "Building", where=["estate"]))
        .link(_link_to(OVERVIEW_UID, "City overview"))
        .link(_link_to(ALARMS_UID, "Alarms"))
        .link(_link_to(PIPELINE_UID, "Pipeline health"))
        .link(db.DashboardLink("Kinds").type(dash.DashboardLinkType.DASHBOARDS)
              .tags(["anju-kind"]).as_dropdown(True).include_vars(True).keep_time(True))
        .with_row(db.Row("Now"))
        .with_panel(stat_panel(
            "Devices reporting",
            "Devices of the selected buildings with a reading in the time range, by kind.",
            _count_by(kinds, "device", where), span=12))
        .with_panel(severity_overrides(stat_panel(
            "Open alarms by severity",
            f"Alarms of the selected buildings not yet cleared (last event within "
            f"{OPEN_WINDOW}), by severity; acknowledged ones apart.",
            open_alarm_targets(where, ("severity",)), span=12, time_from=OPEN_WINDOW)))
        .with_row(db.Row("Buildings"))
        .with_panel(table_panel(
            "Devices reporting by building",
            "Per building and kind, devices that reported in the time range.",
            _count_by(kinds, "device", where, ("building",), table=True),
            span=12, merge=True))
        .with_panel(table_panel(
            "Open alarms by building and kind",
            f"Alarms not yet cleared (last event within {OPEN_WINDOW}): unacknowledged and "
            "acknowledged.",
            open_alarm_targets(where, ("building", "kind"), table=True),
            span=12, merge=True, time_from=OPEN_WINDOW))
        .with_panel(timeseries_panel(
            "Alarms raised by kind",
            "Alarms raised per interval in the selected buildings, by device kind.",
            [q(f"SELECT count(\"alarm_id\") FROM \"alarms\" WHERE \"event\" = 'raised' AND "
               f"{where} GROUP BY time($__interval), \"kind\" fill(0)", alias="$tag_kind")],
            bars=True, span=12))
        .with_panel(timeseries_panel(
            "Readings stored per second, by kind",
            "Readings of the selected buildings that reached InfluxDB, per second.",
            _readings_per_s(kinds, where), unit="suffix:/s", span=12))
        .with_row(db.Row("Recent alarms"))
        .with_panel(table_panel(
            "Alarm events",
            "The latest alarm events of the selected buildings, newest first.",
            [q("SELECT \"building\", \"kind\", \"rule\", \"severity\", \"event\", \"device\", "
               f"\"floor\", \"zone\", \"message\" FROM \"alarms\" WHERE {where} "
               "ORDER BY time DESC LIMIT 200", table=True)],
            height=10))
    )

