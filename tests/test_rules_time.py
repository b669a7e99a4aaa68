"""Device clocks (DESIGN.md "Time"): the engines judge each device on its own clock.

* The vectorised engine and the scalar reference agree when devices' clocks are off and
  jump (random streams, hypothesis).
* Any constant clock offset per device changes nothing but the times on the alarms: the
  same readings with clocks off by minutes give the same transitions, shifted.
* A replay (``anju rules eval``) of a recording made on true clocks gives the alarms the
  live engine gives for the same readings from devices whose clocks are off.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anju.app.replay import replay
from anju.rules import ReferenceEngine, RuleEngine, load_rules
from tests.rules_support import T0, batch_of, key, small_site
from tests.test_rules_engine import READING, STEP

DEVICES = ("s1", "s2", "s3", "s4", "l1", "w1", "c1")
# offsets a device clock may have: slow by a day, by minutes, fast by up to 9 minutes
OFFSET = st.sampled_from((0, -86_400_000, -150_000, -31_000, -5_000, 2_000, 45_000,
                          540_000))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return small_site(tmp_path_factory.mktemp("time"))


STREAM = st.lists(
    st.one_of(
        st.tuples(st.just("r"), STEP, READING),
        st.tuples(st.just("cut"), st.just(0), st.just(None)),
        st.tuples(st.just("tick"), STEP, st.just(None)),
        # a device's clock is set to another offset: a step back or ahead
        st.tuples(st.just("skew"), st.just(0), st.tuples(st.sampled_from(DEVICES), OFFSET)),
    ),
    min_size=1, max_size=120,
)


def _drive(engine: Any, site: Any, stream: list[Any], offsets: dict[str, int]
           ) -> list[Any]:
    """Feeds ``stream`` on the true (receiving) clock; devices stamp readings with their
    own clock, ``offsets`` from the true one. Every device reports once at the start."""
    out: list[Any] = []
    off = dict(offsets)
    t = T0
    pending: list[tuple[str, int, dict[str, Any]]] = []
    first = {"s1": {"smoke_db_m": 0.0, "temp_c": 20.0}, "l1": {
        "floor": 1.0, "speed_mps": 0.0, "door_open": 0.0, "in_door_zone": 1.0,
        "occupied": 0.0}, "w1": {"level_pct": 50.0, "pressure_mpa": 0.3, "flow_m3h": 5.0,
                                 "pump_running": 1.0}, "c1": {"event": "heartbeat"}}
    out.extend(engine.process(batch_of(site, [
        (d, T0 + off.get(d, 0), first[d[0] + "1"]) for d in DEVICES]), T0))

    def flush() -> None:
        if pending:
            out.extend(engine.process(batch_of(site, pending), t))
            pending.clear()

    for op, step, payload in stream:
        t = max(T0, t + step)
        if op == "r":
            dev, fields = payload
            pending.append((dev, t + off.get(dev, 0), fields))
        elif op == "cut":
            flush()
        elif op == "skew":
            flush()
            off[payload[0]] = payload[1]
        else:
            flush()
            out.extend(engine.tick(t))
    flush()
    out.extend(engine.tick(t + 3_600_000))
    return out


@settings(max_examples=int(os.environ.get("ANJU_HYPOTHESIS_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAM, offsets=st.dictionaries(st.sampled_from(DEVICES), OFFSET))
def test_engines_agree_on_skewed_and_jumping_clocks(site: Any, stream: list[Any],
                                                    offsets: dict[str, int]) -> None:
    rules = load_rules(site)
    fast = RuleEngine(site, rules)
    slow = ReferenceEngine(site, rules)
    got = sorted(key(x) for x in _drive(fast, site, stream, offsets))
    want = sorted(key(x) for x in _drive(slow, site, stream, offsets))
    assert got == want
    assert fast.stats.late == slow.late
    assert fast.stats.clock_steps == slow.clock_steps


def _unshifted(transitions: list[Any], offsets: dict[str, int]) -> list[tuple[Any, ...]]:
    """Transitions on the true clock: each device's times less its offset. Group alarms
    (a floor of several devices) compare times across clocks, so they are left out."""
    out = []
    for x in transitions:
        if x.device is None:
            continue
        o = offsets.get(x.device, 0)
        k = key(x)
        details = tuple((n, repr(v - o if n == "last_seen" else v))
                        for n, v in sorted(x.details.items()))
        out.append((k[0] - o, k[1], k[2], k[3], k[4] - o, k[5], details, k[7]))
    return sorted(out)


@settings(max_examples=int(os.environ.get("ANJU_HYPOTHESIS_EXAMPLES", "200")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(stream=STREAM.map(lambda s: [x for x in s if x[0] != "skew"]),
       offsets=st.dictionaries(st.sampled_from(DEVICES), OFFSET, min_size=1))
def test_clock_offsets_change_only_the_times(site: Any, stream: list[Any],
                                             offsets: dict[str, int]) -> None:
    rules = load_rules(site)
    true = _drive(RuleEngine(site, rules), site, stream, {})
    skewed = _drive(RuleEngine(site, rules), site, stream, offsets)
    assert _unshifted(skewed, offsets) == _unshifted(true, {})


def _record(estate: str, readings: list[tuple[str, str, int, dict[str, Any]]]) -> bytes:
    lines = [orjson.dumps({"topic": f"anju/{estate}/b1/{kind}/{dev}", "payload": {
        "ts": ts, **fields}}) for kind, dev, ts, fields in readings]
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("offset_ms", [-150_000, 540_000])
def test_replay_of_true_clocks_matches_live_engine_on_skewed_clocks(
        tmp_path: Path, offset_ms: int) -> None:
    """`anju rules eval` on a recording (true clocks) and the live engine fed the same
    readings from an elevator whose clock is off: the same alarms, shifted."""
    site = small_site(tmp_path)
    rules = load_rules(site)
    readings: list[tuple[str, str, int, dict[str, Any]]] = []
    for s in range(240):  # 4 minutes at 1 Hz: stops of 2 s, then trapped for 90 s
        stopped = s % 5 in (3, 4) or 100 <= s < 190
        readings.append(("elevator", "l1", T0 + s * 1000, {
            "floor": 5, "speed_mps": 0.0 if stopped else 1.0, "door_open": False,
            "in_door_zone": stopped, "occupied": True}))
        if s % 30 == 0:
            readings.append(("smoke", "s1", T0 + s * 1000, {"smoke_db_m": 0.0,
                                                           "temp_c": 21.0}))
    result = replay(site, rules, io.BytesIO(_record("e1", readings)))
    eval_alarms = sorted((e.rule, e.event, e.ts, e.started_at) for e in result.events
                         if e.device == "l1")
    # stopped from s = 98 (a 2-second stop that went on): trapped 60 s later
    assert ("elevator.trapped", "raised", T0 + 158_000, T0 + 98_000) in eval_alarms

    engine = RuleEngine(site, rules)
    live = []
    for _kind, dev, ts, fields in readings:  # each reading arrives on the true clock
        own = ts + (offset_ms if dev == "l1" else 0)
        live += engine.process(batch_of(site, [(dev, own, fields)]), ts)
        live += engine.tick(ts)
    live_alarms = sorted((x.rule, x.event, x.ts - offset_ms, x.started_at - offset_ms)
                         for x in live if x.device == "l1")
    assert [a for a in live_alarms if a[0] != "device.offline"] == \
        [a for a in eval_alarms if a[0] != "device.offline"]
    assert not [a for a in live_alarms if a[0] == "device.offline"]
    assert engine.stats.late == 0


def test_a_clock_that_moves_ahead_on_a_partial_reading_brings_a_run_due_sooner(
        tmp_path: Path) -> None:
    """A tick skips a kind until the earliest time one of its runs can come due (the
    bound the pass keeps). A reading that does not measure the rule's field still moves
    its device's clock: a pump room whose clock jumps 20 s ahead (under a clock step)
    on a level-only reading has its 30 s low-pressure run due 20 s sooner on the
    receiving clock, and the tick must raise it then, as the reference engine does."""
    site = small_site(tmp_path)
    rules = load_rules(site)
    full = {"level_pct": 50.0, "pressure_mpa": 0.1, "flow_m3h": 5.0, "pump_running": 1.0}
    steps: list[tuple[str, int, int, dict[str, Any] | None]] = [
        ("r", T0, T0, full),  # low pressure: the run starts at T0 (due T0 + 30 s)
        ("tick", T0 + 1_000, 0, None),
        ("r", T0 + 2_000, T0 + 22_000, {"level_pct": 50.0}),  # clock now 20 s ahead
        ("tick", T0 + 9_000, 0, None),
        ("tick", T0 + 11_000, 0, None),  # the device's clock: T0 + 31 s
    ]

    def raised(engine: Any) -> list[int]:
        """The receiving time of each tick that raised water.pressure_low."""
        out = []
        for op, now, ts, fields in steps:
            got = (engine.process(batch_of(site, [("w1", ts, fields)]), now) if op == "r"
                   else engine.tick(now))
            out += [now for x in got if x.rule == "water.pressure_low" and op == "tick"]
        return out

    assert raised(ReferenceEngine(site, rules)) == [T0 + 11_000]
    assert raised(RuleEngine(site, rules)) == [T0 + 11_000]
