"""MQTT helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from anju.services import LocalServices


def purge_session(services: LocalServices, cid: str) -> None:
    """Ends a persistent session, so the broker stops queueing for it."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.connect(services.mosquitto.host, services.mosquitto.port, clean_start=True,
              properties=props)
    c.loop(1)
    c.disconnect()


async def until(cond: Callable[[], bool], within_s: float = 10.0) -> None:
    """Waits for ``cond`` to hold, failing the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
