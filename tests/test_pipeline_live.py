"""The live pipeline end to end, in-process, on the session's real Mosquitto and InfluxDB:
a smoke reading lands in InfluxDB with the contract's tags (the foundation slice), an alarm
reaches a signed webhook, readings survive an InfluxDB outage through the spool."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from anju.alarms.receiver import WebhookReceiver
from anju.app.pipeline import Pipeline
from anju.config import Settings
from anju.devices.registry import Site, load_site
from anju.services import LocalServices, free_port
from tests.mqtt_support import until

pytestmark = pytest.mark.integration

SECRET = b"s3cret-for-tests"


def _site(root: Path, estate: str, hook: str = "http://127.0.0.1:9/hooks/property") -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        "estates:\n"
        f"  - id: {estate}\n"
        "    name: 测试小区\n"
        "    buildings:\n"
        "      - {id: b1, floors: 18, floor_height_m: 3.0}\n"
        "teams:\n"
        f"  - {{id: property-{estate}, role: property, estates: [{estate}], webhook: '{hook}',\n"
        "     secret_env: ANJU_TEST_SECRET, token_env: ANJU_TEST_TOKEN}\n",
        encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        f"s-1,smoke,{estate},b1,12,\"stair A, east=1\",\n"
        f"s-2,smoke,{estate},b1,3,,\n"
        f"pump-1,water,{estate},b1,-1,pump-room,\n", encoding="utf-8")
    return load_site(root)





def _settings(services: LocalServices, db: str, state: Path, cid: str) -> Settings:
    return Settings(mqtt_url=services.mosquitto.url, influx_url=services.influx.url,
                    influx_db=db, state_dir=state, api_addr=f"127.0.0.1:{free_port()}",
                    mqtt_client_id=cid, batch_linger_ms=20, tick_s=0.2)


def _publish(services: LocalServices, items: list[tuple[str, dict[str, object]]]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect(services.mosquitto.host, services.mosquitto.port)
    c.loop_start()
    try:
        infos = [c.publish(t, orjson.dumps(p), qos=1) for t, p in items]
        for i in infos:
            i.wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()




async def _connected(p: Pipeline) -> None:
    await until(lambda: p.consumer.subscribed)


async def test_smoke_reading_lands_in_influxdb(services: LocalServices, influx_db: str,
                                               topic_prefix: str, tmp_path: Path, cid: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", "x")
    site = _site(tmp_path / "site", topic_prefix)
    settings = _settings(services, influx_db, tmp_path / "state", cid)
    ts = int(time.time() * 1000) - 1000
    async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
        await _connected(p)
        await asyncio.to_thread(_publish, services, [
            (f"anju/{topic_prefix}/b1/smoke/s-1", {"ts": ts, "smoke_db_m": 0.02, "temp_c": 22.5,
                                                    "battery_pct": 88.0, "tamper": False}),
            (f"anju/{topic_prefix}/b1/smoke/s-2", {"ts": ts, "smoke_db_m": 0.01, "temp_c": 21}),
            (f"anju/{topic_prefix}/b1/smoke/nobody", {"ts": ts, "smoke_db_m": 0.0, "temp_c": 1}),
        ])
        await until(lambda: p.stats()["stored"] >= 2)
        stats = p.stats()
    assert stats["readings"] == 2 and stats["rejected"] == {"unknown_device": 1}
    letters = (tmp_path / "state" / "deadletters.jsonl").read_text().splitlines()
    assert len(letters) == 1 and orjson.loads(letters[0])["reason"] == "unknown_device"
    res = services.influx.query("SELECT * FROM smoke", db=influx_db, epoch="ms")
    series = res["results"][0]["series"][0]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    by_dev = {r["device"]: r for r in rows}
    assert by_dev["s-1"] == {
        "time": ts, "battery_pct": 88.0, "building": "b1", "device": "s-1",
        "estate": topic_prefix, "floor": "12", "smoke_db_m": 0.02, "tamper": False,
        "temp_c": 22.5, "zone": "stair A, east=1"}
    assert by_dev["s-2"]["zone"] is None and by_dev["s-2"]["temp_c"] == 21.0


async def test_alarm_reaches_webhook_and_alarms_measurement(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", SECRET.decode())
    async with WebhookReceiver({"property": SECRET}) as rx:
        site = _site(tmp_path / "site", topic_prefix, hook=rx.url("property"))
        settings = _settings(services, influx_db, tmp_path / "state", cid)
        now = int(time.time() * 1000)
        async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
            await _connected(p)
            # heat.fixed: temp_c ≥ 57 raises at once (CONTRACT §5)
            await asyncio.to_thread(_publish, services, [
                (f"anju/{topic_prefix}/b1/smoke/s-1",
                 {"ts": now, "smoke_db_m": 0.01, "temp_c": 60.0})])
            await until(lambda: bool(rx.accepted.get("property")))
            await until(lambda: p.stats()["alarms"].get("raised", 0) >= 1)
        ev = rx.accepted["property"][0]
        assert ev.signature_ok
        body = ev.event()
        assert body["rule"] == "heat.fixed" and body["device"] == "s-1"
        assert body["zone"] == "stair A, east=1"
    assert services.influx.count("alarms", influx_db, "\"rule\" = 'heat.fixed'") >= 1


async def test_an_alarm_commits_while_the_shared_thread_pool_is_busy(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The alarm's commit has a thread of its own: with every thread of the event loop's
    shared pool held (webhook marks of many teams, API queries, the spool), a heat
    reading still reaches the webhook before any of them is free again."""
    monkeypatch.setenv("ANJU_TEST_SECRET", SECRET.decode())
    async with WebhookReceiver({"property": SECRET}) as rx:
        site = _site(tmp_path / "site", topic_prefix, hook=rx.url("property"))
        settings = _settings(services, influx_db, tmp_path / "state", cid)
        async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
            await _connected(p)
            loop = asyncio.get_running_loop()
            release = threading.Event()
            held = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]
            try:
                await asyncio.sleep(0.2)  # every thread of the pool is taken
                pub = threading.Thread(target=_publish, args=(services, [
                    (f"anju/{topic_prefix}/b1/smoke/s-1",
                     {"ts": int(time.time() * 1000), "smoke_db_m": 0.01, "temp_c": 60.0})]))
                pub.start()
                await until(lambda: bool(rx.accepted.get("property")), within_s=15)
                assert not release.is_set() and not any(f.done() for f in held)
            finally:
                release.set()
                await asyncio.gather(*held)
                pub.join(10)
        assert rx.accepted["property"][0].event()["rule"] == "heat.fixed"


async def test_the_devices_last_readings_outlive_a_restart(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a restart the device view still knows when each device last reported: a
    routine restart must not turn the whole site into "never heard"."""
    monkeypatch.setenv("ANJU_TEST_SECRET", "x")
    monkeypatch.setenv("ANJU_TEST_TOKEN", "tok-last-readings-0123")
    site = _site(tmp_path / "site", topic_prefix)
    settings = _settings(services, influx_db, tmp_path / "state", cid)
    ts = int(time.time() * 1000) - 5000

    async def health(p: Pipeline) -> dict[str, dict[str, object]]:
        url = f"http://{settings.api_addr}/devices/health?devices=all"
        async with aiohttp.ClientSession() as http, http.get(
                url, headers={"Authorization": "Bearer tok-last-readings-0123"}) as r:
            assert r.status == 200
            doc = await r.json()
        return {d["device"]: d for d in doc["devices"]}

    async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
        await _connected(p)
        await asyncio.to_thread(_publish, services, [
            (f"anju/{topic_prefix}/b1/smoke/s-1", {"ts": ts, "smoke_db_m": 0.01, "temp_c": 21})])
        await until(lambda: p.stats()["stored"] >= 1)
        before = await health(p)
    assert before["s-1"]["last_reading_ts"] == ts
    received = before["s-1"]["last_received_at"]
    assert isinstance(received, int)
    assert (tmp_path / "state" / "last_readings.npz").exists()  # saved at stop

    async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
        await _connected(p)
        after = await health(p)
        # the monthly report's task runs beside (its record: first ran now, nothing due)
        assert "report" in p._tasks
        await until(lambda: (tmp_path / "state" / "report_monthly.json").exists())
        assert p.engine.newest[site.devices.index["s-1"]] < 0  # the engine starts afresh
    assert after["s-1"]["last_reading_ts"] == ts
    assert after["s-1"]["last_received_at"] == received
    assert after["s-2"]["last_reading_ts"] is None  # never reported: still never heard


async def test_influxdb_outage_spools_then_replays(services: LocalServices, influx_db: str,
                                                   topic_prefix: str, tmp_path: Path,
                                                   cid: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", "x")
    site = _site(tmp_path / "site", topic_prefix)
    settings = _settings(services, influx_db, tmp_path / "state", cid)
    t0 = int(time.time() * 1000) - 60_000
    topic = f"anju/{topic_prefix}/b1/water/pump-1"

    def batch(start: int, n: int) -> list[tuple[str, dict[str, object]]]:
        return [(topic, {"ts": t0 + i, "level_pct": 50.0, "pressure_mpa": 0.3,
                         "flow_m3h": float(i), "pump_running": True})
                for i in range(start, start + n)]

    async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
        await _connected(p)
        await asyncio.to_thread(_publish, services, batch(0, 100))
        await until(lambda: p.stats()["stored"] >= 100)
        services.influx.stop()
        try:
            await asyncio.to_thread(_publish, services, batch(100, 300))
            await until(lambda: p.stats()["spooled"] >= 300)
            assert p.storage.mode == "spooling"
            assert p.health()["influxdb"]["ok"] is False
            # acknowledged while InfluxDB is down: they are on disk
            await until(lambda: p.acks.pending == 0)
        finally:
            services.influx.start()
        await until(lambda: p.storage.mode == "direct", within_s=20)
        stats = p.stats()
    assert stats["replayed"] >= 300
    assert services.influx.count("water", influx_db) == 400


async def test_storage_waits_for_an_alarm_on_its_way_but_never_stops_for_it(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Alarms first (anju.app.alarms_first): while an alarm's webhook is in flight, storage's
    writes wait for it, each at most the hold's limit; a receiver that hangs slows storage
    but does not stop it, and once the webhook is answered the way is clear again."""
    monkeypatch.setenv("ANJU_TEST_SECRET", SECRET.decode())
    answer = asyncio.Event()

    async def hang(_a: object) -> None:
        await answer.wait()

    async with WebhookReceiver({"property": SECRET}) as rx:
        rx.behaviour["property"] = hang  # type: ignore[assignment]
        site = _site(tmp_path / "site", topic_prefix, hook=rx.url("property"))
        settings = _settings(services, influx_db, tmp_path / "state", cid).model_copy(
            update={"webhook_timeout_s": 60.0})  # it hangs for the whole test
        now = int(time.time() * 1000)
        try:
            async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
                await _connected(p)
                assert p.alarms_first.clear
                await asyncio.to_thread(_publish, services, [
                    (f"anju/{topic_prefix}/b1/smoke/s-1",
                     {"ts": now, "smoke_db_m": 0.01, "temp_c": 60.0})])
                await until(lambda: bool(rx.attempts))  # the webhook is in flight, hanging
                assert p.dispatcher.sending() and not p.alarms_first.clear
                stored = p.stats()["stored"]
                await asyncio.to_thread(_publish, services, [
                    (f"anju/{topic_prefix}/b1/smoke/s-2",
                     {"ts": now + i, "smoke_db_m": 0.01, "temp_c": 21.0}) for i in range(20)])
                await until(lambda: p.stats()["stored"] >= stored + 20)
                assert not rx.accepted.get("property")  # stored while the webhook still hung
                assert p.alarms_first.holds >= 1  # and storage did wait for it
                held = p.registry.get_sample_value("anju_storage_held_for_alarms_seconds_total")
                assert held is not None and held >= 0.015  # each wait up to its 20 ms limit
                answer.set()
                await until(lambda: bool(rx.accepted.get("property")))
                await until(lambda: p.alarms_first.clear)
        finally:
            answer.set()
    assert services.influx.count("smoke", influx_db, "\"device\" = 's-2'") == 20
