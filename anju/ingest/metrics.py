"""Prometheus metrics of the live path, on an injected ``CollectorRegistry``.

Consumer, batcher, writer and spool ask :func:`ingest_metrics` for their registry's metrics
and share the same objects (a name registers once per registry); ``None`` gives metrics
registered nowhere, for tests and tools that do not read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from anju.metrics import PerRegistry

__all__ = ["IngestMetrics", "ingest_metrics"]


@dataclass(frozen=True)
class IngestMetrics:
    messages: Counter  # MQTT messages received
    readings: Counter  # readings accepted by the decoder
    rejected: Counter  # labels reason: readings (or whole messages) rejected
    points: Counter  # labels outcome: stored | dropped (400) | empty (no stored field)
    write_seconds: Histogram  # one POST /write, by outcome
    spool_bytes: Gauge
    spool_segments: Gauge
    spooled: Counter  # points appended to the spool
    replayed: Counter  # points replayed from the spool into InfluxDB
    spool_dropped: Counter  # points dropped from a full spool (oldest first)
    mqtt_connected: Gauge
    mqtt_reconnects: Counter
    intake_paused: Counter  # times the consumer stopped reading: the pipeline was behind
    batch_seconds: Histogram  # decode time of a batch
    late: Counter  # readings older than their device's newest: not seen by state rules
    clock_steps: Counter  # device clocks that jumped and were rebased (anju.rules.clock)
    spool_errors: Counter  # spool appends that failed (OSError: disk full, I/O error)
    reloads: Counter  # labels outcome (ok | failed): registry reloads (SIGHUP)
    unacked: Counter  # messages left unacknowledged (their storage failed): redelivered later
    held_for_alarms: Counter  # seconds storage's encoding and writes waited for alarms


def _make(r: CollectorRegistry | None) -> IngestMetrics:
    return IngestMetrics(
        messages=Counter("anju_mqtt_messages", "MQTT messages received", registry=r),
        readings=Counter("anju_readings", "Readings accepted by the decoder", registry=r),
        rejected=Counter("anju_rejected", "Readings or messages rejected, by reason",
                         ["reason"], registry=r),
        points=Counter("anju_influx_points", "Points handed to InfluxDB, by outcome",
                       ["outcome"], registry=r),
        write_seconds=Histogram(
            "anju_influx_write_seconds", "Latency of one InfluxDB write request",
            ["outcome"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
        spool_bytes=Gauge("anju_spool_bytes", "Size of the InfluxDB spool on disk", registry=r),
        spool_segments=Gauge("anju_spool_segments", "Segment files in the spool", registry=r),
        spooled=Counter("anju_spool_points_in", "Points written to the spool", registry=r),
        replayed=Counter("anju_spool_points_replayed", "Points replayed from the spool",
                         registry=r),
        spool_dropped=Counter("anju_spool_points_dropped",
                              "Points dropped because the spool was full (oldest first)",
                              registry=r),
        mqtt_connected=Gauge("anju_mqtt_connected", "1 while connected to the broker",
                             registry=r),
        mqtt_reconnects=Counter("anju_mqtt_reconnects", "Connections to the broker after the "
                                "first", registry=r),
        intake_paused=Counter("anju_intake_paused", "Times intake paused because the pipeline "
                              "was behind", registry=r),
        batch_seconds=Histogram(
            "anju_batch_decode_seconds", "Time to decode one batch", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)),
        late=Counter("anju_readings_late", "Readings older than their device's newest (out "
                     "of order): stored and seen by event rules, not by state rules",
                     registry=r),
        clock_steps=Counter("anju_device_clock_steps", "Device clocks that jumped back or "
                            "ahead and were rebased", registry=r),
        spool_errors=Counter("anju_spool_errors", "Spool appends that failed (disk full, I/O "
                             "error); their points were not kept", registry=r),
        reloads=Counter("anju_registry_reloads", "Registry reloads (SIGHUP), by outcome",
                        ["outcome"], registry=r),
        unacked=Counter("anju_mqtt_messages_unacked", "Messages left unacknowledged because "
                        "their readings could not be stored or spooled (the broker redelivers "
                        "them on the next connection)", registry=r),
        held_for_alarms=Counter("anju_storage_held_for_alarms_seconds", "Seconds storage's "
                                "encoding and InfluxDB writes waited for alarms on their way "
                                "to the webhooks (each wait at most 20 ms)", registry=r),
    )


#: The IngestMetrics of a registry, made once per registry (``None``: registered nowhere).
ingest_metrics = PerRegistry(_make)
