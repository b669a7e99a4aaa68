"""Supervision on a real pipeline (issue 18): escalation chains walk the four-level chain
and stop at an ack; a street office sees its streets only (API and SSE); a maintenance
window silences an elevator and ends its maintenance_overdue; a silent gateway is one
gateway.offline, never a device.offline per device behind it.

The pipeline runs in-process on a clock the test moves (tests/test_alarms_operation.py's
rig), with the session's Mosquitto and InfluxDB and a real webhook receiver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from anju.alarms.receiver import WebhookReceiver
from anju.config import Settings
from anju.devices.registry import load_site
from anju.services import LocalServices, free_port
from tests.mqtt_support import until
from tests.test_alarms_operation import ELEVATOR, Clock, Rig, _elevator, _events, _smoke, _water
from tests.test_console_api import Sse

pytestmark = pytest.mark.integration

SECRET = b"sup-secret"
TEAMS = ("property", "comm", "street", "district", "city", "other-street")
CHAIN = """\
escalation:
  chains:
    critical:
      steps:
        - {after_s: 0, notify: [property]}
        - {after_s: 300, notify: [community, street]}
        - {after_s: 900, notify: [district]}
        - {after_s: 1800, notify: [city]}
"""


def _write_site(root: Path, e: str, hooks: WebhookReceiver, extra: str = "",
                gateways: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    f = e + "x"  # a second estate on another street
    team = ("  - {{id: {id}, {scope}, webhook: '{hook}', secret_env: ANJU_SUP_SECRET, "
            "token_env: ANJU_SUP_TOKEN_{env}}}\n")
    teams = "".join(team.format(id=t, scope=s, hook=hooks.url(t), env=t.replace("-", "_"))
                    for t, s in (
                        ("property", f"role: property, estates: [{e}, {f}]"),
                        ("comm", "role: supervisor, jurisdiction: {community: 花园社区}"),
                        ("street", "role: supervisor, jurisdiction: {street: 东街街道}"),
                        ("district", "role: supervisor, jurisdiction: {district: 西城区}"),
                        ("city", "role: supervisor, jurisdiction: {city: true}"),
                        ("other-street", "role: supervisor, jurisdiction: {street: 西街街道}")))
    (root / "site.yaml").write_text(
        "city: 安居市\nestates:\n"
        f"  - {{id: {e}, name: 花园小区, district: 西城区, street: 东街街道, community: 花园社区,\n"
        "     buildings: [{id: b1, floors: 18}]}\n"
        f"  - {{id: {f}, name: 西苑小区, district: 西城区, street: 西街街道, community: 西苑社区,\n"
        "     buildings: [{id: b1, floors: 18}]}\n"
        "teams:\n" + teams + extra, encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        f"s-1,smoke,{e},b1,12,stair-A,\n"
        f"l-1,elevator,{e},b1,,car-1,{ELEVATOR}\n"
        f"pump-1,water,{e},b1,-1,pump-room,\n"
        f"s-2,smoke,{f},b1,3,stair-B,\n", encoding="utf-8")
    if gateways:
        (root / "gateways.csv").write_text(f"gateway,estate,building\ngw-1,{e},b1\n",
                                           encoding="utf-8")


@pytest.fixture
def sup(services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path,
        cid: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("ANJU_SUP_SECRET", SECRET.decode())
    for t in TEAMS:
        monkeypatch.setenv(f"ANJU_SUP_TOKEN_{t.replace('-', '_')}", f"tok-{t}")

    async def make(extra: str = "", gateways: bool = False) -> Rig:
        rx = WebhookReceiver(dict.fromkeys(TEAMS, SECRET))
        await rx.start()
        _write_site(tmp_path / "site", topic_prefix, rx, extra, gateways)
        site = load_site(tmp_path / "site")
        settings = Settings(mqtt_url=services.mosquitto.url, influx_url=services.influx.url,
                            influx_db=influx_db, state_dir=tmp_path / "state",
                            api_addr=f"127.0.0.1:{free_port()}", mqtt_client_id=cid,
                            batch_linger_ms=5, tick_s=0.05)
        return Rig(services, site, settings, Clock(), rx, topic_prefix)

    yield make


def _got(rx: WebhookReceiver, team: str, rule: str | None = None) -> list[tuple[str, str]]:
    return [(a.event()["event"], a.event()["rule"]) for a in rx.accepted.get(team, [])
            if rule is None or a.event()["rule"] == rule]


async def _api(r: Rig, method: str, path: str, team: str, body: Any = None) -> Any:
    url = f"http://{r.settings.api_addr}{path}"
    async with aiohttp.ClientSession() as http, http.request(
            method, url, headers={"Authorization": f"Bearer tok-{team}"},
            data=None if body is None else orjson.dumps(body)) as resp:
        assert resp.status < 300, (resp.status, await resp.text())
        return await resp.json()


async def _stop(r: Rig) -> None:
    if r.p is not None:
        await r.stop()
    r.close()
    await r.rx.stop()


async def test_critical_alarm_walks_the_chain_and_stops_at_ack(sup: Any) -> None:
    r: Rig = await sup(CHAIN)
    try:
        await r.start()
        moving_open = {**_elevator(r.clock.now + 1000, moving=True), "door_open": True}
        await r.step("elevator", "l-1", [moving_open])
        [raised] = r.raised("elevator.door_open_moving")
        aid = raised["alarm_id"]
        assert raised["teams"] == ["property"]
        await r.tick(299_000)  # just before the first step: nothing yet
        assert [e for e in _events(r.p) if e["event"] == "escalated"
                and e["alarm_id"] == aid] == []
        await r.tick(2_000)  # 301 s: community and street
        await r.tick(600_000)  # 901 s: district
        esc = [e for e in _events(r.p) if e["event"] == "escalated" and e["alarm_id"] == aid]
        assert [(e["teams"], e["details"]["escalation"]["level"],
                 e["details"]["escalation"]["notify"]) for e in esc] == [
            (["comm", "street"], 1, ["community", "street"]),
            (["district"], 2, ["district"])]
        await _api(r, "POST", f"/alarms/{aid}/ack", "district", {"by": "区物业科"})
        await r.tick(1_000_000)  # past 1 800 s: the city is never told after the ack
        await r.tick(1_000_000)
        assert [e["event"] for e in _events(r.p) if e["alarm_id"] == aid] == [
            "raised", "escalated", "escalated", "acknowledged"]
        rule = "elevator.door_open_moving"
        for team in ("comm", "street", "district"):
            await until(lambda t=team: len(_got(r.rx, t, rule)) == 2)  # type: ignore[misc]
            assert [ev for ev, _ in _got(r.rx, team, rule)] == ["escalated", "acknowledged"]
        assert [ev for ev, _ in _got(r.rx, "property", rule)] == ["raised", "acknowledged"]
        assert _got(r.rx, "city", rule) == []
    finally:
        await _stop(r)


async def test_street_office_sees_its_streets_only(sup: Any) -> None:
    r: Rig = await sup()
    try:
        await r.start()
        other = r.estate + "x"
        async with aiohttp.ClientSession() as http, http.get(
                f"http://{r.settings.api_addr}/events",
                headers={"Authorization": "Bearer tok-street"}) as resp:
            sse = Sse(resp)
            assert (await sse.next())["event"] == "snapshot"
            # a fire in the other street's estate first, then one in ours
            r.estate = other
            await r.step("smoke", "s-2", [_smoke(r.clock.now + 1000, 70.0)])
            r.estate = other[:-1]
            await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000, 70.0)])
            pushed = await sse.next()
            assert pushed["data"]["event"]["estate"] == r.estate
        mine = await _api(r, "GET", "/alarms", "street")
        assert [a["estate"] for a in mine["alarms"]] == [r.estate]
        theirs = await _api(r, "GET", "/alarms", "other-street")
        assert [a["estate"] for a in theirs["alarms"]] == [other]
        assert len((await _api(r, "GET", "/alarms", "district"))["alarms"]) == 2
    finally:
        await _stop(r)


async def test_maintenance_window_silences_faults_and_ends_overdue(sup: Any) -> None:
    r: Rig = await sup()
    try:
        await r.start()
        day = 86_400_000
        await _api(r, "POST", "/devices/l-1/maintained", "property",
                   {"by": "维保公司", "at": r.clock.now - 20 * day})
        await r.tick(1000)
        assert [e["rule"] for e in r.raised()] == ["elevator.maintenance_overdue"]
        w = await _api(r, "POST", "/maintenance", "property",
                       {"device": "l-1", "to": r.clock.now + 3_600_000, "by": "维保公司",
                        "reason": "半月维保"})
        # stopped between floors under the technicians' hands: held, not delivered
        for _ in range(12):
            await r.step("elevator", "l-1", [{**_elevator(r.clock.now + 1000, moving=False),
                                               "in_door_zone": False}])
        [fault] = r.raised("elevator.stopped_outside_zone")
        assert fault["details"]["maintenance"] is True
        assert r.p is not None
        rec = r.p.store.get(fault["alarm_id"])
        assert rec is not None and rec.held == "maintenance"
        await _api(r, "POST", f"/maintenance/{w['id']}/end", "property", {"by": "维保公司"})
        await r.tick(1000)
        events = [(e["event"], e["rule"]) for e in _events(r.p)]
        assert ("cleared", "elevator.maintenance_overdue") in events
        await until(lambda: ("cleared", "elevator.maintenance_overdue")
                    in _got(r.rx, "property"))
        assert all(rule != "elevator.stopped_outside_zone" for _, rule in _got(r.rx, "property"))
        windows = await _api(r, "GET", "/maintenance", "property")
        assert windows["maintained"]["l-1"] == windows["windows"][0]["to_ms"]
    finally:
        await _stop(r)


async def test_silent_gateway_is_one_alarm_and_nothing_stays_open(sup: Any) -> None:
    r: Rig = await sup(gateways=True)
    try:
        await r.start()
        assert r.p is not None
        p = r.p

        def batch() -> list[dict[str, Any]]:
            ts = r.clock.now + 1000
            return [{**_smoke(ts), "device": "s-1"}, {**_elevator(ts, moving=False,
                                                                  occupied=False),
                                                      "device": "l-1"},
                    {**_water(ts), "device": "pump-1"}]

        async def via_gateway() -> None:
            r.clock.now += 1000
            before = p.decoder.messages
            topic = f"anju/{r.estate}/b1/batch/gw-1"
            await asyncio.to_thread(
                lambda: r.pub.publish(topic, orjson.dumps(batch()), qos=1).wait_for_publish(10))
            await until(lambda: p.decoder.messages > before)
            await r.tick(0)

        for _ in range(3):
            await via_gateway()
        for _ in range(50):  # 250 s of silence: every device's offline limit passes
            await r.tick(5000)
        ours = [e for e in _events(p) if e["event"] == "raised" and e["estate"] == r.estate]
        assert [e["rule"] for e in ours].count("gateway.offline") == 1
        held = [e for e in ours if e["rule"] == "device.offline"]
        assert sorted(e["device"] for e in held) == ["l-1", "pump-1", "s-1"]  # recorded
        assert all(e["details"]["inhibited_by"] for e in held)
        await via_gateway()
        await via_gateway()
        await until(lambda: _got(r.rx, "property", "gateway.offline")
                    == [("raised", "gateway.offline"), ("cleared", "gateway.offline")])
        await r.tick(1000)
        delivered = [a.event() for a in r.rx.accepted.get("property", [])]
        assert [e for e in delivered if e["rule"] == "device.offline"
                and e["estate"] == r.estate] == []
        assert [a.rule for a in p.store.list_alarms(open_only=True)
                if a.estate == r.estate] == []
    finally:
        await _stop(r)
