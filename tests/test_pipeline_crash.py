"""At least once end to end, through crashes and outages: ``anju run`` as a subprocess is
SIGKILLed and restarted while readings are being published and while InfluxDB is stopped;
every published reading ends up in InfluxDB exactly once (InfluxDB keeps one point per
series and time, so a redelivered reading overwrites itself). Then SIGTERM drains, exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anju.services import LocalServices, free_port
from tests.mqtt_support import purge_session

pytestmark = pytest.mark.integration

DEVICES = 20
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _write_site(root: Path, estate: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        f"estates:\n  - id: {estate}\n    buildings:\n      - {{id: b1, floors: 18}}\n")
    rows = "".join(f"s-{i},smoke,{estate},b1,{i % 18 + 1},z,\n" for i in range(DEVICES))
    (root / "devices.csv").write_text("device,kind,estate,building,floor,zone,params\n" + rows)
    return root


def _health(api: str) -> dict[str, object] | None:
    try:
        with _no_proxy.open(f"http://{api}/healthz", timeout=1) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except OSError as exc:  # refused while starting; HTTPError (503) while connecting
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()
        return None


def _wait(cond: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Run:
    """``anju run`` in a subprocess."""

    def __init__(self, site: Path, env: dict[str, str], log: Path) -> None:
        self.api = env["ANJU_API_ADDR"]
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anju.cli", "run", "--site", str(site),
             "--log-level", "WARNING"], env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def ready(self) -> None:
        def subscribed() -> bool:
            h = _health(self.api)
            mq = h["dependencies"]["mqtt"] if h else None  # type: ignore[index]
            return bool(mq and mq.get("subscribed"))  # type: ignore[union-attr]
        _wait(subscribed, 30, "the pipeline to subscribe")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self._log.close()


def _publisher(services: LocalServices, estate: str, n: int, rate: float,
               sent: list[int]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect(services.mosquitto.host, services.mosquitto.port)
    c.loop_start()
    t0 = int(time.time() * 1000) - 120_000
    start = time.monotonic()
    try:
        infos = []
        for i in range(n):
            dev = i % DEVICES
            ts = t0 + i  # unique per reading, so "exactly once" is a count
            payload = {"ts": ts, "seq": i, "smoke_db_m": 0.01, "temp_c": 20 + dev / 10}
            infos.append(c.publish(f"anju/{estate}/b1/smoke/s-{dev}", orjson.dumps(payload),
                                   qos=1))
            sent[0] = i + 1
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for info in infos:
            info.wait_for_publish(30)
    finally:
        c.loop_stop()
        c.disconnect()


def test_sigkill_and_influx_outage_lose_nothing(services: LocalServices, influx_db: str,
                                                topic_prefix: str, tmp_path: Path) -> None:
    site = _write_site(tmp_path / "site", topic_prefix)
    env = {**os.environ,
           "ANJU_MQTT_URL": services.mosquitto.url, "ANJU_INFLUX_URL": services.influx.url,
           "ANJU_INFLUX_DB": influx_db, "ANJU_STATE_DIR": str(tmp_path / "state"),
           "ANJU_API_ADDR": f"127.0.0.1:{free_port()}", "ANJU_BATCH_LINGER_MS": "20",
           "ANJU_MQTT_CLIENT_ID": f"anju-crash-{uuid.uuid4().hex[:8]}"}
    log = tmp_path / "run.log"
    n = 4000
    run = _Run(site, env, log)
    run.ready()
    sent = [0]
    pub = threading.Thread(target=_publisher, args=(services, topic_prefix, n, 1000.0, sent))
    pub.start()
    try:
        _wait(lambda: sent[0] > 600, 10, "publishing")
        services.influx.stop()  # readings go to the spool
        _wait(lambda: sent[0] > 1400, 10, "publishing")
        run.kill()  # mid-stream, with a spool on disk and unacknowledged messages
        run = _Run(site, env, log)
        run.ready()
        _wait(lambda: sent[0] > 2400, 10, "publishing")
        run.kill()  # again, InfluxDB still down
        run = _Run(site, env, log)
        services.influx.start()
        run.ready()
    finally:
        services.influx.start()
        pub.join(30)
    try:
        _wait(lambda: services.influx.count("smoke", influx_db) >= n, 30, "every reading")
        time.sleep(0.5)  # anything more would be a reading stored twice
        assert services.influx.count("smoke", influx_db) == n
    finally:
        rc = run.terminate()
        purge_session(services, env["ANJU_MQTT_CLIENT_ID"])
    assert rc == 0, log.read_text()[-3000:]


