"""/healthz tells the truth: a broker that refuses the pipeline's password (with its reason
code), a second pipeline taking the session over, InfluxDB down and data spooling,
webhooks dead-lettered, late readings — each named, and logged once at WARNING."""

from __future__ import annotations

import asyncio
import csv
import logging
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from anju.alarms.metrics import alarm_metrics
from anju.app.pipeline import Pipeline
from anju.config import Settings
from anju.devices.credentials import PIPELINE_USER, write_credentials
from anju.devices.registry import Site, load_site
from anju.ingest.health import HealthReport, dead_letters_by_team
from anju.services import LocalServices, Mosquitto, free_port
from tests.mqtt_support import until

PASSWORD = "p@ss/w:rd%20 ü"  # needs percent-encoding in a URL, every character of it


def _site(root: Path, estate: str) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        f"estates:\n  - id: {estate}\n    name: e\n    buildings:\n"
        "      - {id: b1, floors: 18, floor_height_m: 3.0}\n"
        "teams:\n"
        f"  - {{id: property-{estate}, role: property, estates: [{estate}],\n"
        "     webhook: 'http://127.0.0.1:9/hooks', secret_env: ANJU_TEST_SECRET}\n",
        encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        f"pump-1,water,{estate},b1,-1,pump-room,\n", encoding="utf-8")
    return load_site(root)


def _settings(mqtt_url: str, services: LocalServices, db: str, state: Path,
              cid: str) -> Settings:
    return Settings(mqtt_url=mqtt_url, influx_url=services.influx.url, influx_db=db,
                    state_dir=state, api_addr=f"127.0.0.1:{free_port()}",
                    mqtt_client_id=cid, batch_linger_ms=20, tick_s=0.2)


async def _healthz(p: Pipeline) -> tuple[int, dict[str, Any]]:
    host, port = p.settings.api_host_port
    async with aiohttp.ClientSession() as s, s.get(f"http://{host}:{port}/healthz") as r:
        return r.status, await r.json()


@pytest.mark.integration
async def test_refused_names_the_brokers_reason(
        services: LocalServices, influx_db: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", "x")
    site = _site(tmp_path / "site", "e1")
    creds = tmp_path / "creds"
    write_credentials(site, creds, pipeline_password=PASSWORD)
    with (creds / "credentials.csv").open(newline="") as fh:
        assert {r["username"]: r["password"] for r in csv.DictReader(fh)}[PIPELINE_USER] \
            == PASSWORD
    broker = Mosquitto(tmp_path / "broker", password_file=creds / "passwd",
                       acl_file=creds / "acl", persistence=False)
    await asyncio.to_thread(broker.start)
    try:
        url = f"mqtt://{PIPELINE_USER}:wrong-password@{broker.host}:{broker.port}"
        caplog.set_level(logging.INFO, "anju")
        async with Pipeline(_settings(url, services, influx_db, tmp_path / "s1", cid),
                            site, registry=CollectorRegistry()) as p:
            await until(lambda: p.consumer.state == "refused")
            await until(lambda: p.consumer.connections == 0 and p.consumer.backoff.attempt >= 2)
            code, body = await _healthz(p)
        assert code == 503 and body["status"] == "down"
        broker_dep = body["dependencies"]["mqtt"]
        assert broker_dep["reason"] == "refused"
        # Mosquitto 2.0 answers a wrong password with 0x87 "Not authorized"
        assert broker_dep["refused"] == {"code": 0x87, "reason": "Not authorized"}
        assert "Not authorized" in broker_dep["detail"] and "0x87" in broker_dep["detail"]
        assert "wrong-password" not in orjson.dumps(body).decode()
        refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
        assert refusals[0].levelno == logging.WARNING  # the first, loudly
        assert all(r.levelno == logging.INFO for r in refusals[1:]) and len(refusals) >= 2
        assert all("wrong-password" not in r.getMessage() for r in caplog.records)

        # the right password, percent-encoded in the URL, is decoded before use
        url = f"mqtt://{PIPELINE_USER}:{quote(PASSWORD, safe='')}@{broker.host}:{broker.port}"
        async with Pipeline(_settings(url, services, influx_db, tmp_path / "s2", cid),
                            site, registry=CollectorRegistry()) as p:
            await until(lambda: p.consumer.subscribed)
            code, body = await _healthz(p)
            assert code == 200 and body["dependencies"]["mqtt"]["reason"] == "connected"
    finally:
        await asyncio.to_thread(broker.stop)


@pytest.mark.integration
async def test_a_second_pipeline_with_the_same_client_id_is_named(
        services: LocalServices, influx_db: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", "x")
    site = _site(tmp_path / "site", f"t_{uuid.uuid4().hex[:8]}")
    url = services.mosquitto.url
    caplog.set_level(logging.INFO, "anju")
    async with Pipeline(_settings(url, services, influx_db, tmp_path / "a", cid), site,
                        registry=CollectorRegistry()) as first:
        await until(lambda: first.consumer.subscribed)
        async with Pipeline(_settings(url, services, influx_db, tmp_path / "b", cid), site,
                            registry=CollectorRegistry()) as second:
            # they drop each other: each must come to name it
            for p in (first, second):
                await until(lambda p=p: p.health()["mqtt"]["reason"] == "session_taken_over",
                            within_s=20)
            health = first.health()
            assert health["status"] in ("degraded", "down")
            assert "same client id" in health["mqtt"]["detail"] and cid in health["mqtt"]["detail"]
    taken = [r for r in caplog.records if "session taken over" in r.getMessage()]
    assert taken and taken[0].levelno == logging.WARNING


@pytest.mark.integration
async def test_influxdb_down_is_degraded_spooling(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", "x")
    site = _site(tmp_path / "site", topic_prefix)
    topic = f"anju/{topic_prefix}/b1/water/pump-1"
    t0 = int(time.time() * 1000) - 60_000
    caplog.set_level(logging.INFO, "anju")
    settings = _settings(services.mosquitto.url, services, influx_db, tmp_path / "s", cid)
    async with Pipeline(settings, site, registry=CollectorRegistry()) as p:
        await until(lambda: p.consumer.subscribed)
        code, body = await _healthz(p)
        assert (code, body["status"], body["dependencies"]["influxdb"]["reason"]) == \
            (200, "ok", "ok")
        services.influx.stop()
        try:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
            c.connect(services.mosquitto.host, services.mosquitto.port)
            c.loop_start()
            try:
                for i in range(50):
                    c.publish(topic, orjson.dumps({"ts": t0 + i, "level_pct": 50.0,
                                                   "pressure_mpa": 0.3, "flow_m3h": 1.0,
                                                   "pump_running": True}), qos=1)
            finally:
                c.loop_stop()
                c.disconnect()
            await until(lambda: p.stats()["spooled"] >= 50, within_s=20)
            code, body = await _healthz(p)
            p.health()  # a second look logs nothing new
        finally:
            services.influx.start()
    assert code == 200 and body["status"] == "degraded"  # still connected: no 503
    influx = body["dependencies"]["influxdb"]
    assert influx["reason"] == "spooling" and influx["spool_points"] >= 50
    assert influx["spool_age_s"] is not None and influx["spool_age_s"] >= 0
    assert "spooled on disk" in influx["detail"]
    first = [r for r in caplog.records if r.getMessage().startswith("health: influxdb spooling")]
    assert len(first) == 1 and first[0].levelno == logging.WARNING


# -- composition, without services ---------------------------------------------------------

_MQTT_OK = {"ok": True, "state": "connected", "taken_over": False}
_INFLUX_OK = {"ok": True, "mode": "direct", "reachable": True}


def test_deliveries_from_the_dispatchers_health_or_the_dead_letter_metric() -> None:
    h = HealthReport()
    out = h.compose(mqtt=_MQTT_OK, influxdb=_INFLUX_OK, dead_by_team={}, late=0, pipeline={},
                    deliveries={"teams": {"fire": {"undelivered": 2, "parked": 1},
                                          "property-e1": {"undelivered": 0, "parked": 0}}})
    assert out["status"] == "degraded"
    d = out["deliveries"]
    assert d["reason"] == "parked" and "fire 1" in d["detail"]
    assert d["teams"]["fire"] == {"undelivered": 2, "parked": 1}
    out = h.compose(mqtt=_MQTT_OK, influxdb=_INFLUX_OK, deliveries={"fire": {"failing": 3}},
                    dead_by_team={}, late=0, pipeline={})
    assert out["deliveries"]["reason"] == "failing"
    # no dispatcher health: the dead-letter counter
    reg = CollectorRegistry()
    alarm_metrics(reg).deliveries.labels("fire", "parked").inc(2)
    assert dead_letters_by_team(reg) == {"fire": 2}
    out = h.compose(mqtt=_MQTT_OK, influxdb=_INFLUX_OK, deliveries=None,
                    dead_by_team=dead_letters_by_team(reg), late=0, pipeline={})
    assert out["deliveries"]["reason"] == "parked"
    # WebhookDispatcher.health(): per destination, summed per team
    dispatcher = {"ok": False, "undelivered": 2, "pending": 1, "destinations": {
        "fire/webhook": {"team": "fire", "target": "webhook", "pending": 1, "parked": 2,
                         "failing_since_ms": 5, "last_error": "HTTP 500"},
        "fire/wecom": {"team": "fire", "target": "wecom", "pending": 0, "parked": 0,
                       "failing_since_ms": None, "last_error": None}}}
    out = h.compose(mqtt=_MQTT_OK, influxdb=_INFLUX_OK, deliveries=dispatcher,
                    dead_by_team={}, late=0, pipeline={})
    assert out["deliveries"]["teams"] == {"fire": {"pending": 1, "parked": 2, "failing": 1}}
    assert (out["status"], out["deliveries"]["reason"]) == ("degraded", "parked")
    out = h.compose(mqtt=_MQTT_OK, influxdb=_INFLUX_OK, deliveries=None, dead_by_team={},
                    late=0, pipeline={})
    assert (out["status"], out["deliveries"]["reason"]) == ("ok", "ok")


def test_late_readings_and_the_broker_decide_the_status() -> None:
    h = HealthReport()
    out = h.compose(mqtt=_MQTT_OK, influxdb=_INFLUX_OK, deliveries=None, dead_by_team={},
                    late=0, pipeline={})
    assert out["status"] == "ok" and out["rules"]["reason"] == "ok"
    out = h.compose(mqtt=_MQTT_OK, influxdb=_INFLUX_OK, deliveries=None, dead_by_team={},
                    late=7, pipeline={})
    assert out["status"] == "degraded" and out["rules"]["reason"] == "late_readings"
    assert out["rules"]["late"] == 7
    down = {"ok": False, "state": "connecting", "last_error": "connect to h:1: refused"}
    out = h.compose(mqtt=down, influxdb=_INFLUX_OK, deliveries=None, dead_by_team={},
                    late=7, pipeline={})
    assert out["status"] == "down" and out["mqtt"]["reason"] == "unreachable"
    taken = {"ok": True, "state": "connected", "taken_over": True, "last_error": "x"}
    out = h.compose(mqtt=taken, influxdb=_INFLUX_OK, deliveries=None, dead_by_team={},
                    late=7, pipeline={})
    assert out["status"] == "degraded" and out["mqtt"]["reason"] == "session_taken_over"
