"""Publishing to a real Mosquitto: everything recorded arrives, on schedule when paced, as
each device (or gateway) when the broker wants credentials, and from several processes."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anju.devices.credentials import write_credentials
from anju.devices.registry import PIPELINE_USER, Site, load_site
from anju.errors import ServiceError
from anju.services import LocalServices, Mosquitto
from anju.simulators.city import plan_city, write_site
from anju.simulators.publish import Publisher, read_credentials
from anju.simulators.run import RunOptions, run
from anju.simulators.traffic import Traffic, record

pytestmark = pytest.mark.integration

START_MS = 1_772_409_600_000


@pytest.fixture
def site(tmp_path: Path, topic_prefix: str) -> Site:
    """Two buildings of a city whose estate ids are unique to this test."""
    plan = plan_city(1, seed=5, estate_prefix=f"{topic_prefix}-e")
    plan.devices = [row for row in plan.devices if row[3] in ("b01", "b02")]
    write_site(plan, tmp_path / "site")
    return load_site(tmp_path / "site")


class _Sink:
    """A QoS 1 subscriber counting what arrives."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str, bytes]] = []
        self.ready = threading.Event()
        self.lock = threading.Lock()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[float, str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything extra would show up now
        with self.lock:
            return list(self.messages)


@contextmanager
def _subscribe(broker: Mosquitto, topic: str, user: str | None = None,
               password: str | None = None) -> Iterator[_Sink]:
    sink = _Sink()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sink-{uuid.uuid4().hex[:8]}")
    if user is not None:
        c.username_pw_set(user, password)

    def on_connect(client: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        client.subscribe(topic, qos=1)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with sink.lock:
            sink.messages.append((time.monotonic(), msg.topic, msg.payload))

    c.on_connect = on_connect
    c.on_subscribe = lambda *_a: sink.ready.set()
    c.on_message = on_message
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        assert sink.ready.wait(10), "subscription not acknowledged"
        yield sink
    finally:
        c.disconnect()
        c.loop_stop()


def _expected(site: Site, seconds: float, via: str = "device") -> list[tuple[str, bytes]]:
    buf = io.BytesIO()
    record(Traffic(site, start_ms=START_MS, duration_s=seconds, seed=2, via=via), buf)  # type: ignore[arg-type]
    out = []
    for line in buf.getvalue().splitlines():
        rec = orjson.loads(line)
        out.append((rec["topic"], orjson.dumps(rec["payload"])))
    return out


def test_unpaced_publish_delivers_the_recording(services: LocalServices, site: Site,
                                                topic_prefix: str) -> None:
    expected = _expected(site, 120)
    with _subscribe(services.mosquitto, f"anju/{topic_prefix}-e001/#") as sink:
        summary = run(RunOptions(site=site.root, duration_s=120, seed=2, start=str(START_MS),
                                 speed=0, mqtt_url=services.mosquitto.url))
        got = sink.wait_for(len(expected))
    assert summary["published"] == summary["acked"] == len(expected)
    assert sorted((t, p) for _, t, p in got) == sorted(expected)


def test_paced_publish_follows_data_time(services: LocalServices, site: Site,
                                         topic_prefix: str) -> None:
    expected = _expected(site, 20)
    t0 = time.monotonic()
    with _subscribe(services.mosquitto, f"anju/{topic_prefix}-e001/#") as sink:
        summary = run(RunOptions(site=site.root, duration_s=20, seed=2, start=str(START_MS),
                                 speed=10, mqtt_url=services.mosquitto.url))
        got = sink.wait_for(len(expected))
    assert len(got) == len(expected) == summary["published"]
    # 20 s of data at ×10: the last reading (ts near the end) is due ~2 s after the start
    arrivals = {p: at for at, _, p in got}
    for _topic, payload in expected[-5:]:
        ts = orjson.loads(payload)["ts"]
        assert arrivals[payload] - t0 >= (ts - START_MS) / 10_000 - 0.05
    assert time.monotonic() - t0 < 10


def test_rate_limit(services: LocalServices, site: Site) -> None:
    t0 = time.monotonic()
    summary = run(RunOptions(site=site.root, duration_s=1800, seed=2, start=str(START_MS),
                             speed=0, rate=200, max_messages=300,
                             mqtt_url=services.mosquitto.url))
    assert summary["published"] == 300
    assert time.monotonic() - t0 >= 1.4  # 300 at 200/s


@pytest.mark.parametrize("via", ["device", "gateway"])
def test_each_device_or_gateway_publishes_as_itself(tmp_path: Path, site: Site,
                                                    topic_prefix: str, via: str) -> None:
    creds_dir = tmp_path / "creds"
    write_credentials(site, creds_dir)
    creds = read_credentials(creds_dir / "credentials.csv")
    expected = _expected(site, 60, via)
    with Mosquitto(tmp_path / "broker", password_file=creds_dir / "passwd",
                   acl_file=creds_dir / "acl") as broker:
        with _subscribe(broker, f"anju/{topic_prefix}-e001/#", PIPELINE_USER,
                        creds[PIPELINE_USER]) as sink:
            summary = run(RunOptions(site=site.root, duration_s=60, seed=2,
                                     start=str(START_MS), speed=0, mqtt_url=broker.url,
                                     credentials=creds_dir / "credentials.csv",
                                     via=via))  # type: ignore[arg-type]
            got = sink.wait_for(len(expected))
        n_clients = len(site.gateways) if via == "gateway" else len(site.devices)
        assert summary["connections"] == n_clients
        # the ACL drops what a device publishes elsewhere: all arrived, so each spoke as itself
        assert sorted((t, p) for _, t, p in got) == sorted(expected)
        with Publisher(broker.url, credentials={"nobody": "wrong"}) as pub, \
                pytest.raises(ServiceError, match="refused"):
            pub.connect(["nobody"])


def test_several_processes(services: LocalServices, site: Site, topic_prefix: str) -> None:
    expected = _expected(site, 60)
    with _subscribe(services.mosquitto, f"anju/{topic_prefix}-e001/#") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", "anju.cli", "simulate", "run", "--site", str(site.root),
             "--duration", "60", "--seed", "2", "--start", str(START_MS), "--speed", "60",
             "--processes", "2", "--mqtt-url", services.mosquitto.url, "--json"],
            capture_output=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        got = sink.wait_for(len(expected))
    summary = orjson.loads(proc.stdout.splitlines()[-1])
    assert summary["processes"] == 2 and summary["published"] == len(expected)
    assert sorted((t, p) for _, t, p in got) == sorted(expected)
