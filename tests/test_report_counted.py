"""The accountability report counts what rules ask it to (``report:`` in rules.yaml):
patrol rounds missed and e-bikes, per company and estate (issue 21), on a replay of the
night scenario through the rule engine and the alarm lifecycle."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from anju.alarms.lifecycle import AlarmManager
from anju.alarms.memory_store import MemoryAlarmStore
from anju.devices.batch import BatchBuilder
from anju.devices.decode import Decoder
from anju.devices.registry import load_site
from anju.report.figures import compute, counted_rules
from anju.report.html import render_html
from anju.report.load import load_store
from anju.report.period import parse_period
from anju.report.scope import scope_for
from anju.report.scoring import settings_from_site
from anju.rules import RuleEngine, load_rules
from anju.simulators.city import plan_city, write_site
from anju.simulators.scenario import bind, load_scenario
from anju.simulators.traffic import Traffic, record


def test_rules_declare_the_counted_columns(tmp_path: Path) -> None:
    plan = plan_city(1, seed=1)
    plan.devices = plan.devices[:5]
    site = load_site(write_site(plan, tmp_path))
    assert counted_rules(site) == {
        "patrol.missed": "patrol_missed", "camera.ebike_charging": "ebike",
        "elevator.ebike": "ebike_elevator", "fire.ebike_risk": "ebike_fire_risk"}


def test_night_report_counts_missed_rounds_and_ebikes(tmp_path: Path) -> None:
    sc = load_scenario("night")
    assert sc.site is not None and sc.start_ms is not None
    keep = {d for i in sc.incidents for d in i.device_ids}
    plan = plan_city(sc.site.estates, sc.site.seed)
    plan.devices = [row for row in plan.devices if row[0] in keep]
    site = load_site(write_site(plan, tmp_path / "site"))
    buf = io.BytesIO()
    record(Traffic(site, start_ms=sc.start_ms, duration_s=sc.duration_s, seed=sc.seed,
                   scenario=bind(sc, site)), buf)

    engine, store = RuleEngine(site, load_rules(site)), MemoryAlarmStore(keep_outbox=False)
    manager, decoder = AlarmManager(site, store), Decoder(site)
    for line in buf.getvalue().splitlines():
        rec = orjson.loads(line)
        builder = BatchBuilder()
        decoder.decode(rec["topic"], orjson.dumps(rec["payload"]), builder)
        batch = builder.build()
        if batch:
            manager.on_transitions(engine.process(batch))

    period = parse_period("2026-03-02", "2026-03-04")
    sc_ = scope_for(site)
    report = compute(site, sc_, period, load_store(store, period, sc_.estates),
                     settings_from_site(site.report_settings))
    estates = {r["estate"]: r for r in report.tables["estates"]}
    assert {e: (r["patrol_missed"], r["ebike"], r["ebike_fire_risk"], r["ebike_elevator"])
            for e, r in estates.items()} == {"e001": (1, 0, 0, 0), "e002": (2, 1, 1, 0)}
    companies = {r["company"]: r for r in report.tables["companies"]}
    assert companies["property-e002"]["patrol_missed"] == 2
    html = render_html(report)
    assert "patrol_missed (patrol.missed)" in html and "ebike_fire_risk" in html
