"""The report's figures as points of the ``report_monthly`` measurement, for Grafana.

One point per property company and one per estate of the report, stamped with the start of
the period (so a month is one instant on the dashboard's time axis, and writing the same
report again overwrites it: the series key and the time are the same):

- tags ``level`` (``company`` | ``estate``), ``scope`` (whose report: ``site``,
  ``team=…``, ``street=…`` …, see :func:`scope_key`), ``company``, and ``estate`` on
  estate points;
- fields: every figure of the row that is a number, as a float (a count is a float too, so
  that a field never changes type from one month to the next, which InfluxDB refuses);
  ``suggested_level`` and ``rank`` on company points; the estate's ``name``; the period's
  ``hours``. A figure that is null in the report (no acknowledgement: no p50) is absent.

Only the lines are built here, with the project's one line-protocol escaper
(:mod:`anju.ingest.lineproto`); the command or the demo writes them. Its dashboard is
``anju-report`` (:mod:`anju.dashboards.report`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from anju.ingest.lineproto import escape_key, format_float, quote_string, tag_value
from anju.report.figures import Report
from anju.report.scope import Scope

__all__ = ["MEASUREMENT", "report_lines", "scope_key"]

MEASUREMENT = "report_monthly"
# Strings kept as string fields; every other string of a row (district, street …) is left
# out: the dashboard does not chart them and the registry has them.
_STRING_FIELDS = ("suggested_level", "name")


def scope_key(scope: Scope | Mapping[str, Any]) -> str:
    """A short stable tag value for a report's scope: ``site`` for the whole site, else
    ``team=<id>`` and ``<level>=<name>`` joined by ``,`` (``team=property-e001,street=…``)."""
    if isinstance(scope, Scope):
        team, jurisdiction = scope.team, dict(scope.jurisdiction)
    else:
        team, jurisdiction = scope.get("team"), dict(scope.get("jurisdiction") or {})
    parts = ([f"team={team}"] if team else []) + [f"{k}={v}" for k, v in jurisdiction.items()]
    return ",".join(parts) or "site"


def _tag(value: str) -> str:
    return tag_value(value) or ""  # company, estate and scope are never empty


def _fields(row: Mapping[str, Any], skip: tuple[str, ...]) -> list[str]:
    out = []
    for key, value in row.items():
        if key in skip or value is None or isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            if not math.isfinite(value):
                continue  # line protocol has no NaN or infinity
            out.append(f"{escape_key(key)}={format_float(value)}")
        elif isinstance(value, str) and key in _STRING_FIELDS:
            out.append(f"{escape_key(key)}={quote_string(value)}")
    return out


def report_lines(report: Report) -> list[str]:
    """The report's company and estate rows as line protocol (ms precision)."""
    meta = report.meta
    ts = int(meta["period"]["from_ms"])
    hours = float(meta["period"]["hours"])
    scope = _tag(scope_key(meta["scope"]))
    rank = {r["company"]: r["rank"] for r in report.tables.get("ranking", [])}
    lines = []
    for row in report.tables.get("companies", []):
        tags = f"{MEASUREMENT},company={_tag(row['company'])},level=company,scope={scope}"
        fields = [*_fields(row, ("company",)), f"hours={format_float(hours)}"]
        if row["company"] in rank:
            fields.append(f"rank={format_float(rank[row['company']])}")
        lines.append(f"{tags} {','.join(fields)} {ts}")
    for row in report.tables.get("estates", []):
        tags = (f"{MEASUREMENT},company={_tag(row['company'])},estate={_tag(row['estate'])},"
                f"level=estate,scope={scope}")
        fields = [*_fields(row, ("company", "estate")), f"hours={format_float(hours)}"]
        lines.append(f"{tags} {','.join(fields)} {ts}")
    return lines
