"""The report's monthly figures in Grafana (issue 19): ``anju report --influx`` writes them as
``report_monthly`` points, and every query of the ``anju-report`` dashboard returns them —
the same numbers as ``report.json``, per company and per estate, for the scope chosen.

The month is the simulated one of test_report_month.py (three property companies, prompt,
slow and negligent, through the real alarm lifecycle); the InfluxDB is the session's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from anju.cli import app
from anju.dashboards.build import build_dashboards
from anju.dashboards.check import QueryOutcome, run_queries_sync
from anju.dashboards.macros import ALL, TimeRange, iter_influx_queries
from anju.dashboards.report import REPORT_MEASUREMENT, REPORT_UID
from anju.devices.registry import load_site
from anju.report.influx import MEASUREMENT, report_lines, scope_key
from anju.report.period import parse_period
from anju.report.scope import scope_for
from anju.services import LocalServices
from anju.simulators.month import plan_month, run_month, write_month_site

PERIOD = ("2026-11-01", "2026-12-01")
STREET = "street=解放街道"


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("month")
    site = load_site(write_month_site(root / "site"))
    period = parse_period(*PERIOD)
    run_month(site, plan_month(site, period.start_ms, period.end_ms), root / "state")
    return root


def _report(month: Path, out: Path, *extra: str) -> dict[str, Any]:
    """``anju report … --influx --json``; report.json as a dict."""
    result = CliRunner().invoke(app, [
        "report", "--site", str(month / "site"), "--state-dir", str(month / "state"),
        "--from", PERIOD[0], "--to", PERIOD[1], "--out", str(out), "--influx", "--json",
        *extra])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.output.splitlines()[-1])
    rep: dict[str, Any] = orjson.loads((out / "report.json").read_bytes())
    assert summary["influx_points"] == len(rep["companies"]) + len(rep["estates"])
    return rep


def _outcomes(services: LocalServices, db: str, scope: str) -> dict[str, QueryOutcome]:
    board = next(b.data for b in build_dashboards() if b.uid == REPORT_UID)
    period = parse_period(*PERIOD)
    rng = TimeRange(relative=None, from_ms=period.start_ms - 86_400_000, to_ms=period.end_ms)
    outs = run_queries_sync(services.influx.url, db, iter_influx_queries(board),
                            time_range=rng, variables={"scope": [scope], "company": list(ALL)},
                            screen_px=1920)
    return {o.query.where: o for o in outs}


def _rows(o: QueryOutcome) -> list[dict[str, Any]]:
    out = []
    for s in o.body["results"][0].get("series") or []:
        for v in s["values"]:
            out.append(s.get("tags", {}) | dict(zip(s["columns"], v, strict=True)))
    return out


def _same(got: dict[str, Any], want: dict[str, Any], columns: list[str], who: str) -> None:
    for c in columns:
        if c == "time":
            continue
        w = want.get(c)
        if isinstance(w, float | int) and not isinstance(w, bool):
            assert got[c] == pytest.approx(float(w), rel=1e-9), (who, c)
        else:
            assert got[c] == w, (who, c)


@pytest.mark.integration
def test_every_panel_shows_the_report_figures(month: Path, services: LocalServices,
                                              influx_db: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_INFLUX_URL", services.influx.url)
    monkeypatch.setenv("ANJU_INFLUX_DB", influx_db)
    site_rep = _report(month, tmp_path / "site")
    street_rep = _report(month, tmp_path / "street", "--jurisdiction", STREET)
    _report(month, tmp_path / "again")  # the same month again: overwritten, not added
    n = services.influx.query(f'SELECT count("alarms") FROM "{MEASUREMENT}" GROUP BY "scope"',
                              db=influx_db)
    counts = {s["tags"]["scope"]: s["values"][0][1] for s in n["results"][0]["series"]}
    assert counts == {"site": 3 + 6, STREET: len(street_rep["companies"]) + 3}

    for scope, rep in (("site", site_rep), (STREET, street_rep)):
        outs = _outcomes(services, influx_db, scope)
        assert len(outs) >= 10
        empty = [w for w, o in outs.items() if not o.ok or o.series == 0]
        assert not empty, (scope, empty, [outs[w].error for w in empty])
        start = rep["meta"]["period"]["from_ms"]
        rank = {r["company"]: r["rank"] for r in rep["ranking"]}
        # the companies table: one row per company, every column equal to report.json
        table = next(o for w, o in outs.items() if "'Companies'" in w)
        got = {r["company"]: r for r in _rows(table)}
        assert set(got) == {r["company"] for r in rep["companies"]}
        columns = table.body["results"][0]["series"][0]["columns"]
        assert len(columns) > 10
        for want in rep["companies"]:
            row = got[want["company"]]
            assert row["time"] == start
            _same(row, want | {"rank": rank[want["company"]]}, columns, want["company"])
        # the estates table likewise
        table = next(o for w, o in outs.items() if "'Estates'" in w)
        got = {r["estate"]: r for r in _rows(table)}
        assert set(got) == {r["estate"] for r in rep["estates"]}
        columns = table.body["results"][0]["series"][0]["columns"]
        for want in rep["estates"]:
            _same(got[want["estate"]], want, columns, want["estate"])
        # and the charts: alarms by severity, ack p50/p90, in-deadline share, escalations
        for title, fields in (("Alarms by severity", ("critical", "major", "minor", "warning")),
                              ("Acknowledgement time p50 / p90", ("ack_p50_s", "ack_p90_s")),
                              ("Acknowledged within the deadline", ("ack_in_deadline_share",)),
                              ("Escalated alarms", ("escalated",)),
                              ("Device availability", ("availability",)), ("Score", ("score",))):
            chart = next(o for w, o in outs.items() if f"'{title}'" in w)
            by = {r["company"]: r for r in _rows(chart)}
            for want in rep["companies"]:
                _same(by[want["company"]], want, list(fields), f"{title} {want['company']}")
    # a company's figures over one street are not its figures over the city
    site_alarms = {r["company"]: r["alarms"] for r in site_rep["companies"]}
    street_alarms = {r["company"]: r["alarms"] for r in street_rep["companies"]}
    assert all(street_alarms[c] < site_alarms[c] for c in street_alarms)


def test_points_name_the_scope_and_the_measurement_the_dashboard_reads(month: Path) -> None:
    site = load_site(month / "site")
    assert REPORT_MEASUREMENT == MEASUREMENT
    assert scope_key(scope_for(site)) == "site"
    assert scope_key(scope_for(site, team="property-slow",
                               jurisdiction=(("street", "解放街道"),))) == \
        "team=property-slow,street=解放街道"
    from anju.report.build import build_report

    rep = build_report(site, month / "state", parse_period(*PERIOD), scope_for(site))
    lines = report_lines(rep)
    assert len(lines) == len(rep.tables["companies"]) + len(rep.tables["estates"])
    first = lines[0]
    assert first.startswith(f"{MEASUREMENT},company=property-") and ",level=company," in first
    # counts are floats (a field never changes type), the level a string, the rank there
    assert re.search(r",alarms=\d+\.0,", first) and not re.search(r"=\d+i[, ]", first)
    assert 'suggested_level="' in first and ",rank=" in first
    assert first.endswith(f" {parse_period(*PERIOD).start_ms}")
    # a null figure is left out, never written as 0
    nulls = [r for r in rep.tables["estates"] if r["ack_p50_s"] is None]
    for r in nulls:
        line = next(x for x in lines if f",estate={r['estate']}," in x)
        assert "ack_p50_s=" not in line
