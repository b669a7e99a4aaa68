"""The alarms dashboard, and the InfluxQL for "open alarms" that other dashboards reuse.

Alarms are points of the ``alarms`` measurement (CONTRACT §6, docs/contract-notes.md): tags
estate, building, kind, rule, severity, event, alarm_id; fields alarm_id, device, floor,
zone, value, message, state, state_rank, text. Each point's ``state`` is the alarm's state
after the event (``open``, ``acknowledged``, ``closed``; ``state_rank`` 0, 1, 2), so an
alarm is open when the highest rank of its ``alarm_id`` is 0 or 1: counted from state,
never by subtracting events (which goes negative when a raise is older than the window, and counts
a closed camera alarm twice once its acknowledgement is stored).
"""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.builders import dashboard as db

from anju.dashboards.influxql import InfluxQLAnnotation, ident, influx_ref, scope
from anju.dashboards.panels import (
    Target,
    new_dashboard,
    q,
    severity_overrides,
    stat_panel,
    table_panel,
    tag_variable,
    timeseries_panel,
)

__all__ = ["ALARMS_UID", "OPEN_WINDOW", "OpenState", "alarms_dashboard", "open_alarm_targets",
           "open_alarms_query"]

ALARMS_UID = "anju-alarms"
# How far back "open" looks: an alarm whose last event is older is not counted. Unacknowledged
# alarms get an escalation reminder each interval, so only an alarm acknowledged and then left
# open for longer than this drops out.
OPEN_WINDOW = "30d"
_FILTER_VARS = ("estate", "building", "kind", "severity", "rule")

OpenState = Literal["open", "acknowledged"]
_RANKS = {"open": 0, "acknowledged": 1}  # state_rank of the alarms points (anju.alarms.influx)


def open_alarms_query(where: str, group_by: tuple[str, ...], state: OpenState = "open",
                      name: str = "open") -> str:
    """InfluxQL: alarms matching ``where`` whose state is ``state`` (``open``: not yet
    acknowledged; ``acknowledged``: acknowledged, not yet cleared), grouped by tags.

    An alarm's state is the highest ``state_rank`` of its points (0 open, 1 acknowledged,
    2 closed): the lifecycle only moves forward, and unlike ``last()`` the maximum does not
    depend on the points' times, which come from two clocks (the device's for clears, the
    receiving clock for acknowledgements and escalations).
    """
    g = ", ".join(ident(t) for t in group_by)
    rank = _RANKS[state]
    return (
        f"SELECT count(\"rank\") AS {ident(name)} FROM "
        f"(SELECT max(\"state_rank\") AS \"rank\" FROM \"alarms\" WHERE {where} "
        f"GROUP BY \"alarm_id\", {g}) "
        f"WHERE \"rank\" = {rank} GROUP BY {g}"
    )


def open_alarm_targets(where: str, group_by: tuple[str, ...], *, table: bool = False
                       ) -> list[Target]:
    """Two targets: alarms not yet acknowledged (A) and acknowledged but open (B)."""
    if table:
        return [q(open_alarms_query(where, group_by, "open", "unacknowledged"), "A",
                  table=True),
                q(open_alarms_query(where, group_by, "acknowledged", "acknowledged"), "B",
                  table=True)]
    alias = " ".join(f"$tag_{t}" for t in group_by)
    return [q(open_alarms_query(where, group_by, "open"), "A", alias=alias),
            q(open_alarms_query(where, group_by, "acknowledged"), "B",
              alias=f"{alias} (acknowledged)")]


def _annotation(name: str, event: str, color: str, enabled: bool) -> db.AnnotationQuery:
    return (
        db.AnnotationQuery()
        .name(name)
        .datasource(influx_ref())
        .enable(enabled)
        .icon_color(color)
        .target(
            InfluxQLAnnotation(
                "SELECT \"text\", \"rule\", \"severity\", \"estate\", "
                f"\"building\" FROM \"alarms\" WHERE \"event\" = '{event}' "
                f"AND {scope(*_FILTER_VARS)}")
            .text_column("text").tags_column("rule,severity,estate,building"))
    )


def alarms_dashboard() -> db.Dashboard:
    """Every alarm event: a table, annotations, counts by severity and rule."""
    where = scope(*_FILTER_VARS)
    columns = ", ".join(ident(c) for c in (
        "estate", "building", "kind", "rule", "severity", "event",
        "alarm_id", "state", "device", "floor", "zone", "value", "message"))
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
        .with_row(db.Row("Now"))
        .with_panel(severity_overrides(stat_panel(
            "Open, not acknowledged",
            f"Alarms whose last state (of events in the last {OPEN_WINDOW}) is open: raised "
            "and nobody has acknowledged them yet, by severity.",
            [q(open_alarms_query(where, ("severity",), "open"), alias="$tag_severity")],
            span=8, time_from=OPEN_WINDOW,
        )))
        .with_panel(severity_overrides(stat_panel(
            "Acknowledged, not yet cleared",
            f"Alarms acknowledged (in the last {OPEN_WINDOW}) whose condition has not cleared "
            "yet, by severity.",
            [q(open_alarms_query(where, ("severity",), "acknowledged"), alias="$tag_severity")],
            span=8, time_from=OPEN_WINDOW,
        )))
        .with_panel(severity_overrides(stat_panel(
            "Escalated in range",
            "Alarms (not reminders) escalated in the time range because nobody acknowledged "
            "them in time, by severity.",
            [q(f"SELECT count(distinct(\"alarm_id\")) FROM \"alarms\" "
               f"WHERE \"event\" = 'escalated' AND {where} GROUP BY \"severity\"",
               alias="$tag_severity")],
            span=8,
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
