"""Crash consistency of the alarm branch: a message is acknowledged only once its readings
are stored AND its alarm transitions are committed, so a SIGKILL of ``anju run`` between
the two loses no alarm, and the redelivered message raises nothing twice (an event alarm's
id is rule + subject + start).

Deterministic first: the test holds SQLite's write lock on the alarm store (a real lock,
another connection), so the pipeline stores the camera readings in InfluxDB while their
alarm commit waits; it is then SIGKILLed. Before the fix those messages were acknowledged
on storage and their alarms lost for good. Then events are published while the pipeline is
killed at arbitrary moments. In the end every event is one alarm with one ``raised``."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anju.alarms import SqliteAlarmStore
from anju.services import LocalServices, free_port
from tests.mqtt_support import purge_session
from tests.test_pipeline_crash import _Run, _wait

pytestmark = pytest.mark.integration

CAMERAS = 10
TRACK = [[0, 10.0, 100.0], [50, 10.0, 110.0], [100, 10.0, 125.0], [150, 10.0, 145.0]]
_PARAMS = ('"{""mount_height_m"": 2.5, ""distance_m"": 25.0, ""tilt_deg"": 40.0, '
           '""focal_px"": 1500.0, ""cy_px"": 1080.0}"')


def _write_site(root: Path, estate: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        f"estates:\n  - id: {estate}\n    buildings:\n      - {{id: b1, floors: 30}}\n")
    rows = "".join(f"c-{i},camera,{estate},b1,,south,{_PARAMS}\n" for i in range(CAMERAS))
    (root / "devices.csv").write_text("device,kind,estate,building,floor,zone,params\n" + rows)
    return root


def _publish_events(services: LocalServices, estate: str, t0: int, first: int, n: int,
                    rate: float, sent: list[int]) -> None:
    """Events ``first … first+n-1``; event i comes from camera i mod CAMERAS at t0 + i ms."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect(services.mosquitto.host, services.mosquitto.port)
    c.loop_start()
    start = time.monotonic()
    try:
        infos = []
        for k, i in enumerate(range(first, first + n)):
            payload = {"ts": t0 + i, "event": "falling_object", "track": TRACK,
                       "confidence": 0.9}
            infos.append(c.publish(f"anju/{estate}/b1/camera/c-{i % CAMERAS}",
                                   orjson.dumps(payload), qos=1))
            sent[0] = k + 1
            delay = start + (k + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for info in infos:
            info.wait_for_publish(30)
    finally:
        c.loop_stop()
        c.disconnect()


def _raised(state: Path) -> dict[int, int]:
    """started_at → number of ``raised`` events, over the camera.falling_object alarms."""
    out: dict[int, int] = {}
    with SqliteAlarmStore(state) as store:
        for rec in store.list_alarms(open_only=False):
            if rec.rule == "camera.falling_object":
                out[rec.base.started_at] = sum(
                    1 for ev in store.events(rec.alarm_id) if ev.event == "raised")
    return out


def test_sigkill_between_storage_and_alarm_commit_loses_no_alarm(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path) -> None:
    site = _write_site(tmp_path / "site", topic_prefix)
    state = tmp_path / "state"
    env = {**os.environ,
           "ANJU_MQTT_URL": services.mosquitto.url, "ANJU_INFLUX_URL": services.influx.url,
           "ANJU_INFLUX_DB": influx_db, "ANJU_STATE_DIR": str(state),
           "ANJU_API_ADDR": f"127.0.0.1:{free_port()}", "ANJU_BATCH_LINGER_MS": "10",
           "ANJU_MQTT_CLIENT_ID": f"anju-crash-{uuid.uuid4().hex[:8]}"}
    log = tmp_path / "run.log"
    t0 = int(time.time() * 1000) - 60_000
    first, more = 30, 300
    run = _Run(site, env, log)
    try:
        run.ready()
        # 1. The alarm store is locked: readings get stored, their alarms cannot commit.
        lock = sqlite3.connect(str(state / "alarms.sqlite3"), isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            _publish_events(services, topic_prefix, t0, 0, first, 1000.0, [0])
            _wait(lambda: services.influx.count("camera", influx_db) >= first, 8,
                  "the first events in InfluxDB")
            run.kill()
        finally:
            lock.close()
        assert _raised(state) == {}  # nothing committed before the kill
        # 2. Published while the pipeline is killed at arbitrary moments.
        run = _Run(site, env, log)
        run.ready()
        sent = [0]
        pub = threading.Thread(target=_publish_events,
                               args=(services, topic_prefix, t0, first, more, 300.0, sent))
        pub.start()
        try:
            for after in (60, 170):
                _wait(lambda a=after: sent[0] > a, 10, "publishing")  # type: ignore[misc]
                run.kill()
                run = _Run(site, env, log)
                run.ready()
        finally:
            pub.join(30)
        total = first + more

        def settled() -> bool:
            return len(_raised(state)) >= total
        _wait(settled, 30, "every alarm")
        time.sleep(0.5)  # anything more would be an alarm raised twice
    finally:
        rc = run.terminate()
        purge_session(services, env["ANJU_MQTT_CLIENT_ID"])
    assert rc == 0, log.read_text()[-3000:]
    raised = _raised(state)
    assert sorted(raised) == [t0 + i for i in range(total)]
    assert set(raised.values()) == {1}, {k: v for k, v in raised.items() if v != 1}
    assert services.influx.count("camera", influx_db) == total
