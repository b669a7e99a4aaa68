"""Our MQTT packet reader: PUBLISH packets split from the byte stream however it is cut
into reads, every other packet handed to paho whole and in order, the connection's end
told to paho as paho would have seen it; and, against the real Mosquitto, the consumer
reading with it."""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anju.ingest.mqtt_reader import BufferedSocket, PacketReader, install


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, b = n >> 7, n & 127
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, mid: int = 0, qos: int = 1, props: bytes = b"",
            ) -> bytes:
    """An MQTT 5 PUBLISH (§3.3)."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    body += _varint(len(props)) + props + payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


PINGRESP = b"\xd0\x00"
SUBACK = b"\x90\x04\x00\x01\x00\x01"  # packet id 1, no properties, granted QoS 1


class FakePaho:
    """What the reader needs of a paho client: its socket, and loop_read reading one
    packet from it (here: everything the socket offers, recorded)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._last_bytes_received = 0.0
        self.log: list[tuple[str, Any]] = []

    def loop_read(self) -> int:
        try:
            data = self._sock.recv(1 << 20)
        except BlockingIOError:
            return mqtt.MQTT_ERR_SUCCESS
        except OSError as exc:
            self.log.append(("paho-error", type(exc).__name__))
            self._sock = None
            return mqtt.MQTT_ERR_CONN_LOST
        if not data:
            self.log.append(("paho-eof", None))
            self._sock = None
            return mqtt.MQTT_ERR_CONN_LOST
        self.log.append(("paho", data))
        return mqtt.MQTT_ERR_SUCCESS

    def socket(self) -> Any:
        return self._sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def _reader(sock: socket.socket, full_after: int | None = None
            ) -> tuple[FakePaho, PacketReader]:
    fake = FakePaho(sock)
    wrapped = install(fake, sock)  # type: ignore[arg-type]
    assert isinstance(wrapped, BufferedSocket) and fake._sock is wrapped
    count = [0]

    def on_publish(topic: str, payload: bytes, mid: int, qos: int) -> bool:
        fake.log.append(("publish", (topic, payload, mid, qos)))
        count[0] += 1
        return full_after is not None and count[0] % full_after == 0

    return fake, PacketReader(fake, wrapped, on_publish)  # type: ignore[arg-type]


def _stream() -> tuple[bytes, list[tuple[str, Any]]]:
    """Packets of every shape the reader meets, and what each must become."""
    cases: list[tuple[bytes, tuple[str, Any]]] = []
    for i, (topic, payload, qos, props) in enumerate([
            (b"anju/e1/b1/smoke/s-1", b'{"ts": 1, "temp_c": 20}', 1, b""),
            (b"anju/e1/b1/smoke/s-2", b"x" * 300, 1, b""),  # two-byte remaining length
            (b"anju/e1/b1/water/w-1", b"y" * 70_000, 1, b""),  # three bytes, > one recv
            (b"anju/e1/gw/batch", b"[]", 0, b""),  # QoS 0: no packet id
            (b"anju/e1/b1/smoke/s-3", b"p", 1, b"\x02\x00\x00\x00\x3c"),  # expiry 60 s
            ("anju/e1/b1/电梯/e-1".encode(), b"", 1, b"")]):  # UTF-8 topic, empty payload
        mid = 100 + i if qos else 0
        cases.append((publish(topic, payload, mid, qos, props),
                      ("publish", (topic.decode(), payload, mid, qos))))
    for raw in (PINGRESP, SUBACK,
                publish(b"anju/q2", b"z", 9, qos=2),  # QoS 2: paho's
                publish(b"", b"alias", 10, props=b"\x03\x23\x00\x01"),  # topic alias
                publish(b"anju/\xff", b"bad", 11),  # not UTF-8: paho's to refuse
                publish(b"anju/t", b"long props", 12, props=b"\x26" + b"\x00\x40" + b"k" * 64
                        + b"\x00\x40" + b"v" * 64)):  # a property block of 131 bytes
        cases.append((raw, ("paho", raw)))
    random.Random(5).shuffle(cases)
    return b"".join(c[0] for c in cases), [c[1] for c in cases]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(1, 80_000), min_size=0, max_size=12))
def test_packets_come_out_whole_and_in_order_however_the_stream_is_cut(
        cuts: list[int]) -> None:
    stream, want = _stream()
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        fake, reader = _reader(a)
        bounds = sorted({min(c, len(stream)) for c in cuts} | {len(stream)})
        start = 0
        for stop in bounds:
            b.sendall(stream[start:stop])
            start = stop
            for _ in range(8):  # the event loop calls again while the socket is readable
                reader.read()
        assert fake.log == want
        assert fake._last_bytes_received > 0  # paho's keepalive sees traffic
    finally:
        a.close()
        b.close()


def test_the_end_of_the_connection_reaches_paho(pair: tuple[socket.socket, socket.socket]
                                                ) -> None:
    a, b = pair
    fake, reader = _reader(a)
    b.sendall(publish(b"t/1", b"last", 5) + PINGRESP[:1])  # and half a packet
    assert reader.read() > 0
    b.close()
    assert reader.read() == -1
    assert fake.log == [("publish", ("t/1", b"last", 5, 1)), ("paho-eof", None)]


def test_a_full_receiver_stops_the_reader_and_the_backlog_comes_next(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    fake, reader = _reader(a, full_after=2)
    b.sendall(b"".join(publish(b"t/%d" % i, b"%d" % i, i + 1) for i in range(5)))
    assert reader.read() > 0 and reader.backlog
    assert [e[1][1] for e in fake.log] == [b"0", b"1"]
    assert reader.read() > 0 and reader.backlog  # from the backlog, no recv
    assert reader.read() > 0 and not reader.backlog
    assert reader.read() == 0
    assert [e[1][1] for e in fake.log] == [b"%d" % i for i in range(5)]


def test_paho_of_another_layout_keeps_its_own_reading() -> None:
    class Other:
        _sock = object()

    assert install(Other(), Other._sock) is None  # type: ignore[arg-type]


def test_over_tls_every_record_is_read_as_the_event_loop_reads(tmp_path: Any) -> None:
    """paho's socket is a TLS socket with ``tls_set``: ~180 KiB of packets in many TLS
    records, read only while the kernel says the socket is readable (as the event loop
    calls the reader), all come out. (A record is at most 16 KiB and a read asks for
    64 KiB, so OpenSSL never keeps a decrypted rest that no readable event announces.)"""
    import select
    import shutil
    import ssl
    import subprocess
    import threading

    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    a, b = socket.socketpair()
    stream = b"".join(publish(b"anju/t/%d" % i, b"v" * 900, i + 1) for i in range(200))
    sent = threading.Event()

    def serve() -> None:
        with server_ctx.wrap_socket(b, server_side=True) as s:
            s.sendall(stream)  # ~180 KiB: many TLS records
            sent.set()
            s.recv(1)  # until the client closes

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    tls = client_ctx.wrap_socket(a, server_hostname="127.0.0.1")
    try:
        sent.wait(10)
        tls.setblocking(False)
        fake, reader = _reader(tls)
        # read as the event loop would: while the kernel says the socket is readable
        while select.select([tls], [], [], 0.5)[0]:
            while reader.read() > 0:
                pass
        got = [e[1][0] for e in fake.log if e[0] == "publish"]
        assert got == [f"anju/t/{i}" for i in range(200)]
    finally:
        tls.close()
        t.join(5)


def test_a_callback_that_raises_loses_its_packet_not_the_stream(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """paho re-raises callback exceptions: the packets after the one whose handler
    failed are framed from where it ended, never from a stale tail."""
    a, b = pair
    fake = FakePaho(a)
    wrapped = install(fake, a)  # type: ignore[arg-type]
    assert wrapped is not None
    seen: list[bytes] = []

    def on_publish(topic: str, payload: bytes, mid: int, qos: int) -> bool:
        if payload == b"boom":
            raise RuntimeError("handler failed")
        seen.append(payload)
        return False

    reader = PacketReader(fake, wrapped, on_publish)  # type: ignore[arg-type]
    b.sendall(publish(b"t", b"one", 1) + publish(b"t", b"boom", 2) + publish(b"t", b"two", 3)
              + publish(b"t", b"three", 4)[:5])
    with pytest.raises(RuntimeError):
        reader.read()
    assert reader.read() == 0  # the socket is empty: the rest was kept, not dropped
    reader.backlog = True  # as the consumer would go on: the kept bytes first
    assert reader.read() > 0
    b.sendall(publish(b"t", b"three", 4)[5:])
    assert reader.read() > 0
    assert seen == [b"one", b"two", b"three"]


def test_a_large_packet_over_many_reads_is_joined_once(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    fake, reader = _reader(a)
    big = publish(b"anju/e1/gw/batch", bytes(range(256)) * 8192, 7)  # 2 MiB, 4-byte length
    threading_send = __import__("threading").Thread(target=b.sendall, args=(big + PINGRESP,))
    threading_send.start()
    handled = 0
    for _ in range(10_000):
        handled += max(0, reader.read())
        if fake.log and fake.log[-1][0] == "paho":
            break
    threading_send.join(10)
    assert fake.log == [("publish", ("anju/e1/gw/batch", bytes(range(256)) * 8192, 7, 1)),
                        ("paho", PINGRESP)]
    assert handled == len(big) + len(PINGRESP)


def test_a_full_receiver_also_stops_after_a_packet_paho_handled(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    fake = FakePaho(a)
    wrapped = install(fake, a)  # type: ignore[arg-type]
    assert wrapped is not None
    reader = PacketReader(fake, wrapped, lambda *_: False,  # type: ignore[arg-type]
                          full=lambda: len(fake.log) >= 1)
    b.sendall(PINGRESP + publish(b"t", b"x", 1))
    assert reader.read() == len(PINGRESP) and reader.backlog
    assert fake.log == [("paho", PINGRESP)]


def test_a_fifth_length_byte_is_left_to_paho_to_refuse(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    fake, reader = _reader(a)
    bad = b"\x32\xff\xff\xff\xff\x01" + b"x" * 16
    b.sendall(bad)
    reader.read()
    assert fake.log == [("paho", bad[:6])]  # paho's protocol error drops the connection
