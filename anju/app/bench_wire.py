"""The bench's publisher connection: MQTT 3.1.1 QoS 1 PUBLISH packets written straight to
a socket, a burst at a time, and the broker's PUBACKs counted as they come back.

Why not paho here: the bench's publishers share the box's two cores with the broker,
InfluxDB and the pipeline they measure, and in a city they would be sensors on other
machines. paho costs ~37 µs of CPU a QoS 1 publish (its packet objects, its in-flight
bookkeeping, a socket write each); this costs ~4.5 µs with the payload's encoding
(200 000 messages to a local Mosquitto, 2026-12-03). With paho, two publishers filled a
core at ~22 000 msg/s, and the live phase could not reach the 80 % of the drain rate that
issue 15 measures at (~100 000 msg/s); its alarm latency was then the publishers' CPU as
much as the pipeline's. paho stays the pipeline's client; this is only a load generator,
and writes only what the contract's sensors do (QoS 1 PUBLISH, MQTT 3.1.1).
"""

from __future__ import annotations

import select
import socket
import struct
import time

__all__ = ["WirePublisher"]

_PUBACK = 4  # packet type of PUBACK (MQTT 3.1.1 §3.4)


def _varint(n: int) -> bytes:
    """MQTT's remaining-length encoding (§2.2.3)."""
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class WirePublisher:
    """One MQTT 3.1.1 connection (clean session) that publishes at QoS 1.

    :meth:`add` queues a packet; :meth:`flush` writes the queued ones (one ``sendall``
    while the window has room) and reads whatever PUBACKs have arrived; :attr:`acked`
    counts them. At most ``window`` publishes go unacknowledged (packet ids stay unique
    within it)."""

    def __init__(self, host: str, port: int, client_id: str, *, window: int = 20_000,
                 timeout_s: float = 30.0, clean: bool = True) -> None:
        if not 0 < window < 65_535:
            raise ValueError(f"window must be in 1..65534, not {window}")
        self.window = window
        self.timeout_s = timeout_s
        self.sent = 0
        self.acked = 0
        self._pending: list[bytes] = []
        self._heads: dict[str, bytes] = {}  # a topic's length-prefixed bytes
        self._rx = b""
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            self._connect(client_id, clean)
        except BaseException:
            self._sock.close()
            raise

    def _connect(self, client_id: str, clean: bool) -> None:
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        # protocol "MQTT" level 4, flags: clean session; keep-alive the longest there is
        # (18 h: a bench never needs a PINGREQ; 0 is refused by Mosquitto 2.0.12 and later)
        flags = b"\x02" if clean else b"\x00"
        body = (b"\x00\x04MQTT\x04" + flags + b"\xff\xff" + struct.pack(">H", len(cid)) +
                cid)
        self._sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self._recv_exact(4)
        if connack[0] >> 4 != 2 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: CONNACK {connack.hex()}")
        # Blocking from here on: with a timeout set, Python polls before every recv, and
        # the PUBACK reads between bursts must not wait (they use MSG_DONTWAIT). A broker
        # that stops reading still fails a write after timeout_s (SO_SNDTIMEO), not never.
        self._sock.settimeout(None)
        sec = int(self.timeout_s)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                              struct.pack("ll", sec, int((self.timeout_s - sec) * 1e6)))

    def add(self, topic: str, payload: bytes) -> None:
        """Queues one QoS 1 PUBLISH (written by the next :meth:`flush`)."""
        head = self._heads.get(topic)
        if head is None:
            t = topic.encode()
            head = self._heads[topic] = struct.pack(">H", len(t)) + t
        pid = (self.sent + len(self._pending)) % 65_535 + 1
        self._pending.append(b"\x32" + _varint(len(head) + 2 + len(payload)) + head +
                             pid.to_bytes(2, "big") + payload)

    def flush(self) -> None:
        """Writes what :meth:`add` queued, as far as the window allows, waiting for
        PUBACKs where it is full; then counts the PUBACKs already back."""
        pending = self._pending
        while pending:
            room = self.window - (self.sent - self.acked)
            if room <= 0:
                self._wait_for_acks()
                continue
            self._sock.sendall(b"".join(pending[:room]))
            self.sent += min(room, len(pending))
            del pending[:room]
        self._read(0.0)

    def _wait_for_acks(self) -> None:
        """Until a PUBACK comes (the window is full), at most ``timeout_s``."""
        acked, deadline = self.acked, time.monotonic() + self.timeout_s
        while self.acked == acked:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no PUBACK from the broker in {self.timeout_s:g} s")
            self._read(left)

    def drain(self, within_s: float) -> bool:
        """Flushes, then waits up to ``within_s`` for every PUBACK; True if all came."""
        self.flush()
        deadline = time.monotonic() + within_s
        while self.acked < self.sent and (left := deadline - time.monotonic()) > 0:
            self._read(left)
        return self.acked >= self.sent

    def close(self) -> None:
        try:
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT (SO_SNDTIMEO bounds it)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> WirePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, wait_s: float) -> bool:
        """Counts the PUBACKs that have arrived, waiting up to ``wait_s`` for the first;
        False if none came."""
        if wait_s > 0 and not select.select([self._sock], [], [], wait_s)[0]:
            return False
        try:
            data = self._sock.recv(65_536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            raise ConnectionError("the broker closed the connection")
        buf = self._rx + data
        i = 0
        # Only PUBACKs come back to a QoS 1 publisher (no subscriptions, no keep-alive);
        # each is 2 bytes of header and 2 of packet id.
        while len(buf) - i >= 2:
            if buf[i + 1] & 0x80:
                raise ConnectionError(f"unexpected packet from the broker: {buf[i:i + 8].hex()}")
            size = 2 + buf[i + 1]
            if len(buf) - i < size:
                break
            if buf[i] >> 4 == _PUBACK:
                self.acked += 1
            i += size
        self._rx = buf[i:]
        return True

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self._sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            out += chunk
        return out
