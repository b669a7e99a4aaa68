"""Delivery from the outbox: one queue and one worker per destination.

A destination is one delivery target of one team: the team's signed webhook (CONTRACT.md
§4; its outbox rows carry the team id) or a chat robot listed under the team's ``targets``
(rows carry ``team/target``). Each destination gets its own worker task and its own aiohttp
session, so a slow, hanging or dead receiver holds up only itself; the rule engine and
ingest never wait on delivery at all (they only commit to the store). A worker takes its
destination's due outbox rows in commit order, sends each through its
:class:`~anju.alarms.webhook.Sender` (after the target's rate limit, which delays and never
drops), and records the outcome. Retry decisions live in :mod:`anju.alarms.retry`.

Nothing is given up (CONTRACT §4): every failure is retried with capped exponential backoff
and jitter; past the horizon (``ANJU_WEBHOOK_HORIZON_S``) a delivery is *parked*: it stays
in the outbox, is logged at ERROR, counted in ``/metrics`` and in :meth:`health`, and goes
out again after ``anju alarms requeue`` (which this dispatcher picks up on its next poll,
also when the requeue ran in another process).

Order: each alarm's events reach a destination in order (the store hands out only the
oldest pending row of each alarm, and a parked row holds its alarm's later rows back), so a
receiver never sees ``cleared`` before ``raised``; while one alarm's event is being retried,
other alarms' events still go out.

Delivery is at least once: a crash between a receiver's 2xx and our record of it re-sends
under the same ``X-Anju-Delivery`` id, on which receivers de-duplicate.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from prometheus_client import CollectorRegistry

from anju.alarms.errors import AlarmStoreError, DeliveryRefused
from anju.alarms.metrics import alarm_metrics
from anju.alarms.model import AlarmEvent, Delivery, event_body
from anju.alarms.ratelimit import WindowLimiter
from anju.alarms.retry import Backoff
from anju.alarms.robot_digest import plan
from anju.alarms.robot_message import Message
from anju.alarms.robots import RobotSender
from anju.alarms.store import AlarmStore, Commit
from anju.alarms.webhook import Sender, WebhookSender
from anju.config import Settings, load_settings
from anju.devices.registry import Site, Team
from anju.errors import DeliveryError

__all__ = ["Destination", "WebhookDispatcher", "destinations"]

log = logging.getLogger(__name__)


def _wall_ms() -> int:
    return int(time.time() * 1000)


_PREFETCH_TTL_S = 1.0  # rows read ahead are used within this long, or read again


def _paced(dest: Destination) -> bool:
    """A chat robot under its platform's rate limit (rounds of digests, never prefetched)."""
    return dest.limiter is not None and isinstance(dest.sender, RobotSender)


class _Recent:
    """The last ``size`` keys added, for membership tests (a bounded set: a dict keeps
    insertion order, so its first key is the oldest)."""

    def __init__(self, size: int) -> None:
        self._keys: dict[str, None] = {}
        self._size = size

    def add(self, key: str) -> None:
        if key in self._keys:
            return
        self._keys[key] = None
        if len(self._keys) > self._size:
            del self._keys[next(iter(self._keys))]

    def __contains__(self, key: object) -> bool:
        return key in self._keys


@dataclass(slots=True)
class Destination:
    """One delivery target of one team, with its outbox key and its own state."""

    key: str  # the outbox rows' ``team`` column: the team id for its webhook, else team/name
    team: Team
    sender: Sender
    limiter: WindowLimiter | None = None
    failing_since_ms: int | None = None  # first failure since the last success, this process
    last_error: str | None = None


def destinations(site: Site, settings: Settings, timeout_s: float) -> list[Destination]:
    """Every destination of the site: each team's webhook, then its robot targets."""
    from anju.alarms.robots import robot_destinations  # robots import this module's types

    out: list[Destination] = []
    for t in site.teams:
        if t.webhook:
            out.append(Destination(t.id, t, WebhookSender(t, timeout_s)))
        out.extend(robot_destinations(site, t, settings, timeout_s))
    return out


class WebhookDispatcher:
    """Drains the outbox to the teams' webhooks and robots; an async context manager owning
    its workers.

    ``timeout_s`` and ``horizon_s`` default to ``settings.webhook_timeout_s`` and
    ``settings.webhook_horizon_s``, ``backoff`` to the ``webhook_backoff_*`` settings;
    ``concurrency`` (``settings.webhook_concurrency``) is how many alarms' events go to one
    target at once (each alarm's events in order); ``poll_s`` bounds how long a worker
    sleeps without a :meth:`wake` (and so how soon a requeue from another process is
    seen); ``drain_s`` how long leaving waits for deliveries in flight before it cancels
    them (they are then re-sent after a restart under the same ids); ``on_round`` is
    called after every worker round, so a caller waiting for :meth:`sending` to turn false
    can look again.
    """

    def __init__(
        self, site: Site, store: AlarmStore, settings: Settings | None = None, *,
        registry: CollectorRegistry | None = None,
        timeout_s: float | None = None,
        horizon_s: float | None = None,
        backoff: Backoff | None = None,
        poll_s: float = 1.0,
        drain_s: float = 5.0,
        batch: int = 50,
        concurrency: int | None = None,
        robot_batch: int = 1000,
        retention_s: float | None = 7 * 86400,
        wall_ms: Callable[[], int] = _wall_ms,
        rng: random.Random | None = None,
        on_round: Callable[[], None] | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.site = site
        self.store = store
        self.timeout_s = timeout_s if timeout_s is not None else settings.webhook_timeout_s
        self.horizon_ms = round(1000 * (horizon_s if horizon_s is not None
                                        else settings.webhook_horizon_s))
        self.backoff = backoff or Backoff(
            base_s=settings.webhook_backoff_base_s, cap_s=settings.webhook_backoff_cap_s,
            client_cap_s=settings.webhook_backoff_refused_cap_s)
        self.poll_s = poll_s
        self.drain_s = drain_s
        self.batch = batch
        self.concurrency = (concurrency if concurrency is not None
                            else settings.webhook_concurrency)
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        self.robot_batch = robot_batch  # a robot's round takes this many, to digest them
        self.retention_s = retention_s
        self._wall_ms = wall_ms
        self._rng = rng or random.Random()
        self._metrics = alarm_metrics(registry)
        self.destinations = destinations(site, settings, self.timeout_s)
        self.teams = sorted({d.team.id for d in self.destinations})
        self._wakes: dict[str, asyncio.Event] = {}
        # webhook destinations by key, whose due rows the committing thread may read ahead
        self._webhooks = {d.key for d in self.destinations if not _paced(d)}
        self._prefetched: dict[str, tuple[float, list[Delivery]]] = {}
        self._prefetch_lock = threading.Lock()
        self._handled = _Recent(8192)  # deliveries attempted by this process, lately
        self._idle_keys: set[str] = set()  # destinations whose worker waits for a wake
        self._sending = 0  # webhook rounds sending what they found due
        self._on_round = on_round  # called after every round (the pipeline's alarms-first)
        self._tasks: list[asyncio.Task[None]] = []
        self._task_stack: contextlib.AsyncExitStack | None = None  # the task group
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._undelivered: dict[str, dict[str, Any]] = {}
        self._checked_ms: int | None = None

    def validate(self) -> None:
        """Raises :class:`ConfigError` for a target whose secret, URL or key is not in its
        env var (named, never its value): unsigned alarms must not go out."""
        for d in self.destinations:
            d.sender.validate()

    async def __aenter__(self) -> WebhookDispatcher:
        self.validate()
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._stop = asyncio.Event()
        self._task_stack = contextlib.AsyncExitStack()
        await self._task_stack.enter_async_context(self._running())
        return self

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """The workers, owned by one task group while the dispatcher is entered."""
        async with asyncio.TaskGroup() as tg:
            for d in self.destinations:
                self._wakes[d.key] = asyncio.Event()
                self._tasks.append(tg.create_task(self._worker(d), name=f"deliver:{d.key}"))
            self._tasks.append(tg.create_task(self._watch(), name="deliver:watch"))
            if self.retention_s is not None:
                self._tasks.append(tg.create_task(self._pruner(), name="deliver:prune"))
            yield

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stopping = True
        self._stop.set()
        for ev in self._wakes.values():
            ev.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.drain_s)
            for task in pending:
                task.cancel()
        assert self._task_stack is not None
        try:
            await self._task_stack.__aexit__(exc_type, exc, tb)
        finally:
            self._tasks.clear()
            self._wakes.clear()
            self._task_stack = None
        try:  # the gauges and health() say how things were left
            await asyncio.to_thread(self._check)
        except AlarmStoreError as exc:
            log.error("delivery: outbox check failed: %s", exc)

    def wake(self, team: str | None = None) -> None:
        """Tells the workers (or one team's) that new events were committed.

        Safe to call from any thread (the pipeline commits from a worker thread).
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            same = asyncio.get_running_loop() is loop
        except RuntimeError:
            same = False
        events = [ev for k, ev in self._wakes.items()
                  if team is None or k == team or k.startswith(team + "/")]
        for ev in events:
            if same:
                ev.set()
            else:
                loop.call_soon_threadsafe(ev.set)

    def wake_for(self, events: Iterable[AlarmEvent]) -> None:
        """Wakes the workers of the teams these committed events go to (an event's outbox
        rows are for its ``teams``), not every destination's: an idle worker woken for
        nothing goes to a thread to query the outbox, in front of the alarm being sent.
        Safe to call from any thread."""
        for team in sorted({t for ev in events for t in ev.teams}):
            self.wake(team)

    def health(self) -> dict[str, Any]:
        """What has not been delivered, per destination, as of the last outbox check (at
        most ``poll_s`` old): a plain dict for ``/healthz``.

        ``ok`` is false while anything is parked. Per destination: ``team``, ``target``,
        ``pending``, ``parked`` (undelivered past the horizon), ``oldest_undelivered_s``
        (age of the oldest event not delivered), ``failing_since_ms`` (wall clock of the
        first failure since the last success, in this process), ``last_error``.
        """
        now = self._wall_ms()
        out: dict[str, Any] = {}
        for d in self.destinations:
            u = self._undelivered.get(d.key, {})
            oldest = u.get("oldest_committed_ms")
            out[d.key] = {
                "team": d.team.id, "target": d.sender.kind,
                "pending": int(u.get("pending") or 0), "parked": int(u.get("parked") or 0),
                "oldest_undelivered_s": None if oldest is None
                else round(max(0, now - oldest) / 1000, 3),
                "failing_since_ms": d.failing_since_ms, "last_error": d.last_error,
            }
        parked = sum(v["parked"] for v in out.values())
        return {"ok": parked == 0, "undelivered": parked,
                "pending": sum(v["pending"] for v in out.values()),
                "checked_ms": self._checked_ms, "destinations": out}

    # -- the outbox as a whole ----------------------------------------------------------------
    def _check(self) -> None:
        """Reads the undelivered counts (a requeue by another process shows here) and sets
        the gauges. Runs on a worker thread."""
        u = self.store.undelivered()
        now = self._wall_ms()
        self._undelivered, self._checked_ms = u, now
        for d in self.destinations:
            row = u.get(d.key, {})
            self._metrics.pending.labels(d.key).set(row.get("pending") or 0)
            self._metrics.parked.labels(d.key).set(row.get("parked") or 0)
            oldest = row.get("oldest_committed_ms")
            self._metrics.oldest.labels(d.key).set(
                0 if oldest is None else max(0, now - oldest) / 1000)

    async def _watch(self) -> None:
        while not self._stopping:
            try:
                await asyncio.to_thread(self._check)
            except AlarmStoreError as exc:
                log.error("delivery: outbox check failed: %s", exc)
            try:
                await asyncio.wait_for(self._stop.wait(), max(self.poll_s, 0.05))
            except TimeoutError:
                pass

    async def _pruner(self) -> None:
        assert self.retention_s is not None
        keep_ms = round(self.retention_s * 1000)
        while not self._stopping:
            try:
                n = await asyncio.to_thread(self.store.prune_outbox, self._wall_ms() - keep_ms)
                if n:
                    log.info("delivery outbox: pruned %d delivered rows", n)
            except AlarmStoreError as exc:
                log.error("delivery outbox: pruning failed: %s", exc)
            try:  # an hour, or until leaving
                await asyncio.wait_for(self._stop.wait(), 3600)
            except TimeoutError:
                pass

    # -- one destination ------------------------------------------------------------------
    async def _worker(self, dest: Destination) -> None:
        wake = self._wakes[dest.key]
        # One session per destination: its connection pool and its hung sockets are its own.
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                         raise_for_status=False) as session:
            await self._restore_limit(dest)
            while not self._stopping:
                wake.clear()
                try:
                    wait = await self._round(dest, session)
                except AlarmStoreError as exc:  # e.g. locked or disk full: try again later
                    log.error("delivery %s: alarm store failed: %s", dest.key, exc)
                    wait = self.poll_s
                if self._on_round is not None:
                    self._on_round()
                if wait > 0 and not self._stopping:
                    self._idle_keys.add(dest.key)
                    try:
                        async with asyncio.timeout(wait):  # not wait_for: see MqttConsumer.wait
                            await wake.wait()
                    except TimeoutError:
                        pass
                    finally:
                        self._idle_keys.discard(dest.key)

    async def _round(self, dest: Destination, session: aiohttp.ClientSession) -> float:
        """Delivers what is due; returns how long to sleep before the next round."""
        if dest.limiter is not None and isinstance(dest.sender, RobotSender):  # _paced
            try:
                return await self._robot_round(dest, dest.sender, dest.limiter, session)
            except (asyncio.CancelledError, AlarmStoreError):
                raise
            except Exception:  # a bug: keep the worker alive
                log.exception("delivery %s: a round failed unexpectedly", dest.key)
                return self.poll_s
        now = self._wall_ms()
        due = self._take_prefetched(dest.key)
        if due is None:
            # one hop to a thread for both questions: after every alarm's webhook this round
            # finds nothing due, and a hop waits for the GIL behind the event loop
            due, peek = await asyncio.to_thread(self._due_or_peek, dest.key, now)
            if not due:
                return self._idle_for(dest, peek)
        self._sending += 1
        try:
            return await self._send_due(dest, session, due)
        finally:
            self._sending -= 1

    async def _send_due(self, dest: Destination, session: aiohttp.ClientSession,
                        due: list[Delivery]) -> float:
        """Sends ``due``, up to ``concurrency`` alarms at once, each alarm's rows in order;
        returns how long to sleep before the next round.

        The outbox hands out only the head of each alarm, so ``due`` holds different
        alarms, which the contract leaves independent: in a fire, twenty detectors'
        alarms must not wait for one another's round trips to the receiver (at 200 ms a
        round trip the twentieth arrived four seconds late)."""
        lanes: dict[str, list[Delivery]] = {}
        for d in due:
            lanes.setdefault(d.alarm_id, []).append(d)
        queue = collections.deque(lanes.values())
        broken = False

        async def lane() -> None:
            nonlocal broken
            while queue and not broken and not self._stopping:
                for d in queue.popleft():
                    if self._stopping:
                        return
                    try:
                        if not await self._deliver(dest, session, d):
                            break  # the alarm's later rows wait for this one
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # a bug or the store failing: keep the worker alive
                        log.exception("delivery %s: %s failed unexpectedly", dest.key,
                                      d.delivery_id)
                        broken = True
                        return

        n = min(self.concurrency, len(queue))
        if n <= 1:
            await lane()  # the usual round, one alarm: no task to start
        else:
            async with asyncio.TaskGroup() as tg:
                for _ in range(n):
                    tg.create_task(lane())
        return self.poll_s if broken else 0.0  # more may be due already

    def sending(self) -> bool:
        """True while a webhook has events read ahead for it or a round sending them."""
        return self._sending > 0 or bool(self._prefetched)

    def committed(self, commit: Commit) -> None:
        """Hands the webhook rows of a commit just made to their workers, on the thread that
        made it, and wakes them: they then send at once instead of first going back to a
        thread to query the outbox (under load that hop waited ~2 ms, p99 ~9 ms, for the
        GIL behind the event loop, a third of an alarm's way).

        The rows of a raise (its alarm's first event) are due at once and come first in
        their alarm's order, so they are handed over as committed, without a query (which
        took 0.2 ms, p99 1.1 ms, in the peer run at 5 000 msg/s); when a commit has later
        events for a destination, their order against rows still pending is the store's
        to say, and its due rows are read here instead.

        Only for a worker waiting with nothing to do: a busy one queries right after its
        round anyway, and a backlog need not be read again on every commit. A worker round
        that starts meanwhile may handle some of these rows: the worker drops every handed
        row it has attempted since (``_handled``), so nothing is sent twice. Safe to call
        from any thread."""
        seqs = {f"{ev.alarm_id}:{seq}": (seq, ev) for seq, ev in commit.events}
        mine: dict[str, list[Delivery]] = {}
        for d in commit.deliveries:
            mine.setdefault(d.team, []).append(d)
        now = self._wall_ms()
        for key, rows in mine.items():
            if key not in self._webhooks or key not in self._idle_keys:
                continue
            firsts = [seqs.get(d.event_id) for d in rows]
            if all(f is not None and f[0] == 1 for f in firsts):
                due = [replace(d, body=event_body(f[1]), committed_ms=now)
                       for d, f in zip(rows, firsts, strict=True) if f is not None]
            else:
                try:
                    due = self.store.due_deliveries(key, now, self.batch)
                except AlarmStoreError as exc:  # the worker's own query will say it again
                    log.debug("delivery %s: reading ahead failed: %s", key, exc)
                    continue
            if due:
                with self._prefetch_lock:  # commits come from the pipeline and the API
                    t0, held = self._prefetched.get(key, (time.monotonic(), []))
                    known = {d.delivery_id for d in held}
                    self._prefetched[key] = (t0, held + [d for d in due
                                                         if d.delivery_id not in known])
                self.wake(key)

    def _take_prefetched(self, key: str) -> list[Delivery] | None:
        """The rows handed over for ``key`` that this process has not attempted since, or
        None (nothing, or handed too long ago to trust the order they had)."""
        with self._prefetch_lock:
            got = self._prefetched.pop(key, None)
        if got is None or time.monotonic() - got[0] > _PREFETCH_TTL_S:
            return None
        fresh = [d for d in got[1] if d.delivery_id not in self._handled]
        return fresh or None

    async def _idle(self, dest: Destination) -> float:
        """Nothing due: how long until something is (at most ``poll_s``)."""
        return self._idle_for(dest, await asyncio.to_thread(self._peek, dest.key))

    def _idle_for(self, dest: Destination, peek: tuple[int | None, int]) -> float:
        nxt, pending = peek
        self._metrics.pending.labels(dest.key).set(pending)
        if nxt is None:
            return self.poll_s
        return min(self.poll_s, max(0.0, (nxt - self._wall_ms()) / 1000))

    def _peek(self, key: str) -> tuple[int | None, int]:
        return self.store.next_attempt_ms(key), self.store.pending_counts().get(key, 0)

    def _due_or_peek(self, key: str, now_ms: int
                     ) -> tuple[list[Delivery], tuple[int | None, int]]:
        """What is due for ``key``, or when nothing is, :meth:`_peek`'s answer."""
        due = self.store.due_deliveries(key, now_ms, self.batch)
        return due, (None, 0) if due else self._peek(key)

    async def _deliver(self, dest: Destination, session: aiohttp.ClientSession,
                       d: Delivery) -> bool:
        """Sends one row and records the outcome; True if it was delivered."""
        attempts = d.attempts + 1
        if not await self._slot(dest):  # the platform's rate limit: wait, never drop
            return False
        self._handled.add(d.delivery_id)
        try:
            status = await dest.sender.send(session, d, self._wall_ms())
        except DeliveryError as exc:
            await self._sent(dest)
            await self._failed(dest, d, attempts, exc)
            return False
        except BaseException:
            if dest.limiter is not None:
                dest.limiter.record()  # it may have reached the platform
            raise
        await self._sent(dest)
        now = self._wall_ms()
        await asyncio.to_thread(self.store.mark_delivered, d.delivery_id, now, status)
        self._succeeded(dest, [d], now)
        return True

    def _succeeded(self, dest: Destination, ds: list[Delivery], now: int) -> None:
        if dest.failing_since_ms is not None:
            log.info("delivery %s: delivering again after failing since %d ms",
                     dest.key, dest.failing_since_ms)
        dest.failing_since_ms, dest.last_error = None, None
        self._metrics.deliveries.labels(dest.key, "delivered").inc(len(ds))
        for d in ds:
            self._metrics.latency.labels(dest.key).observe(max(0, now - d.committed_ms) / 1000)

    # -- chat robots: rate limits, priorities and digests ----------------------------------
    async def _restore_limit(self, dest: Destination) -> None:
        """Takes back a robot's recent sends saved with the outbox: a restart must not
        start a fresh window on a robot that was busy just before."""
        if dest.limiter is None:
            return
        try:
            saved = await asyncio.to_thread(self.store.target_state, dest.key)
        except AlarmStoreError as exc:
            log.error("delivery %s: cannot read its saved rate-limit state: %s", dest.key, exc)
            return
        if saved:
            dest.limiter.restore([int(t) for t in saved.get("sends_ms", [])])

    async def _slot(self, dest: Destination) -> bool:
        """Waits until the target's rate limit allows one more send; False when leaving."""
        lim = dest.limiter
        while lim is not None and not self._stopping and (w := lim.wait_s()) > 0:
            lim.waited_s += w
            try:
                await asyncio.wait_for(self._stop.wait(), w)
            except TimeoutError:
                pass
        return not self._stopping

    async def _sent(self, dest: Destination) -> None:
        """Counts a send (answered, well or badly) against the rate limit, and saves the
        send log with the outbox."""
        if dest.limiter is None:
            return
        dest.limiter.record()
        try:
            await asyncio.to_thread(self.store.save_target_state, dest.key,
                                    {"sends_ms": dest.limiter.snapshot()})
        except AlarmStoreError as exc:
            log.error("delivery %s: cannot save its rate-limit state: %s", dest.key, exc)

    async def _robot_round(self, dest: Destination, sender: RobotSender, lim: WindowLimiter,
                           session: aiohttp.ClientSession) -> float:
        """One round of a robot: what is due goes alone while the robot can take it all,
        else urgent events alone and the rest in digests (:mod:`anju.alarms.robot_digest`)."""
        due = await asyncio.to_thread(self.store.due_deliveries, dest.key, self._wall_ms(),
                                      self.robot_batch)
        if not due:
            return await self._idle(dest)
        if lim.wait_s() > 0:
            if not await self._slot(dest):
                return 0.0
            # what came in while waiting joins this round (and its digest)
            due = await asyncio.to_thread(self.store.due_deliveries, dest.key,
                                          self._wall_ms(), self.robot_batch)
        why = " (" + ", ".join(f"{c}/{p:g} s" for c, p in lim.limits) + ")"

        def grouped() -> tuple[list[int], list[int]]:  # rendering: tens of ms for 1 000
            return plan([orjson.loads(d.body) for d in due], lim.free(),
                        lambda idx: len(sender.digests([due[i] for i in idx], why)))

        singles, digested = await asyncio.to_thread(grouped)
        for i in singles:
            if self._stopping:
                return 0.0
            await self._deliver(dest, session, due[i])
        if not digested or self._stopping:
            return 0.0
        parts = await asyncio.to_thread(sender.digests, [due[i] for i in digested], why)
        log.info("delivery %s: %d events due beyond the rate limit: %d alone, %d in %d "
                 "digest(s)", dest.key, len(due), len(singles), len(digested), len(parts))
        for members, msg in parts:
            if not await self._slot(dest):
                break
            await self._deliver_digest(dest, sender, session, members, msg)
        return 0.0

    async def _deliver_digest(self, dest: Destination, sender: RobotSender,
                              session: aiohttp.ClientSession, members: list[Delivery],
                              msg: Message) -> None:
        """Posts one digest; its rows are delivered together once it is accepted, and
        retried together (each keeping its own horizon) when it is not."""
        try:
            status = await sender.post_message(session, msg, self._wall_ms())
        except DeliveryError as exc:
            await self._sent(dest)
            await self._digest_failed(dest, members, exc)
            return
        except BaseException:
            if dest.limiter is not None:
                dest.limiter.record()  # it may have reached the platform
            raise
        await self._sent(dest)
        now = self._wall_ms()
        await asyncio.to_thread(self.store.mark_delivered_many,
                                [d.delivery_id for d in members], now, status)
        self._metrics.digests.labels(dest.key).inc()
        self._succeeded(dest, members, now)

    async def _digest_failed(self, dest: Destination, members: list[Delivery],
                             exc: DeliveryError) -> None:
        now = self._wall_ms()
        live = [d for d in members if now < d.committed_ms + self.horizon_ms]
        for d in members:
            if d not in live:  # past its horizon: parked, as a lone delivery would be
                await self._failed(dest, d, d.attempts + 1, exc)
        if not live:
            return
        first = dest.failing_since_ms is None
        if first:
            dest.failing_since_ms = now
        dest.last_error = str(exc)
        attempts = max(d.attempts for d in live) + 1
        delay_ms = round(1000 * self.backoff.delay(attempts, exc.retry_after_s, self._rng,
                                                   slow=isinstance(exc, DeliveryRefused)))
        nxt = min(now + delay_ms, min(d.committed_ms for d in live) + self.horizon_ms)
        await asyncio.to_thread(self.store.mark_retry_many, [d.delivery_id for d in live],
                                next_attempt_ms=nxt, status=exc.status, error=str(exc))
        self._metrics.deliveries.labels(dest.key, "retried").inc(len(live))
        log.log(logging.WARNING if first or attempts == 1 else logging.INFO,
                "delivery %s: a digest of %d events failed (%s); next in %.1f s",
                dest.key, len(live), exc, (nxt - now) / 1000)

    async def _failed(self, dest: Destination, d: Delivery, attempts: int,
                      exc: DeliveryError) -> None:
        now = self._wall_ms()
        first = dest.failing_since_ms is None
        if first:
            dest.failing_since_ms = now
        dest.last_error = str(exc)
        deadline = d.committed_ms + self.horizon_ms
        if now < deadline:
            slow = isinstance(exc, DeliveryRefused)
            delay_ms = round(1000 * self.backoff.delay(attempts, exc.retry_after_s, self._rng,
                                                       slow=slow))
            nxt = min(now + delay_ms, deadline)  # the last try falls on the horizon
            await asyncio.to_thread(self.store.mark_retry, d.delivery_id, attempts=attempts,
                                    next_attempt_ms=nxt, status=exc.status, error=str(exc))
            self._metrics.deliveries.labels(dest.key, "retried").inc()
            # a destination starting to fail, and the first failure of a delivery, are news
            # for whoever watches the log; the retries after them are not, until it is
            # delivered or parked
            log.log(logging.WARNING if first or attempts == 1 else logging.INFO,
                    "delivery %s: %s attempt %d failed (%s); next in %.1f s",
                    dest.key, d.delivery_id, attempts, exc, (nxt - now) / 1000)
            return
        reason = f"horizon passed after {attempts} attempts; last: {exc}"
        await asyncio.to_thread(self.store.mark_parked, d.delivery_id, now, attempts=attempts,
                                status=exc.status, error=reason)
        self._metrics.deliveries.labels(dest.key, "parked").inc()
        log.error("delivery %s: %s of %s parked, not delivered within %.1f s (%s); "
                  "send again with `anju alarms requeue --team %s`",
                  dest.key, d.delivery_id, d.event_id, self.horizon_ms / 1000, reason,
                  dest.team.id)
        try:
            await asyncio.to_thread(self._check)
        except AlarmStoreError as err:
            log.error("delivery: outbox check failed: %s", err)
