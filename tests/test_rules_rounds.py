"""Patrol rounds (``patrol.missed``, a schedule rule) and e-bike charging
(``camera.ebike_charging``, the correlation ``fire.ebike_risk``): table-driven cases on
both engines, and the vectorised engine against the reference on random streams."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anju.devices.registry import Site, load_site
from anju.rules import ReferenceEngine, RuleEngine, load_rules
from anju.rules.schedule import DAY_MS
from tests.rules_support import SITE_YAML, batch_of, key, run_stream

MIN = 60_000
HOUR = 60 * MIN
# 2026-01-01T00:00+08:00: local midnight, so local hour h is MIDNIGHT + h * HOUR
MIDNIGHT = 1_767_196_800_000
NAN = math.nan

DEVICES = """\
device,kind,estate,building,floor,zone,params
s1,smoke,e1,b1,5,stair-A,
s2,smoke,e1,b1,5,lift-lobby,
s4,smoke,e1,b1,6,stair-A,
k1,camera,e1,b1,5,corridor,
k2,camera,e1,b1,6,corridor,
c1,camera,e1,b1,,facade-S,"{""mount_height_m"": 2.5, ""distance_m"": 25.0, ""tilt_deg"": 40.0, \
""focal_px"": 1500.0, ""cy_px"": 1080.0}"
p1,patrol,e1,b1,1,route-night,"{""every_min"": 60, ""from_hour"": 22, ""to_hour"": 2, \
""tolerance_min"": 10}"
p2,patrol,e1,b1,1,route-default,
p3,patrol,e1,b2,1,route-minute,"{""every_min"": 1, ""from_hour"": 0, ""to_hour"": 0, \
""tolerance_min"": 0.25}"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("rounds") / "site"
    root.mkdir()
    (root / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (root / "devices.csv").write_text(DEVICES, encoding="utf-8")
    return load_site(root)


Step = tuple[str, int, Any]  # ("r", ts, (device, fields)) or ("tick", now, None)


def _run(engine: Any, site: Site, steps: list[Step]) -> list[Any]:
    out: list[Any] = []
    for op, t, payload in steps:
        if op == "r":
            out.extend(engine.process(batch_of(site, [(payload[0], t, payload[1])]), t))
        else:
            out.extend(engine.tick(t))
    return out


def _both(site: Site, steps: list[Step]) -> list[tuple[str, str, str, int, int]]:
    """(rule, subject, event, ts, started) of both engines, which must agree."""
    rules = load_rules(site)
    fast = _run(RuleEngine(site, rules), site, steps)
    slow = _run(ReferenceEngine(site, rules), site, steps)
    assert sorted(key(t) for t in fast) == sorted(key(t) for t in slow)
    # silences between the cases' sparse readings are not what these tests are about
    return sorted((t.rule, t.subject, t.event, t.ts, t.started_at) for t in fast
                  if t.rule != "device.offline")


def hb(dev: str, t: int) -> Step:
    return ("r", t, (dev, {"event": "heartbeat"}))


def checkin(dev: str, t: int) -> Step:
    return ("r", t, (dev, {"event": "checkin", "guard_id": 7}))


def at(h: float) -> int:
    return MIDNIGHT + round(h * HOUR)


def every(dev: str, t0: int, t1: int, step: int = 5 * MIN) -> list[Step]:
    return [hb(dev, t) for t in range(t0, t1, step)]


def _merge(*parts: list[Step]) -> list[Step]:
    return sorted((s for p in parts for s in p), key=lambda s: s[1])


# -- patrol.missed ---------------------------------------------------------------------------
# p1: rounds at 22:00, 23:00, 00:00 and 01:00 local (not 02:00), each within ± 10 min.
NIGHT = [at(-2), at(-1), at(0), at(1)]

PATROL_CASES: list[tuple[str, list[Step], list[tuple[str, str, str, int, int]]]] = [
    ("every round checked in time",
     _merge(every("p1", at(-2.5), at(3)), [checkin("p1", t + 3 * MIN) for t in NIGHT]), []),
    ("a round not checked raises at due + tolerance, started at due",
     _merge(every("p1", at(-2.5), at(3)), [checkin("p1", t + 3 * MIN) for t in NIGHT[:2]],
            [checkin("p1", NIGHT[3])]),
     [("patrol.missed", "p1", "raised", at(0) + 10 * MIN, at(0))]),
    ("a check-in up to the tolerance early counts",
     _merge(every("p1", at(-2.5), at(3)), [checkin("p1", t - 10 * MIN) for t in NIGHT]), []),
    ("a check-in after the tolerance is a missed round",
     _merge(every("p1", at(-2.5), at(3)), [checkin("p1", t + 11 * MIN) for t in NIGHT]),
     [("patrol.missed", "p1", "raised", t + 10 * MIN, t) for t in NIGHT]),
    ("a point first heard during a round's tolerance is watched from the next round",
     _merge(every("p1", at(-2) + 5 * MIN, at(-0.5))),
     [("patrol.missed", "p1", "raised", at(-1) + 10 * MIN, at(-1))]),
    ("a tick moves the point's clock: a silent point's round is missed",
     [hb("p1", at(-0.5)), ("tick", at(0) + 10 * MIN, None), ("tick", at(0) + 11 * MIN, None)],
     [("patrol.missed", "p1", "raised", at(0) + 10 * MIN, at(0))]),
    ("no rounds by day",
     every("p1", at(2.5), at(21.5), 30 * MIN), []),
    ("a point without a schedule follows the rule's: every 2 h from 22:00, ± 30 min",
     _merge(every("p2", at(-2.5), at(3), 10 * MIN), [checkin("p2", at(-2) + 20 * MIN)]),
     [("patrol.missed", "p2", "raised", at(0) + 30 * MIN, at(0)),
      ("patrol.missed", "p2", "raised", at(2) + 30 * MIN, at(2))]),
]


@pytest.mark.parametrize(("steps", "want"), [c[1:] for c in PATROL_CASES],
                         ids=[c[0] for c in PATROL_CASES])
def test_patrol_missed(site: Site, steps: list[Step],
                       want: list[tuple[str, str, str, int, int]]) -> None:
    got = [x for x in _both(site, steps) if x[0] == "patrol.missed"]
    assert got == sorted(want)


def test_patrol_missed_details_and_lifecycle(site: Site) -> None:
    rules = load_rules(site)
    out = _run(RuleEngine(site, rules), site, [hb("p1", at(-0.5)), hb("p1", at(0.5))])
    (t,) = [x for x in out if x.rule == "patrol.missed"]
    assert t.is_event and t.severity == "minor" and t.roles == ("property",)
    assert t.details == {"due": "00:00", "due_ms": at(0), "tolerance_min": 10.0,
                         "last_checkin_ms": None}
    assert "00:00" in t.message


def test_a_site_can_override_the_default_schedule(tmp_path: Path, site: Site) -> None:
    rules = load_rules(site, overrides={"patrol.missed": {"tolerance_min": 60}})
    # watched from 21:30: the first round judged is 00:00 (22:00 − 60 min is before it)
    steps = _merge(every("p2", at(-2.5), at(3), 10 * MIN), [checkin("p2", at(-1) - MIN)])
    got = [(t.rule, t.ts) for t in _run(RuleEngine(site, rules), site, steps)
           if t.rule == "patrol.missed"]
    assert got == [("patrol.missed", at(0) + HOUR)]  # 02:00's ends at 03:00, the stream's end
    assert DAY_MS == 24 * HOUR


# -- e-bike charging ----------------------------------------------------------------------------
def ebike(dev: str, t: int) -> Step:
    return ("r", t, (dev, {"event": "ebike_charging", "confidence": 0.9}))


def warming(dev: str, t0: int, n: int = 8, rate_c_per_min: float = 12.0) -> list[Step]:
    """Readings every 10 s rising at ``rate``, then cooling to room temperature."""
    out = [("r", t0 + i * 10_000, (dev, {"smoke_db_m": 0.0,
                                          "temp_c": 20.0 + rate_c_per_min * i / 6}))
           for i in range(n)]
    out += [("r", t0 + (n + i) * 10_000, (dev, {"smoke_db_m": 0.0, "temp_c": 20.0}))
            for i in range(12)]
    return out


T = at(-3)
RISE = T + 30_000  # warming(T): three readings spanning 30 s at 12 °C/min
COOL = T + 80_000  # the first cool reading: the slope falls below 8 °C/min ...
CLEAR = COOL + 30_000  # ... and clears after the clear delay

EBIKE_CASES: list[tuple[str, list[Step], list[tuple[str, str, str, int, int]]]] = [
    ("a charging e-bike alone",
     [ebike("k1", T)], [("camera.ebike_charging", "k1", "raised", T, T)]),
    ("rising heat where an e-bike charges: the risk, cleared with the heat",
     _merge([ebike("k1", T - 10 * MIN)], warming("s1", T)),
     [("camera.ebike_charging", "k1", "raised", T - 10 * MIN, T - 10 * MIN),
      ("fire.ebike_risk", "e1/b1/5", "cleared", CLEAR, RISE),
      ("fire.ebike_risk", "e1/b1/5", "raised", RISE, RISE),
      ("heat.rate_of_rise", "s1", "cleared", CLEAR, RISE),
      ("heat.rate_of_rise", "s1", "raised", RISE, RISE)]),
    ("an e-bike seen while the heat rises",
     _merge(warming("s1", T), [ebike("k1", RISE + 20_000)]),
     [("camera.ebike_charging", "k1", "raised", RISE + 20_000, RISE + 20_000),
      ("fire.ebike_risk", "e1/b1/5", "cleared", CLEAR, RISE + 20_000),
      ("fire.ebike_risk", "e1/b1/5", "raised", RISE + 20_000, RISE + 20_000),
      ("heat.rate_of_rise", "s1", "cleared", CLEAR, RISE),
      ("heat.rate_of_rise", "s1", "raised", RISE, RISE)]),
    ("an e-bike seen just after the heat stopped rising: raised and cleared at once",
     _merge(warming("s1", T), [ebike("k1", CLEAR + 60_000)]),
     [("camera.ebike_charging", "k1", "raised", CLEAR + 60_000, CLEAR + 60_000),
      ("fire.ebike_risk", "e1/b1/5", "cleared", CLEAR + 60_000, CLEAR + 60_000),
      ("fire.ebike_risk", "e1/b1/5", "raised", CLEAR + 60_000, CLEAR + 60_000),
      ("heat.rate_of_rise", "s1", "cleared", CLEAR, RISE),
      ("heat.rate_of_rise", "s1", "raised", RISE, RISE)]),
    ("an e-bike on another floor is no risk here",
     _merge([ebike("k2", T)], warming("s1", T)),
     [("camera.ebike_charging", "k2", "raised", T, T),
      ("heat.rate_of_rise", "s1", "cleared", CLEAR, RISE),
      ("heat.rate_of_rise", "s1", "raised", RISE, RISE)]),
    ("an e-bike seen longer ago than the window",
     _merge([ebike("k1", T - 31 * MIN)], warming("s1", T)),
     [("camera.ebike_charging", "k1", "raised", T - 31 * MIN, T - 31 * MIN),
      ("heat.rate_of_rise", "s1", "cleared", CLEAR, RISE),
      ("heat.rate_of_rise", "s1", "raised", RISE, RISE)]),
    ("two detectors warming without an e-bike: a fire confirmed, no e-bike risk",
     _merge(warming("s1", T), warming("s2", T)),
     [("heat.rate_of_rise", d, ev, ts, RISE) for d in ("s1", "s2")
      for ev, ts in (("raised", RISE), ("cleared", CLEAR))]
     + [("smoke.fire_confirmed", "e1/b1/5", "raised", RISE, RISE),
        ("smoke.fire_confirmed", "e1/b1/5", "cleared", CLEAR, RISE)]),
]


@pytest.mark.parametrize(("steps", "want"), [c[1:] for c in EBIKE_CASES],
                         ids=[c[0] for c in EBIKE_CASES])
def test_ebike(site: Site, steps: list[Step], want: list[tuple[str, str, str, int, int]]
               ) -> None:
    assert _both(site, steps) == sorted(want)


def test_ebike_risk_is_worse_than_either_sign(site: Site) -> None:
    rules = load_rules(site)
    order = ("warning", "minor", "major", "critical")
    risk = rules.get("fire.ebike_risk")
    for member in risk.members:
        assert order.index(risk.severity) > order.index(rules.get(member).severity)
    assert "fire" in risk.roles


def test_falling_object_from_a_camera_without_calibration(site: Site) -> None:
    track = [[0, 100.0, 100.0], [100, 100.0, 120.0], [200, 100.0, 160.0], [300, 100.0, 220.0]]
    out = RuleEngine(site, load_rules(site)).process(
        batch_of(site, [("k1", T, {"event": "falling_object", "track": track})]))
    assert [(t.rule, t.details.get("error")) for t in out] == \
        [("camera.falling_object", "no calibration")]


# -- the vectorised engine against the reference ---------------------------------------------------
PATROL = st.one_of(st.just({"event": "heartbeat"}),
                   st.just({"event": "checkin", "guard_id": 3}),
                   st.just({"event": "heartbeat", "battery_pct": 50.0}))
CAMERA = st.fixed_dictionaries({"event": st.sampled_from(("heartbeat", "ebike_charging"))})
SMOKE = st.fixed_dictionaries({
    "smoke_db_m": st.sampled_from((0.0, 0.3)),
    "temp_c": st.sampled_from((20.0, 25.0, 30.0, 40.0, 60.0)),
})
READING = st.one_of(
    st.tuples(st.sampled_from(("p1", "p2", "p3")), PATROL),
    st.tuples(st.sampled_from(("k1", "k2")), CAMERA),
    st.tuples(st.sampled_from(("s1", "s2", "s4")), SMOKE),
)
# steps: ties, seconds, a round's tolerance, hours (rounds of p1 and p2), clock steps back
STEP = st.sampled_from((0, 0, 5_000, 10_000, 15_000, 30_000, 61_000, 600_000, 1_800_000,
                        3_600_000, -3_000, -120_000))
STREAM = st.lists(
    st.one_of(
        st.tuples(st.just("r"), STEP, READING),
        st.tuples(st.just("cut"), st.just(0), st.just(None)),
        st.tuples(st.just("tick"), STEP, st.just(None)),
    ),
    min_size=1, max_size=100,
)
STARTS = st.sampled_from((at(-2.2), at(-0.05), at(1.9), at(12)))


@settings(max_examples=int(os.environ.get("ANJU_HYPOTHESIS_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(start=STARTS, stream=STREAM)
def test_vectorised_engine_matches_reference_on_rounds_and_ebikes(
        site: Site, start: int, stream: list[Any]) -> None:
    rules = load_rules(site)
    fast = run_stream(RuleEngine(site, rules), site, stream, start=start, settle_ms=6 * HOUR)
    slow = run_stream(ReferenceEngine(site, rules), site, stream, start=start, settle_ms=6 * HOUR)
    assert sorted(fast) == sorted(slow)


def test_random_streams_reach_the_new_rules(site: Site) -> None:
    """The streams above are not vacuous: missed rounds and e-bike risks both happen."""
    rules = load_rules(site)
    steps = _merge(every("p3", at(-2.2), at(-2.0), 10_000), [ebike("k1", at(-2.1))],
                   warming("s1", at(-2.1) + 60_000))
    got = {x[0] for x in _both(site, steps)}
    assert {"patrol.missed", "fire.ebike_risk", "camera.ebike_charging"} <= got
    assert len(rules.of_type("schedule")) == 1
    assert not math.isnan(float(site.devices.param("every_min")[site.devices.index["p3"]]))
    assert NAN != NAN


# -- validation -----------------------------------------------------------------------------------
def test_a_schedule_rule_needs_its_schedule(tmp_path: Path, site: Site) -> None:
    from anju.errors import RuleError

    bad = tmp_path / "bad.yaml"
    bad.write_text("- {id: patrol.late, kind: patrol, type: schedule, "
                   "condition: 'event == \"checkin\"', params: {every_min: 60}, "
                   "severity: minor, roles: [property]}\n",
                   encoding="utf-8")
    with pytest.raises(RuleError, match="needs the params"):
        load_rules(site, [bad])


def test_a_checkin_without_its_guard_is_rejected(site: Site) -> None:
    from anju.devices.batch import BatchBuilder
    from anju.devices.decode import Decoder

    dec = Decoder(site)
    b = BatchBuilder()
    dec.decode("anju/e1/b1/patrol/p1", b'{"ts": 1767225600000, "event": "checkin"}', b)
    dec.decode("anju/e1/b1/patrol/p1",
               b'{"ts": 1767225600000, "event": "checkin", "guard_id": 4}', b)
    assert dict(dec.rejected) == {"missing_field": 1} and b.build().readings == 1


def test_a_recipe_sets_registry_params_of_named_devices_only() -> None:
    from anju.simulators.recipe import plan_recipe
    from anju.simulators.scenario import SiteRecipe

    plan = plan_recipe(SiteRecipe(estates=1, seed=1, params={"e001-b01-pt": {"every_min": 1}}))
    row = next(r for r in plan.devices if r[0] == "e001-b01-pt")
    assert row[6] is not None and row[6]["every_min"] == 1 and row[6]["from_hour"] == 22
    with pytest.raises(ValueError, match="not in the city"):
        plan_recipe(SiteRecipe(estates=1, seed=1, params={"e009-b01-pt": {"every_min": 1}}))
