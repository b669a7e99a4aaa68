"""A real Mosquitto configured with the generated passwd and acl enforces them."""

from __future__ import annotations

import asyncio
import csv
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from anju.devices.credentials import PIPELINE_USER, write_credentials
from anju.devices.registry import load_site
from anju.devices.sample import write_site
from anju.services import Mosquitto

pytestmark = pytest.mark.integration

_ids = itertools.count()
READING = b'{"ts": 1767225600000, "smoke_db_m": 0.01, "temp_c": 21.0}'


@dataclass
class Broker:
    host: str
    port: int
    passwords: dict[str, str]

    def client(self, user: str | None, password: str | None = None,
               **kw: Any) -> aiomqtt.Client:
        if user is not None and password is None:
            password = self.passwords[user]
        return aiomqtt.Client(self.host, self.port, username=user, password=password,
                              identifier=f"t-{user}-{next(_ids)}", timeout=10, **kw)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    # smoke-1, smoke-2 … in e1/b1; smoke-3, smoke-4 … in e2/b1; gateways gw-e1-b1, gw-e2-b1
    site = load_site(write_site(tmp_path / "site", estates=2, buildings=1, per_building=2))
    out = tmp_path / "creds"
    write_credentials(site, out)
    with (out / "credentials.csv").open(newline="") as fh:
        passwords = {r["username"]: r["password"] for r in csv.DictReader(fh)}
    mosq = Mosquitto(tmp_path / "broker", password_file=out / "passwd", acl_file=out / "acl",
                     persistence=False)
    await asyncio.to_thread(mosq.start)
    try:
        yield Broker(mosq.host, mosq.port, passwords)
    finally:
        await asyncio.to_thread(mosq.stop)


async def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    for user, password in [(None, None), ("smoke-1", "wrong"), ("smoke-1", ""),
                           (PIPELINE_USER, broker.passwords["smoke-1"]), ("nobody", "x")]:
        with pytest.raises(aiomqtt.MqttError):
            async with broker.client(user, password):
                pass
    async with broker.client("smoke-1"):
        pass  # and the right one is accepted


async def _received(pipeline: aiomqtt.Client, marker: str) -> list[str]:
    """Topics the pipeline receives up to (and including) the marker topic."""
    got: list[str] = []
    async with asyncio.timeout(10):
        async for msg in pipeline.messages:
            got.append(str(msg.topic))
            if str(msg.topic) == marker:
                return got
    return got


async def test_acl(broker: Broker) -> None:
    own = "anju/e1/b1/smoke/smoke-1"
    async with broker.client(PIPELINE_USER) as pipeline:
        await pipeline.subscribe("anju/#", qos=1)
        async with broker.client("smoke-1") as dev:
            # refused publishes, then one allowed: from one client the broker keeps order,
            # so once the allowed one arrives, a refused one would have arrived before it
            for topic in ["anju/e1/b1/smoke/smoke-2",  # another device's topic
                          "anju/e1/b1/batch/gw-e1-b1",  # a batch topic
                          "anju/e2/b1/smoke/smoke-1",  # another estate
                          "anju/e1/b1/water/smoke-1",  # another kind
                          "other/topic"]:
                await dev.publish(topic, READING, qos=1)
            await dev.publish(own, READING, qos=1)
            assert await _received(pipeline, own) == [own]
        async with broker.client("gw-e1-b1") as gw:
            await gw.publish("anju/e1/b1/smoke/smoke-1", READING, qos=1)  # not a gateway's
            await gw.publish("anju/e2/b1/batch/gw-e2-b1", b"[]", qos=1)  # another gateway's
            await gw.publish("anju/e1/b1/batch/gw-e1-b1", b"[]", qos=1)
            assert await _received(pipeline, "anju/e1/b1/batch/gw-e1-b1") == [
                "anju/e1/b1/batch/gw-e1-b1"]


async def test_nobody_but_the_pipeline_reads(broker: Broker) -> None:
    own = "anju/e1/b1/smoke/smoke-2"
    async with broker.client(PIPELINE_USER) as pipeline, broker.client("smoke-1") as spy, \
            broker.client("gw-e1-b1") as gw_spy:
        await pipeline.subscribe("anju/#", qos=1)
        for c in (spy, gw_spy):
            # Mosquitto 2.0.11 grants the SUBACK and checks "read" on each delivery instead:
            # what matters is that nothing is delivered.
            await c.subscribe("anju/#", qos=1)
            await c.subscribe(own, qos=1)  # not even its neighbour's topic
        async with broker.client("smoke-2") as dev:
            await dev.publish(own, READING, qos=1)
        assert await _received(pipeline, own) == [own]
        for c in (spy, gw_spy):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await anext(aiter(c.messages))
