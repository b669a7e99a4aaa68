"""anju.services against the real binaries: lifecycle, readiness, restart, persistence, errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anju.errors import ServiceError
from anju.services import InfluxDB, LocalServices, Mosquitto, free_port
from anju.services._proc import pid_alive

pytestmark = pytest.mark.integration


class _Client:
    """A paho client on its own loop thread that records CONNACKs, SUBACKs and messages."""

    def __init__(self, broker: Mosquitto, client_id: str = "", *, clean: bool = True) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._cond = threading.Condition()
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.paho.on_connect = lambda *_a: self.connected.set()
        self.paho.on_subscribe = lambda *_a: self.subscribed.set()
        self.paho.on_message = self._on_message
        self.paho.connect(broker.host, broker.port, keepalive=30)
        self.paho.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.paho.subscribe(topic, qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def wait_for(self, n: int, timeout: float = 10) -> list[mqtt.MQTTMessage]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def publish_all(self, topic: str, payloads: list[bytes], qos: int = 1) -> None:
        infos = [self.paho.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(10)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def _gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------- lifecycle


def test_start_stop_both_and_no_orphans(tmp_path: Path) -> None:
    with LocalServices(tmp_path) as svc:
        assert svc.running
        assert svc.mosquitto.ready() and svc.influx.ready()
        assert svc.mosquitto.url == f"mqtt://127.0.0.1:{svc.mosquitto.port}"
        assert svc.influx.url == f"http://127.0.0.1:{svc.influx.port}"
        assert svc.env() == {
            "ANJU_MQTT_URL": svc.mosquitto.url, "ANJU_INFLUX_URL": svc.influx.url,
        }
        pids = [svc.mosquitto.pid, svc.influx.pid]
        assert all(isinstance(p, int) and pid_alive(p) for p in pids)
    assert not svc.mosquitto.running and not svc.influx.running
    assert svc.mosquitto.pid is None
    assert all(_gone(p) for p in pids if p is not None)
    svc.stop()  # idempotent
    assert not svc.mosquitto.ready() and not svc.influx.ready()


def test_tempdir_is_removed_on_exit() -> None:
    with LocalServices() as svc:
        workdir = svc.workdir
        assert (workdir / "mosquitto" / "mosquitto.conf").is_file()
        assert (workdir / "influxdb" / "influxdb.conf").is_file()
    assert not workdir.exists()


def test_kill_then_start_again_on_the_same_port(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    port = broker.port
    broker.start()
    pid = broker.pid
    assert pid is not None
    broker.kill()
    assert _gone(pid) and not broker.running
    broker.start()
    try:
        assert broker.port == port and broker.ready()
    finally:
        broker.stop()


def test_children_die_with_their_parent(tmp_path: Path) -> None:
    # A parent killed with SIGKILL runs no atexit handler: PR_SET_PDEATHSIG must do it.
    # The start happens in a thread that has ended by then, which must not matter.
    script = f"""
import json, os, threading
from pathlib import Path
from anju.services import LocalServices
svc = LocalServices(Path({str(tmp_path)!r}))
t = threading.Thread(target=svc.start); t.start(); t.join()
print(json.dumps([svc.mosquitto.pid, svc.influx.pid]), flush=True)
os.kill(os.getpid(), 9)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == -9, proc.stderr
    pids = json.loads(proc.stdout)
    assert all(_gone(p) for p in pids)


# --------------------------------------------------------------------------- using them


def test_publish_subscribe_through_the_broker(
    services: LocalServices, topic_prefix: str
) -> None:
    topic = f"anju/{topic_prefix}/b01/smoke/d1"
    sub = _Client(services.mosquitto)
    pub = _Client(services.mosquitto)
    try:
        sub.subscribe(f"anju/{topic_prefix}/#")
        pub.publish_all(topic, [b'{"ok": true}'])
        [msg] = sub.wait_for(1)
        assert (msg.topic, msg.payload, msg.qos) == (topic, b'{"ok": true}', 1)
    finally:
        pub.close()
        sub.close()


def test_write_line_protocol_and_query_back(services: LocalServices, influx_db: str) -> None:
    influx = services.influx
    influx.write(
        influx_db,
        ["smoke,estate=e1,device=d1 temp_c=21.5,smoke=0i 1700000000000",
         "smoke,estate=e1,device=d2 temp_c=22.5 1700000000500"],
        precision="ms",
    )
    result = influx.query(
        "SELECT temp_c FROM smoke WHERE device = 'd1'", db=influx_db, epoch="ms"
    )
    [series] = result["results"][0]["series"]
    assert series["values"] == [[1700000000000, 21.5]]
    assert influx.count("smoke", influx_db) == 2  # max over fields: temp_c has 2, smoke 1
    assert influx.count("smoke", influx_db, where="device = 'd2'") == 1
    assert influx.count("smoke", influx_db, where="WHERE device = 'nope'") == 0
    assert influx.count("absent", influx_db) == 0


def test_bad_query_and_bad_write_raise(services: LocalServices, influx_db: str) -> None:
    with pytest.raises(ServiceError, match="error parsing query"):
        services.influx.query("SELECT FROM", db=influx_db)
    with pytest.raises(ServiceError, match="HTTP 400"):
        services.influx.write(influx_db, "not line protocol")


# --------------------------------------------------------------------------- restart, persistence


def test_influxdb_restart_keeps_port_and_data(tmp_path: Path) -> None:
    influx = InfluxDB(tmp_path)
    port = influx.port
    with influx:
        influx.create_database("keep")
        influx.write("keep", "m v=1 1700000000000\nm v=2 1700000001000")
        influx.stop()  # an outage
        assert not influx.ready()
        influx.start()
        assert influx.port == port
        assert influx.count("m", "keep") == 2


def test_mosquitto_keeps_queued_qos1_for_offline_session_across_restart(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    # More than Mosquitto's default max_queued_messages (1000), which would drop the rest.
    n = 1500
    with broker:
        sub = _Client(broker, "pipeline-1", clean=False)
        sub.subscribe("anju/e1/#", qos=1)
        sub.close()  # persistent session, now offline
        pub = _Client(broker)
        try:
            pub.publish_all("anju/e1/b01/smoke/d1", [str(i).encode() for i in range(n)])
        finally:
            pub.close()
        broker.stop()
        assert broker.persistence_path.is_file()
        broker.start()
        sub = _Client(broker, "pipeline-1", clean=False)
        try:
            got = sub.wait_for(n)
        finally:
            sub.close()
    assert sorted(int(m.payload) for m in got) == list(range(n))


def test_mosquitto_config_as_root_keeps_root() -> None:
    text = Mosquitto(Path("/nonexistent-but-unused"), port=1).config_text()
    assert "listener 1 127.0.0.1" in text
    assert "max_queued_messages 1000000" in text
    assert ("user root" in text) == (os.geteuid() == 0)


def test_mosquitto_writes_its_log_and_persistence(tmp_path: Path) -> None:
    # As root, 2.0 would otherwise switch to user `mosquitto` and fail to write both.
    with Mosquitto(tmp_path) as broker:
        pass
    assert "running" in broker.log_path.read_text()
    assert broker.persistence_path.is_file()


def test_password_file_turns_anonymous_off_and_readiness_still_works(tmp_path: Path) -> None:
    pw = tmp_path / "passwd"
    pw.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "dev1", "s3cret"], check=True)
    with Mosquitto(tmp_path / "broker", password_file=pw) as broker:
        assert "allow_anonymous false" in broker.config_path.read_text()
        refused: list[object] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.on_connect = lambda _c, _u, _f, rc, _p: refused.append(rc)
        client.connect(broker.host, broker.port)
        try:
            deadline = time.monotonic() + 5
            while not refused and time.monotonic() < deadline:
                client.loop(0.05)
        finally:
            client.disconnect()
        assert refused and getattr(refused[0], "is_failure", False)


# --------------------------------------------------------------------------- failures


def test_port_taken_raises_service_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServiceError, match="already in use") as err:
            Mosquitto(tmp_path / "m", port=port).start()
        assert err.value.service == "mosquitto"
        with pytest.raises(ServiceError, match="already in use"):
            InfluxDB(tmp_path / "i", port=port).start()


def test_failing_start_carries_the_log_tail(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "m", extra_config="no_such_option 1")
    with pytest.raises(ServiceError, match="exited with code") as err:
        broker.start()
    assert "no_such_option" in err.value.log_tail
    assert "no_such_option" in str(err.value)
    assert not broker.running

    influx = InfluxDB(tmp_path / "i", settings={"data": {"index-version": "bogus"}})
    with pytest.raises(ServiceError) as err:
        influx.start()
    assert "bogus" in err.value.log_tail
    assert not influx.running


def test_not_ready_in_time_raises_and_kills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake-mosquitto"
    fake.write_text("#!/bin/sh\necho 'fake broker never listens'\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ANJU_MOSQUITTO_BIN", str(fake))
    broker = Mosquitto(tmp_path / "m")
    with pytest.raises(ServiceError, match="not ready after") as err:
        broker.start(timeout=0.5)
    assert "fake broker never listens" in err.value.log_tail
    assert not broker.running


def test_missing_binary_is_a_service_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_INFLUXD_BIN", str(tmp_path / "nope"))
    with pytest.raises(ServiceError, match="ANJU_INFLUXD_BIN"):
        InfluxDB(tmp_path).start()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # In a subprocess, as a user runs it: the detached children must outlive it.
    code = "from anju.commands.services import app; app(prog_name='anju services')"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
        check=False,
    )


def test_cli_up_status_down(tmp_path: Path) -> None:
    d = str(tmp_path / "svc")
    up = _cli("up", "--dir", d)
    assert up.returncode == 0, up.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
    )
    state = json.loads((tmp_path / "svc" / "services.json").read_text())
    pids = [s["pid"] for s in state["services"].values()]
    try:
        assert exports == state["env"]
        assert exports["ANJU_MQTT_URL"].startswith("mqtt://127.0.0.1:")
        status = _cli("status", "--dir", d, "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["ready"] and all(s["alive"] for s in report["services"].values())
        again = _cli("up", "--dir", d, "--json")
        assert json.loads(again.stdout)["already_running"] is True
    finally:
        down = _cli("down", "--dir", d, "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["services"] == {
        "mosquitto": "stopped", "influxdb": "stopped",
    }
    assert all(_gone(p) for p in pids)
    status = _cli("status", "--dir", d)
    assert status.returncode == 1 and "not running" in status.stdout
    # Stale pids (already stopped) are tolerated.
    assert _cli("down", "--dir", d).returncode == 0
