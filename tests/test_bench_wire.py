"""The bench's raw QoS 1 publisher against the real Mosquitto: what it writes arrives whole,
in order, and every PUBACK is counted; a window smaller than the run still gets through."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from anju.app.bench_wire import WirePublisher, _varint
from anju.services import LocalServices

pytestmark = pytest.mark.integration


def _subscriber(services: LocalServices,
                topic: str) -> tuple[mqtt.Client, list[tuple[str, bytes]]]:
    got: list[tuple[str, bytes]] = []
    ready = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
    c.on_subscribe = lambda *_a: ready.set()
    c.on_connect = lambda client, *_a: client.subscribe(topic, qos=1)
    c.connect(services.mosquitto.host, services.mosquitto.port)
    c.loop_start()
    assert ready.wait(10)
    return c, got


@pytest.mark.parametrize("window", [20_000, 7])
def test_every_publish_arrives_in_order_and_is_acknowledged(
        services: LocalServices, topic_prefix: str, window: int) -> None:
    sub, got = _subscriber(services, f"{topic_prefix}/#")
    try:
        # payloads of 1 to ~300 bytes: remaining lengths of one and of two bytes
        sent = [(f"{topic_prefix}/d{i % 5}", b"x" * (i % 300) + str(i).encode())
                for i in range(1_000)]
        with WirePublisher(services.mosquitto.host, services.mosquitto.port,
                           f"{topic_prefix}-pub", window=window) as pub:
            for i, (topic, payload) in enumerate(sent):
                pub.add(topic, payload)
                if i % 37 == 36:
                    pub.flush()
                    assert pub.sent - pub.acked <= window
            assert pub.drain(30)
            assert pub.sent == pub.acked == len(sent)
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == sent
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_refused_connection_says_so(services: LocalServices) -> None:
    with pytest.raises(ValueError, match="window"):
        WirePublisher(services.mosquitto.host, services.mosquitto.port, "w", window=70_000)
    with pytest.raises(ConnectionError, match="CONNACK"):
        # an empty client id with a persistent session is refused (MQTT 3.1.1 §3.1.3.1)
        WirePublisher(services.mosquitto.host, services.mosquitto.port, "", clean=False)


def test_remaining_length_encoding() -> None:
    assert _varint(0) == b"\x00"
    assert _varint(127) == b"\x7f"
    assert _varint(128) == b"\x80\x01"
    assert _varint(16_383) == b"\xff\x7f"
    assert _varint(2_097_152) == b"\x80\x80\x80\x01"


class _SilentBroker:
    """A TCP peer on loopback that answers CONNECT and then neither reads nor acknowledges:
    a stalled broker."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        self.conns.append(conn)
        conn.recv(1024)  # the CONNECT
        conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted; then silence

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.server.close()


@pytest.mark.parametrize("window", [5, 60_000])
def test_a_stalled_broker_fails_the_publisher_within_its_timeout(window: int) -> None:
    """No PUBACK (a full window), or no reading at all (a full socket): an error after
    about ``timeout_s``, never a hang."""
    broker = _SilentBroker()
    try:
        pub = WirePublisher("127.0.0.1", broker.port, "stalled", window=window, timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(OSError), pub:  # TimeoutError is an OSError
            payload = b"x" * 60_000
            for _ in range(2_000):  # 120 MB: more than any socket buffer takes
                pub.add("t/stalled", payload)
                pub.flush()
        assert time.monotonic() - t0 < 10
    finally:
        broker.close()
