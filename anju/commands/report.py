"""``anju report``: the accountability report of a period, as HTML, CSV and JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from anju.cliutil import JsonOpt, SiteOpt, emit_json, fail

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    """Adds ``anju report`` to the root app."""
    root.command("report")(report_cmd)


def report_cmd(
    site_dir: SiteOpt,
    start: Annotated[str, typer.Option("--from", help="first day (2026-11-01, local), an "
                                       "ISO date-time or ms")],
    end: Annotated[str, typer.Option("--to", help="day after the last (2026-12-01)")],
    out: Annotated[Path, typer.Option("--out", help="directory for report.html, report.json "
                                      "and the CSV files")],
    team: Annotated[str | None, typer.Option(
        "--team", help="only the estates this team covers (as its API token sees them)")] = None,
    jurisdiction: Annotated[str | None, typer.Option(
        "--jurisdiction", help="only estates of district=…, street=… or community=… "
                               "(comma-separated to combine)")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="directory of alarms.sqlite3 (default: ANJU_STATE_DIR)")] = None,
    timezone: Annotated[str | None, typer.Option(
        "--timezone", help="zone of the dates' midnights (default: ANJU_REPORT_TIMEZONE, "
                           "Asia/Shanghai)")] = None,
    influx: Annotated[bool, typer.Option(
        "--influx", help="also write the company and estate figures into InfluxDB "
                         "(ANJU_INFLUX_*), measurement report_monthly, for the Grafana "
                         "dashboard anju-report")] = False,
    json: JsonOpt = False,
) -> None:
    """Per property company and estate: acknowledgement times, escalations, what was left
    open, device availability, camera coverage, falling-object hot spots, trapped
    passengers, and a documented score with the credit level it suggests — evidence for the
    bureau's own rating, never its verdict (docs/report.md)."""
    from anju.config import load_settings
    from anju.devices.registry import load_site
    from anju.errors import AnjuError
    from anju.report.build import build_report
    from anju.report.load import StoreMissing
    from anju.report.output import write_report
    from anju.report.period import parse_period
    from anju.report.scope import parse_jurisdiction, scope_for

    t0 = time.perf_counter()
    try:
        period = parse_period(start, end, timezone or load_settings().report_timezone)
        site = load_site(site_dir)
        scope = scope_for(site, team=team, jurisdiction=parse_jurisdiction(jurisdiction)
                          if jurisdiction else ())
        source = state_dir if state_dir is not None else load_settings().state_dir
        report = build_report(site, source, period, scope)
    except (ValueError, StoreMissing, AnjuError) as exc:
        raise fail(exc) from None
    files = write_report(report, out)
    points = None
    if influx:
        import asyncio

        from anju.app.report_points import write_report_points

        try:
            points = asyncio.run(write_report_points(report, load_settings()))
        except AnjuError as exc:
            raise fail(exc) from None
    took = round(time.perf_counter() - t0, 3)
    if json:
        emit_json({"out": str(out), "files": sorted(p.name for p in files.values()),
                   "companies": len(report.tables["companies"]),
                   "estates": len(report.tables["estates"]),
                   "alarms": report.meta["alarms_read"],
                   "ranking": report.tables["ranking"], "seconds": took}
                  | ({"influx_points": points} if points is not None else {}))
        return
    typer.echo(f"{period.label(period.start_ms)} — {period.label(period.end_ms)}, "
               f"{scope.label}: {len(report.tables['companies'])} companies, "
               f"{len(report.tables['estates'])} estates, {report.meta['alarms_read']} "
               f"alarms ({took} s)")
    for r in report.tables["ranking"]:
        score = "—" if r["score"] is None else f"{r['score']:.1f}"
        typer.echo(f"  {r['rank']:>3}. {r['company']:<30} {score:>6}  "
                   f"{r['suggested_level'] or '—'}")
    typer.echo(f"written: {files['html']}")
    if points is not None:
        typer.echo(f"InfluxDB: {points} points of report_monthly (Grafana: anju-report)")
