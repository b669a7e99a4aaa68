"""Prometheus metrics of the alarm area, on an injected ``CollectorRegistry``.

The manager, the dispatcher and the API each ask :func:`alarm_metrics` for the metrics of
their registry and get the same objects, since registering a name twice on one registry
raises; a registry per pipeline (or per test) keeps several in one process apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from anju.metrics import PerRegistry

__all__ = ["AlarmMetrics", "alarm_metrics"]


@dataclass(frozen=True)
class AlarmMetrics:
    events: Counter  # labels rule, event
    deliveries: Counter  # labels team, outcome: delivered | retried | parked
    pending: Gauge  # labels team
    parked: Gauge  # labels team: past the horizon, waiting for `anju alarms requeue`
    oldest: Gauge  # labels team: age of the oldest undelivered event, 0 when none
    latency: Histogram  # labels team: commit of the event → 2xx from the receiver
    duplicates: Counter  # labels rule, event: transitions ignored (duplicate raise, stray clear)
    digests: Counter  # labels team: digest messages a chat robot accepted


def _make(registry: CollectorRegistry | None) -> AlarmMetrics:
    return AlarmMetrics(
        events=Counter("anju_alarm_events", "Alarm lifecycle events committed",
                       ["rule", "event"], registry=registry),
        deliveries=Counter("anju_webhook_deliveries", "Webhook delivery attempts by outcome",
                           ["team", "outcome"], registry=registry),
        pending=Gauge("anju_webhook_outbox_pending", "Webhook deliveries waiting in the outbox",
                      ["team"], registry=registry),
        parked=Gauge("anju_webhook_outbox_parked",
                     "Deliveries past their retry horizon, kept for `anju alarms requeue`",
                     ["team"], registry=registry),
        oldest=Gauge("anju_webhook_outbox_oldest_seconds",
                     "Age of the oldest event not yet delivered to a team (0: none)",
                     ["team"], registry=registry),
        latency=Histogram(
            "anju_webhook_delivery_latency_seconds",
            "From the commit of an alarm event to its delivery (2xx) to a team",
            ["team"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                     900, 3600)),
        duplicates=Counter("anju_alarm_transitions_ignored",
                           "Transitions that changed nothing (duplicate raise, stray clear)",
                           ["rule", "event"], registry=registry),
        digests=Counter("anju_robot_digests",
                        "Digest messages (several alarm events in one) a chat robot accepted",
                        ["team"], registry=registry),
    )


#: The AlarmMetrics of a registry, made once per registry (``None``: registered nowhere).
alarm_metrics = PerRegistry(_make)
