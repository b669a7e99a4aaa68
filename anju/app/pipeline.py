"""The live pipeline, wired in one visible place (DESIGN.md "Data flow")::

    MqttConsumer ─► batch loop (Batcher: decode) ─┬─► encode, gather ─► Storage ─► ack
                                                  └─► rules: RuleEngine.process ─┐
    clock: every tick_s, RuleEngine.tick(receiving clock) ───────────────────────┤
                                                                                 ▼
            alarms: AlarmManager (SQLite, on a thread) ─► WebhookDispatcher.wake
                                                      └─► alarm_lines ─► Storage (`alarms`)
    HTTP API (health, metrics, alarms) on api_addr;  rejected readings ─► DeadLetters file

Storage and rules are separate branches after decoding: each has its own bounded queue and
task, and storage never blocks (it spools when InfluxDB is behind), so a slow InfluxDB
cannot delay an alarm. Batches are small and quick (what one socket read decoded, spaced by
the engine's cost per batch: see ``_pace_rules``; larger when the rules branch is behind, as
the batch loop then waits and the consumer's buffer grows): the rules see a reading within
a millisecond or two, while the storage branch gathers batches into large writes on its own
clock (``batch_max`` readings or ``batch_linger_ms``). The alarm branch commits every
transition waiting for it in one SQLite transaction (one fsync), then wakes the webhook
deliveries. While an alarm is on that way, storage's encoding and writes wait for it (at
most ``_ALARMS_FIRST_MAX_S``: :mod:`anju.app.alarms_first`).

Every queue is bounded; when one is full the stage before it waits,
back to the consumer, which then stops reading the socket and the broker queues for us.
A message is acknowledged to the broker once its readings are stored or spooled AND the
alarm transitions they caused are committed (a two-part ticket of :class:`AckSequencer`), so
a crash between the two branches loses no alarm: the broker redelivers, and the alarm store
recognises an alarm it already holds. A spool write error (disk full while InfluxDB is down)
fails only the storage part: those messages stay unacknowledged (redelivered on the next
connection), the rules and alarms carry on, ``health()`` shows it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
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
from anju.alarms.maintenance import MaintenanceBook
from anju.app.alarms_first import AlarmsFirst
from anju.app.evaluation import Evaluation
from anju.app.last_readings import LastReadings
from anju.app.monthly_report import MonthlyReport
from anju.app.pacing import BatchCost
from anju.config import Settings
from anju.devices.batch import Batch, KindBatch
from anju.devices.deadletter import DEFAULT_NAME, DeadLetters
from anju.devices.decode import Decoder, Rejection
from anju.devices.registry import Site
from anju.errors import ConfigError
from anju.ingest.ack_sequencer import AckSequencer
from anju.ingest.batcher import Batcher
from anju.ingest.health import HealthReport, dead_letters_by_team
from anju.ingest.lineproto import LineEncoder
from anju.ingest.metrics import ingest_metrics
from anju.ingest.mqtt import MqttConsumer, topics_for
from anju.ingest.storage import Storage
from anju.report.api import add_reports
from anju.rules import RuleEngine, RuleSet, load_rules
from anju.rules.transition import Transition
from anju.web import add_console

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

_RULES_LINGER_MS = 0  # a decoded batch closes once the socket has nothing more buffered…
_RULES_CPU_SHARE = 0.15  # …and no sooner than the engine's fixed cost a batch / this after the last
_ALARMS_FIRST_MAX_S = 0.02  # storage waits at most this long for an alarm on its way
_QUEUE_RULES = 2  # decoded batches waiting for the rules: few, so a busy engine gets larger
_QUEUE_STORE = 64  # decoded batches waiting to be encoded and gathered for storage
_ENCODE_SLICE = 1000  # rows encoded between two yields to the event loop
_SAVE_READINGS_S = 60.0  # the devices' last readings are saved this often (and at stop)


def _settle_heap() -> None:
    """Moves what exists once the pipeline runs (registry, rules, clients) out of the
    collector's sight. Without it a full collection walks the whole site every few
    seconds under load: 50–90 ms with the event loop stopped, the alarm p99 of the peer
    run (measured with 2 000 devices at 5 000 msg/s)."""
    gc.collect()
    gc.freeze()


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
        self.given_rules = rules  # a reload keeps rules given here; else reads the site's
        self._api_enabled = api
        part = settings.partition_spec
        owned = [e.id for e in site.estates.values() if part.owns(e.index)]
        self.estates: set[str] | None = None if part.count == 1 else set(owned)
        self.topics = topics_for(settings, site)
        self.rejected: Counter[str] = Counter()
        self.alarm_events: Counter[str] = Counter()
        self.started = False
        self._stack: contextlib.AsyncExitStack | None = None  # the clients
        self._task_stack: contextlib.AsyncExitStack | None = None  # the task group
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self.dead_letters: DeadLetters | None = None
        self._health = HealthReport()
        # work the batch loop runs between two batches (a registry reload), and its result
        self._between: collections.deque[tuple[Callable[[], Awaitable[None]],
                                               asyncio.Future[None]]] = collections.deque()
        self.last_reload: dict[str, Any] | None = None

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
        self.alarms_first = AlarmsFirst(_ALARMS_FIRST_MAX_S,
                                        on_held=self.metrics.held_for_alarms.inc)
        self.storage = Storage(self.settings, metrics=self.metrics,
                               yield_to=self.alarms_first.wait)
        self.storage.validate()
        self.consumer = MqttConsumer(self.settings, self.topics, metrics=self.metrics)
        try:
            self.consumer.validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.store = SqliteAlarmStore(self.settings.state_dir)
        self.dispatcher = WebhookDispatcher(self.site, self.store, self.settings,
                                            registry=self.registry,
                                            on_round=self.alarms_first.check)
        self.alarms_first.sending = self.dispatcher.sending
        try:
            self.dispatcher.validate()
        except ConfigError:
            self.store.close()
            raise
        # maintenance windows and records live in the alarm store's file (issue 18)
        self.book = MaintenanceBook(self.store.path)
        self.manager = AlarmManager(self.site, self.store, registry=self.registry,
                                    book=self.book)
        self.manager.on_commit = self.dispatcher.committed  # rows straight to the webhooks
        # the devices' last readings as the last run knew them, for the console's view
        self.last_readings = LastReadings(self.settings.state_dir, self.site)
        # last month's report into InfluxDB once a month is over (one worker sees it all)
        self.monthly = (MonthlyReport(self.site, self.settings, clock=self._now)
                        if self.settings.report_monthly and self.estates is None else None)
        # the rules → alarms steps, as the replay takes them (anju.app.evaluation)
        self.evaluation = Evaluation(RuleEngine(self.site, self._rules, estates=self.estates),
                                     self.manager)
        self._restore_engine()
        self.decoder = Decoder(self.site, on_reject=self._on_reject, estates=self.estates)
        self.manager.watch_gateways(self.decoder.gateway_seen)  # gateway.offline
        self.encoder = LineEncoder(self.site)
        # Alarm latency is this linger, not storage's (CONTRACT §6's batch_linger_ms).
        self.batcher = Batcher(self.consumer, self.decoder, batch_max=self.settings.batch_max,
                               linger_ms=min(_RULES_LINGER_MS, self.settings.batch_linger_ms),
                               metrics=self.metrics, clock=self._now)
        self.acks = AckSequencer(self.consumer)
        self._rules_cost = BatchCost()  # the engine's cost a batch (see _pace_rules)

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
        # The clients entered here are closed in reverse (consumer, …, store) by stop(); if
        # entering fails half-way, leaving this block closes what was entered.
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.store.close)
            stack.callback(self.book.close)
            # Opens its file and starts its writer thread: only now, after validate().
            self.dead_letters = DeadLetters(self.settings.state_dir / DEFAULT_NAME,
                                            self.settings.deadletter_max_mb << 20)
            stack.push_async_callback(self.dead_letters.aclose)
            self._commit_pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="anju-alarm-commit")
            stack.callback(self._commit_pool.shutdown)
            carried = await asyncio.to_thread(self.last_readings.load, self.site)
            if carried:
                log.info("last readings of %d devices taken from %s", carried,
                         self.last_readings.path)
            stack.push_async_callback(self._save_readings)  # at stop, after the drain
            await stack.enter_async_context(self.storage)
            await stack.enter_async_context(self.dispatcher)
            if self._api_enabled:
                await self._start_api(stack)
            await stack.enter_async_context(self.consumer)
            self._store_q: asyncio.Queue[tuple[Batch, int]] = asyncio.Queue(_QUEUE_STORE)
            self._rules_q: asyncio.Queue[tuple[Batch, int]] = asyncio.Queue(_QUEUE_RULES)
            # (tick time or None, transitions, ack ticket whose alarm part this completes)
            self._alarm_q: asyncio.Queue[tuple[int | None, list[Transition], int | None]] = \
                asyncio.Queue(16)
            tasks = contextlib.AsyncExitStack()  # closed with the exception, if leaving on one
            await tasks.enter_async_context(self._running())
            self._stack = stack.pop_all()
        self._task_stack = tasks
        self.started = True
        _settle_heap()

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """The pipeline's tasks, owned by one task group for as long as the pipeline runs:
        a task that fails cancels the body of ``async with pipeline`` and its error comes
        out of leaving it."""
        async with asyncio.TaskGroup() as tg:
            for name, coro in (("batches", self._batch_loop()), ("encode", self._encode_loop()),
                               ("rules", self._rules_loop()), ("clock", self._clock_loop()),
                               ("alarms", self._alarm_loop()),
                               ("readings", self._readings_loop())):
                self._tasks[name] = tg.create_task(coro, name=f"pipeline:{name}")
            if self.monthly is not None:
                self._tasks["report"] = tg.create_task(self.monthly.run(),
                                                       name="pipeline:report")
            try:
                yield
            finally:  # drained (or failing): nothing is left for the tasks to do
                for t in self._tasks.values():
                    t.cancel()

    async def _start_api(self, stack: contextlib.AsyncExitStack) -> None:
        app = make_api(self.manager, self.store, self.site, health=self.health,
                       registry=self.registry, clock_ms=self._now,
                       on_events=self._committed_events,
                       last_readings=lambda: self.last_readings.merged(
                           self.engine.newest, self.engine.recv_at))
        add_console(app)  # the operators' console at / (anju/web)
        add_reports(app)  # GET /reports: the accountability report (anju/report)
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
        for q in (self._store_q, self._rules_q, self._alarm_q):
            if not await self._join(q):
                return
        await self.storage.drain()

    async def _join(self, q: asyncio.Queue[Any]) -> bool:
        """Waits for ``q`` to be worked off; False (at once) if a branch task has died, as
        nothing would then empty it: shutdown must finish, not hang."""
        workers = [t for n, t in self._tasks.items() if n in ("encode", "rules", "alarms")]
        join = asyncio.ensure_future(q.join())
        try:
            await asyncio.wait([join, *workers], return_when=asyncio.FIRST_COMPLETED)
        finally:
            done = join.done()
            join.cancel()
        if not done:
            dead = [t.get_name() for t in workers if t.done()]
            log.error("drain: %s stopped; not waiting for its queue", ", ".join(dead))
        return done

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
            tasks, self._task_stack = self._task_stack, None
            try:
                if tasks is not None:
                    await tasks.__aexit__(exc_type, exc, tb)
            finally:
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

    @property
    def engine(self) -> RuleEngine:
        """The rule engine (a registry reload swaps it: anju.app.reload)."""
        return self.evaluation.engine

    @engine.setter
    def engine(self, engine: RuleEngine) -> None:
        self.evaluation.engine = engine

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
                      "messages_held": self.acks.abandoned, "last_reload": self.last_reload,
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
            while self._between:
                await self._run_between(*self._between.popleft())
            draining = self._stopping.is_set()
            if draining and not self.consumer.buffered:
                return
            batch, msgs = await self.batcher.next_batch(wait=not draining)
            if not msgs:
                continue
            # Two parts when there are readings: stored (or spooled), and their alarm
            # transitions committed; only then is the message acknowledged.
            ticket = self.acks.issue(msgs, parts=2 if batch else 1)
            if batch:
                await self._rules_q.put((batch, ticket))
            await self._store_q.put((batch, ticket))
            # A full buffer never makes the batcher wait: let the branches run.
            await asyncio.sleep(0)

    async def _run_between(self, fn: Callable[[], Awaitable[None]],
                           fut: asyncio.Future[None]) -> None:
        try:
            # decoded batches hold the registry's device indices: judge and store them first
            for q in (self._rules_q, self._store_q):
                await self._join(q)
            await fn()
        except Exception as exc:  # the caller reports it; the pipeline goes on
            if not fut.done():
                fut.set_exception(exc)
        else:
            if not fut.done():
                fut.set_result(None)

    async def between_batches(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Runs ``fn`` in the batch loop between two batches, once every batch decoded before
        it has been judged and stored (a registry swap must not meet a batch half decoded
        with the old registry)."""
        if not self.started:
            await fn()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._between.append((fn, fut))
        self.consumer.nudge()
        await fut

    async def reload(self, root: Path | None = None) -> dict[str, Any]:
        """Reloads site.yaml, devices.csv and gateways.csv (SIGHUP; anju.app.reload); an
        invalid registry leaves the running one in place. Returns what changed."""
        from anju.app.reload import reload_registry

        result = (await reload_registry(self, root)).summary()
        _settle_heap()
        self.last_reload = {**result, "at_ms": self._now()}
        return result

    def now(self) -> int:
        """The receiving clock."""
        return self._now()

    async def enqueue_transitions(self, now: int, transitions: list[Transition]) -> None:
        """Transitions made outside the rules branch (a reload's clears) to the alarms."""
        if transitions:
            self.alarms_first.judged()
        await self._alarm_q.put((now, transitions, None))

    async def _encode_loop(self) -> None:
        """Gathers decoded batches into one storage chunk of up to ``batch_max`` readings or
        ``batch_linger_ms`` after the first (draining: at once), then encodes it. Encoding
        the gathered chunk, not each small batch of the rules' pace, pays the encoder's
        fixed cost per kind once a chunk (it was as much CPU as the rules at 5 000 msg/s).
        A gathered batch is marked done in its queue only once its chunk is submitted, so a
        drain's ``join`` covers what is gathered too."""
        loop = asyncio.get_running_loop()
        linger = self.settings.batch_linger_ms / 1000
        q = self._store_q
        batches: list[Batch] = []
        tickets: list[int] = []
        readings = 0
        deadline: float | None = None
        while True:
            item: tuple[Batch, int] | None = None
            if deadline is None:
                item = await q.get()
            elif not q.empty():
                item = q.get_nowait()
            elif not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):  # not wait_for: see MqttConsumer.wait
                    async with asyncio.timeout(max(0.0, deadline - loop.time())):
                        item = await q.get()
            if item is not None:
                batch, ticket = item
                tickets.append(ticket)
                batches.append(batch)
                readings += batch.readings
                if deadline is None:
                    deadline = loop.time() + linger
            if deadline is not None and (
                    readings >= self.settings.batch_max or loop.time() >= deadline
                    or (q.empty() and self._stopping.is_set())):
                gathered, done = batches, tickets
                batches, tickets, readings, deadline = [], [], 0, None
                try:
                    chunk = await self._encode(gathered)
                    await self.storage.submit(chunk, partial(self._stored, done),
                                              partial(self._unstored, done))
                finally:
                    for _ in done:
                        q.task_done()

    async def _encode(self, batches: list[Batch]) -> list[str]:
        """Line protocol for the gathered batches, each kind's readings encoded as one."""
        lines: list[str] = []
        by_kind: dict[str, list[KindBatch]] = {}
        for batch in batches:
            for name, kb in batch.kinds.items():
                if len(kb):
                    by_kind.setdefault(name, []).append(kb)
        empty = 0
        for parts in by_kind.values():
            kb = KindBatch.concat(parts)
            # In slices of rows, yielding between them: a 5000-point batch is ~5 ms of
            # encoding that alarms need not wait behind.
            for a in range(0, len(kb), _ENCODE_SLICE):
                await self.alarms_first.wait()
                enc = self.encoder.encode_kind(kb, a, a + _ENCODE_SLICE)
                lines += enc.lines
                empty += enc.empty
                if len(kb) > _ENCODE_SLICE:
                    await asyncio.sleep(0)
        if empty:
            self.metrics.points.labels("empty").inc(empty)
        return lines

    def _stored(self, tickets: list[int]) -> None:
        for t in tickets:
            self.acks.done(t)

    async def _rules_loop(self) -> None:
        while True:
            batch, ticket = await self._rules_q.get()
            try:
                late, steps = self.engine.stats.late, self.engine.stats.clock_steps
                t0 = time.perf_counter()
                transitions = self.evaluation.judge(batch, self._now())
                self._pace_rules(t0, time.perf_counter(), batch.readings)
                if self.engine.stats.late > late:
                    self.metrics.late.inc(self.engine.stats.late - late)
                if self.engine.stats.clock_steps > steps:
                    self.metrics.clock_steps.inc(self.engine.stats.clock_steps - steps)
                if transitions:
                    self.alarms_first.judged()
                    await self._alarm_q.put((None, transitions, ticket))
                else:
                    self.acks.done(ticket)
            finally:
                self._rules_q.task_done()

    def _pace_rules(self, t0: float, t1: float, readings: int) -> None:
        """Spaces batches by the engine's fixed cost a batch: the next batch closes no
        sooner than ``fixed / _RULES_CPU_SHARE`` after this one started (nor later than the
        storage linger). The fixed cost (a few compiled calls a kind; ~0.05–0.5 ms, more on
        a loaded box) would take a large share of a core with a batch per socket read at
        5 000 msg/s; spaced so, it takes at most ~15 % of one, the gap shrinks as the
        engine gets cheaper, and a reading arriving after a quiet spell is evaluated at
        once. The cost per reading is not spaced: cutting large batches otherwise saves
        nothing (:mod:`anju.app.pacing`)."""
        self._rules_cost.add(readings, t1 - t0)
        gap = min(self._rules_cost.fixed / _RULES_CPU_SHARE,
                  self.settings.batch_linger_ms / 1000)
        loop = asyncio.get_running_loop()
        self.batcher.not_before = loop.time() - (t1 - t0) + gap

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
            transitions = self.evaluation.clock(now)
            if transitions:
                self.alarms_first.judged()
            await self._alarm_q.put((now, transitions, None))

    async def _readings_loop(self) -> None:
        while True:
            await asyncio.sleep(_SAVE_READINGS_S)
            await self._save_readings()

    async def _save_readings(self) -> None:
        """Saves the devices' last readings (anju.app.last_readings); a failure (a full
        disk) is logged, and the next save tries again."""
        engine = self.engine
        # taken together on the loop the engine and a registry reload run on, written on
        # a thread
        newest, recv = engine.newest.copy(), engine.recv_at.copy()
        try:
            await asyncio.to_thread(self.last_readings.save, engine.devices, newest, recv,
                                    self.last_readings.view)
        except OSError as exc:
            log.warning("cannot save the devices' last readings to %s: %s",
                        self.last_readings.path, exc)
        except Exception:  # a bug in a view must not stop the alarms: say it, go on
            log.exception("saving the devices' last readings failed")

    async def _alarm_loop(self) -> None:
        q = self._alarm_q
        while True:
            items = [await q.get()]
            while not q.empty():  # everything waiting: group commit
                items.append(q.get_nowait())
            on_way = sum(1 for _, trs, _ in items if trs)
            try:
                # Consecutive transitions of the rules go in one SQLite transaction (one
                # fsync), in the engine's order; a tick is a commit of its own.
                groups: list[tuple[int | None, list[Transition]]] = []
                for now, trs, _ in items:
                    if now is None and groups and groups[-1][0] is None:
                        groups[-1][1].extend(trs)
                    else:
                        groups.append((now, list(trs)))
                # SQLite on a thread of its own: never queued behind the shared pool's
                # work (the webhooks' marks, four lanes a team; the API; the spool)
                events = await asyncio.get_running_loop().run_in_executor(
                    self._commit_pool, self._apply_all, groups)
                for _, _, ticket in items:
                    if ticket is not None:
                        self.acks.done(ticket)  # committed: its messages may be acked
                if events:
                    self.dispatcher.wake_for(events)  # deliveries start after the commit
                # storage waits for the webhooks now, if they have anything to send
                self.alarms_first.committed(on_way)
                on_way = 0
                if events:
                    for ev in events:
                        self.alarm_events[ev.event] += 1
                    text = alarm_lines(events).decode()
                    await self.storage.submit([ln for ln in text.split("\n") if ln])
            finally:
                if on_way:  # the commit failed: nothing of it is on its way any more
                    self.alarms_first.committed(on_way)
                for _ in items:
                    q.task_done()

    def _apply_all(self, groups: list[tuple[int | None, list[Transition]]]
                   ) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for now, transitions in groups:
            events += self._apply(now, transitions)
        return events

    def _unstored(self, tickets: list[int]) -> None:
        """The storage part of tickets failed (spool error): leave their messages
        unacknowledged, or acknowledge them when too many are held (see AckSequencer)."""
        for ticket in tickets:
            held, n = self.acks.abandon(ticket)
            if held:
                self.metrics.unacked.inc(n)
            else:
                log.error("spool failing with %d messages unacknowledged already: "
                          "acknowledging %d more whose readings could not be kept",
                          self.acks.hold_max, n)

    async def _committed_events(self, events: list[AlarmEvent]) -> None:
        """Events an acknowledgement committed through the API: the same path as the rules'
        events in ``_alarm_loop`` (wake the webhooks, store the ``alarms`` points)."""
        if events:
            self.dispatcher.wake_for(events)
            for ev in events:
                self.alarm_events[ev.event] += 1
            text = alarm_lines(events).decode()
            await self.storage.submit([ln for ln in text.split("\n") if ln])

    def _apply(self, now: int | None, transitions: list[Transition]) -> list[AlarmEvent]:
        if now is None:  # a batch's transitions: committed at the receiving clock's now
            return self.evaluation.commit(self._now(), transitions) if transitions else []
        return self.evaluation.commit(now, transitions, tick=True)
