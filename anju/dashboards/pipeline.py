"""The pipeline-health dashboard, from the pipeline's own ``GET /metrics`` (Prometheus).

:data:`METRICS` lists every metric name the dashboard reads, so the areas that export them
(``anju/ingest``, ``anju/alarms``) and a test can check they agree. Names are as
Prometheus sees them: a prometheus-client ``Counter("anju_x")`` is exposed as
``anju_x_total``, a ``Histogram`` as ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.influxql import prometheus_ref
from anju.dashboards.panels import Target, new_dashboard, stat_panel, thresholds, timeseries_panel

__all__ = ["METRICS", "PIPELINE_UID", "Metric", "pipeline_dashboard"]

PIPELINE_UID = "anju-pipeline"


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric the dashboard reads: its exposed name, type, labels and exporting area."""

    name: str
    type: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    area: str
    help: str


METRICS: tuple[Metric, ...] = (
    Metric("anju_mqtt_messages_total", "counter", (), "ingest", "MQTT messages received"),
    Metric("anju_readings_total", "counter", (), "ingest", "readings accepted"),
    Metric("anju_rejected_total", "counter", ("reason",), "ingest",
           "readings (or unparseable messages) rejected, by reason"),
    Metric("anju_influx_points_total", "counter", ("outcome",), "ingest",
           "points handed to InfluxDB: stored | dropped | empty"),
    Metric("anju_influx_write_seconds", "histogram", ("outcome",), "ingest",
           "latency of one InfluxDB write request"),
    Metric("anju_spool_bytes", "gauge", (), "ingest",
           "bytes spooled to disk while InfluxDB is unavailable"),
    Metric("anju_spool_points_dropped_total", "counter", (), "ingest",
           "points dropped because the spool was full"),
    Metric("anju_mqtt_connected", "gauge", (), "ingest", "1 while connected to the broker"),
    Metric("anju_mqtt_reconnects_total", "counter", (), "ingest",
           "connections to the broker after the first"),
    Metric("anju_intake_paused_total", "counter", (), "ingest",
           "times intake paused because the pipeline was behind"),
    Metric("anju_alarm_events_total", "counter", ("rule", "event"), "alarms",
           "alarm lifecycle events committed"),
    Metric("anju_webhook_deliveries_total", "counter", ("team", "outcome"), "alarms",
           "webhook delivery attempts: delivered | retried | dead"),
    Metric("anju_webhook_outbox_pending", "gauge", ("team",), "alarms",
           "webhook deliveries waiting in the outbox"),
    Metric("anju_webhook_delivery_latency_seconds", "histogram", ("team",), "alarms",
           "from an alarm event's commit to its 2xx delivery"),
)


def _prom(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return (prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)
            .datasource(prometheus_ref()))


def _ts(title: str, description: str, targets: list[Target], *, unit: str = "none",
        span: int = 12) -> timeseries.Panel:
    panel = timeseries_panel(title, description, targets, unit=unit, span=span)
    return panel.datasource(prometheus_ref())


def pipeline_dashboard() -> db.Dashboard:
    """Is the pipeline keeping up, is storage healthy, are alarms reaching people?"""
    inst = '{instance=~"$instance"}'
    rate = "[$__rate_interval]"
    instance_var = (
        db.QueryVariable("instance")
        .label("Instance")
        .datasource(prometheus_ref())
        .query("label_values(anju_mqtt_messages_total, instance)")
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dash.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(dash.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dash.VariableSort.ALPHABETICAL_ASC)
    )
    return (
        new_dashboard(PIPELINE_UID, "anju · pipeline health",
                      "The pipeline's own metrics, scraped by Prometheus from GET /metrics.",
                      ["pipeline"])
        .with_variable(instance_var)
        .with_row(db.Row("Now"))
        .with_panel(stat_panel(
            "Broker connected", "1 when each instance is connected to the MQTT broker.",
            [_prom(f"min(anju_mqtt_connected{inst})", "connected")],
            limits=thresholds("red", (1.0, "green")),
        ).datasource(prometheus_ref()))
        .with_panel(stat_panel(
            "Spool on disk", "Readings waiting on disk for InfluxDB to come back.",
            [_prom(f"sum(anju_spool_bytes{inst})", "spool")], unit="bytes",
            limits=thresholds("green", (1.0, "orange")),
        ).datasource(prometheus_ref()))
        .with_panel(stat_panel(
            "Webhook outbox", "Alarm deliveries waiting to be delivered or retried.",
            [_prom(f"sum(anju_webhook_outbox_pending{inst})", "pending")],
            limits=thresholds("green", (1.0, "orange"), (100.0, "red")),
        ).datasource(prometheus_ref()))
        .with_panel(stat_panel(
            "Rejected share", "Rejected readings as a share of all readings, over 5 minutes.",
            [_prom(f"sum(rate(anju_rejected_total{inst}[5m])) / clamp_min("
                   f"sum(rate(anju_readings_total{inst}[5m])) + "
                   f"sum(rate(anju_rejected_total{inst}[5m])), 1e-9)", "rejected")],
            unit="percentunit", limits=thresholds("green", (0.01, "orange"), (0.1, "red")),
        ).datasource(prometheus_ref()))
        .with_row(db.Row("Ingest"))
        .with_panel(_ts("MQTT messages and readings per second",
                        "Messages received from the broker and readings the decoder accepted "
                        "(a gateway batch is one message of many readings).",
                        [_prom(f"sum by (instance) (rate(anju_mqtt_messages_total{inst}{rate}))",
                               "messages {{instance}}", "A"),
                         _prom(f"sum by (instance) (rate(anju_readings_total{inst}{rate}))",
                               "readings {{instance}}", "B")], unit="suffix:/s", span=8))
        .with_panel(_ts("Rejections per second by reason",
                        "Readings rejected, by reason (bad topic, unknown device, field …).",
                        [_prom(f"sum by (reason) (rate(anju_rejected_total{inst}{rate}))",
                               "{{reason}}")], unit="suffix:/s", span=8))
        .with_panel(_ts("Broker reconnects and intake pauses",
                        "Reconnections to the broker, and pauses because the pipeline was "
                        "behind (per second).",
                        [_prom(f"sum(rate(anju_mqtt_reconnects_total{inst}{rate}))",
                               "reconnects", "A"),
                         _prom(f"sum(rate(anju_intake_paused_total{inst}{rate}))",
                               "intake paused", "B")], unit="suffix:/s", span=8))
        .with_row(db.Row("Storage"))
        .with_panel(_ts("InfluxDB write latency",
                        "Median and 99th percentile of one write request.",
                        [_prom("histogram_quantile(0.5, sum by (le) "
                               f"(rate(anju_influx_write_seconds_bucket{inst}{rate})))",
                               "p50", "A"),
                         _prom("histogram_quantile(0.99, sum by (le) "
                               f"(rate(anju_influx_write_seconds_bucket{inst}{rate})))", "p99",
                               "B")], unit="s"))
        .with_panel(_ts("Points to InfluxDB by outcome",
                        "Points per second: stored, dropped (refused for good), empty.",
                        [_prom(f"sum by (outcome) (rate(anju_influx_points_total{inst}{rate}))",
                               "{{outcome}}")], unit="suffix:/s"))
        .with_panel(_ts("Spool size", "Bytes spooled to disk while InfluxDB is unavailable.",
                        [_prom(f"sum by (instance) (anju_spool_bytes{inst})", "{{instance}}")],
                        unit="bytes"))
        .with_panel(_ts("Spool overflow",
                        "Points dropped per second because the spool was full (oldest first): "
                        "data lost.",
                        [_prom(f"sum(rate(anju_spool_points_dropped_total{inst}{rate}))",
                               "dropped")], unit="suffix:/s"))
        .with_row(db.Row("Alarms"))
        .with_panel(_ts("Alarm events by rule", "Alarm lifecycle events per second, by rule.",
                        [_prom(f"sum by (rule) (rate(anju_alarm_events_total{{event=\"raised\","
                               f"instance=~\"$instance\"}}{rate}))", "{{rule}}")],
                        unit="suffix:/s", span=8))
        .with_panel(_ts("Webhook deliveries by outcome",
                        "Delivery attempts per second: delivered, retried, dead.",
                        [_prom("sum by (outcome) "
                               f"(rate(anju_webhook_deliveries_total{inst}{rate}))",
                               "{{outcome}}")], unit="suffix:/s", span=8))
        .with_panel(_ts("Alarm delivery latency",
                        "99th percentile from an alarm event's commit to its delivery, by team.",
                        [_prom("histogram_quantile(0.99, sum by (le, team) (rate("
                               f"anju_webhook_delivery_latency_seconds_bucket{inst}{rate})))",
                               "{{team}}")], unit="s", span=8))
    )
