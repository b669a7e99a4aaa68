"""Storage failures never stop alarming: InfluxDB is down and the spool cannot be written
(a real ``OSError``: the spool's next segment file name is taken by a directory, as a full
disk would refuse the write). Alarms still reach a real webhook receiver, the failure is in
``health()`` and the metrics, the readings' messages stay unacknowledged, and shutdown
finishes. Started again with a working disk and InfluxDB, the broker redelivers those
messages: the readings are stored and no alarm is raised twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from anju.alarms.receiver import WebhookReceiver
from anju.app.pipeline import Pipeline
from anju.services import LocalServices
from tests.mqtt_support import until
from tests.test_pipeline_live import SECRET, _publish, _settings, _site

pytestmark = pytest.mark.integration


async def test_spool_error_keeps_alarming_and_leaves_messages_for_redelivery(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", SECRET.decode())
    state = tmp_path / "state"
    now = int(time.time() * 1000)
    hot = [(f"anju/{topic_prefix}/b1/smoke/s-{d}", {"ts": now + d, "smoke_db_m": 0.01,
                                                    "temp_c": 60.0}) for d in (1, 2)]
    async with WebhookReceiver({"property": SECRET}) as rx:
        site = _site(tmp_path / "site", topic_prefix, hook=rx.url("property"))
        settings = _settings(services, influx_db, state, cid)
        registry = CollectorRegistry()
        blocker = state / "spool" / f"{0:016d}.seg"
        p = Pipeline(settings, site, registry=registry)
        await p.start()
        try:
            await until(lambda: p.consumer.subscribed)
            services.influx.stop()
            blocker.mkdir()  # the spool's first segment cannot be opened: EISDIR
            await asyncio.to_thread(_publish, services, hot)
            await until(lambda: len(rx.accepted.get("property", [])) >= 2, within_s=20)
            await until(lambda: p.acks.abandoned >= 2 and p.acks.pending == 0)
            health = p.health()
            assert health["influxdb"]["spool_ok"] is False
            assert health["influxdb"]["spool_errors"] >= 1
            assert "IsADirectoryError" in health["influxdb"]["spool_error"]
            assert health["pipeline"]["messages_held"] == 2
            assert registry.get_sample_value("anju_spool_errors_total")
            assert registry.get_sample_value("anju_mqtt_messages_unacked_total") == 2
        finally:
            services.influx.start()
            await asyncio.wait_for(p.stop(), 30)  # shutdown finishes
        first = sorted(ev.event()["device"] for ev in rx.accepted["property"])
        assert first == ["s-1", "s-2"]
        assert all(ev.event()["event"] == "raised" for ev in rx.accepted["property"])
        assert p.stats()["stored"] == 0

        blocker.rmdir()
        async with Pipeline(settings, site, registry=CollectorRegistry()) as again:
            # The two messages come back from the broker: stored now, alarms not repeated.
            await until(lambda: again.stats()["stored"] >= 2, within_s=20)
            await until(lambda: again.acks.pending == 0)
            assert again.stats()["alarms"] == {}
    assert services.influx.count("smoke", influx_db) == 2
    assert len(rx.accepted["property"]) == 2
