"""Alarms across the ordinary events of operation, on the session's real Mosquitto and
InfluxDB: a restart with an open alarm, device clocks minutes slow or fast, one reading from
a fast clock, a backlog drained after downtime (issue: alarms stay true across restarts,
device clocks and crashes).

The pipeline runs in-process on an injected receiving clock that the test moves, so minutes
of operation take seconds and each step is deterministic: the test advances the clock,
publishes, waits until the pipeline has applied the reading and ticked once after it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from aiohttp import ClientSession, web
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from anju.alarms.receiver import WebhookReceiver
from anju.app.pipeline import Pipeline
from anju.config import Settings
from anju.devices.registry import Site, load_site
from anju.services import LocalServices, free_port
from tests.mqtt_support import until

pytestmark = pytest.mark.integration

SECRET = b"op-secret"
ELEVATOR = '"{""rated_speed_mps"": 1.75, ""top_floor"": 18, ""bottom_floor"": -1}"'


def _site(root: Path, estate: str, hook: str) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        "estates:\n"
        f"  - id: {estate}\n"
        "    name: 测试小区\n"
        "    buildings:\n"
        "      - {id: b1, floors: 18, floor_height_m: 3.0}\n"
        "teams:\n"
        f"  - {{id: property, role: property, estates: [{estate}], webhook: '{hook}',\n"
        "     secret_env: ANJU_TEST_SECRET, token_env: ANJU_TEST_TOKEN}\n",
        encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        f"s-1,smoke,{estate},b1,12,stair-A,\n"
        f"l-1,elevator,{estate},b1,,car-1,{ELEVATOR}\n"
        f"pump-1,water,{estate},b1,-1,pump-room,\n", encoding="utf-8")
    return load_site(root)


class Clock:
    """The receiving clock the pipeline reads; the test moves it. It starts an hour behind
    the wall clock, which the webhook dispatcher's retry schedule runs on, so that moving it
    never makes a delivery wait."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000) - 3_600_000

    def __call__(self) -> int:
        return self.now


class Rig:
    """A pipeline on a test clock, a publisher and a webhook receiver."""

    def __init__(self, services: LocalServices, site: Site, settings: Settings,
                 clock: Clock, rx: WebhookReceiver, estate: str) -> None:
        self.services, self.site, self.settings = services, site, settings
        self.clock, self.rx, self.estate = clock, rx, estate
        self.pub = mqtt.Client(CallbackAPIVersion.VERSION2,
                               client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.pub.connect(services.mosquitto.host, services.mosquitto.port)
        self.pub.loop_start()
        self.p: Pipeline | None = None

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()

    async def start(self) -> Pipeline:
        self.p = Pipeline(self.settings, self.site, registry=CollectorRegistry(),
                          clock=self.clock)
        await self.p.start()
        await until(lambda: self.p is not None and self.p.consumer.subscribed)
        return self.p

    async def stop(self) -> None:
        assert self.p is not None
        await self.p.stop()
        self.p = None

    def publish(self, kind: str, device: str, payloads: list[dict[str, Any]]) -> None:
        topic = f"anju/{self.estate}/b1/{kind}/{device}"
        infos = [self.pub.publish(topic, orjson.dumps(p), qos=1) for p in payloads]
        for i in infos:
            i.wait_for_publish(10)

    async def step(self, kind: str, device: str, payloads: list[dict[str, Any]],
                   advance_ms: int = 1000) -> None:
        """Moves the clock, publishes, and waits for the readings and one tick after."""
        assert self.p is not None
        p = self.p
        self.clock.now += advance_ms
        before = p.decoder.messages
        await asyncio.to_thread(self.publish, kind, device, payloads)
        await until(lambda: p.decoder.messages >= before + len(payloads))
        await until(lambda: p._rules_q.qsize() == 0)
        ticks = p.engine.stats.ticks
        await until(lambda: p.engine.stats.ticks >= ticks + 2)
        await until(lambda: p._alarm_q.qsize() == 0 and p._alarm_q._unfinished_tasks == 0)

    async def tick(self, advance_ms: int) -> None:
        assert self.p is not None
        p = self.p
        self.clock.now += advance_ms
        ticks = p.engine.stats.ticks
        await until(lambda: p.engine.stats.ticks >= ticks + 2)
        await until(lambda: p._alarm_q.qsize() == 0 and p._alarm_q._unfinished_tasks == 0)

    def raised(self, rule: str | None = None, device: str | None = None
               ) -> list[dict[str, Any]]:
        assert self.p is not None
        return [e for e in _events(self.p) if e["event"] == "raised"
                and (rule is None or e["rule"] == rule)
                and (device is None or e["device"] == device)]


@pytest.fixture
def rig(services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path,
        cid: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("ANJU_TEST_SECRET", SECRET.decode())
    monkeypatch.setenv("ANJU_TEST_TOKEN", "tok")

    async def make(**overrides: Any) -> tuple[Rig, WebhookReceiver]:
        rx = WebhookReceiver({"property": SECRET})
        await rx.start()
        site = _site(tmp_path / "site", topic_prefix, rx.url("property"))
        settings = Settings(mqtt_url=services.mosquitto.url, influx_url=services.influx.url,
                            influx_db=influx_db, state_dir=tmp_path / "state",
                            api_addr=f"127.0.0.1:{free_port()}", mqtt_client_id=cid,
                            batch_linger_ms=5, tick_s=0.05, **overrides)
        return Rig(services, site, settings, Clock(), rx, topic_prefix), rx

    yield make


def _events(p: Pipeline) -> list[dict[str, Any]]:
    out = []
    for rec in p.store.list_alarms(open_only=False):
        out += [e.model_dump(mode="json") for e in p.store.events(rec.alarm_id)]
    return sorted(out, key=lambda e: e["ts"])


def _elevator(ts: int, *, moving: bool, occupied: bool = True) -> dict[str, Any]:
    return {"ts": ts, "floor": 5, "speed_mps": 1.0 if moving else 0.0, "door_open": False,
            "in_door_zone": not moving, "occupied": occupied, "power_ok": True}


def _smoke(ts: int, temp: float = 22.0) -> dict[str, Any]:
    return {"ts": ts, "smoke_db_m": 0.01, "temp_c": temp}


def _water(ts: int) -> dict[str, Any]:
    return {"ts": ts, "level_pct": 60.0, "pressure_mpa": 0.3, "flow_m3h": 5.0,
            "pump_running": True}


async def test_restart_with_open_alarm_clears_and_raises_again(rig: Any) -> None:
    """A heat alarm open across a SIGTERM restart clears once readings are normal for the
    clear delay, and the same detector at 70 °C again raises a new alarm."""
    r, rx = await rig()
    try:
        await r.start()
        await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000, 70.0)])
        assert [e["rule"] for e in r.raised()] == ["heat.fixed"]
        first = r.raised()[0]["alarm_id"]
        await r.stop()  # SIGTERM's path: drain and stop

        await r.start()
        assert r.p is not None and r.p.engine.stats.restored == 1
        for _ in range(35):  # normal for longer than the 30 s clear delay
            await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000)])
        cleared = [e for e in _events(r.p) if e["event"] == "cleared"]
        assert [e["alarm_id"] for e in cleared] == [first]
        await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000, 70.0)])
        raised = r.raised("heat.fixed")
        assert len(raised) == 2 and raised[1]["alarm_id"] != first
        await until(lambda: len([a for a in rx.accepted.get("property", [])
                                 if a.event()["event"] == "raised"
                                 and a.event()["rule"] == "heat.fixed"]) == 2)
        await r.stop()
    finally:
        if r.p is not None:
            await r.stop()
        r.close()
        await rx.stop()


@pytest.mark.parametrize("offset_s", [-150, 540])
async def test_device_clock_off_by_minutes_raises_nothing_false(rig: Any,
                                                                offset_s: int) -> None:
    """An elevator whose clock runs 150 s slow (or 9 min fast), making ordinary 2-second
    stops with a passenger and reporting every second: no trapped, no offline."""
    r, rx = await rig()
    try:
        p = await r.start()
        off = offset_s * 1000
        for i in range(40):
            moving = i % 5 not in (3, 4)  # 3 s moving, 2 s stopped
            await r.step("elevator", "l-1", [_elevator(r.clock.now + 1000 + off,
                                                       moving=moving)])
        assert r.raised(device="l-1") == []
        # and a real incident is still seen on the device's own clock: stopped with a
        # passenger for more than 60 s raises trapped
        for _ in range(65):
            await r.step("elevator", "l-1", [_elevator(r.clock.now + 1000 + off,
                                                       moving=False)])
        assert [e["rule"] for e in r.raised(device="l-1")] == ["elevator.trapped"]
        assert p.stats()["late"] == 0
    finally:
        if r.p is not None:
            await r.stop()
        r.close()
        await rx.stop()


async def test_one_reading_from_a_fast_clock_does_not_blind_the_device(rig: Any) -> None:
    """After one reading 9 min ahead, the next readings are still judged: 70 °C raises at
    once, and nothing is counted late."""
    r, rx = await rig()
    try:
        p = await r.start()
        for _ in range(3):
            await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000)])
        await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000 + 540_000)])
        for _ in range(3):
            await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000)])
        await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000, 70.0)])
        assert [e["rule"] for e in r.raised(device="s-1")] == ["heat.fixed"]
        assert p.stats()["late"] == 0
        assert p.stats()["clock_steps"] >= 1
        text = p.registry.get_sample_value("anju_readings_late_total")
        assert text == 0.0
    finally:
        if r.p is not None:
            await r.stop()
        r.close()
        await rx.stop()


async def test_backlog_after_downtime_raises_nothing(rig: Any) -> None:
    """20 minutes of normal readings queued while the pipeline was down, drained at once
    after it starts again: no duration, no offline alarm."""
    r, rx = await rig()
    try:
        await r.start()
        await r.stop()  # the persistent session now queues for us
        t0 = r.clock.now
        minutes = 20
        elevator = [_elevator(t0 + s * 1000, moving=s % 10 < 7) for s in range(minutes * 60)]
        smoke = [_smoke(t0 + s * 60_000) for s in range(minutes)]
        water = [_water(t0 + s * 10_000) for s in range(minutes * 6)]
        await asyncio.to_thread(r.publish, "elevator", "l-1", elevator)
        await asyncio.to_thread(r.publish, "smoke", "s-1", smoke)
        await asyncio.to_thread(r.publish, "water", "pump-1", water)
        r.clock.now = t0 + minutes * 60_000
        p = await r.start()
        total = len(elevator) + len(smoke) + len(water)
        await until(lambda: p.decoder.accepted >= total, within_s=30)
        await r.tick(1000)
        assert r.raised() == []
        assert p.stats()["late"] == 0
    finally:
        if r.p is not None:
            await r.stop()
        r.close()
        await rx.stop()


async def test_a_receiver_refusing_past_the_horizon_shows_in_health(rig: Any) -> None:
    """A critical alarm the property team's receiver keeps refusing: retried, then parked
    past the horizon — never dropped — and /healthz says so (degraded, 200, not 503)."""
    r, rx = await rig(webhook_horizon_s=0.5, webhook_backoff_base_s=0.05,
                      webhook_backoff_cap_s=0.1, webhook_backoff_refused_cap_s=0.1)

    async def refuse(_attempt: Any) -> web.Response:
        return web.Response(status=503)

    rx.behaviour["property"] = refuse
    try:
        p = await r.start()
        await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000, 70.0)])

        def parked() -> bool:
            return p.health()["deliveries"]["reason"] == "parked"
        await until(parked, within_s=15)
        h = p.health()
        assert h["status"] == "degraded" and h["deliveries"]["teams"]["property"]["parked"] >= 1
        assert len(rx.attempts) >= 2 and not rx.accepted
        async with ClientSession() as s, s.get(f"http://{r.settings.api_addr}/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["status"] == "degraded"
        assert p.store.outbox(state="parked")  # kept for `anju alarms requeue`
    finally:
        if r.p is not None:
            await r.stop()
        r.close()
        await rx.stop()
