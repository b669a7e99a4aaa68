"""Alarm lifecycle events as points of the ``alarms`` measurement, on a real InfluxDB:
every event is one point that no other event overwrites, and an acknowledgement through the
API is stored like the rules' events (CONTRACT §4, §6; docs/contract-notes.md)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from anju.alarms.influx import alarm_lines
from anju.alarms.model import AlarmEvent
from anju.app.pipeline import Pipeline
from anju.config import Settings
from anju.devices.registry import Site, load_site
from anju.services import LocalServices, free_port
from tests.mqtt_support import until

pytestmark = pytest.mark.integration

TOKEN = "tok-for-points-tests"
_CAM = ('"{""mount_height_m"": 1.5, ""distance_m"": 30, ""tilt_deg"": 30, '
        '""focal_px"": 1000, ""cy_px"": 540}"')


def _event(alarm_id: str, event: str, ts: int, device: str = "s-1") -> AlarmEvent:
    return AlarmEvent.model_validate(dict(
        alarm_id=alarm_id, event=event, rule="smoke.alarm", severity="major", kind="smoke",
        device=device, estate="e1", building="b1", floor=3, zone=None, ts=ts, started_at=ts,
        value=0.2, message="smoke"))


def _points(services: LocalServices, db: str, where: str = "true") -> list[dict[str, Any]]:
    res = services.influx.query(
        f'SELECT "alarm_id", "event", "state", "device" FROM "alarms" WHERE {where}',
        db=db, epoch="ms")
    out: list[dict[str, Any]] = []
    for s in res["results"][0].get("series") or []:
        out += [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
    return out


def test_events_with_the_same_series_key_and_time_are_all_stored(
        services: LocalServices, influx_db: str) -> None:
    """Two detectors of one gateway batch (same rule, building, ts) and the escalations of
    one tick are distinct points; writing the same events again changes nothing."""
    t = 1_763_800_000_000
    events = [_event("a" * 20, "raised", t, "s-1"), _event("b" * 20, "raised", t, "s-2"),
              _event("a" * 20, "escalated", t + 300_000, "s-1"),
              _event("b" * 20, "escalated", t + 300_000, "s-2")]
    text = alarm_lines(events).decode()
    services.influx.write(influx_db, text, precision="ms")
    services.influx.write(influx_db, text, precision="ms")  # a replay: idempotent
    rows = _points(services, influx_db)
    assert sorted((r["time"], r["device"], r["event"]) for r in rows) == [
        (t, "s-1", "raised"), (t, "s-2", "raised"),
        (t + 300_000, "s-1", "escalated"), (t + 300_000, "s-2", "escalated")]
    assert {r["state"] for r in rows} == {"open"}


# -- the live pipeline ---------------------------------------------------------------------
def site_for(root: Path, estate: str, *, escalate_s: float = 300) -> Site:
    """One estate, a property team with an API token, smoke detectors that raise and clear
    at once (heat.fixed, smoke.alarm without delays), a camera."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        "estates:\n"
        f"  - id: {estate}\n"
        "    name: 测试小区\n"
        "    buildings:\n"
        "      - {id: b1, floors: 18, floor_height_m: 3.0}\n"
        "teams:\n"
        f"  - {{id: property-{estate}, role: property, estates: [{estate}],\n"
        "     token_env: ANJU_TEST_TOKEN}\n"
        f"  - {{id: fire-{estate}, role: fire, estates: [{estate}]}}\n"
        f"escalation: {{unacknowledged_after_s: {escalate_s}}}\n"
        "rules:\n"
        "  heat.fixed: {clear_after: 0}\n"
        "  smoke.alarm: {for: 0, clear_after: 0}\n",
        encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        f"s-1,smoke,{estate},b1,12,stair-A,\n"
        f"s-2,smoke,{estate},b1,3,,\n"
        f"s-3,smoke,{estate},b1,5,,\n"
        f"c-1,camera,{estate},b1,,facade-S,{_CAM}\n", encoding="utf-8")
    return load_site(root)


def settings_for(services: LocalServices, db: str, state: Path, cid: str) -> Settings:
    return Settings(mqtt_url=services.mosquitto.url, influx_url=services.influx.url,
                    influx_db=db, state_dir=state, api_addr=f"127.0.0.1:{free_port()}",
                    mqtt_client_id=cid, batch_linger_ms=20, tick_s=0.2)


def publish(services: LocalServices, items: list[tuple[str, dict[str, object]]]) -> None:
    """Publishes at QoS 1 and waits until the broker has each message."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect(services.mosquitto.host, services.mosquitto.port)
    c.loop_start()
    try:
        for info in [c.publish(t, orjson.dumps(p), qos=1) for t, p in items]:
            info.wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()


async def api_call(p: Pipeline, method: str, path: str, body: Any = None) -> Any:
    """One call to the pipeline's API with the property team's token; the JSON answer."""
    url = f"http://{p.settings.api_addr}{path}"
    async with aiohttp.ClientSession() as s, s.request(
            method, url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def alarm_of(alarms: list[dict[str, Any]], rule: str, device: str) -> dict[str, Any]:
    return next(a for a in alarms if a["rule"] == rule and a["device"] == device)


async def test_acknowledgements_through_the_api_are_alarms_points(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledging a state alarm stores an ``acknowledged`` point (state acknowledged);
    acknowledging a camera event alarm stores ``acknowledged`` and ``cleared`` (both
    closed); the pipeline counts them like the rules' events."""
    monkeypatch.setenv("ANJU_TEST_TOKEN", TOKEN)
    site = site_for(tmp_path / "site", topic_prefix)
    settings = settings_for(services, influx_db, tmp_path / "state", cid)
    now = int(time.time() * 1000)
    base = f"anju/{topic_prefix}/b1"
    async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
        await until(lambda: p.consumer.subscribed)
        await asyncio.to_thread(publish, services, [
            (f"{base}/smoke/s-1", {"ts": now, "smoke_db_m": 0.01, "temp_c": 70.0}),
            (f"{base}/camera/c-1", {"ts": now, "event": "obstructed", "confidence": 0.7}),
        ])
        await until(lambda: p.stats()["alarms"].get("raised", 0) >= 2)
        alarms = (await api_call(p, "GET", "/alarms?state=open"))["alarms"]
        heat = alarm_of(alarms, "heat.fixed", "s-1")["alarm_id"]
        cam = alarm_of(alarms, "camera.obstructed", "c-1")["alarm_id"]
        for aid in (heat, cam):
            ev = await api_call(p, "POST", f"/alarms/{aid}/ack", {"by": "Wang"})
            assert ev["event"] == "acknowledged"
        await until(lambda: len(_points(services, influx_db, "\"event\" <> 'raised'")) >= 3)
        stats = p.stats()
    assert stats["alarms"]["acknowledged"] == 2 and stats["alarms"]["cleared"] == 1
    rows = _points(services, influx_db)
    got = sorted((r["alarm_id"], r["event"], r["state"]) for r in rows)
    assert got == sorted([(heat, "raised", "open"), (heat, "acknowledged", "acknowledged"),
                          (cam, "raised", "open"), (cam, "acknowledged", "closed"),
                          (cam, "cleared", "closed")])


async def _panel_counts(services: LocalServices, db: str) -> dict[str, dict[str, int]]:
    """The open-alarm targets of the alarms dashboard and of the overview, variables on All,
    each over its own relative range (as Grafana runs them): severity → count."""
    from anju.dashboards.build import build_dashboards
    from anju.dashboards.check import run_queries
    from anju.dashboards.macros import ALL, TimeRange, iter_influx_queries, variable_names

    boards = {b.uid: b.data for b in build_dashboards()}
    out: dict[str, dict[str, int]] = {}
    for uid in ("anju-alarms", "anju-overview"):
        d = boards[uid]
        queries = [q for q in iter_influx_queries(d) if 'max("state_rank")' in q.query
                   and 'GROUP BY "severity"' in q.query]
        outcomes = await run_queries(services.influx.url, db, queries,
                                     time_range=TimeRange("6h"),
                                     variables={n: list(ALL) for n in variable_names(d)})
        for o in outcomes:
            assert o.ok, o.error
            state = "acknowledged" if '"rank" = 1' in o.influxql else "raised"
            counts = out.setdefault(f"{uid} {state}", {})
            for s in o.body["results"][0].get("series") or []:
                counts[s["tags"]["severity"]] = s["values"][0][1]
    assert len(out) == 4
    return out


async def test_open_alarm_panels_agree_with_the_api(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After raises, escalations, acknowledgements and clears of every kind — a state alarm
    left open, one acknowledged, one acknowledged then cleared, one cleared unacknowledged,
    a camera alarm acknowledged (closed) and one left open — the open-alarm panels count
    exactly what ``GET /alarms?state=open`` lists, by severity and acknowledgement."""
    monkeypatch.setenv("ANJU_TEST_TOKEN", TOKEN)
    site = site_for(tmp_path / "site", topic_prefix, escalate_s=0.5)
    settings = settings_for(services, influx_db, tmp_path / "state", cid)
    t = int(time.time() * 1000) - 5_000
    base = f"anju/{topic_prefix}/b1"

    def smoke(dev: str, ts: int, temp: float, db_m: float = 0.01) -> tuple[str, dict[str, object]]:
        return (f"{base}/smoke/{dev}", {"ts": ts, "smoke_db_m": db_m, "temp_c": temp})

    async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
        await until(lambda: p.consumer.subscribed)
        await asyncio.to_thread(publish, services, [
            smoke("s-1", t, 70.0, 0.3),  # heat.fixed (critical) + smoke.alarm (major)
            smoke("s-2", t, 70.0), smoke("s-3", t, 70.0),
            (f"{base}/camera/c-1", {"ts": t, "event": "obstructed", "confidence": 0.7}),
            (f"{base}/camera/c-1", {"ts": t + 1, "event": "obstructed", "confidence": 0.8}),
        ])
        await until(lambda: p.stats()["alarms"].get("raised", 0) >= 6)
        # unacknowledged alarms escalate after 0.5 s (the fire team is a target of critical)
        await until(lambda: p.stats()["alarms"].get("escalated", 0) >= 1)
        alarms = (await api_call(p, "GET", "/alarms?state=open"))["alarms"]
        cams = sorted(a["alarm_id"] for a in alarms if a["rule"] == "camera.obstructed")
        for aid in (alarm_of(alarms, "heat.fixed", "s-2")["alarm_id"],
                    alarm_of(alarms, "heat.fixed", "s-3")["alarm_id"], cams[0]):
            await api_call(p, "POST", f"/alarms/{aid}/ack", {"by": "Wang"})
        await asyncio.to_thread(publish, services, [
            smoke("s-3", t + 2_000, 20.0),  # acknowledged, then cleared
            smoke("s-1", t + 2_000, 70.0, 0.01),  # smoke.alarm cleared unacknowledged
        ])
        await until(lambda: p.stats()["alarms"].get("cleared", 0) >= 3)
        api_rows = (await api_call(p, "GET", "/alarms?state=open"))["alarms"]
        total = sum(p.stats()["alarms"].values())
        await until(lambda: len(_points(services, influx_db)) == total)
        counts = await _panel_counts(services, influx_db)
    expected: dict[str, dict[str, int]] = {"raised": {}, "acknowledged": {}}
    for row in api_rows:
        by = expected[row["state"]]
        by[row["severity"]] = by.get(row["severity"], 0) + 1
    # the scenario has both kinds of open alarm, and closed ones the panels must not count
    assert expected == {"raised": {"critical": 1, "minor": 1},
                        "acknowledged": {"critical": 1}}
    for uid in ("anju-alarms", "anju-overview"):
        assert counts[f"{uid} raised"] == expected["raised"], uid
        assert counts[f"{uid} acknowledged"] == expected["acknowledged"], uid
