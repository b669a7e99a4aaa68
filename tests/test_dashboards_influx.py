"""Every InfluxQL query of every dashboard, run against a real InfluxDB 1.6 as Grafana would.

The database is filled by a replay: reading messages go through the live decode path
(:class:`~anju.devices.decode.Decoder`) and the ingest line-protocol encoder, alarm events
through the alarm area's encoder. Then each panel target, template-variable query and
annotation is interpolated as Grafana interpolates it (``$timeFilter``, ``$__interval``,
``$__interval_ms``, variables on "All", on one value and on several) and must come back
without an error and with data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import anju.kinds as kinds_mod
from anju.alarms.influx import alarm_lines
from anju.alarms.model import AlarmEvent
from anju.dashboards.build import build_dashboards
from anju.dashboards.check import QueryOutcome, run_queries
from anju.dashboards.macros import ALL, TimeRange, iter_influx_queries, variable_names
from anju.devices.batch import BatchBuilder
from anju.devices.decode import Decoder
from anju.devices.registry import load_site
from anju.devices.spec import FieldSpec, KindSpec
from anju.ingest.lineproto import LineEncoder
from anju.report.figures import Report
from anju.report.influx import report_lines
from anju.services import LocalServices

pytestmark = pytest.mark.integration

SITE_YAML = """\
estates:
  - id: e001
    name: 蓝堡湾小区
    district: 红旗区
    buildings:
      - {id: b01, floors: 18, floor_height_m: 3.0}
  - id: e-002
    name: 上海公馆小区
    buildings:
      - {id: b02, floors: 6, floor_height_m: 3.0}
"""
_CAR = '"{""rated_speed_mps"": 1.75, ""top_floor"": 18, ""bottom_floor"": -1}"'
_CAM = ('"{""mount_height_m"": 1.5, ""distance_m"": 30, ""tilt_deg"": 30, '
        '""focal_px"": 1000, ""cy_px"": 540}"')
DEVICES_CSV = f"""\
device,kind,estate,building,floor,zone,params
l-0001,elevator,e001,b01,,car-1,{_CAR}
l-0002,elevator,e-002,b02,,car-1,{_CAR}
s-0001,smoke,e001,b01,3,stair-A,
s-0002,smoke,e001,b01,7,"corridor, east",
s-0003,smoke,e-002,b02,2,hall,
p-0001,water,e001,b01,-1,pump-room,
c-0001,camera,e001,b01,,facade-S,{_CAM}
f-0001,firelane,e001,b01,,fire-lane,
a-0001,access,e001,b01,1,unit-door,
a-0002,access,e-002,b02,1,main-gate,"{{""held_open_s"": 120}}"
t-0001,patrol,e001,b01,1,lobby,
"""
# A fifth kind, as in test_dashboards.py: its dashboard's queries must run too.
GAS = KindSpec(
    name="gas",
    title="燃气 / gas detector",
    heartbeat_s=60.0,
    fields=(
        FieldSpec("lel_pct", "float", "methane, % of the lower explosive limit", unit="%"),
        FieldSpec("valve_closed", "bool", "shut-off valve closed"),
        FieldSpec("state", "enum", "detector state", choices=("ok", "leak", "fault")),
    ),
)
# The device each kind dashboard is narrowed to when "device" holds one value.
ONE_DEVICE = {"elevator": "l-0001", "smoke": "s-0002", "water": "p-0001", "camera": "c-0001",
              "gas": "g-0001", "firelane": "f-0001", "access": "a-0001",
              "patrol": "t-0001"}


def _readings(t0: int) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of a few minutes of every kind, starting at ``t0`` ms."""
    lift = "anju/e001/b01/elevator/l-0001"
    car = {"in_door_zone": True, "occupied": True, "alarm_button": False, "power_ok": True,
           "ebike": False}
    msgs: list[tuple[str, dict[str, Any]]] = [
        # door-open stops at floors 1, 5, 5, 2: two trips
        (lift, {"ts": t0, "floor": 1, "speed_mps": 0.0, "door_open": True, "accel_rms_mg": 12.0,
                **car}),
        (lift, {"ts": t0 + 10_000, "floor": 3, "speed_mps": 1.6, "door_open": False,
                "in_door_zone": False, "occupied": True, "accel_rms_mg": 160.0}),
        (lift, {"ts": t0 + 20_000, "floor": 5, "speed_mps": 0.0, "door_open": True, **car}),
        (lift, {"ts": t0 + 21_000, "floor": 5, "speed_mps": 0.0, "door_open": True, **car}),
        (lift, {"ts": t0 + 40_000, "floor": 2, "speed_mps": 0.0, "door_open": True,
                "accel_rms_mg": 20.0, **car}),
        ("anju/e-002/b02/elevator/l-0002",
         {"ts": t0 + 5_000, "floor": 1, "speed_mps": 0.0, "door_open": True, **car}),
        ("anju/e-002/b02/elevator/l-0002",
         {"ts": t0 + 35_000, "floor": 4, "speed_mps": 0.0, "door_open": True, **car}),
    ]
    for i, (dev, where, smoke, temp, battery) in enumerate([
        ("s-0001", "e001/b01", 0.01, 22.5, 80.0),
        ("s-0002", "e001/b01", 0.21, 31.0, 15.0),
        ("s-0003", "e-002/b02", 0.02, 24.0, 60.0),
    ]):
        for k in range(3):
            msgs.append((f"anju/{where}/smoke/{dev}",
                         {"ts": t0 + i * 1000 + k * 60_000, "smoke_db_m": smoke + k * 0.01,
                          "temp_c": temp + k, "battery_pct": battery, "tamper": False}))
    for k in range(4):
        msgs.append(("anju/e001/b01/water/p-0001", {
            "ts": t0 + k * 10_000, "level_pct": 64.0 - k, "pressure_mpa": 0.31 - 0.01 * k,
            "flow_m3h": 11.8 + k, "pump_running": True, "pump_fault": False,
            "chlorine_mg_l": 0.4, "turbidity_ntu": 0.3 + 0.5 * k, "ph": 7.3}))
    cam = "anju/e001/b01/camera/c-0001"
    msgs += [
        (cam, {"ts": t0, "event": "heartbeat"}),
        (cam, {"ts": t0 + 30_000, "event": "falling_object", "confidence": 0.93,
               "track": [[0, 400.0, 100.0], [100, 401.0, 130.0], [200, 402.0, 175.0],
                         [300, 403.0, 240.0]]}),
        (cam, {"ts": t0 + 90_000, "event": "obstructed", "confidence": 0.7}),
        (cam, {"ts": t0 + 100_000, "event": "ebike_charging", "confidence": 0.8}),
    ]
    lane = "anju/e001/b01/firelane/f-0001"
    msgs += [(lane, {"ts": t0 + k * 30_000, "occupied": k > 0, "vehicles": min(k, 2),
                     "occupied_s": max(0, (k - 1) * 30)}) for k in range(4)]
    door = "anju/e001/b01/access/a-0001"
    msgs += [
        (door, {"ts": t0, "event": "heartbeat", "door_open": False, "open_s": 0}),
        (door, {"ts": t0 + 5_000, "event": "granted", "door_open": True, "open_s": 0,
                "credential": "face"}),
        (door, {"ts": t0 + 15_000, "event": "heartbeat", "door_open": True, "open_s": 10}),
        (door, {"ts": t0 + 30_000, "event": "denied", "door_open": False, "open_s": 0,
                "credential": "card"}),
        (door, {"ts": t0 + 40_000, "event": "forced", "door_open": True, "open_s": 0}),
        (door, {"ts": t0 + 50_000, "event": "tamper", "door_open": False, "open_s": 0}),
        *((door, {"ts": t0 + 60_000 + k * 5_000, "event": "denied", "door_open": False,
                  "credential": c}) for k, c in enumerate(("qr", "pin", "plate"))),
        ("anju/e-002/b02/access/a-0002",
         {"ts": t0 + 7_000, "event": "granted", "door_open": True, "open_s": 0,
          "credential": "plate"}),
    ]
    point = "anju/e001/b01/patrol/t-0001"
    msgs += [
        (point, {"ts": t0, "event": "heartbeat", "battery_pct": 81.0}),
        (point, {"ts": t0 + 20_000, "event": "checkin", "guard_id": 7}),
        (point, {"ts": t0 + 80_000, "event": "heartbeat", "battery_pct": 80.5}),
    ]
    return msgs


def _alarm(t: int, alarm_id: str, event: str, rule: str, severity: str, kind: str,
           device: str | None, estate: str, building: str, floor: int | None,
           value: float | None) -> AlarmEvent:
    return AlarmEvent.model_validate(dict(
        alarm_id=alarm_id, event=event, rule=rule, severity=severity, kind=kind,
        device=device, estate=estate, building=building, floor=floor, zone=None, ts=t,
        started_at=t, value=value, message=f"{rule} {event}, 第{floor}层"))


def _alarms(t0: int) -> list[AlarmEvent]:
    return [
        _alarm(t0 + 20_000, "a1", "raised", "smoke.alarm", "major", "smoke", "s-0002",
               "e001", "b01", 7, 0.21),
        _alarm(t0 + 50_000, "a1", "escalated", "smoke.alarm", "major", "smoke", "s-0002",
               "e001", "b01", 7, 0.21),
        _alarm(t0 + 55_000, "a1", "escalated", "smoke.alarm", "major", "smoke", "s-0002",
               "e001", "b01", 7, 0.21),  # a reminder: the same alarm escalated again
        _alarm(t0 + 60_000, "a1", "acknowledged", "smoke.alarm", "major", "smoke", "s-0002",
               "e001", "b01", 7, 0.21),
        _alarm(t0 + 100_000, "a1", "cleared", "smoke.alarm", "major", "smoke", "s-0002",
               "e001", "b01", 7, 0.02),
        _alarm(t0 + 30_000, "a2", "raised", "elevator.trapped", "critical", "elevator",
               "l-0001", "e001", "b01", 5, 0.0),
        _alarm(t0 + 80_000, "a2", "cleared", "elevator.trapped", "critical", "elevator",
               "l-0001", "e001", "b01", 5, 0.0),
        _alarm(t0 + 31_000, "a3", "raised", "camera.falling_object", "major", "camera",
               "c-0001", "e001", "b01", 7, 21.3),
        # an event alarm: its acknowledgement and the clear that closes it, in one commit
        _alarm(t0 + 70_000, "a3", "acknowledged", "camera.falling_object", "major", "camera",
               "c-0001", "e001", "b01", 7, 21.3),
        _alarm(t0 + 70_000, "a3", "cleared", "camera.falling_object", "major", "camera",
               "c-0001", "e001", "b01", 7, 21.3),
        _alarm(t0 + 40_000, "a4", "raised", "water.turbidity", "major", "water", "p-0001",
               "e001", "b01", -1, 1.8),
        _alarm(t0 + 45_000, "a5", "raised", "smoke.fire_confirmed", "critical", "smoke", None,
               "e-002", "b02", 2, None),
        _alarm(t0 + 46_000, "a6", "raised", "device.offline", "minor", "gas", "g-0001",
               "e001", "b01", 1, None),
        # same rule, building and ts as a1's raise: a second detector of the same batch
        _alarm(t0 + 20_000, "a7", "raised", "smoke.alarm", "major", "smoke", "s-0001",
               "e001", "b01", 3, 0.18),
        _alarm(t0 + 105_000, "a8", "raised", "smoke.alarm", "major", "smoke", "s-0002",
               "e001", "b01", 7, 0.2),
        _alarm(t0 + 110_000, "a8", "acknowledged", "smoke.alarm", "major", "smoke", "s-0002",
               "e001", "b01", 7, 0.2),
        _alarm(t0 + 90_000, "a9", "raised", "firelane.blocked", "major", "firelane", "f-0001",
               "e001", "b01", None, 2.0),
        _alarm(t0 + 115_000, "a9", "cleared", "firelane.blocked", "major", "firelane",
               "f-0001", "e001", "b01", None, 0.0),
        _alarm(t0 + 40_000, "a10", "raised", "access.forced", "major", "access", "a-0001",
               "e001", "b01", 1, None),
        _alarm(t0 + 75_000, "a10", "acknowledged", "access.forced", "major", "access",
               "a-0001", "e001", "b01", 1, None),
        _alarm(t0 + 75_000, "a10", "cleared", "access.forced", "major", "access", "a-0001",
               "e001", "b01", 1, None),
        _alarm(t0 + 100_000, "a11", "raised", "camera.ebike_charging", "minor", "camera",
               "c-0001", "e001", "b01", 1, None),
        _alarm(t0 + 60_000, "a12", "raised", "patrol.missed", "minor", "patrol", "t-0001",
               "e001", "b01", 1, None),
        # both closed by acknowledgement (event alarms), so the open counts stay as they were
        *(_alarm(t0 + 120_000, aid, ev, rule, "minor", kind, dev, "e001", "b01", 1, None)
          for aid, rule, kind, dev in (("a11", "camera.ebike_charging", "camera", "c-0001"),
                                       ("a12", "patrol.missed", "patrol", "t-0001"))
          for ev in ("acknowledged", "cleared")),
    ]


def _gas_lines(t0: int) -> list[str]:
    # The fifth kind is not in the registry's kind codes, so its points are hand-written.
    tags = "gas,building=b01,device=g-0001,estate=e001,floor=1"
    return [f'{tags} lel_pct={3.5 + k},valve_closed={"true" if k else "false"},state="{s}" '
            f"{t0 + k * 20_000}" for k, s in enumerate(("ok", "leak", "fault"))]


def _month_report(t0: int) -> Report:
    """A report of a period starting at ``t0`` (as ``anju report --influx`` writes it):
    one company, two estates; test_report_grafana.py holds a real month's to report.json."""
    figures = {"alarms": 5, "critical": 1, "major": 2, "minor": 1, "warning": 1,
               "ack_p50_s": 40.5, "ack_p90_s": 190.0, "ack_in_deadline_share": 0.75,
               "escalated": 1, "max_escalation_level": 1, "open_at_end": 1,
               "availability": 0.9991, "camera_coverage": 1.0}
    return Report(
        meta={"period": {"from_ms": t0, "hours": 24.0},
              "scope": {"team": None, "jurisdiction": {}}},
        tables={"ranking": [{"rank": 1, "company": "property-e001"}],
                "companies": [{"company": "property-e001", **figures, "score": 81.5,
                               "suggested_level": "AA"}],
                "estates": [{"company": "property-e001", "estate": e, "name": n, **figures}
                            for e, n in (("e001", "蓝堡湾小区"), ("e-002", "上海公馆小区"))]})


@dataclass(frozen=True)
class Filled:
    db: str
    url: str
    first_ms: int
    last_ms: int


@pytest.fixture
def filled(services: LocalServices, influx_db: str, tmp_path: Path) -> Iterator[Filled]:
    """``influx_db`` holding a replay of every kind (and the fifth, gas) and alarm events."""
    (tmp_path / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (tmp_path / "devices.csv").write_text(DEVICES_CSV, encoding="utf-8")
    site = load_site(tmp_path)
    now = int(time.time() * 1000)
    t0 = now - 10 * 60_000
    decoder = Decoder(site)
    builder = BatchBuilder()
    for topic, payload in _readings(t0):
        decoder.decode(topic, orjson.dumps(payload), builder, now_ms=now)
    assert not decoder.rejected, decoder.rejected
    lines = LineEncoder(site).encode(builder.build()).lines
    lines += alarm_lines(_alarms(t0)).decode().splitlines()
    lines += _gas_lines(t0)
    lines += report_lines(_month_report(t0))
    services.influx.write(influx_db, lines)
    yield Filled(influx_db, services.influx.url, t0, t0 + 120_000)


def _variables(dashboard: dict[str, Any], scenario: str) -> dict[str, list[str]]:
    names = variable_names(dashboard)
    if scenario == "all":
        return {n: list(ALL) for n in names}
    if scenario == "one":
        kind = dashboard["uid"].removeprefix("anju-kind-")
        one = {"estate": ["e001"], "building": ["b01"], "device": [ONE_DEVICE.get(kind, "")],
               "kind": ["smoke"], "severity": ["major"], "rule": ["smoke.alarm"]}
        return {n: one.get(n, list(ALL)) for n in names}
    several = {"estate": ["e001", "e-002"], "building": ["b01", "b02"], "device": list(ALL),
               "kind": ["smoke", "elevator", "camera"], "severity": ["major", "critical"],
               "rule": list(ALL)}
    return {n: several.get(n, list(ALL)) for n in names}


def _report(bad: list[QueryOutcome]) -> str:
    return "\n".join(f"{o.query.dashboard} {o.query.where}: {o.error or 'no data'}\n"
                     f"    {o.influxql}" for o in bad)


@pytest.mark.parametrize("scenario", ["all", "one", "several"])
async def test_every_query_returns_data(filled: Filled, scenario: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables on All over the last 6 h; on one value, and on several, over an absolute
    range in ms. The fifth kind (gas) is in the table, so its dashboard is checked too."""
    monkeypatch.setitem(kinds_mod.KINDS, "gas", GAS)
    if scenario == "all":
        rng = TimeRange(relative="6h")
    else:
        rng = TimeRange(relative=None, from_ms=filled.first_ms - 60_000,
                        to_ms=filled.last_ms + 60_000)
    outcomes: list[QueryOutcome] = []
    dashboards = [b.data for b in build_dashboards()]
    assert "anju-kind-gas" in {d["uid"] for d in dashboards}
    for d in dashboards:
        outcomes += await run_queries(
            filled.url, filled.db, iter_influx_queries(d), time_range=rng,
            variables=_variables(d, scenario), interval="10s", interval_ms=10_000)
    assert len(outcomes) > 100
    errors = [o for o in outcomes if not o.ok]
    assert not errors, "InfluxDB refused:\n" + _report(errors)
    empty = [o for o in outcomes if o.series == 0]
    assert not empty, "no data:\n" + _report(empty)


async def test_trips_and_open_alarms_count_what_they_say(filled: Filled) -> None:
    """Two door-open stops at new floors are two trips; open alarms by severity are the
    raised ones not cleared (state rules) nor acknowledged (camera events)."""
    by_uid = {b.uid: b.data for b in build_dashboards()}

    def target(uid: str, title: str) -> Any:
        return next(q for q in iter_influx_queries(by_uid[uid]) if f"{title!r}" in q.where)

    rng = TimeRange(relative=None, from_ms=filled.first_ms - 60_000, to_ms=filled.last_ms)
    everything = {n: list(ALL) for n in ("estate", "building", "device", "kind", "severity",
                                         "rule")}
    (trips,) = await run_queries(filled.url, filled.db, [target("anju-kind-elevator", "Trips")],
                                 time_range=rng, variables=everything)
    assert trips.ok
    totals = {r["tags"]["device"]: sum(v[1] for v in r["values"])
              for r in trips.body["results"][0]["series"]}
    assert totals == {"l-0001": 2, "l-0002": 1}
    counts = {}
    for title in ("Open, not acknowledged", "Acknowledged, not yet cleared"):
        (res,) = await run_queries(filled.url, filled.db, [target("anju-alarms", title)],
                                   time_range=rng, variables=everything)
        assert res.ok, res.error
        counts[title] = {r["tags"]["severity"]: r["values"][0][1]
                         for r in res.body["results"][0].get("series") or []}
    # Counted from each alarm's last state: a1 (escalated, acknowledged, cleared), a2
    # (cleared) and a3 (camera: acknowledged and cleared at once) are closed; a4, a7 (raised
    # with the same key and time as a1), a5, a6 are open; a8 is acknowledged, still open;
    # a9 (fire lane, cleared) and a10 (door forced: acknowledged and cleared) are closed.
    assert counts == {
        "Open, not acknowledged": {"major": 2, "critical": 1, "minor": 1},
        "Acknowledged, not yet cleared": {"major": 1},
    }
    (esc,) = await run_queries(filled.url, filled.db,
                               [target("anju-alarms", "Escalated in range")],
                               time_range=rng, variables=everything)
    # one alarm escalated, with a reminder: one
    assert [r["values"][0][1] for r in esc.body["results"][0]["series"]] == [1]
