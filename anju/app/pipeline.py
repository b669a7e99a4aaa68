"""The live pipeline, wired in one visible place (DESIGN.md "Data flow")::

    MqttConsumer ─► batch loop (Batcher: decode) ─┬─► encode ─► Storage (InfluxDB | spool) ─► ack
                                                  └─► rules: RuleEngine.process ─┐
    clock: every tick_s, RuleEngine.tick(receiving clock) ───────────────────────┤
                                                                                 ▼
            alarms: AlarmManager (SQLite, on a thread) ─► WebhookDispatcher.wake
                                                      └─► alarm_lines ─► Storage (`alarms`)
    HTTP API (health, metrics, alarms) on api_addr;  rejected readings ─► DeadLetters file

Storage and rules are separate branches after decoding: each has its own bounded queue and
task, and storage never blocks (it spools when InfluxDB is behind), so a slow InfluxDB
cannot delay an alarm. Every queue is bounded; when one is full the stage before it waits,
back to the consumer, which then stops reading the socket and the broker queues for us.
A message is acknowledged to the broker once its readings are stored or spooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from prometheus_client import CollectorRegistry

from anju.alarms import (
    AlarmEvent,
    AlarmManager,
    SqliteAlarmStore,
    WebhookDispatcher,
    alarm_lines,
    make_api,
)
from anju.config import Settings
from anju.devices.batch import Batch
from anju.devices.deadletter import DEFAULT_NAME, DeadLetters
from anju.devices.decode import Decoder, Rejection
from anju.devices.registry import Site
from anju.errors import ConfigError
from anju.ingest.batcher import Batcher
from anju.ingest.health import HealthReport, dead_letters_by_team
from anju.ingest.lineproto import LineEncoder
from anju.ingest.metrics import ingest_metrics
from anju.ingest.mqtt import AckSequencer, MqttConsumer, topics_for
from anju.ingest.storage import Storage
from anju.rules import RuleEngine, RuleSet, load_rules
from anju.rules.transition import Transition
from anju.web import add_console

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

_QUEUE_BATCHES = 4  # decoded batches waiting for each branch
_ENCODE_SLICE = 1000  # rows encoded between two yields to the event loop


def _wall_ms() -> int:
    return int(time.time() * 1000)


class Pipeline:
    """ingest → storage | rules → alarms → webhooks, plus the HTTP API.

    An async context manager that owns its tasks in a TaskGroup: entering validates and
    starts everything; leaving normally drains (the batch in progress, the writers, the
    acknowledgements, the webhooks in flight) before it stops. A task that fails cancels
    the others and its error comes out of ``async with``.
    """

    def __init__(self, settings: Settings, site: Site, *,
                 registry: CollectorRegistry | None = None, rules: RuleSet | None = None,
                 api: bool = True, clock: Callable[[], int] | None = None) -> None:
        """``clock`` gives "now" in ms (the wall clock by default): the engine's ticks, the
        decoder's receiving clock (CONTRACT §2), the ``ts`` of acknowledgements."""
        self.settings = settings
        self._clock = clock
        self.site = site
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ingest_metrics(self.registry)
        self._rules = rules
        self._api_enabled = api
        part = settings.partition_spec
        owned = [e.id for e in site.estates.values() if part.owns(e.index)]
        self.estates: set[str] | None = None if part.count == 1 else set(owned)
        self.topics = topics_for(settings, site)
        self.rejected: Counter[str] = Counter()
        self.alarm_events: Counter[str] = Counter()
        self.started = False
        self._tg: asyncio.TaskGroup | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self.dead_letters: DeadLetters | None = None
        self._health = HealthReport()

    # -- lifecycle -------------------------------------------------------------------------
    def validate(self) -> None:
        """Configuration errors, before any socket opens: raises :class:`ConfigError`."""
        if not self.topics:
            raise ConfigError(f"partition {self.settings.partition}: no estate of the site "
                              "falls in it")
        try:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"state dir {self.settings.state_dir}: {exc}") from exc
        if self._rules is None:
            self._rules = load_rules(self.site)
        self.storage = Storage(self.settings, metrics=self.metrics)
        self.storage.validate()
        self.consumer = MqttConsumer(self.settings, self.topics, metrics=self.metrics)
        try:
            self.consumer.validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.store = SqliteAlarmStore(self.settings.state_dir)
        self.dispatcher = WebhookDispatcher(self.site, self.store, self.settings,
                                            registry=self.registry)
        try:
            self.dispatcher.validate()
        except ConfigError:
            self.store.close()
            raise
        self.manager = AlarmManager(self.site, self.store, registry=self.registry)
        self.engine = RuleEngine(self.site, self._rules, estates=self.estates)
        self._restore_engine()
        self.decoder = Decoder(self.site, on_reject=self._on_reject, estates=self.estates)
        self.encoder = LineEncoder(self.site)
        self.batcher = Batcher(self.consumer, self.decoder, batch_max=self.settings.batch_max,
                               linger_ms=self.settings.batch_linger_ms, metrics=self.metrics,
                               clock=self._now)
        self.acks = AckSequencer(self.consumer)

    def _restore_engine(self) -> None:
        """Open alarms of the store resume as active in the engine: after a restart they
        clear when their condition has been false for the clear delay, and a repeat incident
        after that raises a new alarm (instead of being dropped as a duplicate)."""
        open_alarms = [(r.rule, r.subject, r.base.started_at)
                       for r in self.store.list_alarms(open_only=True) if not r.is_event]
        n = self.engine.restore(open_alarms)
        if open_alarms:
            log.info("resumed %d of %d open alarms from the alarm store", n, len(open_alarms))
        if n < len(open_alarms):
            log.warning("%d open alarms name a rule or device no longer configured: they "
                        "stay open until acknowledged", len(open_alarms) - n)

    async def start(self) -> None:
        """Validates, then connects and starts every task."""
        self.validate()
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.callback(self.store.close)
            # Opens its file and starts its writer thread: only now, after validate().
            self.dead_letters = DeadLetters(self.settings.state_dir / DEFAULT_NAME,
                                            self.settings.deadletter_max_mb << 20)
            stack.push_async_callback(self.dead_letters.aclose)
            await stack.enter_async_context(self.storage)
            await stack.enter_async_context(self.dispatcher)
            if self._api_enabled:
                await self._start_api(stack)
            await stack.enter_async_context(self.consumer)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._store_q: asyncio.Queue[tuple[Batch, int]] = asyncio.Queue(_QUEUE_BATCHES)
        self._rules_q: asyncio.Queue[Batch] = asyncio.Queue(_QUEUE_BATCHES)
        self._alarm_q: asyncio.Queue[tuple[int | None, list[Transition]]] = asyncio.Queue(16)
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for name, coro in (("batches", self._batch_loop()), ("encode", self._encode_loop()),
                           ("rules", self._rules_loop()), ("clock", self._clock_loop()),
                           ("alarms", self._alarm_loop())):
            self._tasks[name] = self._tg.create_task(coro, name=f"pipeline:{name}")
        self.started = True

    async def _start_api(self, stack: contextlib.AsyncExitStack) -> None:
        app = make_api(self.manager, self.store, self.site, health=self.health,
                       registry=self.registry, clock_ms=self._now,
                       on_events=self._committed_events)
        add_console(app)  # the operators' console at / (anju/web)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, port = self.settings.api_host_port
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"API address {self.settings.api_addr}: {exc}") from exc

    async def drain(self) -> None:
        """Stops intake and waits until everything received is stored (or spooled), its
        alarms committed and its messages acknowledged."""
        self._stopping.set()
        self.consumer.stop_reading()
        clock = self._tasks.get("clock")
        if clock is not None:  # no new ticks: what is committed from here on is drained
            clock.cancel()
            await asyncio.wait([clock])
        batches = self._tasks.get("batches")
        if batches is not None:
            await asyncio.wait([batches])  # it leaves once the consumer's buffer is empty
            if batches.done() and not batches.cancelled() and batches.exception():
                return
        await self._store_q.join()
        await self._rules_q.join()
        await self._alarm_q.join()
        await self.storage.drain()

    async def stop(self, exc_type: type[BaseException] | None = None,
                   exc: BaseException | None = None, tb: TracebackType | None = None) -> None:
        """Drains (when leaving normally), then stops every task and closes every client."""
        if not self.started:
            return
        try:
            if exc_type is None:
                await self.drain()
        finally:
            self.started = False
            for t in self._tasks.values():
                t.cancel()
            try:
                if self._tg is not None:
                    await self._tg.__aexit__(exc_type, exc, tb)
            finally:
                self._tg = None
                self._tasks.clear()
                if self._stack is not None:
                    await self._stack.aclose()  # consumer (flushes acks) first, store last
                    self._stack = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop(exc_type, exc, tb)

    def _now(self) -> int:
        # Looked up at each call, so a caller may also swap the module's _wall_ms.
        return self._clock() if self._clock is not None else _wall_ms()

    # -- observation -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``status`` (ok | degraded | down) and each dependency's state with a reason
        (anju.ingest.health); ``mqtt`` decides /healthz's status code."""
        deliveries = getattr(self.dispatcher, "health", None)  # the dispatcher's, if it has one
        return self._health.compose(
            mqtt=self.consumer.health(), influxdb=self.storage.health(),
            deliveries=deliveries() if callable(deliveries) else None,
            dead_by_team=dead_letters_by_team(self.registry), late=self.engine.stats.late,
            pipeline={"ok": self.started, "batches_unacked": self.acks.pending,
                      "queues": {"store": self._store_q.qsize(),
                                 "rules": self._rules_q.qsize(),
                                 "alarms": self._alarm_q.qsize()} if self.started else {}})

    def stats(self) -> dict[str, Any]:
        """Counters since start, for the demo and the benchmark."""
        st = self.storage.stats()
        deliveries: Counter[str] = Counter()
        for metric in self.registry.collect():
            if metric.name == "anju_webhook_deliveries":
                for s in metric.samples:
                    if s.name.endswith("_total"):
                        deliveries[s.labels.get("outcome", "?")] += int(s.value)
        return {
            "messages": self.decoder.messages,
            "readings": self.decoder.accepted,
            "rejected": dict(self.rejected),
            "late": self.engine.stats.late,
            "clock_steps": self.engine.stats.clock_steps,
            "stored": st["stored"],
            "dropped": st["dropped"],
            "spooled": st["spooled"],
            "replayed": st["replayed"],
            "spool_points": st["spool_points"],
            "alarms": dict(self.alarm_events),
            "deliveries": dict(deliveries),
        }

    # -- tasks -----------------------------------------------------------------------------
    def _on_reject(self, rej: Rejection) -> None:
        self.rejected[rej.reason] += 1
        self.metrics.rejected.labels(rej.reason).inc()
        if self.dead_letters is not None:
            self.dead_letters.write(rej)  # buffered in memory; its thread writes the file

    async def _batch_loop(self) -> None:
        while True:
            draining = self._stopping.is_set()
            if draining and not self.consumer.buffered:
                return
            batch, msgs = await self.batcher.next_batch(wait=not draining)
            if not msgs:
                continue
            ticket = self.acks.issue(msgs)
            if batch:
                await self._rules_q.put(batch)
            await self._store_q.put((batch, ticket))
            # A full buffer never makes the batcher wait: let the branches run.
            await asyncio.sleep(0)

    async def _encode_loop(self) -> None:
        while True:
            batch, ticket = await self._store_q.get()
            try:
                lines: list[str] = []
                empty = 0
                for kb in batch.kinds.values():
                    # In slices of rows, yielding between them: a 5000-point batch is
                    # ~5 ms of encoding that alarms need not wait behind.
                    for a in range(0, len(kb), _ENCODE_SLICE):
                        enc = self.encoder.encode_kind(kb, a, a + _ENCODE_SLICE)
                        lines += enc.lines
                        empty += enc.empty
                        await asyncio.sleep(0)
                if empty:
                    self.metrics.points.labels("empty").inc(empty)
                await self.storage.submit(lines, partial(self.acks.done, ticket))
            finally:
                self._store_q.task_done()

    async def _rules_loop(self) -> None:
        while True:
            batch = await self._rules_q.get()
            try:
                late, steps = self.engine.stats.late, self.engine.stats.clock_steps
                transitions = self.engine.process(batch, self._now())
                if self.engine.stats.late > late:
                    self.metrics.late.inc(self.engine.stats.late - late)
                if self.engine.stats.clock_steps > steps:
                    self.metrics.clock_steps.inc(self.engine.stats.clock_steps - steps)
                if transitions:
                    await self._alarm_q.put((None, transitions))
            finally:
                self._rules_q.task_done()

    async def _clock_loop(self) -> None:
        period = self.settings.tick_s
        loop = asyncio.get_running_loop()
        next_at = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += period
            if loop.time() > next_at:  # fell behind (suspended?): skip, don't burst
                next_at = loop.time() + period
            now = self._now()
            await self._alarm_q.put((now, self.engine.tick(now)))

    async def _alarm_loop(self) -> None:
        while True:
            now, transitions = await self._alarm_q.get()
            try:
                # SQLite commits: on a thread. One at a time, in the engine's order.
                events = await asyncio.to_thread(self._apply, now, transitions)
                if events:
                    self.dispatcher.wake()
                    for ev in events:
                        self.alarm_events[ev.event] += 1
                    text = alarm_lines(events).decode()
                    await self.storage.submit([ln for ln in text.split("\n") if ln])
            finally:
                self._alarm_q.task_done()

    async def _committed_events(self, events: list[AlarmEvent]) -> None:
        """Events an acknowledgement committed through the API: the same path as the rules'
        events in ``_alarm_loop`` (wake the webhooks, store the ``alarms`` points)."""
        if events:
            self.dispatcher.wake()
            for ev in events:
                self.alarm_events[ev.event] += 1
            text = alarm_lines(events).decode()
            await self.storage.submit([ln for ln in text.split("\n") if ln])

    def _apply(self, now: int | None, transitions: list[Transition]) -> list[AlarmEvent]:
        events = self.manager.on_transitions(
            transitions, now_ms=self._now() if now is None else now) if transitions else []
        if now is not None:
            events += self.manager.tick(now)
        return events
