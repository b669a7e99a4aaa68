"""Alarms: lifecycle, routing and escalation, durable store and outbox, signed webhooks, API.

The chain, assembled here in one visible place (STYLE.md, Alertmanager's notify pipeline)::

    transitions ──► AlarmManager ─ route ─ de-duplicate ─ escalate (tick) ──► store.commit
                    (lifecycle.py)  (routing.py)                              (events + outbox)
    outbox ──► WebhookDispatcher (one worker per target: sign, send, retry, park)
    store  ──► make_api (list, acknowledge)        events ──► alarm_lines ──► InfluxDB

Wiring in the live pipeline (the manager's calls touch SQLite: run them off the loop)::

    store = SqliteAlarmStore(settings.state_dir)
    mgr = AlarmManager(site, store, registry=registry)
    async with WebhookDispatcher(site, store, settings, registry=registry) as hooks:
        events = await asyncio.to_thread(mgr.on_transitions, transitions)
        events += await asyncio.to_thread(mgr.tick, now_ms)
        hooks.wake()
        influx_writer.write(alarm_lines(events))          # precision=ms
    app = make_api(mgr, store, site, health=lambda: {"mqtt": "connected", ...},
                   registry=registry)

A replay uses ``MemoryAlarmStore(keep_outbox=False)`` with the same manager.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use (PEP 562), so that importing one alarms module, or `anju --help`,
# does not load aiohttp, numpy and pydantic through the whole area.
_WHERE: dict[str, str] = {
    "AckRequest": "anju.alarms.model",
    "AlarmEvent": "anju.alarms.model",
    "AlarmManager": "anju.alarms.lifecycle",
    "AlarmMetrics": "anju.alarms.metrics",
    "AlarmNotFound": "anju.alarms.errors",
    "AlarmRecord": "anju.alarms.model",
    "AlarmStateError": "anju.alarms.errors",
    "AlarmStore": "anju.alarms.store",
    "AlarmStoreError": "anju.alarms.errors",
    "Backoff": "anju.alarms.retry",
    "Commit": "anju.alarms.store",
    "Delivery": "anju.alarms.model",
    "MemoryAlarmStore": "anju.alarms.memory_store",
    "SqliteAlarmStore": "anju.alarms.sqlite_store",
    "WebhookDispatcher": "anju.alarms.delivery",
    "alarm_id_for": "anju.alarms.model",
    "alarm_lines": "anju.alarms.influx",
    "alarm_metrics": "anju.alarms.metrics",
    "delivery_id_for": "anju.alarms.model",
    "event_body": "anju.alarms.model",
    "make_api": "anju.alarms.api",
    "signature": "anju.alarms.signing",
    "signed_headers": "anju.alarms.signing",
    "verify": "anju.alarms.signing",
}

if TYPE_CHECKING:
    from anju.alarms.api import make_api
    from anju.alarms.delivery import WebhookDispatcher
    from anju.alarms.errors import AlarmNotFound, AlarmStateError, AlarmStoreError
    from anju.alarms.influx import alarm_lines
    from anju.alarms.lifecycle import AlarmManager
    from anju.alarms.memory_store import MemoryAlarmStore
    from anju.alarms.metrics import AlarmMetrics, alarm_metrics
    from anju.alarms.model import (
        AckRequest,
        AlarmEvent,
        AlarmRecord,
        Delivery,
        alarm_id_for,
        delivery_id_for,
        event_body,
    )
    from anju.alarms.retry import Backoff
    from anju.alarms.signing import signature, signed_headers, verify
    from anju.alarms.sqlite_store import SqliteAlarmStore
    from anju.alarms.store import AlarmStore, Commit


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = [
    "AckRequest",
    "AlarmEvent",
    "AlarmManager",
    "AlarmMetrics",
    "AlarmNotFound",
    "AlarmRecord",
    "AlarmStateError",
    "AlarmStore",
    "AlarmStoreError",
    "Backoff",
    "Commit",
    "Delivery",
    "MemoryAlarmStore",
    "SqliteAlarmStore",
    "WebhookDispatcher",
    "alarm_id_for",
    "alarm_lines",
    "alarm_metrics",
    "delivery_id_for",
    "event_body",
    "make_api",
    "signature",
    "signed_headers",
    "verify",
]
