"""Signed webhook delivery from the outbox: one queue and one worker per team.

Each team with a webhook gets its own worker task and its own aiohttp session, so a slow,
hanging or dead receiver holds up only its own team; the rule engine and ingest never wait
on delivery at all (they only commit to the store). A worker takes its team's due outbox
rows in commit order, POSTs each (CONTRACT.md §4 headers, signed per attempt with a fresh
timestamp under the delivery id fixed at commit), and records the outcome. Retry decisions
live in :mod:`anju.alarms.retry`.

Order: each alarm's events reach a team in order (the store hands out only the oldest
pending row of each alarm), so a receiver never sees ``cleared`` before ``raised``; while
one alarm's event is being retried, other alarms' events still go out. A dead-lettered
event (4xx, or past the horizon) no longer holds its alarm's later events back.

Delivery is at least once: a crash between a receiver's 2xx and our record of it re-sends
under the same ``X-Anju-Delivery`` id, on which receivers de-duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from types import TracebackType

import aiohttp
from prometheus_client import CollectorRegistry

from anju.alarms.errors import AlarmStoreError
from anju.alarms.metrics import alarm_metrics
from anju.alarms.model import Delivery
from anju.alarms.retry import Backoff, classify_status, parse_retry_after
from anju.alarms.signing import signed_headers
from anju.alarms.store import AlarmStore
from anju.config import Settings, load_settings
from anju.devices.registry import Site, Team
from anju.errors import ConfigError, DeliveryError

__all__ = ["WebhookDispatcher"]

log = logging.getLogger(__name__)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class WebhookDispatcher:
    """Drains the outbox to the teams' webhooks; an async context manager owning its workers.

    ``timeout_s`` and ``horizon_s`` default to ``settings.webhook_timeout_s`` and
    ``settings.webhook_horizon_s``; ``poll_s`` bounds how long a worker sleeps without a
    :meth:`wake`; ``drain_s`` how long leaving waits for deliveries in flight before it
    cancels them (they are then re-sent after a restart under the same ids).
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
        retention_s: float | None = 7 * 86400,
        wall_ms: Callable[[], int] = _wall_ms,
        rng: random.Random | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.site = site
        self.store = store
        self.timeout_s = timeout_s if timeout_s is not None else settings.webhook_timeout_s
        self.horizon_ms = round(1000 * (horizon_s if horizon_s is not None
                                        else settings.webhook_horizon_s))
        self.backoff = backoff or Backoff()
        self.poll_s = poll_s
        self.drain_s = drain_s
        self.batch = batch
        self.retention_s = retention_s
        self._wall_ms = wall_ms
        self._rng = rng or random.Random()
        self._metrics = alarm_metrics(registry)
        self.teams = [t for t in site.teams if t.webhook]
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stop = asyncio.Event()

    def validate(self) -> None:
        """Raises :class:`ConfigError` for a team with a webhook but no secret in its env var
        (named, never its value): unsigned alarms must not go out."""
        for t in self.teams:
            if t.secret() is None:
                raise ConfigError(
                    f"team {t.id!r} has a webhook but its secret is not set "
                    f"(secret_env {t.secret_env!r})")

    async def __aenter__(self) -> WebhookDispatcher:
        self.validate()
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._stop = asyncio.Event()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for t in self.teams:
            self._wakes[t.id] = asyncio.Event()
            self._tasks.append(self._tg.create_task(self._worker(t), name=f"webhook:{t.id}"))
        if self.retention_s is not None:
            self._tasks.append(self._tg.create_task(self._pruner(), name="webhook:prune"))
        return self

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
        assert self._tg is not None
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tasks.clear()
            self._wakes.clear()
            self._tg = None

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
        events = [self._wakes[team]] if team in self._wakes else list(self._wakes.values())
        for ev in events:
            if same:
                ev.set()
            else:
                loop.call_soon_threadsafe(ev.set)

    # -- one team ---------------------------------------------------------------------------
    async def _worker(self, team: Team) -> None:
        wake = self._wakes[team.id]
        # One session per team: its connection pool and its hung sockets are its own.
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=4)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                         raise_for_status=False) as session:
            while not self._stopping:
                wake.clear()
                try:
                    wait = await self._round(team, session)
                except AlarmStoreError as exc:  # e.g. locked or disk full: try again later
                    log.error("webhook %s: alarm store failed: %s", team.id, exc)
                    wait = self.poll_s
                if wait > 0 and not self._stopping:
                    try:
                        await asyncio.wait_for(wake.wait(), wait)
                    except TimeoutError:
                        pass

    async def _round(self, team: Team, session: aiohttp.ClientSession) -> float:
        """Delivers what is due; returns how long to sleep before the next round."""
        now = self._wall_ms()
        due = await asyncio.to_thread(self.store.due_deliveries, team.id, now, self.batch)
        for d in due:
            if self._stopping:
                break
            try:
                await self._deliver(team, session, d)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or the store failing: keep the team's worker alive
                log.exception("webhook %s: delivery %s failed unexpectedly",
                              team.id, d.delivery_id)
                return self.poll_s
        if due:
            return 0.0  # more may be due already
        nxt, pending = await asyncio.to_thread(self._peek, team.id)
        self._metrics.pending.labels(team.id).set(pending)
        if nxt is None:
            return self.poll_s
        return min(self.poll_s, max(0.0, (nxt - self._wall_ms()) / 1000))

    async def _pruner(self) -> None:
        assert self.retention_s is not None
        keep_ms = round(self.retention_s * 1000)
        while not self._stopping:
            try:
                n = await asyncio.to_thread(self.store.prune_outbox, self._wall_ms() - keep_ms)
                if n:
                    log.info("webhook outbox: pruned %d delivered rows", n)
            except AlarmStoreError as exc:
                log.error("webhook outbox: pruning failed: %s", exc)
            try:  # an hour, or until leaving
                await asyncio.wait_for(self._stop.wait(), 3600)
            except TimeoutError:
                pass

    def _peek(self, team: str) -> tuple[int | None, int]:
        return self.store.next_attempt_ms(team), self.store.pending_counts().get(team, 0)

    async def _deliver(self, team: Team, session: aiohttp.ClientSession, d: Delivery) -> None:
        attempts = d.attempts + 1
        status: int | None = None
        try:
            status = await self._post(team, session, d)
        except DeliveryError as exc:
            await self._failed(team, d, attempts, exc)
            return
        now = self._wall_ms()
        await asyncio.to_thread(self.store.mark_delivered, d.delivery_id, now, status)
        self._metrics.deliveries.labels(team.id, "delivered").inc()
        self._metrics.latency.labels(team.id).observe(max(0, now - d.committed_ms) / 1000)

    async def _post(self, team: Team, session: aiohttp.ClientSession, d: Delivery) -> int:
        """One POST; the 2xx status, or :class:`DeliveryError` (aiohttp errors mapped here)."""
        secret = team.secret()
        if secret is None:
            raise DeliveryError(f"secret env {team.secret_env!r} unset", retryable=True)
        assert team.webhook is not None
        headers = signed_headers(secret, d.delivery_id, self._wall_ms(), d.body)
        try:
            # Redirects are not followed: a webhook URL that moved is configuration to fix.
            async with session.post(team.webhook, data=d.body, headers=headers,
                                    allow_redirects=False) as resp:
                await resp.read()  # drain, so the connection can be reused
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError as exc:
            raise DeliveryError(f"timed out after {self.timeout_s} s", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {str(exc)[:200]}",
                                retryable=True) from exc
        verdict = classify_status(status)
        if verdict == "delivered":
            return status
        raise DeliveryError(f"HTTP {status}", retryable=verdict == "retry", status=status,
                            retry_after_s=retry_after)

    async def _failed(self, team: Team, d: Delivery, attempts: int, exc: DeliveryError) -> None:
        now = self._wall_ms()
        deadline = d.committed_ms + self.horizon_ms
        if exc.retryable and now < deadline:
            delay_ms = round(1000 * self.backoff.delay(attempts, exc.retry_after_s, self._rng))
            nxt = min(now + delay_ms, deadline)  # the last try falls on the horizon
            await asyncio.to_thread(self.store.mark_retry, d.delivery_id, attempts=attempts,
                                    next_attempt_ms=nxt, status=exc.status, error=str(exc))
            self._metrics.deliveries.labels(team.id, "retried").inc()
            # the first failure of a delivery is news for whoever watches the log; the
            # retries after it are not, until it is delivered or dead-lettered
            log.log(logging.WARNING if attempts == 1 else logging.INFO,
                    "webhook %s: delivery %s attempt %d failed (%s); next in %.1f s",
                    team.id, d.delivery_id, attempts, exc, (nxt - now) / 1000)
            return
        reason = str(exc) if not exc.retryable else f"horizon passed; last: {exc}"
        await asyncio.to_thread(self.store.mark_dead, d.delivery_id, now, attempts=attempts,
                                status=exc.status, error=reason)
        self._metrics.deliveries.labels(team.id, "dead").inc()
        log.warning("webhook %s: delivery %s dead-lettered after %d attempts: %s",
                    team.id, d.delivery_id, attempts, reason)
