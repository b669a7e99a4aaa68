"""The vectorised engine against the scalar reference engine on random streams."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anju.rules import ReferenceEngine, RuleEngine, load_rules
from tests.rules_support import T0, batch_of, key, run_stream, small_site

NAN = math.nan


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return small_site(tmp_path_factory.mktemp("eng"))


def _opt(*values: float) -> st.SearchStrategy[float]:
    return st.sampled_from((NAN, *values))


# values straddle every threshold of the catalogue
SMOKE = st.fixed_dictionaries({
    "smoke_db_m": st.sampled_from((0.0, 0.14, 0.15, 0.3)),
    "temp_c": st.sampled_from((20.0, 25.0, 35.0, 56.9, 57.0, 80.0)),
    "battery_pct": _opt(19.0, 20.0, 80.0),
    "tamper": _opt(0.0, 1.0),
})
ELEVATOR = st.fixed_dictionaries({
    "floor": st.sampled_from((-2.0, -1.0, 0.0, 5.0, 12.0, 13.0)),
    "speed_mps": st.sampled_from((0.0, 0.05, 0.3, 0.31, 1.5, 1.73, -2.0)),
    "door_open": st.sampled_from((0.0, 1.0)),
    "in_door_zone": st.sampled_from((0.0, 1.0)),
    "occupied": st.sampled_from((0.0, 1.0)),
    "alarm_button": _opt(0.0, 1.0),
    "power_ok": _opt(0.0, 1.0),
    "accel_rms_mg": _opt(100.0, 151.0),
    "ebike": _opt(0.0, 1.0),
})
WATER = st.fixed_dictionaries({
    "level_pct": st.sampled_from((10.0, 50.0, 96.0)),
    "pressure_mpa": st.sampled_from((0.1, 0.2, 0.3, 0.45, 0.65)),
    "flow_m3h": st.sampled_from((0.0, 5.0, 10.0, 20.0)),
    "pump_running": st.sampled_from((0.0, 1.0)),
    "pump_fault": _opt(0.0, 1.0),
    "chlorine_mg_l": _opt(0.01, 0.5, 3.0),
    "turbidity_ntu": _opt(0.5, 2.0),
    "ph": _opt(6.0, 7.0, 9.0),
})
CAMERA = st.fixed_dictionaries({"event": st.sampled_from(("heartbeat", "obstructed"))})

READING = st.one_of(
    st.tuples(st.sampled_from(("s1", "s2", "s3", "s4")), SMOKE),
    st.tuples(st.just("l1"), ELEVATOR),
    st.tuples(st.just("w1"), WATER),
    st.tuples(st.just("c1"), CAMERA),
)
# time steps: ties, seconds, durations' edges, silences long enough to go offline, and
# steps back in time (late readings)
STEP = st.sampled_from((0, 0, 500, 1000, 4000, 5000, 10000, 30000, 61000, 200000, 650000,
                        -3000))
STREAM = st.lists(
    st.one_of(
        st.tuples(st.just("r"), STEP, READING),
        st.tuples(st.just("cut"), st.just(0), st.just(None)),  # batch boundary
        st.tuples(st.just("tick"), STEP, st.just(None)),  # a clock tick, then a boundary
    ),
    min_size=1, max_size=120,
)


# ANJU_HYPOTHESIS_EXAMPLES=5000 for a deeper search than the suite's
@settings(max_examples=int(os.environ.get("ANJU_HYPOTHESIS_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAM)
def test_vectorised_engine_matches_reference(site: Any, stream: list[Any]) -> None:
    rules = load_rules(site)
    fast = run_stream(RuleEngine(site, rules), site, stream)
    slow = run_stream(ReferenceEngine(site, rules), site, stream)
    assert sorted(fast) == sorted(slow)


@settings(max_examples=100, deadline=None)
@given(stream=STREAM)
def test_output_is_ordered_by_ts_within_each_call(site: Any, stream: list[Any]) -> None:
    engine = RuleEngine(site, load_rules(site))
    t = T0
    for op, step, payload in stream:
        t = max(T0, t + step)
        got = engine.process(batch_of(site, [(payload[0], t, payload[1])])) if op == "r" \
            else engine.tick(t)
        assert [x.ts for x in got] == sorted(x.ts for x in got)


def test_one_batch_or_many_gives_the_same_alarms(site: Any) -> None:
    """A duration split across batches raises at the same time as within one batch."""
    rules = load_rules(site)
    readings = [("s1", T0 + i * 2000, {"smoke_db_m": 0.3, "temp_c": 22.0}) for i in range(10)]
    whole = RuleEngine(site, rules).process(batch_of(site, readings))
    split_engine = RuleEngine(site, rules)
    split = []
    for r in readings:
        split.extend(split_engine.process(batch_of(site, [r])))
    assert [key(x) for x in whole] == [key(x) for x in split]
    assert [(x.rule, x.ts) for x in whole] == [("smoke.alarm", T0 + 10_000)]


def test_late_readings_are_counted_not_applied(site: Any) -> None:
    engine = RuleEngine(site, load_rules(site))
    engine.process(batch_of(site, [("s1", T0 + 10_000, {"smoke_db_m": 0.0, "temp_c": 22.0})]))
    got = engine.process(batch_of(site, [("s1", T0 + 5_000, {"smoke_db_m": 0.0,
                                                             "temp_c": 99.0})]))
    assert engine.stats.late == 1
    assert not [t for t in got if t.rule == "heat.fixed"]


def test_within_a_batch_readings_are_applied_in_time_order(site: Any) -> None:
    """Arrival order inside a batch does not matter: readings are sorted by time."""
    rules = load_rules(site)
    rs = [("s1", T0 + 12_000, {"smoke_db_m": 0.3, "temp_c": 22.0}),
          ("s1", T0, {"smoke_db_m": 0.3, "temp_c": 22.0})]
    got = RuleEngine(site, rules).process(batch_of(site, rs))
    assert [(t.rule, t.ts, t.started_at) for t in got] == [("smoke.alarm", T0 + 10_000, T0)]


def test_silent_device_goes_offline_on_the_clock(site: Any) -> None:
    engine = RuleEngine(site, load_rules(site))
    engine.process(batch_of(site, [("w1", T0, {"level_pct": 50.0, "pressure_mpa": 0.3,
                                               "flow_m3h": 5.0, "pump_running": 1.0})]))
    assert not [t for t in engine.tick(T0 + 30_000) if t.device == "w1"]
    got = [t for t in engine.tick(T0 + 30_001) if t.device == "w1"]
    assert [(t.rule, t.event, t.ts) for t in got] == [("device.offline", "raised", T0 + 30_000)]
    back = engine.process(batch_of(site, [("w1", T0 + 40_000, {
        "level_pct": 50.0, "pressure_mpa": 0.3, "flow_m3h": 5.0, "pump_running": 1.0})]))
    assert [(t.rule, t.event, t.ts) for t in back] == [("device.offline", "cleared", T0 + 40_000)]


def test_partition_only_judges_its_estates(tmp_path: Path) -> None:
    site = small_site(tmp_path)
    engine = RuleEngine(site, load_rules(site), estates=[])
    got = engine.process(batch_of(site, [("s1", T0, {"smoke_db_m": 0.0, "temp_c": 90.0})]))
    assert got == [] and engine.tick(T0 + 10**7) == []
