"""The MQTT consumer: partition topics, backoff, acknowledgement order; against the real
Mosquitto: redelivery of what was not acknowledged across a broker restart, reconnection
with /healthz state, and intake that pauses rather than grows."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from anju.backoff import Backoff
from anju.config import Settings
from anju.devices.registry import Site, load_site
from anju.ingest.ack_sequencer import AckSequencer
from anju.ingest.metrics import ingest_metrics
from anju.ingest.mqtt import Message, MqttConsumer, client_id, topics_for
from anju.services import LocalServices
from tests.mqtt_support import until


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root: Path = tmp_path_factory.mktemp("site")
    (root / "site.yaml").write_text("estates:\n" + "".join(
        f"  - id: e{i}\n    buildings:\n      - {{id: b1, floors: 5}}\n" for i in range(5)))
    (root / "devices.csv").write_text("device,kind,estate,building,floor,zone,params\n"
                                      "s-1,smoke,e0,b1,1,,\n")
    return load_site(root)


def test_partition_topics_and_client_ids(site: Site) -> None:
    one = Settings(partition="0/1")
    assert topics_for(one, site) == ["anju/#"] and client_id(one) == "anju-pipeline"
    assert topics_for(Settings(partition="1/2"), site) == ["anju/e1/#", "anju/e3/#"]
    assert topics_for(Settings(partition="0/2"), site) == ["anju/e0/#", "anju/e2/#",
                                                           "anju/e4/#"]
    assert client_id(Settings(partition="1/2")) == "anju-pipeline-p1of2"
    assert topics_for(Settings(partition="4/7"), site) == ["anju/e4/#"]
    assert topics_for(Settings(partition="5/7"), site) == []


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(1))
    delays = [b.next() for _ in range(40)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(delays[:2]) <= 1.0  # 0.5, 1.0 ceilings first
    assert len({round(d, 6) for d in delays}) == len(delays)  # jitter: no two alike
    b.reset()
    assert b.next() <= 0.5


class _FakeConsumer:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.generation = 0

    def ack(self, messages: list[Message]) -> None:
        self.acked += [m.mid for m in messages]


def test_acks_go_out_in_received_order() -> None:
    fake = _FakeConsumer()
    seq = AckSequencer(fake)  # type: ignore[arg-type]
    batches = [[Message("t", b"", mid, 1, 0) for mid in range(k * 3, k * 3 + 3)]
               for k in range(4)]
    tickets = [seq.issue(b) for b in batches]
    seq.done(tickets[2])
    seq.done(tickets[1])
    assert fake.acked == [] and seq.pending == 4
    seq.done(tickets[0])
    assert fake.acked == list(range(9)) and seq.pending == 1
    seq.done(tickets[0])  # twice: ignored
    seq.done(tickets[3])
    assert fake.acked == list(range(12)) and seq.pending == 0


def test_two_part_tickets_ack_only_when_both_parts_are_done() -> None:
    fake = _FakeConsumer()
    seq = AckSequencer(fake)  # type: ignore[arg-type]
    t = [seq.issue([Message("t", b"", mid, 1, 0)], parts=2) for mid in range(3)]
    seq.done(t[0])  # stored, alarms not yet committed
    seq.done(t[1])
    seq.done(t[1])  # both parts of the second
    assert fake.acked == [] and seq.pending == 3
    seq.done(t[0])  # the first's alarms committed: both go, in order
    assert fake.acked == [0, 1] and seq.pending == 1
    seq.done(t[2])
    assert fake.acked == [0, 1]
    seq.done(t[2])
    assert fake.acked == [0, 1, 2] and seq.pending == 0


def test_an_abandoned_ticket_is_never_acked_and_does_not_hold_back_later_ones() -> None:
    fake = _FakeConsumer()
    seq = AckSequencer(fake)  # type: ignore[arg-type]
    seq.hold_max = 3
    t = [seq.issue([Message("t", b"", 2 * k, 1, 0), Message("t", b"", 2 * k + 1, 1, 0)],
                   parts=2) for k in range(4)]
    seq.done(t[0])
    assert seq.abandon(t[0]) == (True, 2)  # storage failed: its alarms part is moot
    seq.done(t[0])  # the alarms part, late: ignored
    seq.done(t[1])
    seq.done(t[1])
    assert fake.acked == [2, 3] and seq.pending == 2 and seq.abandoned == 2
    # A second failure would hold 4 > hold_max messages: acknowledged after all, so the
    # broker's in-flight window never fills.
    assert seq.abandon(t[2]) == (False, 2)
    assert fake.acked == [2, 3, 4, 5]
    fake.generation = 1  # a new connection: the broker redelivered what was held
    assert seq.abandon(t[3]) == (True, 2)
    assert fake.acked == [2, 3, 4, 5] and seq.pending == 0 and seq.abandoned == 4


# -- against the real broker ---------------------------------------------------------------

def _publish(services: LocalServices, topic: str, payloads: list[bytes]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    c.connect(services.mosquitto.host, services.mosquitto.port)
    c.loop_start()
    try:
        for info in [c.publish(topic, p, qos=1) for p in payloads]:
            info.wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()







async def _drain(c: MqttConsumer, n: int, within_s: float = 10.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + within_s
    while len(got) < n and time.monotonic() < deadline:
        await c.wait(0.2)
        got += c.take(1000)
    return got


@pytest.fixture
async def consumer(services: LocalServices, cid: str,
                   topic_prefix: str) -> AsyncIterator[MqttConsumer]:
    s = Settings(mqtt_url=services.mosquitto.url, mqtt_client_id=cid)
    async with MqttConsumer(s, [f"anju/{topic_prefix}/#"],
                            backoff=Backoff(0.05, 0.2)) as c:
        await until(lambda: c.subscribed)
        yield c


@pytest.mark.integration
async def test_unacknowledged_messages_come_back_after_a_broker_restart(
        services: LocalServices, consumer: MqttConsumer, topic_prefix: str) -> None:
    topic = f"anju/{topic_prefix}/b1/smoke/s-1"
    await asyncio.to_thread(_publish, services, topic, [b"%d" % i for i in range(10)])
    got = await _drain(consumer, 10)
    assert [m.payload for m in got] == [b"%d" % i for i in range(10)]
    consumer.ack(got[:6])
    await asyncio.sleep(0.2)  # the PUBACKs reach the broker
    services.mosquitto.stop()  # a clean stop saves sessions to the persistence file
    try:
        await until(lambda: not consumer.connected)
        health = consumer.health()
        # "down" until the first reconnection attempt begins, "connecting" from then on
        assert health["ok"] is False and health["state"] in ("down", "connecting")
        consumer.ack(got[6:])  # acks of the old connection are not sent on the next
    finally:
        services.mosquitto.start()
    await until(lambda: consumer.subscribed, 15)
    assert consumer.health()["reconnects"] == 1
    again = await _drain(consumer, 4)
    assert sorted(m.payload for m in again) == [b"6", b"7", b"8", b"9"]
    consumer.ack(again)
    await asyncio.to_thread(_publish, services, topic, [b"new"])
    assert [m.payload for m in await _drain(consumer, 1)] == [b"new"]


@pytest.mark.integration
async def test_intake_pauses_instead_of_growing(services: LocalServices, cid: str,
                                                topic_prefix: str) -> None:
    reg = CollectorRegistry()
    s = Settings(mqtt_url=services.mosquitto.url, mqtt_client_id=cid)
    async with MqttConsumer(s, [f"anju/{topic_prefix}/#"], max_buffered=10,
                            metrics=ingest_metrics(reg)) as c:
        await until(lambda: c.subscribed)
        await asyncio.to_thread(_publish, services, f"anju/{topic_prefix}/b/smoke/d",
                                [b"x" * 100] * 100)
        await until(lambda: c.paused)
        await asyncio.sleep(0.2)
        assert c.buffered == 10
        assert reg.get_sample_value("anju_intake_paused_total") == 1
        got = await _drain(c, 100)
        assert len(got) == 100
        c.ack(got)


def test_fast_publish_properties_decode_as_pahos_own() -> None:
    import struct

    import paho.mqtt._packet as packet
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    import anju.ingest.mqtt  # noqa: F401
    from anju.ingest.paho_fast import FastProperties

    assert packet.Properties is FastProperties  # installed on import of anju.ingest.mqtt
    topic, payload = b"anju/e1/b1/smoke/s-1", b'{"ts": 1, "temp_c": 20}'
    head = struct.pack("!H", len(topic)) + topic + struct.pack("!H", 7)
    # none; then Message Expiry Interval 60 s and a User Property
    for props in (b"\x00", b"\x0e\x02\x00\x00\x00\x3c\x26\x00\x01k\x00\x03val"):
        got = packet.decode_publish(0x32, head + props + payload, 5)
        assert (got.topic, got.payload, got.mid, got.qos) == (topic, payload, 7, 1)
        want = Properties(PacketTypes.PUBLISH)  # paho's own class, for comparison
        want.unpack(props)
        assert got.properties is not None
        assert got.properties.json() == want.json()


@pytest.mark.integration
async def test_what_a_lost_connection_read_but_did_not_hand_over_stays_with_it(
        services: LocalServices, cid: str, topic_prefix: str) -> None:
    """The reader stops in the middle of a read when the buffer is full; if the
    connection is lost then, those bytes are not handed over later under the next
    connection's generation (their packet ids belong to the old one: acking them on the
    new one would acknowledge whatever the broker gave those ids there)."""
    s = Settings(mqtt_url=services.mosquitto.url, mqtt_client_id=cid)
    # reconnection no sooner than 0.5 s: what is taken before that is the old connection's
    async with MqttConsumer(s, [f"anju/{topic_prefix}/#"], max_buffered=3,
                            backoff=Backoff(0.5, 1.0, jitter=0.0)) as c:
        await until(lambda: c.subscribed)
        await asyncio.to_thread(_publish, services, f"anju/{topic_prefix}/b/smoke/d",
                                [b"%d" % i for i in range(10)])
        await until(lambda: c.paused)
        old = c._gen
        c._mark_lost("test: the connection drops")
        await until(lambda: c._gen > old)
        got = c.take(100)  # resumes reading: nothing the old connection read may come in
        await asyncio.sleep(0.1)
        got += c.take(100)
        assert [m.gen for m in got] == [old] * 3  # what was buffered before, and only that
        again = await _drain(c, 10, 15)  # the broker sends the session's queue again
        assert again and all(m.gen == c._gen for m in again)
        assert {m.payload for m in got + again} == {b"%d" % i for i in range(10)}
        c.ack(again)
