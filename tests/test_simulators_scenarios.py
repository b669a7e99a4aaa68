"""Scenarios as data: validation, binding to a site, and their ground truth checked by the
real rule engine on a replay (the demo's scorecard, offline)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from anju.app.replay import replay
from anju.cli import app
from anju.devices.registry import Site, load_site
from anju.errors import ConfigError
from anju.kinds.camera.simulator import camera_track
from anju.rules import load_rules
from anju.rules.trajectory import Calibration, fit_fall
from anju.simulators.city import plan_city, write_site
from anju.simulators.fleets import FLEETS, INCIDENT_TYPES, FleetContext
from anju.simulators.recipe import plan_recipe
from anju.simulators.scenario import Scenario, bind, bundled_scenarios, load_scenario
from anju.simulators.scoring import Observed, ground_truth, score
from anju.simulators.traffic import Traffic, record


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    sc = load_scenario("demo")
    assert sc.site is not None
    out = tmp_path_factory.mktemp("demo-city")
    write_site(plan_recipe(sc.site), out)
    return load_site(out)


def test_every_kind_has_a_fleet_and_incidents() -> None:
    from anju.kinds import KINDS

    assert set(FLEETS) == set(KINDS)
    kinds = {t.kind for t in INCIDENT_TYPES.values()}
    assert set(KINDS) <= kinds and "*" in kinds


def test_bundled_scenarios_bind_to_their_city(tmp_path: Path) -> None:
    names = bundled_scenarios()
    assert {"demo", "hour"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc.site is not None
        write_site(plan_recipe(sc.site), tmp_path / name)
        bound = bind(sc, load_site(tmp_path / name))
        assert len(bound.incidents) == len(sc.incidents)
    used = {i.type for name in names for i in load_scenario(name).incidents}
    assert used == set(INCIDENT_TYPES)  # every incident type is staged somewhere


def test_demo_is_short_and_covers_the_brief() -> None:
    sc = load_scenario("demo")
    assert 120 <= sc.duration_s <= 300
    types = {i.type for i in sc.incidents}
    assert {"fire", "trapped", "door_open_moving", "overspeed", "burst", "pump_fault", "ebike",
            "falling_object", "silent", "battery_low", "tamper"} <= types
    bottle = next(i for i in sc.incidents if i.type == "falling_object")
    assert bottle.floor == 17 and bottle.expect[0].floor == 17


def _replay_score(site: Site, sc: Scenario, devices: np.ndarray | None = None) -> Any:
    bound = bind(sc, site)
    assert sc.start_ms is not None
    buf = io.BytesIO()
    record(Traffic(site, start_ms=sc.start_ms, duration_s=sc.duration_s, seed=sc.seed,
                   scenario=bound, devices=devices), buf)
    buf.seek(0)
    result = replay(site, load_rules(site), buf)
    assert result.rejected == {}
    card = score(ground_truth(bound, sc.start_ms, lifecycle=False),
                 [Observed(e.model_dump(mode="json")) for e in result.events],
                 silenced=bound.silenced(), until_ms=sc.start_ms + bound.duration_ms)
    return card, result


def test_demo_scorecard_is_perfect_on_a_replay(demo_site: Site) -> None:
    card, result = _replay_score(demo_site, load_scenario("demo"))
    assert card.missing == [] and card.false == []
    # the supervision incidents' lifecycle parts are the live demo's (test_demo.py); the
    # maintenance window alone has nothing for the rule engine
    assert card.perfect and card.detected == card.incidents == 22
    bottle = next(e for e in result.events if e.rule == "camera.falling_object")
    assert bottle.details["floor"] == 17


def test_hour_scorecard_is_perfect_on_its_incident_devices(tmp_path: Path) -> None:
    sc = load_scenario("hour")
    assert sc.site is not None
    write_site(plan_city(sc.site.estates, sc.site.seed), tmp_path)
    full = load_site(tmp_path)
    # Only the devices the incidents involve (and, for the fires, their floors): an hour
    # of the whole city is the demo's job, not a unit test's.
    keep = {d for i in sc.incidents for d in i.device_ids}
    plan = plan_city(sc.site.estates, sc.site.seed)
    plan.devices = [row for row in plan.devices if row[0] in keep]
    write_site(plan, tmp_path / "part")
    part = load_site(tmp_path / "part")
    assert len(part.devices) < len(full.devices)
    card, _ = _replay_score(part, sc)
    assert card.missing == [] and card.false == [] and card.detected == 28


def test_falling_object_tracks_fit_their_floor(demo_site: Site) -> None:
    for name in bundled_scenarios():
        sc = load_scenario(name)
        if sc.site is None or (sc.site.estates, sc.site.seed) != (2, 7):
            continue
        bound = bind(sc, demo_site)
        ctx = FleetContext(demo_site, sc.seed, 0, bound.duration_ms)
        for inc in bound.incidents:
            if inc.type != "falling_object":
                continue
            dev = inc.devices[0]
            d = demo_site.devices
            cal = Calibration.from_params({n: float(d.param(n)[dev]) for n in (
                "mount_height_m", "distance_m", "tilt_deg", "focal_px", "cy_px")})
            b = demo_site.buildings[int(d.building[dev])]
            fit = fit_fall(camera_track(ctx, inc), cal, b.floors, b.floor_height_m)
            assert fit.floor == inc.floor


# -- validation: one bad scenario per rule ------------------------------------------------
_GOOD: dict[str, Any] = {
    "name": "t", "duration_s": 300,
    "incidents": [{"id": "a", "type": "tamper", "at": 60, "device": "e001-b01-f3-a",
                   "expect": [{"rule": "smoke.tamper", "device": "e001-b01-f3-a",
                               "within": [30, 45]}]}],
}


T_START = 1_772_409_600_000


def _with(**changes: Any) -> dict[str, Any]:
    doc = orjson.loads(orjson.dumps(_GOOD))
    doc["incidents"][0].update(changes)
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    (_with(type="meteor"), "unknown incident type"),
    (_with(devices=["e001-b01-f3-b"]), "exactly one of device or devices"),
    (_with(params={"duration_s": -1}), "greater than 0"),
    (_with(params={"colour": "red"}), "Extra inputs"),
    (_with(expect=[]), "at least 1"),
    (_with(expect=[{"rule": "smoke.tamper", "within": [0, 1]}]), "exactly one of device"),
    (_with(expect=[{"rule": "smoke.tamper", "group": "e001/b01", "within": [0, 1]}]),
     "estate/building/floor"),
    (_with(expect=[{"rule": "smoke.tamper", "device": "x", "within": [5, 1]}]), "lo ≤ hi"),
    (_with(at=400), "after the end"),
    (_with(type="falling_object", device="e001-b01-cam-S"), "needs `floor`"),
    (_with(type="fire", device=None, devices=[f"d{i}" for i in range(20)]), "involves"),
])
def test_invalid_scenarios(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_scenario(path)


@pytest.mark.parametrize(("changes", "message"), [
    ({"device": "nope"}, "not in the site"),
    ({"device": "e001-b01-L1"}, "happens to a smoke"),
    ({"type": "trapped", "device": "e001-b01-L1", "at": 10, "params": {}}, "at ≥ 30"),
    ({"type": "falling_object", "device": "e001-b01-cam-S", "floor": 99, "params": {}},
     "not in building"),
    ({"type": "fire", "device": None, "devices": ["e001-b01-f3-a", "e001-b01-f4-a"],
      "params": {}}, "one floor"),
])
def test_scenarios_that_do_not_fit_the_site(demo_site: Site, changes: dict[str, Any],
                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bind(Scenario.model_validate(_with(**changes)), demo_site)


def test_overlapping_episodes_on_one_car_are_refused(demo_site: Site) -> None:
    doc = _with(type="power_failure", device="e001-b01-L1", params={})
    second = dict(doc["incidents"][0], id="b", at=120)
    doc["incidents"].append(second)
    with pytest.raises(ConfigError, match="overlaps"):
        bind(Scenario.model_validate(doc), demo_site)


def test_unknown_scenario_names_the_bundled_ones() -> None:
    with pytest.raises(ConfigError, match="demo"):
        load_scenario("no-such-scenario")


def test_cli_truth_and_score(demo_site: Site, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["simulate", "truth", "--site", str(demo_site.root),
                              "--scenario", "demo", "--json"])
    assert res.exit_code == 0, res.output
    truth = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert truth["incidents"] == 23 and len(truth["expected"]) == 33

    rec = tmp_path / "demo.jsonl"
    res = runner.invoke(app, ["simulate", "run", "--site", str(demo_site.root), "--scenario",
                              "demo", "--record", str(rec), "--json"])
    assert res.exit_code == 0, res.output
    summary = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert summary["messages"] == len(rec.read_bytes().splitlines())

    alarms = tmp_path / "alarms.jsonl"
    res = runner.invoke(app, ["rules", "eval", "--site", str(demo_site.root), "--input",
                              str(rec), "--output", str(alarms), "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["simulate", "score", "--site", str(demo_site.root),
                              "--scenario", "demo", "--events", str(alarms), "--json"])
    assert res.exit_code == 0, res.output
    card = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert card["detected"] == 22 and card["missed"] == [] and card["false_alarms"] == 0

    res = runner.invoke(app, ["simulate", "scenarios", "--json"])
    assert res.exit_code == 0
    assert {s["name"] for s in orjson.loads(res.stdout)["scenarios"]} >= {"demo", "hour"}


def test_supervision_incidents_bind_and_route_through_the_gateway(demo_site: Site) -> None:
    doc = _with(type="gateway_silent", device=None, building="e001/b12", at=5,
                params={"duration_s": 10},
                expect=[{"rule": "gateway.offline", "device": "e001-b12-gw", "within": [0, 9]}])
    bound = bind(Scenario.model_validate(doc), demo_site)
    b12 = {d for d in demo_site.devices.ids if d.startswith("e001-b12-")}
    assert bound.silenced() == b12 and len(b12) > 40
    traffic = Traffic(demo_site, start_ms=T_START, duration_s=20, scenario=bound)
    msgs = list(traffic.messages())
    batches = [m for m in msgs if "/batch/" in m.topic]
    assert batches and {m.topic for m in batches} == {"anju/e001/b12/batch/e001-b12-gw"}
    assert not any(m.topic.startswith("anju/e001/b12/") and "/batch/" not in m.topic
                   for m in msgs)  # the building only through its gateway
    assert all(b"device" not in m.payload for m in msgs if "/batch/" not in m.topic)
    quiet = [m for m in batches if T_START + 5_000 <= m.ts < T_START + 15_000]
    assert quiet == [] and any(m.ts >= T_START + 15_000 for m in batches)


@pytest.mark.parametrize(("changes", "message"), [
    ({"type": "gateway_silent", "device": None, "building": "e001/b99", "params": {}},
     "building 'e001/b99' is not in the site"),
    ({"type": "maintenance", "device": "e001-b01-f3-a", "params": {"overdue": True}},
     "only an elevator's maintenance can be overdue"),
    ({"expect": [{"rule": "smoke.tamper", "device": "e001-b01-f3-a", "within": [0, 1],
                  "to": ["nobody"]}]}, "expected team 'nobody'"),
    ({"expect": [{"rule": "device.offline", "building": "e001/b99", "within": [0, 1]}]},
     "expected building 'e001/b99'"),
])
def test_supervision_that_does_not_fit_the_site(demo_site: Site, changes: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bind(Scenario.model_validate(_with(**changes)), demo_site)


@pytest.mark.parametrize(("expect", "message"), [
    ({"rule": "x.y", "device": "d", "building": "e1/b1", "within": [0, 1]}, "exactly one"),
    ({"rule": "x.y", "building": "e1", "within": [0, 1]}, "estate/building"),
    ({"rule": "x.y", "device": "d", "within": [0, 1], "delivered": False, "to": ["t"]},
     "tells nobody"),
    ({"rule": "x.y", "device": "d", "within": [0, 1],
      "escalated": [{"level": 1, "after": [0, 1]}, {"level": 1, "after": [2, 3]}]}, "repeat"),
])
def test_invalid_supervision_expectations(expect: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    from anju.simulators.scenario import Expect

    with pytest.raises(ValidationError, match=message):
        Expect.model_validate(expect)
