"""The fire-lane and access-control kinds (issue 21, part A): their rules case by case,
the vectorised engine against the scalar reference on random streams of each, the
``count_if`` window they brought, and their simulators' normal traffic.

Each table case feeds readings (seconds after T0) one batch each, ticks the clock at the
listed times, and expects exactly the listed (rule, subject, event, seconds) transitions
from both engines.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anju.devices.registry import Site, load_site
from anju.errors import RuleError
from anju.kinds import KINDS
from anju.kinds.access.simulator import AccessFleet
from anju.kinds.firelane.simulator import FirelaneFleet
from anju.rules import ReferenceEngine, RuleEngine, load_rules
from anju.rules.expr import parse_expr
from anju.rules.program import Programs
from anju.simulators.city import plan_city, write_site
from anju.simulators.fleets import FleetContext
from tests.rules_support import SITE_YAML, T0, batch_of, key, run_stream

NAN = math.nan

DEVICES_CSV = """\
device,kind,estate,building,floor,zone,params
f1,firelane,e1,b1,,fire-lane,
d1,access,e1,b1,1,unit-door,
g1,access,e1,b2,1,main-gate,"{""held_open_s"": 120}"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("kinds-a") / "site"
    root.mkdir()
    (root / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (root / "devices.csv").write_text(DEVICES_CSV, encoding="utf-8")
    return load_site(root)


def lane(occupied: bool, vehicles: int = 1, occupied_s: float | None = None
         ) -> dict[str, Any]:
    out: dict[str, Any] = {"occupied": int(occupied), "vehicles": vehicles if occupied else 0}
    if occupied_s is not None:
        out["occupied_s"] = occupied_s
    return out


def door(event: str = "heartbeat", door_open: bool = False, open_s: float | None = 0,
         credential: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event, "door_open": int(door_open)}
    if open_s is not None:
        out["open_s"] = open_s
    if credential is not None:
        out["credential"] = credential
    return out


def every(dev: str, start: int, stop: int, step: int, fields: dict[str, Any]
          ) -> list[tuple[str, int, dict[str, Any]]]:
    return [(dev, s, fields) for s in range(start, stop, step)]


def propped(dev: str, start: int, stop: int) -> list[tuple[str, int, dict[str, Any]]]:
    """A door open from ``start``, reporting every 10 s how long, shut at ``stop``."""
    return [*((dev, s, door(door_open=True, open_s=s - start)) for s in range(start, stop, 10)),
            (dev, stop, door())]


Case = tuple[list[tuple[str, int, dict[str, Any]]], list[int], list[tuple[str, str, str, int]]]
CASES: dict[str, Case] = {
    # name: (readings [(device, s, fields)], ticks [s], expected [(rule, subject, event, s)])
    "fire lane blocked after five minutes, cleared 30 s after it is free": (
        [*every("f1", 0, 330, 30, lane(True)), ("f1", 330, lane(False))], [359, 360],
        [("firelane.blocked", "f1", "raised", 300), ("firelane.blocked", "f1", "cleared", 360)]),
    "a stop shorter than five minutes is not blocking": (
        [*every("f1", 0, 299, 30, lane(True)), ("f1", 299, lane(False))], [400], []),
    "blocked is judged on the clock between reports": (
        [("f1", 0, lane(True, 2))], [299, 300],
        [("firelane.blocked", "f1", "raised", 300)]),
    "the camera's own timer is believed at once": (
        [("f1", 0, lane(True, occupied_s=240)), ("f1", 30, lane(True, occupied_s=270)),
         ("f1", 60, lane(True, occupied_s=300))], [],
        [("firelane.blocked", "f1", "raised", 60)]),
    "a short gap in the occupation does not clear it": (
        [*every("f1", 0, 330, 30, lane(True)), ("f1", 330, lane(False)),
         ("f1", 350, lane(True)), ("f1", 380, lane(False))], [409, 410],
        [("firelane.blocked", "f1", "raised", 300), ("firelane.blocked", "f1", "cleared", 410)]),
    "door forced": (
        [("d1", 0, door("forced", True)), ("d1", 10, door(door_open=True, open_s=10)),
         ("d1", 20, door())], [100],
        [("access.forced", "d1", "raised", 0)]),
    "controller tampered with": (
        [("g1", 5, door("tamper"))], [], [("access.tamper", "g1", "raised", 5)]),
    "granted and heartbeats are quiet": (
        [("d1", 0, door("granted", credential="face")), ("d1", 3, door(door_open=True, open_s=3)),
         ("d1", 12, door()), ("d1", 60, door())], [200], []),
    "unit door held open past the default 60 s": (
        propped("d1", 0, 100), [129, 130],
        [("access.held_open", "d1", "raised", 60), ("access.held_open", "d1", "cleared", 130)]),
    "a gate's own held_open_s (120 s) replaces the default": (
        propped("g1", 0, 200), [230],
        [("access.held_open", "g1", "raised", 120), ("access.held_open", "g1", "cleared", 230)]),
    "open 59 s is not held open": (propped("d1", 0, 59), [200], []),
    "a controller that does not count open time is not judged": (
        every("d1", 0, 300, 10, door(door_open=True, open_s=None)), [400], []),
    "five denied within a minute": (
        [*every("d1", 0, 41, 10, door("denied", credential="card")),
         ("d1", 60, door()), ("d1", 110, door())], [139, 140],
        [("access.denied_burst", "d1", "raised", 40),
         ("access.denied_burst", "d1", "cleared", 140)]),
    "four denied within a minute is not a burst": (
        every("d1", 0, 31, 10, door("denied")), [200], []),
    "five denied spread over more than a minute is not a burst": (
        every("d1", 0, 65, 16, door("denied")), [200], []),
    "the window's edge is inclusive: 60 s apart is within a minute": (
        every("d1", 0, 61, 15, door("denied")), [],
        [("access.denied_burst", "d1", "raised", 60)]),
    "denied between other events still counts": (
        [("d1", 0, door("denied")), ("d1", 5, door("granted")), ("d1", 10, door("denied")),
         ("d1", 15, door()), ("d1", 20, door("denied")), ("d1", 25, door("denied")),
         ("d1", 30, door("forced", True)), ("d1", 35, door("denied", open_s=None))], [],
        [("access.forced", "d1", "raised", 30), ("access.denied_burst", "d1", "raised", 35)]),
    "bursts at two doors are counted apart": (
        [*every("d1", 0, 31, 10, door("denied")), *every("g1", 1, 32, 10, door("denied"))],
        [100], []),
}


def _play(engine: Any, site: Site, readings: list[Any], ticks: list[int]) -> list[Any]:
    events = sorted([(r[1], 0, r) for r in readings] + [(s, 1, None) for s in ticks],
                    key=lambda e: (e[0], e[1]))
    out: list[Any] = []
    for s, kind, r in events:
        if kind == 0:
            out.extend(engine.process(batch_of(site, [(r[0], T0 + s * 1000, r[2])])))
        else:
            out.extend(engine.tick(T0 + s * 1000))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_rule_case(site: Site, name: str) -> None:
    readings, ticks, expected = CASES[name]
    rules = load_rules(site)
    got = _play(RuleEngine(site, rules), site, readings, ticks)
    ref = _play(ReferenceEngine(site, rules), site, readings, ticks)
    assert [key(t) for t in got] == [key(t) for t in ref]
    seen = [(t.rule, t.subject, t.event, (t.ts - T0) // 1000) for t in got
            if t.rule != "device.offline"]
    assert seen == expected


def test_alarms_say_what_and_how_much(site: Site) -> None:
    rules = load_rules(site)
    got = _play(RuleEngine(site, rules), site,
                [("f1", 0, lane(True, 3, occupied_s=400)),
                 *every("d1", 0, 50, 10, door("denied")), *propped("g1", 0, 130)], [])
    by = {t.rule: t for t in got}
    lane_t = by["firelane.blocked"]
    assert lane_t.value == 3 and lane_t.details["occupied_s"] == 400
    assert lane_t.severity == "major" and list(lane_t.roles) == ["property"]
    assert "消防车通道" in lane_t.message and "fire lane blocked (3 vehicles)" in lane_t.message
    assert by["access.denied_burst"].value == 5 and by["access.denied_burst"].severity == "minor"
    assert by["access.held_open"].value == 120 and "held open" in by["access.held_open"].message


def test_severities_fit_a_residential_gate() -> None:
    sev = {r.id: (r.severity, r.roles) for r in load_rules().rules
           if r.kind in ("firelane", "access")}
    assert sev == {
        "firelane.blocked": ("major", ("property",)),
        "access.forced": ("major", ("property",)),
        "access.tamper": ("major", ("property",)),
        "access.held_open": ("minor", ("property",)),
        "access.denied_burst": ("minor", ("property",)),
    }


def test_thresholds_are_overridable_per_site(site: Site) -> None:
    rules = load_rules(site, overrides={"access.denied_burst": {"min_denied": 3},
                                        "access.held_open": {"default_s": 30},
                                        "firelane.blocked": {"for": 120}})
    got = _play(RuleEngine(site, rules), site,
                [*every("d1", 0, 21, 10, door("denied")), *propped("d1", 100, 150),
                 *every("f1", 0, 121, 30, lane(True))], [])
    assert [(t.rule, (t.ts - T0) // 1000) for t in got if t.event == "raised"] == [
        ("access.denied_burst", 20), ("firelane.blocked", 120), ("access.held_open", 130)]


# -- count_if ------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "problem"), [
    ('count_if(event == "denied") >= 5', "takes a condition and a window"),
    ('count_if(event == "denied", 0) >= 5', "window length"),
    ('count_if(event == "denied", 7200) >= 5', "window length"),
    ("count_if(1 == 1, 60) >= 5", "must read a field"),
    ("count_if(wmax(open_s, 10) > 5, 60) >= 1", "cannot use another window"),
    ('count_if(event == "opened", 60) >= 1', "enum field's values"),
    ("count_if(nothing, 60) >= 1", "unknown name"),
])
def test_count_if_refuses_what_it_cannot_mean(source: str, problem: str) -> None:
    with pytest.raises(RuleError, match=problem):
        parse_expr(source, KINDS["access"], {}, rule="t.t")


def test_count_if_fields_do_not_make_a_reading_invalid() -> None:
    e = parse_expr('count_if(event == "denied" and open_s > 5, 60) >= 1 and door_open',
                   KINDS["access"], {})
    assert e.required == {"door_open"} and {"event", "open_s"} <= e.fields
    (w,) = e.windows
    assert w.func == "count_if" and w.where is not None and w.seconds == 60
    assert w.value_scalar({"event": 2.0, "open_s": 6.0}) == 1.0
    assert w.value_scalar({"event": 2.0, "open_s": NAN}) == 0.0  # not measured: no count
    # the engine's column of the window: the condition compiled as a program
    progs = Programs(["event", "open_s"])
    assert w.where is not None
    p = progs.add(w.where, test=True)
    cols = np.array([[2.0, 2.0, 1.0], [6.0, NAN, 9.0]])
    assert progs.evaluate(p, cols).tolist() == [1.0, 0.0, 0.0]


# -- the vectorised engine against the reference on random streams --------------------------

LANE = st.fixed_dictionaries({
    "occupied": st.sampled_from((0, 1)),
    "vehicles": st.sampled_from((0, 1, 3)),
    "occupied_s": st.sampled_from((NAN, 0.0, 120.0, 299.0, 300.0, 900.0)),
})
DOOR = st.fixed_dictionaries({
    "event": st.sampled_from(("heartbeat", "granted", "denied", "denied", "denied", "forced",
                              "tamper")),
    "door_open": st.sampled_from((0, 1)),
    "open_s": st.sampled_from((NAN, 0.0, 10.0, 59.0, 60.0, 119.0, 120.0, 300.0)),
    "credential": st.sampled_from((None, "card", "face", "plate")),
})
READING = st.one_of(st.tuples(st.just("f1"), LANE),
                    st.tuples(st.sampled_from(("d1", "g1")), DOOR))
# steps straddle the rules' edges: 5 denied in 60 s, held open 60/120 s, blocked 300 s,
# the clear delay, offline after 180 s; and steps back (late readings)
STEP = st.sampled_from((0, 0, 1000, 5000, 10000, 12000, 15000, 30000, 60000, 61000, 120000,
                        200000, 300000, -3000))
STREAM = st.lists(
    st.one_of(
        st.tuples(st.just("r"), STEP, READING),
        st.tuples(st.just("cut"), st.just(0), st.just(None)),
        st.tuples(st.just("tick"), STEP, st.just(None)),
    ),
    min_size=1, max_size=150,
)


def _strip(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@settings(max_examples=int(os.environ.get("ANJU_HYPOTHESIS_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(stream=STREAM)
def test_vectorised_engine_matches_reference_on_lanes_and_doors(site: Site,
                                                                stream: list[Any]) -> None:
    rules = load_rules(site)
    fast = run_stream(RuleEngine(site, rules), site, stream)
    slow = run_stream(ReferenceEngine(site, rules), site, stream)
    assert sorted(fast) == sorted(slow)


# -- normal traffic ----------------------------------------------------------------------------

DAY_START_MS = 1_772_380_800_000  # 2026-03-02T00:00+08:00


def test_a_day_of_lanes_and_doors_has_life_in_it_and_stays_under_the_rules(
        tmp_path: Path) -> None:
    """Normal traffic is not silence: stops in the lane, residents let in, a few refused
    cards; yet every stop is shorter than five minutes and refusals never bunch up."""
    plan = plan_city(3, seed=5)
    plan.devices = [row for row in plan.devices if row[1] in ("firelane", "access")]
    write_site(plan, tmp_path)
    site = load_site(tmp_path)
    ctx = FleetContext(site, 5, DAY_START_MS, DAY_START_MS + 86_400_000)
    kinds = site.devices.kind
    lanes = FirelaneFleet(ctx, np.flatnonzero(kinds == list(KINDS).index("firelane")), [])
    doors = AccessFleet(ctx, np.flatnonzero(kinds == list(KINDS).index("access")), [])
    lr = lanes.advance(ctx.start_ms, ctx.end_ms)
    dr = doors.advance(ctx.start_ms, ctx.end_ms)
    assert len(lr) == 3 * 1440 and len(dr) == len(doors.devices) * 1440
    occupied = lr.cols["occupied"] > 0
    assert 10 < occupied.sum() < 0.1 * len(lr)
    assert lr.cols["occupied_s"].max() < 300
    events = KINDS["access"].field("event").choices
    ev = dr.cols["event"].astype(int)
    assert (ev == events.index("granted")).sum() > len(doors.devices) * 100
    denied = ev == events.index("denied")
    assert 0 < denied.sum() < len(doors.devices) * 10
    assert not (ev == events.index("forced")).any() and not (ev == events.index("tamper")).any()
    for dev in np.unique(dr.dev[denied]).tolist():
        ts = np.sort(dr.ts[denied & (dr.dev == dev)])
        assert (np.searchsorted(ts, ts + 60_001) - np.arange(ts.size)).max() <= 2
    assert dr.cols["open_s"].max() < 60


def test_replay_of_a_day_with_staged_incidents(tmp_path: Path) -> None:
    """Every incident type of the two kinds, staged on one day of a small city, replayed
    through the real pipeline path: each detected in its window, nothing else raised."""
    from anju.app.replay import replay
    from anju.simulators.scenario import Scenario, bind
    from anju.simulators.scoring import Observed, ground_truth, score
    from anju.simulators.traffic import Traffic, record

    plan = plan_city(1, seed=5)
    plan.devices = [row for row in plan.devices if row[1] in ("firelane", "access")]
    write_site(plan, tmp_path)
    site = load_site(tmp_path)
    doc = {"name": "lanes-and-doors", "duration_s": 86_400, "seed": 5, "incidents": [
        {"id": "lane-night", "type": "lane_blocked", "at": 3_600, "device": "e001-firelane",
         "params": {"duration_s": 1_800},
         "expect": [{"rule": "firelane.blocked", "device": "e001-firelane",
                     "within": [300, 302], "cleared": [1_830, 1_836]}]},
        {"id": "lane-morning", "type": "lane_blocked", "at": 30_000, "device": "e001-firelane",
         "params": {"since_s": 210, "duration_s": 400},
         "expect": [{"rule": "firelane.blocked", "device": "e001-firelane",
                     "within": [90, 91], "cleared": [430, 436]}]},
        {"id": "forced", "type": "door_forced", "at": 40_000, "device": "e001-b02-door",
         "expect": [{"rule": "access.forced", "device": "e001-b02-door", "within": [0, 1]}]},
        {"id": "propped", "type": "door_held_open", "at": 50_000, "device": "e001-b01-door",
         "expect": [{"rule": "access.held_open", "device": "e001-b01-door",
                     "within": [60, 61], "cleared": [210, 216]}]},
        {"id": "gate", "type": "door_held_open", "at": 60_000, "device": "e001-gate",
         "expect": [{"rule": "access.held_open", "device": "e001-gate",
                     "within": [120, 121], "cleared": [210, 216]}]},
        {"id": "cards", "type": "card_trying", "at": 70_000, "device": "e001-b03-door",
         "params": {"count": 5, "every_s": 14, "credential": "face"},
         "expect": [{"rule": "access.denied_burst", "device": "e001-b03-door",
                     "within": [56, 57]}]},
        {"id": "tamper", "type": "door_tamper", "at": 80_000, "device": "e001-gate",
         "expect": [{"rule": "access.tamper", "device": "e001-gate", "within": [0, 1]}]},
    ]}
    sc = Scenario.model_validate(doc)
    bound = bind(sc, site)
    buf = io.BytesIO()
    record(Traffic(site, start_ms=DAY_START_MS, duration_s=sc.duration_s, seed=sc.seed,
                   scenario=bound), buf)
    buf.seek(0)
    result = replay(site, load_rules(site), buf, tick_ms=1_000, max_batch=50_000)
    assert result.rejected == {}
    card = score(ground_truth(bound, DAY_START_MS, lifecycle=False),
                 [Observed(e.model_dump(mode="json")) for e in result.events],
                 silenced=bound.silenced(), until_ms=DAY_START_MS + bound.duration_ms)
    assert card.missing == [] and card.false == []
    assert card.perfect and card.detected == card.incidents == 7
