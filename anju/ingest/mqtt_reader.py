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
                 on_publish: Callable[[str, bytes, int, int], bool]) -> None:
        self.client = client
        self.sock = sock
        self.on_publish = on_publish  # True when the receiver is full: stop for now
        self._tail = b""  # bytes read and not handled yet
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
        return self._handle(self._tail + data if self._tail else data)

    def _handle(self, data: bytes) -> int:
        done = self._packets(data)
        if done < 0:
            return -1
        self._tail = data[done:]
        return done

    def _packets(self, data: bytes) -> int:
        """Handles the complete packets at the start of ``data``; the bytes they took,
        or -1 once the connection is lost."""
        on_publish = self.on_publish
        pos = 0
        end = len(data)
        while end - pos >= 2:
            b0 = data[pos]
            # remaining length: 1 to 4 bytes of 7 bits, least significant first
            b = data[pos + 1]
            if b < 128:
                length, i = b, pos + 2
            else:
                length, mult, i = b & 127, 128, pos + 2
                while True:
                    if i >= end:
                        return pos
                    b = data[i]
                    length += (b & 127) * mult
                    mult <<= 7
                    i += 1
                    if b < 128 or i - pos > 5:
                        break
            stop = i + length
            if stop > end:
                return pos
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
                            return stop
                        pos = stop
                        continue
            if self._to_paho(data[pos:stop]) < 0:
                return -1
            pos = stop
        return pos

    def _to_paho(self, packet: bytes) -> int:
        """paho reads ``packet`` (or the socket's end or error) as if from the socket."""
        self.sock.feed = packet
        try:
            rc = self.client.loop_read()
        finally:
            self.sock.feed = b""
        return 0 if rc == mqtt.MQTT_ERR_SUCCESS and self.client.socket() is not None else -1
