"""Reloading the registry of a running pipeline (SIGHUP), on real Mosquitto and InfluxDB:
a device added and one removed while alarms are open, rule state of the others carried
over, a broken registry leaving the running one in place, and the signal itself."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anju.app.reload import REMOVED
from anju.services import LocalServices, free_port
from tests.test_alarms_operation import ELEVATOR, _events, _smoke
from tests.test_alarms_operation import rig as rig  # the fixture
from tests.test_pipeline_crash import _health, _Run, _wait

pytestmark = pytest.mark.integration


def _devices(root: Path, estate: str, *names: str) -> None:
    rows = "".join(f"{n},smoke,{estate},b1,{i + 2},z,\n" for i, n in enumerate(names))
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        f"l-1,elevator,{estate},b1,,car-1,{ELEVATOR}\n" + rows, encoding="utf-8")


async def test_reload_adds_and_removes_devices_and_keeps_rule_state(rig: Any) -> None:
    r, rx = await rig()
    try:
        p = await r.start()
        root = r.site.root
        _devices(root, r.estate, "s-1", "s-2")
        assert (await p.reload())["ok"]
        await r.step("smoke", "s-2", [_smoke(r.clock.now + 1000, 70.0)])  # heat.fixed open
        start = r.clock.now + 1000
        for _ in range(5):  # smoke on s-1 for 4 s of the 10 s smoke.alarm needs
            await r.step("smoke", "s-1", [{**_smoke(r.clock.now + 1000), "smoke_db_m": 0.3}])
        assert not r.raised("smoke.alarm")

        _devices(root, r.estate, "s-1", "s-3")  # s-2 removed, s-3 added
        res = await p.reload()
        assert res["ok"] and res["added"] == 1 and res["removed"] == 1
        assert res["cleared"] == 1 and res["carried"] >= 2
        for _ in range(7):  # the run goes on: raised 10 s after it began, not after reload
            await r.step("smoke", "s-1", [{**_smoke(r.clock.now + 1000), "smoke_db_m": 0.3}])
        smoke = r.raised("smoke.alarm")
        assert len(smoke) == 1 and smoke[0]["started_at"] == start
        assert smoke[0]["ts"] == start + 10_000
        cleared = [e for e in _events(p) if e["event"] == "cleared" and e["device"] == "s-2"]
        assert [e["details"]["reason"] for e in cleared] == [REMOVED]
        await r.step("smoke", "s-3", [_smoke(r.clock.now + 1000, 70.0)])
        assert [e["device"] for e in r.raised("heat.fixed")] == ["s-2", "s-3"]
        await r.step("smoke", "s-2", [_smoke(r.clock.now + 1000)])
        assert p.stats()["rejected"].get("unknown_device") == 1
        assert p.health()["pipeline"]["last_reload"]["removed"] == 1
    finally:
        if r.p is not None:
            await r.stop()
        r.close()
        await rx.stop()


async def test_a_broken_registry_leaves_the_running_one(rig: Any) -> None:
    r, rx = await rig()
    try:
        p = await r.start()
        root = r.site.root
        good = (root / "devices.csv").read_text(encoding="utf-8")
        (root / "devices.csv").write_text(good + "x-1,lift,nowhere,b1,,,\n", encoding="utf-8")
        res = await p.reload()
        assert not res["ok"] and "devices.csv" in res["error"]
        assert p.registry.get_sample_value("anju_registry_reloads_total",
                                           {"outcome": "failed"}) == 1.0
        await r.step("smoke", "s-1", [_smoke(r.clock.now + 1000, 70.0)])
        assert [e["device"] for e in r.raised("heat.fixed")] == ["s-1"]
    finally:
        if r.p is not None:
            await r.stop()
        r.close()
        await rx.stop()


def test_sighup_reloads_anju_run(services: LocalServices, influx_db: str, topic_prefix: str,
                                 tmp_path: Path) -> None:
    """The signal itself: `anju run` takes a device added to devices.csv after SIGHUP."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "site.yaml").write_text(
        f"estates:\n  - id: {topic_prefix}\n    buildings:\n      - {{id: b1, floors: 18}}\n")
    _devices(root, topic_prefix, "s-1")
    env = {**os.environ, "ANJU_MQTT_URL": services.mosquitto.url,
           "ANJU_INFLUX_URL": services.influx.url, "ANJU_INFLUX_DB": influx_db,
           "ANJU_STATE_DIR": str(tmp_path / "state"), "ANJU_API_ADDR": f"127.0.0.1:{free_port()}",
           "ANJU_MQTT_CLIENT_ID": f"sighup-{topic_prefix}"}
    run = _Run(root, env, tmp_path / "run.log")
    try:
        run.ready()
        _devices(root, topic_prefix, "s-1", "s-9")
        run.proc.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            h = _health(run.api)
            last = h["dependencies"]["pipeline"].get("last_reload") if h else None  # type: ignore[index]
            return bool(last and last.get("ok") and last.get("added") == 1)  # type: ignore[union-attr]
        _wait(reloaded, 20, "the reload")
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{topic_prefix}")
        c.connect(services.mosquitto.host, services.mosquitto.port)
        c.loop_start()
        c.publish(f"anju/{topic_prefix}/b1/smoke/s-9", orjson.dumps(
            {"ts": int(time.time() * 1000), "smoke_db_m": 0.0, "temp_c": 21.0}),
            qos=1).wait_for_publish(10)
        c.loop_stop()
        c.disconnect()
        _wait(lambda: services.influx.count("smoke", influx_db, "\"device\" = 's-9'") == 1,
              20, "s-9's reading in InfluxDB")
        assert run.terminate() == 0
    finally:
        if run.proc.poll() is None:
            run.kill()
