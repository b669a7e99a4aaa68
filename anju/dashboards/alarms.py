"""The alarms dashboard, and the InfluxQL for "open alarms" that other dashboards reuse.

Alarms are points of the ``alarms`` measurement (CONTRACT §6): tags estate, building,
kind, rule, severity, event; fields alarm_id, device, floor, zone, value, message. An
alarm's state is not stored, only its lifecycle events, and ``alarm_id`` is a field (it
cannot be grouped on), so "open" is counted as raised minus closed events in a window:
state rules close when ``cleared``, event rules (``camera.*``, CONTRACT §5) when
``acknowledged``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.influxql import InfluxQLAnnotation, ident, influx_ref, scope
from anju.dashboards.panels import (
    new_dashboard,
    q,
    severity_overrides,
    stat_panel,
    table_panel,
    tag_variable,
    timeseries_panel,
)

__all__ = ["ALARMS_UID", "OPEN_WINDOW", "alarms_dashboard", "open_alarms_query"]

ALARMS_UID = "anju-alarms"
# How far back "open" looks: alarms raised earlier and still open are not counted.
OPEN_WINDOW = "7d"
# CONTRACT §5: event rules (camera.*) are closed by acknowledgement, not by data.
_EVENT_RULES = r"/^camera\./"
_FILTER_VARS = ("estate", "building", "kind", "severity", "rule")


def open_alarms_query(where: str, group_by: tuple[str, ...]) -> str:
    """InfluxQL: raised minus closed alarm events matching ``where``, grouped by tags."""
    g = ", ".join(ident(t) for t in group_by)
    closed = ("(\"event\" = 'cleared' OR "
              f"(\"event\" = 'acknowledged' AND \"rule\" =~ {_EVENT_RULES}))")
    return (
        f"SELECT sum(\"n\") AS \"open\" FROM "
        f"(SELECT count(\"alarm_id\") AS \"n\" FROM \"alarms\" "
        f"WHERE \"event\" = 'raised' AND {where} GROUP BY {g}), "
        f"(SELECT count(\"alarm_id\") * -1 AS \"n\" FROM \"alarms\" "
        f"WHERE {closed} AND {where} GROUP BY {g}) "
        f"GROUP BY {g}"
    )


def _annotation(name: str, event: str, color: str, enabled: bool) -> db.AnnotationQuery:
    return (
        db.AnnotationQuery()
        .name(name)
        .datasource(influx_ref())
        .enable(enabled)
        .icon_color(color)
        .target(
            InfluxQLAnnotation(
                "SELECT \"message\" AS \"text\", \"rule\", \"severity\", \"estate\", "
                f"\"building\" FROM \"alarms\" WHERE \"event\" = '{event}' "
                f"AND {scope(*_FILTER_VARS)}")
            .text_column("text").tags_column("rule,severity,estate,building"))
    )


def alarms_dashboard() -> db.Dashboard:
    """Every alarm event: a table, annotations, counts by severity and rule."""
    where = scope(*_FILTER_VARS)
    columns = ", ".join(ident(c) for c in (
        "estate", "building", "kind", "rule", "severity", "event",
        "alarm_id", "device", "floor", "zone", "value", "message"))
    return (
        new_dashboard(ALARMS_UID, "anju · alarms",
                      "Alarm lifecycle events from the alarms measurement.", ["alarms"])
        .with_variable(tag_variable("estate", "Estate", measurement="alarms"))
        .with_variable(tag_variable("building", "Building", measurement="alarms",
                                    where=["estate"]))
        .with_variable(tag_variable("kind", "Kind", measurement="alarms"))
        .with_variable(tag_variable("severity", "Severity", measurement="alarms"))
        .with_variable(tag_variable("rule", "Rule", measurement="alarms", where=["kind"]))
        .annotation(_annotation("Alarms raised", "raised", "red", True))
        .annotation(_annotation("Alarms escalated", "escalated", "purple", True))
        .annotation(_annotation("Alarms cleared", "cleared", "green", False))
        .link(db.DashboardLink("anju").type(dash.DashboardLinkType.DASHBOARDS).tags(["anju"])
              .as_dropdown(True).include_vars(True).keep_time(True))
        .with_row(db.Row("Now"))
        .with_panel(severity_overrides(stat_panel(
            "Open alarms by severity",
            f"Alarms raised in the last {OPEN_WINDOW} and not yet cleared (or, for camera "
            "events, not yet acknowledged).",
            [q(open_alarms_query(where, ("severity",)), alias="$tag_severity")],
            span=12, time_from=OPEN_WINDOW,
        )))
        .with_panel(severity_overrides(stat_panel(
            "Escalated in range",
            "Alarms escalated because nobody acknowledged them in time, by severity.",
            [q(f"SELECT count(\"alarm_id\") FROM \"alarms\" WHERE \"event\" = 'escalated' "
               f"AND {where} GROUP BY \"severity\"", alias="$tag_severity")],
            span=12, calc="sum",
        )))
        .with_row(db.Row("Over time"))
        .with_panel(severity_overrides(timeseries_panel(
            "Alarms raised by severity",
            "Alarms raised per interval, stacked by severity.",
            [q(f"SELECT count(\"alarm_id\") FROM \"alarms\" WHERE \"event\" = 'raised' "
               f"AND {where} GROUP BY time($__interval), \"severity\" fill(0)",
               alias="$tag_severity")],
            bars=True, span=16,
        )))
        .with_panel(table_panel(
            "Raised by rule",
            "Which rules fire most in the time range.",
            [q(f"SELECT count(\"alarm_id\") AS \"raised\" FROM \"alarms\" "
               f"WHERE \"event\" = 'raised' AND {where} GROUP BY \"rule\"", table=True)],
            span=8, height=8, hide_time=True,
        ))
        .with_row(db.Row("Events"))
        .with_panel(table_panel(
            "Alarm events",
            "Every lifecycle event (raised, escalated, acknowledged, cleared), newest first.",
            [q(f"SELECT {columns} FROM \"alarms\" WHERE {where} "
               "ORDER BY time DESC LIMIT 1000", table=True)],
            height=14,
        ))
    )
