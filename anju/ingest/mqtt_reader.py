"""Reading the MQTT socket ourselves: PUBLISH packets in a few slices, the rest to paho.

paho reads a packet with three ``recv`` calls (its first byte, its length, its body),
then builds an ``MQTTMessage``, matches its topic against the callbacks' filters and
calls ``on_message``: profiled under ``anju bench ingest``, that was ~40 % of the
pipeline's CPU, more than decoding, rules and storage together. A consumer of many small
QoS 1 messages needs little of it, so :class:`PacketReader` reads the socket in large
chunks and splits them into packets itself (MQTT 5 §2.1: a type byte, a variable-length
remaining length). A PUBLISH of QoS 0 or 1 becomes ``(topic, payload, packet id, qos)``
in a few slices; every other packet (CONNACK, SUBACK, PINGRESP, DISCONNECT, and a
PUBLISH this reader does not take apart: QoS 2, a topic alias, a long property block, a
topic that is not UTF-8) is handed to paho unchanged, through
:class:`BufferedSocket`, so paho keeps its own protocol state and error handling.

It leans on paho 2's private ``_sock`` and ``_last_bytes_received``; with another
layout the consumer keeps paho's own reading (:func:`install`).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["BufferedSocket", "PacketReader", "install"]

CHUNK = 1 << 16  # bytes a recv asks for


class BufferedSocket:
    """paho's socket as paho sees it once installed: its reads served from what the
    reader hands it (one whole packet at a time), everything else the socket's own."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.feed = b""
        self.eof = False  # the peer closed: paho is told by an empty read
        self.error: OSError | None = None  # a failed recv, raised to paho as it came

    def recv(self, n: int) -> bytes:
        f = self.feed
        if f:
            self.feed = f[n:]
            return f[:n]
        if self.error is not None:
            raise self.error
        if self.eof:
            return b""
        raise BlockingIOError  # paho never reads the socket behind the reader's back

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def install(client: mqtt.Client, sock: Any) -> BufferedSocket | None:
    """Puts a :class:`BufferedSocket` in front of ``client``'s new socket ``sock`` (from
    paho's ``on_socket_open``, on the thread that connects, before paho sends CONNECT);
    None, and paho left as it is, if its private layout is not paho 2's."""
    if getattr(client, "_sock", None) is not sock or \
            not hasattr(client, "_last_bytes_received"):
        return None
    wrapped = BufferedSocket(sock)
    client._sock = wrapped
    return wrapped


class PacketReader:
    """Splits what one connection's socket gives into packets, oldest first."""

    def __init__(self, client: mqtt.Client, sock: BufferedSocket,
                 on_publish: Callable[[str, bytes, int, int], bool],
                 full: Callable[[], bool] = lambda: False) -> None:
        self.client = client
        self.sock = sock
        self.on_publish = on_publish  # True when the receiver is full: stop for now
        self.full = full  # the same question after a packet paho handled
        self._tail = b""  # bytes read and not handled yet
        self._parts: list[bytes] = []  # reads since, while one large packet is incomplete
        self._have = 0  # bytes in _tail and _parts
        self._need = 0  # bytes the first incomplete packet takes in all, when known
        self._done = 0  # bytes of the data being handled that are handled
        self.backlog = False  # the tail may hold complete packets (the receiver was full)

    def read(self) -> int:
        """Handles the complete packets of the backlog if there is one, else of what the
        socket has (one ``recv``); the bytes handled (0: nothing complete yet), or -1 once
        the connection is lost (paho was told, and called ``on_disconnect``)."""
        if self.backlog:
            self.backlog = False
            return self._handle(self._tail)
        sock = self.sock
        try:
            data = sock.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return 0
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except OSError as exc:
            sock.error = exc
            return self._to_paho(b"")
        if not data:
            sock.eof = True
            return self._to_paho(b"")
        self.client._last_bytes_received = time.monotonic()
        if not self._tail:
            return self._handle(data)
        # the rest of a packet begun earlier: for a large one, joined once it is all here
        # (joining on every read would copy it over and over)
        self._parts.append(data)
        self._have += len(data)
        if self._have < self._need:
            return 0
        data = b"".join([self._tail, *self._parts])
        self._parts.clear()
        return self._handle(data)

    def _handle(self, data: bytes) -> int:
        self._done = 0
        try:
            ok = self._packets(data)
        finally:
            # what was handled stays handled even if a callback raised (paho re-raises
            # them): the next read must go on from the next packet, never re-frame
            self._tail = data[self._done:]
            self._have = len(self._tail)
        return self._done if ok else -1

    def _packets(self, data: bytes) -> bool:
        """Handles the complete packets at the start of ``data`` (``_done``: the bytes
        they took); False once the connection is lost."""
        on_publish = self.on_publish
        pos = 0
        end = len(data)
        self._need = 0
        while end - pos >= 2:
            start = pos
            b0 = data[pos]
            # remaining length: 1 to 4 bytes of 7 bits, least significant first
            b = data[pos + 1]
            if b < 128:
                length, i = b, pos + 2
            else:
                length, mult, i = b & 127, 128, pos + 2
                while True:
                    if i >= end:
                        return True
                    b = data[i]
                    length += (b & 127) * mult
                    mult <<= 7
                    i += 1
                    if b < 128:
                        break
                    if i - pos >= 5:  # a fifth length byte would follow: malformed
                        if i >= end:
                            return True
                        self._done = end  # paho refuses it and drops the connection
                        return self._to_paho(data[start:i + 1]) >= 0
            stop = i + length
            if stop > end:
                self._need = stop - pos
                return True
            self._done = pos = stop  # handled from here on, whatever the callbacks do
            if b0 >> 4 == 3 and not b0 & 4 and length >= 3:  # PUBLISH, QoS 0 or 1
                qos = (b0 >> 1) & 1
                topic_end = i + 2 + ((data[i] << 8) | data[i + 1])
                p = topic_end + 2 * qos  # past the packet id
                mid = (data[topic_end] << 8) | data[topic_end + 1] if qos and p <= stop else 0
                props = data[p] if p < stop else 128  # property length, when one byte
                if topic_end > i + 2 and props < 128 and p + 1 + props <= stop and \
                        (mid or not qos):
                    try:
                        topic = data[i + 2:topic_end].decode()
                    except UnicodeDecodeError:
                        pass  # paho's to refuse
                    else:
                        if on_publish(topic, data[p + 1 + props:stop], mid, qos):
                            self.backlog = stop < end
                            return True
                        continue
            if self._to_paho(data[start:stop]) < 0:
                return False
            if self.full():
                self.backlog = stop < end
                return True
        return True

    def _to_paho(self, packet: bytes) -> int:
        """paho reads ``packet`` (or the socket's end or error) as if from the socket."""
        self.sock.feed = packet
        try:
            rc = self.client.loop_read()
        finally:
            self.sock.feed = b""
        return 0 if rc == mqtt.MQTT_ERR_SUCCESS and self.client.socket() is not None else -1
