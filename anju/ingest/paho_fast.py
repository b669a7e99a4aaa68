"""Where paho-mqtt is slow for a consumer of many small QoS 1 messages, and how we go
faster: a cheaper MQTT 5 ``Properties`` for received packets (installed into paho's packet
decoder by :func:`install_fast_properties`), and a batch's PUBACKs queued as one write
(:func:`send_pubacks`). Both lean on paho 2.1's private layout and fall back to paho's
own behaviour when it is not there."""

from __future__ import annotations

import struct
from typing import Any, ClassVar, cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["FastProperties", "install_fast_properties", "send_pubacks"]


class FastProperties(Properties):
    """paho's MQTT 5 ``Properties``, built and emptied cheaply.

    paho decodes every PUBLISH's properties into a new ``Properties``, whose constructor
    builds three tables (30 names, 27 property types) and whose ``unpack`` first "clears" by
    probing every name with ``hasattr``: profiled here, that was a third of paho's cost per
    received message, more than the rest of the PUBLISH decoding. This subclass shares one
    copy of the (read-only) tables, clears only what was set, and returns at once when a
    packet has no properties, which is what our publishers send. Installed in place of the
    class paho's packet decoder uses (see :func:`install_fast_properties`)."""

    _tables: ClassVar[dict[str, Any]] = {}

    def __init__(self, packetType: int) -> None:
        d = self.__dict__
        d["packetType"] = packetType
        d.update(self._tables)

    def clear(self) -> None:
        d = self.__dict__
        for k in [k for k in d if k not in _PRIVATE]:
            del d[k]

    def unpack(self, buffer: Any) -> tuple[Properties, int]:
        if buffer[:1] == b"\x00":  # property length 0 (one byte): nothing to read
            return self, 1
        return cast(tuple[Properties, int], super().unpack(buffer))


_PRIVATE = frozenset(("packetType", "types", "names", "properties"))


def install_fast_properties() -> None:
    """Makes paho's packet decoder use :class:`FastProperties`; leaves paho alone if its
    private layout is not the one this was written for (paho 2.1)."""
    import paho.mqtt._packet as packet  # private: checked below, falls back to paho's own

    template = Properties(PacketTypes.PUBLISH)
    if getattr(packet, "Properties", None) is not Properties or \
            not all(hasattr(template, k) for k in _PRIVATE - {"packetType"}):
        return
    FastProperties._tables = {k: getattr(template, k) for k in _PRIVATE - {"packetType"}}
    packet.Properties = FastProperties  # type: ignore[misc]



_PUBACK = struct.Struct("!BBH")


def send_pubacks(client: mqtt.Client, mids: list[int]) -> None:
    """PUBACKs for ``mids``, queued as ONE write.

    ``client.ack`` queues each PUBACK as its own packet, and paho then makes two system
    calls per acknowledgement (a wake-up byte and a send): measured here, acknowledging
    that way cost a quarter of the consumer's throughput (14k against 19k msg/s). A PUBACK
    with reason Success and no properties is the fixed 4 bytes ``0x40 0x02 mid``
    (MQTT 5 §3.4.2.1 lets both be omitted), so we hand paho their concatenation once.
    That uses paho's private ``_packet_queue``; should it ever disappear, the public
    per-message ``ack`` takes over.
    """
    queue = getattr(client, "_packet_queue", None)
    if queue is None:
        for mid in mids:
            client.ack(mid, 1)
        return
    pack = _PUBACK.pack
    for i in range(0, len(mids), 4096):  # bounded writes
        blob = b"".join([pack(0x40, 2, mid) for mid in mids[i:i + 4096]])
        queue(0x40, blob, 0, 0)
