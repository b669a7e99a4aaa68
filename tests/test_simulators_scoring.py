"""The scorecard on hand-made alarm events: detection, misses, false alarms, latency."""

from __future__ import annotations

from typing import Any

from anju.simulators.scoring import Observed, Truth, score

T0 = 1_772_409_600_000


def _truth() -> list[Truth]:
    return [
        Truth("fire", "smoke.alarm", "s-a", None, T0 + 10_000, T0 + 30_000),
        Truth("fire", "smoke.fire_confirmed", None, ("e1", "b1", 12), T0 + 50_000, T0 + 75_000),
        Truth("fire", "heat.fixed", "s-a", None, T0 + 100_000, T0 + 140_000, optional=True),
        Truth("bottle", "camera.falling_object", "cam", None, T0, T0 + 2_000, floor=17),
        Truth("silent", "device.offline", "s-x", None, T0 + 150_000, T0 + 200_000),
    ]


def _ev(rule: str, ts: int, device: str | None = None, event: str = "raised",
        alarm_id: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"alarm_id": alarm_id or f"{rule}/{device}/{ts}", "event": event, "rule": rule,
            "device": device, "estate": "e1", "building": "b1", "floor": kw.pop("floor", None),
            "ts": ts, "details": kw.pop("details", {}), **kw}


def _all_detected() -> list[dict[str, Any]]:
    return [
        _ev("smoke.alarm", T0 + 15_000, "s-a", floor=12),
        _ev("smoke.fire_confirmed", T0 + 55_000, floor=12),
        _ev("camera.falling_object", T0 + 500, "cam", details={"floor": 17}),
        _ev("device.offline", T0 + 182_000, "s-x"),
    ]


def test_perfect() -> None:
    card = score(_truth(), [Observed(e) for e in _all_detected()], silenced={"s-x"})
    assert (card.incidents, card.detected, card.missed, card.false_alarms) == (3, 3, [], 0)
    assert card.perfect
    assert card.detection_latency_ms == {"p50": None, "max": None}  # no wall clock: replay


def test_a_missing_expectation_misses_its_incident() -> None:
    events = [e for e in _all_detected() if e["rule"] != "smoke.fire_confirmed"]
    card = score(_truth(), [Observed(e) for e in events])
    assert card.missed == ["fire"] and card.detected == 2
    assert card.missing == [{"incident": "fire", "rule": "smoke.fire_confirmed",
                             "subject": "e1/b1/12", "window_ms": [T0 + 50_000, T0 + 75_000]}]


def test_outside_the_window_is_a_miss_and_a_false_alarm() -> None:
    events = _all_detected()
    events[0] = _ev("smoke.alarm", T0 + 31_000, "s-a")
    card = score(_truth(), [Observed(e) for e in events])
    assert card.missed == ["fire"] and card.false_alarms == 1
    assert card.false[0]["rule"] == "smoke.alarm"


def test_wrong_floor_is_not_a_detection() -> None:
    events = _all_detected()
    events[2] = _ev("camera.falling_object", T0 + 500, "cam", details={"floor": 16})
    card = score(_truth(), [Observed(e) for e in events])
    assert card.missed == ["bottle"] and card.false_alarms == 1


def test_group_subject_needs_no_device_and_the_right_floor() -> None:
    events = _all_detected()
    events[1] = _ev("smoke.fire_confirmed", T0 + 55_000, floor=11)
    assert score(_truth(), [Observed(e) for e in events]).missed == ["fire"]
    events[1] = _ev("smoke.fire_confirmed", T0 + 55_000, "s-a", floor=12)
    assert score(_truth(), [Observed(e) for e in events]).missed == ["fire"]


def test_optional_expectations_are_neither_missed_nor_false() -> None:
    events = [*_all_detected(), _ev("heat.fixed", T0 + 120_000, "s-a")]
    card = score(_truth(), [Observed(e) for e in events])
    assert card.perfect


def test_false_alarms_count_once_per_alarm_and_only_raised() -> None:
    stray = _ev("elevator.vibration", T0 + 90_000, "l-1", alarm_id="A1")
    events = [*_all_detected(), stray, dict(stray, teams=["fire"]),  # same alarm, 2 teams
              dict(stray, event="cleared", ts=T0 + 130_000),
              dict(stray, event="escalated", ts=T0 + 400_000)]
    card = score(_truth(), [Observed(e) for e in events])
    assert card.false_alarms == 1 and not card.perfect


def test_offline_of_a_silenced_device_is_expected_whenever_it_comes() -> None:
    events = [*_all_detected(), _ev("device.offline", T0 + 400_000, "s-x", alarm_id="late")]
    assert score(_truth(), [Observed(e) for e in events], silenced={"s-x"}).false_alarms == 0
    assert score(_truth(), [Observed(e) for e in events]).false_alarms == 1


def test_alarms_after_the_data_are_ignored() -> None:
    events = [*_all_detected(), _ev("device.offline", T0 + 300_000, "pump")]
    assert score(_truth(), [Observed(e) for e in events], until_ms=T0 + 240_000).perfect
    assert not score(_truth(), [Observed(e) for e in events]).perfect


def test_latency_from_the_publishers_schedule() -> None:
    speed, wall0 = 4.0, 1_000_000.0  # wall ms at data T0

    def wall_of(ts: int) -> float:
        return wall0 + (ts - T0) / speed

    arrivals = [wall_of(e["ts"]) + lag for e, lag in zip(_all_detected(), (30, 50, 20, 400),
                                                          strict=True)]
    card = score(_truth(), [Observed(e, r) for e, r in zip(_all_detected(), arrivals,
                                                             strict=True)],
                 wall_of=wall_of)
    assert card.detection_latency_ms == {"p50": 40.0, "max": 400.0}
    assert card.contract()["detection_latency_ms"] == card.detection_latency_ms
    assert list(card.contract())[:7] == ["incidents", "detected", "missed", "false_alarms",
                                         "detection_latency_ms", "stored", "lost"]


def test_an_expected_clear_must_come_in_its_window() -> None:
    truth = [Truth("lift", "elevator.ebike", "L1", None, T0, T0 + 3_000,
                   clear_lo_ms=T0 + 44_000, clear_hi_ms=T0 + 50_000)]
    raised = _ev("elevator.ebike", T0 + 1_000, "L1", alarm_id="a1")

    def card(*clears: int) -> Any:
        evs = [raised, *(_ev("elevator.ebike", c, "L1", event="cleared", alarm_id="a1")
                         for c in clears)]
        return score(truth, [Observed(e) for e in evs])

    assert card(T0 + 45_000).perfect
    never = card()
    assert never.missed == ["lift"] and never.false_alarms == 0
    assert never.missing[0]["cleared_window_ms"] == [T0 + 44_000, T0 + 50_000]
    assert card(T0 + 20_000).missed == ["lift"]  # too early: the fault had not ended
    assert card(T0 + 60_000).missed == ["lift"]  # too late


def test_a_clear_window_before_the_raise_window_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    from anju.simulators.scenario import Expect

    with pytest.raises(ValidationError, match="cleared"):
        Expect(rule="elevator.ebike", device="L1", within=(0, 3), cleared=(1, 2))


# -- supervision (issue 18): held alarms, who is told, escalation levels, scope ----------

def _esc(rule: str, ts: int, level: int, alarm_id: str) -> dict[str, Any]:
    return _ev(rule, ts, "p", event="escalated", alarm_id=alarm_id,
               details={"escalation": {"level": level}})


def test_held_expectation_needs_a_recorded_alarm_and_no_delivery() -> None:
    truth = [Truth("mnt", "elevator.vibration", "L1", None, T0, T0 + 9_000, delivered=False)]
    held = _ev("elevator.vibration", T0 + 6_000, "L1", alarm_id="v1",
               details={"maintenance": True, "maintenance_window": 1})
    # in a replay's event list the details say it was held; in the demo the store does
    assert score(truth, [Observed(held)]).perfect
    assert score(truth, [Observed(held, delivered=False)]).perfect
    nothing = score(truth, [])
    assert nothing.missed == ["mnt"] and "why" not in nothing.missing[0]
    # told anyway (a webhook arrived): missed, with the reason, and not a false alarm
    told = score(truth, [Observed(held, delivered=False),
                         Observed(held, 5.0, team="prop", delivered=True)])
    assert told.missed == ["mnt"] and told.false_alarms == 0
    assert told.missing[0]["why"] == "delivered, should be held"
    # and the other way round: an expectation of a delivery is not met by a held alarm
    plain = [Truth("mnt", "elevator.vibration", "L1", None, T0, T0 + 9_000)]
    assert score(plain, [Observed(held)]).missing[0]["why"] == "recorded, never delivered"
    # released after the window: the later delivered raise counts
    released = {**held, "ts": T0 + 60_000, "details": {**held["details"], "released": {}}}
    assert score(plain, [Observed(held), Observed(released)]).perfect


def test_building_subject_optional_absence_fails_on_any_delivery() -> None:
    truth = [Truth("gw", "device.offline", None, None, T0, T0 + 200_000, optional=True,
                   building=("e1", "b1"), delivered=False)]
    inhibited = [_ev("device.offline", T0 + 90_000, d, details={"inhibited_by": "g"})
                 for d in ("s-1", "l-1")]
    assert score(truth, []).perfect  # optional: none at all is fine
    assert score(truth, [Observed(e) for e in inhibited]).perfect
    leaked = _ev("device.offline", T0 + 95_000, "s-2")
    card = score(truth, [*(Observed(e) for e in inhibited), Observed(leaked)])
    assert card.missed == ["gw"] and card.false_alarms == 0
    other = {**leaked, "building": "b2"}  # another building's is not this expectation's
    assert score(truth, [Observed(other)]).false_alarms == 1


def test_teams_told_and_not_told() -> None:
    truth = [Truth("burst", "water.burst", "p", None, T0, T0 + 40_000, to=("prop", "street-a"),
                   not_to=("street-b",))]
    raised = _ev("water.burst", T0 + 5_000, "p", alarm_id="b1")
    esc = _esc("water.burst", T0 + 25_000, 1, "b1")
    ok = [Observed(raised, team="prop"), Observed(esc, team="street-a")]
    assert score(truth, ok).perfect
    assert score(truth, ok[:1]).missing[0]["why"] == "not told: ['street-a']"
    bad = score(truth, [*ok, Observed(esc, team="street-b")])
    assert bad.missed == ["burst"] and bad.missing[0]["why"] == "told: ['street-b']"
    # a replay's events name their teams themselves
    assert score(truth, [Observed({**raised, "teams": ["prop"]}),
                         Observed({**esc, "teams": ["street-a"]})]).perfect


def test_escalation_levels_exactly_and_in_their_windows() -> None:
    truth = [Truth("fire", "smoke.fire_confirmed", "p", None, T0, T0 + 10_000,
                   escalated=((1, 16_000, 30_000, ("street",)), (2, 66_000, 80_000, ())))]
    raised = Observed(_ev("smoke.fire_confirmed", T0 + 1_000, "p", alarm_id="f1"), team="prop")

    def card(*levels: tuple[int, int, str]) -> Any:
        return score(truth, [raised, *(Observed(_esc("smoke.fire_confirmed", T0 + 1_000 + at,
                                                     lv, "f1"), team=t)
                                       for lv, at, t in levels)])

    assert card((1, 20_000, "street"), (1, 20_000, "comm"), (2, 70_000, "district")).perfect
    assert card((1, 20_000, "street")).missing[0]["why"] == \
        "escalation levels [1], expected [1, 2]"
    assert "level 3" not in str(card((1, 20_000, "street"), (2, 70_000, "d")).missing)
    extra = card((1, 20_000, "street"), (2, 70_000, "d"), (3, 110_000, "city"))
    assert extra.missing[0]["why"] == "escalation levels [1, 2, 3], expected [1, 2]"
    late = card((1, 31_000, "street"), (2, 70_000, "d"))
    assert late.missing[0]["why"] == "level 1 at 31 s after the raise"
    wrong = card((1, 20_000, "comm"), (2, 70_000, "d"))
    assert wrong.missing[0]["why"] == "level 1 did not tell ['street']"


def test_deliveries_outside_a_teams_scope_spoil_the_card() -> None:
    scope = {"street-a": {"e1"}, "street-b": {"e2"}}

    def covers(team: str, estate: str) -> bool:
        return estate in scope.get(team, set())

    truth = [Truth("x", "water.burst", "p", None, T0, T0 + 40_000)]
    raised = _ev("water.burst", T0 + 5_000, "p", alarm_id="b1")
    assert score(truth, [Observed(raised, team="street-a")], covers=covers).perfect
    card = score(truth, [Observed(raised, team="street-a"), Observed(raised, team="street-b")],
                 covers=covers)
    assert not card.perfect and card.missed == []
    assert card.out_of_scope == [{"team": "street-b", "event": "raised", "rule": "water.burst",
                                  "device": "p", "estate": "e1", "building": "b1",
                                  "floor": None, "ts": T0 + 5_000}]
