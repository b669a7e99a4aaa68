"""The accountability report against a simulated month whose ground truth is known
(issue 19's done-when): every figure equals the truth, and the ranking is prompt, slow,
negligent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from anju.devices.registry import Site, load_site
from anju.report.figures import Report, compute
from anju.report.load import load_sqlite
from anju.report.period import parse_period
from anju.report.scope import scope_for
from anju.report.scoring import settings_from_site
from anju.simulators.month import MonthPlan, ground_truth, plan_month, run_month, write_month_site

PERIOD = ("2026-11-01", "2026-12-01")


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, MonthPlan, Path]:
    root = tmp_path_factory.mktemp("month")
    site = load_site(write_month_site(root / "site"))
    period = parse_period(*PERIOD)
    plan = plan_month(site, period.start_ms, period.end_ms)
    run_month(site, plan, root / "state")
    return site, plan, root / "state"


def _report(site: Site, state: Path, **scope: Any) -> Report:
    period = parse_period(*PERIOD)
    sc = scope_for(site, **scope)
    table = load_sqlite(state, period, sc.estates)
    return compute(site, sc, period, table, settings_from_site(site.report_settings))


def test_every_company_figure_equals_the_ground_truth(month: tuple[Site, MonthPlan, Path]
                                                      ) -> None:
    site, plan, state = month
    truth = ground_truth(site, plan)
    rows = {r["company"]: r for r in _report(site, state).tables["companies"]}
    assert set(rows) == set(truth["companies"])
    for company, want in truth["companies"].items():
        got = rows[company]
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, abs=1e-3), (company, key)
            else:
                assert got[key] == value, (company, key)
    # the simulated behaviour shows: the plan is not degenerate
    neg, prompt = rows["property-negligent"], rows["property-prompt"]
    assert neg["open_at_end"] > prompt["open_at_end"]
    assert neg["escalated"] > prompt["escalated"] > 0 or neg["escalated"] > 0
    assert neg["acked_by_supervisor"] > 0 and neg["open_at_start"] > 0


def test_maintenance_windows_are_not_counted_as_downtime(
        month: tuple[Site, MonthPlan, Path]) -> None:
    site, plan, state = month
    report = _report(site, state)
    assert report.meta["maintenance_windows"] == len(plan.windows) > 0
    hours = sum(r["device_hours"] for r in report.tables["companies"])
    devices = sum(r["devices"] for r in report.tables["companies"])
    assert hours < devices * 30 * 24  # the windows' device-hours are not registered time


def test_ranking_is_prompt_slow_negligent(month: tuple[Site, MonthPlan, Path]) -> None:
    site, plan, state = month
    report = _report(site, state)
    order = [r["company"] for r in report.tables["ranking"]]
    assert order == ground_truth(site, plan)["order"]
    levels = [r["suggested_level"] for r in report.tables["ranking"]]
    assert levels[0] != levels[-1]


def test_hot_spots_and_trapped_passengers_equal_the_truth(
        month: tuple[Site, MonthPlan, Path]) -> None:
    site, plan, state = month
    truth = ground_truth(site, plan)
    report = _report(site, state)
    got = {(r["estate"], r["building"], r["floor"]): r["count"]
           for r in report.tables["falling_objects"]}
    assert got == truth["falling_objects"]
    assert max(got.values()) >= 3  # each estate has a hot spot
    def key(x: tuple[str, float | None]) -> tuple[str, bool, float]:
        return (x[0], x[1] is None, x[1] or 0.0)

    trapped = sorted(((r["device"], r["ack_s"]) for r in report.tables["trapped"]), key=key)
    assert trapped == sorted(truth["trapped"], key=key)
    assert any(a is None for _, a in trapped) and any(a is not None for _, a in trapped)


def test_a_jurisdiction_scopes_the_report(month: tuple[Site, MonthPlan, Path]) -> None:
    site, _plan, state = month
    street = site.estates["e001"].street
    report = _report(site, state, jurisdiction=(("street", street),))
    want = {e for e, est in site.estates.items() if est.street == street}
    assert {r["estate"] for r in report.tables["estates"]} == want
    assert len(want) < len(site.estates)
    everyone = _report(site, state)
    mine = {r["company"]: r["alarms"] for r in report.tables["companies"]}
    assert sum(mine.values()) < sum(r["alarms"] for r in everyone.tables["companies"])


def test_a_team_sees_only_its_estates(month: tuple[Site, MonthPlan, Path]) -> None:
    site, _plan, state = month
    report = _report(site, state, team="property-slow")
    assert [r["company"] for r in report.tables["companies"]] == ["property-slow"]
    assert {r["estate"] for r in report.tables["estates"]} == {"e003", "e004"}
