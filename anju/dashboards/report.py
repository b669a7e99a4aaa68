"""The monthly figures of the accountability report, per property company (issue 19).

``anju report … --influx`` (and the demo, for its run) writes the report's company and
estate rows as points of ``report_monthly``, one per company (or estate) and period, stamped
with the period's start (docs/report.md, :mod:`anju.report.influx`). This dashboard charts
them month by month: alarms by severity, acknowledgement time p50 / p90, the share
acknowledged within the escalation deadline, escalations, device availability and the score,
with the rows themselves as tables — the same numbers as ``report.json``, not recomputed.

A report's *scope* (the whole site, a team, a jurisdiction) is a tag: a company's figures
over a street differ from its figures over the city, so the dashboard shows one scope at a
time (``$scope``, one value, ``site`` first), and as many companies as ``$company`` selects.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.influxql import ident, influx_ref
from anju.dashboards.panels import (
    new_dashboard,
    q,
    table_panel,
    tag_variable,
    thresholds,
    timeseries_panel,
)

__all__ = ["REPORT_MEASUREMENT", "REPORT_UID", "report_dashboard"]

REPORT_UID = "anju-report"
# The measurement anju.report.influx writes (the two areas do not import each other; a test
# holds the names equal).
REPORT_MEASUREMENT = "report_monthly"
_M = ident(REPORT_MEASUREMENT)
_COMPANY_COLUMNS = ("rank", "score", "suggested_level", "alarms", "critical", "major", "minor",
                    "warning", "ack_p50_s", "ack_p90_s", "ack_in_deadline_share", "escalated",
                    "max_escalation_level", "open_at_end", "availability", "camera_coverage")
_ESTATE_COLUMNS = ("name", "alarms", "critical", "major", "minor", "warning", "ack_p50_s",
                   "ack_p90_s", "ack_in_deadline_share", "escalated", "open_at_end",
                   "availability")


def _where(level: str) -> str:
    return (f"\"level\" = '{level}' AND \"scope\" =~ /^$scope$/ AND "
            "\"company\" =~ /^$company$/ AND $timeFilter")


def _per_company(fields: tuple[str, ...]) -> str:
    cols = ", ".join(ident(f) for f in fields)
    return f"SELECT {cols} FROM {_M} WHERE {_where('company')} GROUP BY \"company\""


def _scope_variable() -> db.QueryVariable:
    # One scope at a time: "All" would put a company's city-wide and street-wide figures
    # on one chart. The whole site ("site") is the one selected as saved; where no site-wide
    # report was written, Grafana falls back to the first value.
    return (
        db.QueryVariable("scope")
        .label("Report scope")
        .datasource(influx_ref())
        .query(f"SHOW TAG VALUES FROM {_M} WITH KEY = \"scope\"")
        .multi(False)
        .include_all(False)
        .current(dash.VariableOption(selected=True, text="site", value="site"))
        .refresh(dash.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dash.VariableSort.ALPHABETICAL_ASC)
    )


def report_dashboard() -> db.Dashboard:
    """The ``anju-report`` dashboard."""
    share = thresholds("red", (0.8, "orange"), (0.95, "green"))
    d = (
        new_dashboard(REPORT_UID, "anju · 物业企业月度报告 / monthly report",
                      "The accountability report's figures per property company and month "
                      "(anju report --influx; docs/report.md): evidence for the bureau's own "
                      "credit rating, never its verdict.", ["report"])
        .time("now-1y", "now")
        .refresh("1h")
        .with_variable(_scope_variable())
        .with_variable(tag_variable("company", "Company", measurement=REPORT_MEASUREMENT,
                                    where=["scope"]))
        .with_row(db.Row("Per company, month by month"))
        .with_panel(timeseries_panel(
            "Score", "The report's score (0–100) of each company for each month; the credit "
            "level it suggests is in the table below. Weights: site.yaml `report:`.",
            [q(_per_company(("score",)), alias="$tag_company")],
            points=True, min_val=0, max_val=100,
            limits=thresholds("red", (60, "orange"), (80, "green"))))
        .with_panel(timeseries_panel(
            "Alarms by severity", "Alarms raised in the month, by severity.",
            [q(_per_company(("critical", "major", "minor", "warning")),
               alias="$tag_company $col")], bars=True))
        .with_panel(timeseries_panel(
            "Acknowledgement time p50 / p90",
            "The company's own acknowledgements, raise to acknowledgement, nearest-rank "
            "p50 and p90 (acknowledgements by the fire team or a supervisor are not its own).",
            [q(_per_company(("ack_p50_s", "ack_p90_s")), alias="$tag_company $col")],
            unit="s", points=True))
        .with_panel(timeseries_panel(
            "Acknowledged within the deadline",
            "Of the alarms the company had to answer (open at their escalation deadline, or "
            "answered before it), the share it acknowledged in time.",
            [q(_per_company(("ack_in_deadline_share",)), alias="$tag_company")],
            unit="percentunit", points=True, min_val=0, max_val=1, limits=share))
        .with_panel(timeseries_panel(
            "Escalated alarms", "Alarms escalated because nobody acknowledged them in time.",
            [q(_per_company(("escalated",)), alias="$tag_company")], bars=True))
        .with_panel(timeseries_panel(
            "Device availability",
            "Device-hours online over device-hours registered (maintenance windows left "
            "out), all kinds.",
            [q(_per_company(("availability",)), alias="$tag_company")],
            unit="percentunit", points=True, max_val=1,
            limits=thresholds("red", (0.99, "orange"), (0.999, "green"))))
        .with_row(db.Row("The report's rows"))
        .with_panel(table_panel(
            "Companies",
            "One row per company and month: the figures of report.json / companies.csv.",
            [q(_per_company(_COMPANY_COLUMNS), table=True)], height=8))
        .with_panel(table_panel(
            "Estates",
            "One row per estate and month: the figures of report.json / estates.csv.",
            [q(f"SELECT {', '.join(ident(c) for c in _ESTATE_COLUMNS)} FROM {_M} "
               f"WHERE {_where('estate')} GROUP BY \"company\", \"estate\"", table=True)],
            height=10))
    )
    return d
