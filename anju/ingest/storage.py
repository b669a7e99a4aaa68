"""The storage branch: InfluxDB writers, the spool, and replay, in one supervised object.

::

    submit ─► write queue (bounded) ─► writers ×C ─► InfluxDB ─► done
       │ queue full, or InfluxDB failing                │ unavailable / refused
       ▼                                                ▼
    spool queue (bounded) ─► spooler: append + fsync ─► done
                              spool ─► replayer (in order, large batches, backoff) ─► InfluxDB

``done`` is the chunk's callback: the pipeline acknowledges the readings to the broker
there, so a reading is acknowledged once it is in InfluxDB, on disk in the spool, or refused
by InfluxDB for good (400, counted). A spool append that fails (``OSError``: disk full, I/O
error) calls the chunk's ``failed`` instead: its points are not kept, the pipeline leaves
its messages unacknowledged so the broker redelivers them on the next connection, and the
error is counted (``anju_spool_errors``), logged (the first at WARNING) and shown in
:meth:`Storage.health`. Storage carries on: alarms never stop for a full disk.

``submit`` never waits on InfluxDB: when the writers are behind, chunks go to the spool,
so storage cannot hold up the batcher and with it the rules (DESIGN.md: alarms never wait
on InfluxDB). It waits only if the disk is slower still.

While the spool holds points every new chunk goes there too (mode ``spooling``), so replay
keeps order; when the replayer has emptied it and InfluxDB answers, mode returns to
``direct``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from anju.backoff import Backoff
from anju.config import Settings
from anju.errors import SinkRejected, SinkUnavailable
from anju.ingest.influx import InfluxWriter
from anju.ingest.metrics import IngestMetrics, ingest_metrics
from anju.ingest.spool import AsyncSpool, Spool

__all__ = ["Chunk", "Storage"]

log = logging.getLogger(__name__)

STOP_RETRY_S = 60.0  # 401/403: credentials are wrong; ask again only this often


@dataclass(slots=True)
class Chunk:
    """Points to store, and what to call once they are stored, spooled or refused."""

    lines: list[str]
    on_done: Callable[[], None] | None = None
    on_failed: Callable[[], None] | None = None  # neither stored nor spooled (spool error)

    def done(self) -> None:
        self.on_failed = None
        if self.on_done is not None:
            cb, self.on_done = self.on_done, None
            cb()

    def failed(self) -> None:
        self.on_done = None
        if self.on_failed is not None:
            cb, self.on_failed = self.on_failed, None
            cb()


class Storage:
    """An async context manager owning the writer, spooler and replayer tasks."""

    def __init__(self, settings: Settings, *, metrics: IngestMetrics | None = None,
                 writers: int = 2, queue_chunks: int = 16, spool_queue_chunks: int = 64,
                 write_points: int = 50_000, replay_points: int = 50_000,
                 spool_dir: Path | None = None,
                 timeout_s: float = 10.0,
                 yield_to: Callable[[], Awaitable[None]] | None = None) -> None:
        """``yield_to`` is awaited before each write to InfluxDB: the pipeline holds writes
        there while an alarm is on its way (:class:`anju.app.alarms_first.AlarmsFirst`)."""
        self.settings = settings
        self._yield_to = yield_to
        self.metrics = metrics or ingest_metrics(None)
        self.writers = writers
        self.write_points = write_points
        self.replay_points = replay_points
        self.writer = InfluxWriter(settings, metrics=self.metrics, timeout_s=timeout_s,
                                   connections=writers + 1)
        self.spool = AsyncSpool(Spool(spool_dir or settings.state_dir / "spool",
                                      settings.spool_max_mb << 20, metrics=self.metrics))
        self._q: asyncio.Queue[Chunk] = asyncio.Queue(queue_chunks)
        self._spool_q: asyncio.Queue[Chunk] = asyncio.Queue(spool_queue_chunks)
        self._wake = asyncio.Event()
        self._stack: contextlib.AsyncExitStack | None = None  # writer and spool
        self._task_stack: contextlib.AsyncExitStack | None = None  # the task group
        self._tasks: list[asyncio.Task[None]] = []
        self.mode = "direct"
        self.mode_since_ms = int(time.time() * 1000)  # for /healthz: how long spooling lasts
        self.influx_ok: bool | None = None  # None: not tried yet
        self.last_error: str | None = None
        self.last_ok_ms: int | None = None
        self.spool_points = 0
        self.stored = 0
        self.dropped = 0
        self.spooled = 0
        self.replayed = 0
        self.spool_dropped = 0
        self.spool_errors = 0
        self.spool_lost = 0  # points neither stored nor spooled (spool errors)
        self.spool_error: str | None = None  # the last spool error, until an append works

    # -- lifecycle -------------------------------------------------------------------------
    def validate(self) -> None:
        self.writer.validate()

    async def __aenter__(self) -> Self:
        self.validate()
        # If entering fails half-way, leaving this block closes what was opened.
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.writer)
            await self.spool.open()
            stack.push_async_callback(self.spool.close)
            self.spool_points = self.spool.points
            if self.spool_points:
                self.mode = "spooling"  # replay what an earlier run left first
            await self.writer.ensure_database()
            tasks = contextlib.AsyncExitStack()  # closed with the exception, if leaving on one
            await tasks.enter_async_context(self._running())
            self._stack = stack.pop_all()
        self._task_stack = tasks
        return self

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """The writer, spooler and replayer tasks, owned by one task group while entered."""
        async with asyncio.TaskGroup() as tg:
            for i in range(self.writers):
                self._tasks.append(tg.create_task(self._write_loop(), name=f"influx-writer-{i}"))
            self._tasks.append(tg.create_task(self._spool_loop(), name="influx-spooler"))
            self._tasks.append(tg.create_task(self._replay_loop(), name="influx-replayer"))
            try:
                yield
            finally:  # drained (or failing): nothing is left for the tasks to do
                for t in self._tasks:
                    t.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                await self.drain()
        finally:
            tasks, self._task_stack = self._task_stack, None
            try:
                if tasks is not None:
                    await tasks.__aexit__(exc_type, exc, tb)
            finally:
                self._tasks.clear()
                if self._stack is not None:  # the spool, then the writer's session
                    await self._stack.aclose()
                    self._stack = None

    async def drain(self) -> None:
        """Waits until every submitted chunk is stored, spooled, refused or failed; returns
        early when one of the storage tasks has died (nothing would empty its queue)."""
        for q in (self._q, self._spool_q):
            join = asyncio.ensure_future(q.join())
            try:
                await asyncio.wait([join, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            finally:
                join.cancel()
            if any(t.done() for t in self._tasks):
                log.error("InfluxDB storage: a task has stopped; not waiting for its queue")
                return

    # -- the pipeline's side ---------------------------------------------------------------
    async def submit(self, lines: list[str], on_done: Callable[[], None] | None = None,
                     on_failed: Callable[[], None] | None = None) -> None:
        """Hands points to storage; ``on_done`` runs once they are durable (or refused),
        ``on_failed`` if they could be neither stored nor spooled."""
        chunk = Chunk(lines, on_done, on_failed)
        if not lines:
            chunk.done()
            return
        if self.mode == "direct" and not self._q.full():
            self._q.put_nowait(chunk)
            return
        if self.mode == "direct":
            self._set_mode("spooling", "InfluxDB writers are behind")
        await self._spool_q.put(chunk)

    def health(self) -> dict[str, Any]:
        """InfluxDB and spool state, for /healthz."""
        return {
            "ok": bool(self.influx_ok) and self.mode == "direct",
            "mode": self.mode,
            "reachable": self.influx_ok,
            "last_ok_ms": self.last_ok_ms,
            "last_error": self.last_error,
            "spool_points": self.spool_points,
            "spool_bytes": self.spool.bytes,
            "mode_since_ms": self.mode_since_ms,
            "spool_ok": self.spool_error is None,
            "spool_errors": self.spool_errors,
            "spool_error": self.spool_error,
            "points_lost": self.spool_lost,
        }

    def stats(self) -> dict[str, int]:
        return {"stored": self.stored, "dropped": self.dropped, "spooled": self.spooled,
                "replayed": self.replayed, "spool_dropped": self.spool_dropped,
                "spool_points": self.spool_points, "spool_errors": self.spool_errors,
                "spool_lost": self.spool_lost}

    # -- tasks -----------------------------------------------------------------------------
    def _set_mode(self, mode: str, why: str) -> None:
        if mode != self.mode:
            log.warning("InfluxDB storage: %s → %s (%s)", self.mode, mode, why)
            self.mode = mode
            self.mode_since_ms = int(time.time() * 1000)

    def _ok(self, n: int, dropped: int) -> None:
        self.influx_ok = True
        self.last_ok_ms = int(time.time() * 1000)
        self.stored += n
        self.dropped += dropped

    def _failed(self, exc: SinkUnavailable | SinkRejected) -> None:
        self.influx_ok = False
        self.last_error = str(exc)[:300]
        self._set_mode("spooling", self.last_error)

    async def _write_loop(self) -> None:
        while True:
            chunks = [await self._q.get()]
            # Under load, merge what is queued into one request: InfluxDB's cost is per
            # request as much as per point. Measured here (influxd 1.6, loopback, 400k
            # smoke points): 1 writer × 5k points 160k pts/s; 2 × 5k 200k; 4 × 5k 240k;
            # 2 × 20k 300–330k; 2 × 50k 340–460k; 2 × 100k 500k. Two writers of up to 50k
            # points (~6 MB, under influxd's 25 MB max-body-size; 413 splits otherwise).
            points = len(chunks[0].lines)
            while not self._q.empty() and points < self.write_points:
                c = self._q.get_nowait()
                chunks.append(c)
                points += len(c.lines)
            try:
                if self.mode != "direct":
                    for c in chunks:
                        await self._spool_q.put(c)
                    continue
                lines = chunks[0].lines if len(chunks) == 1 else \
                    [ln for c in chunks for ln in c.lines]
                if self._yield_to is not None:
                    await self._yield_to()
                try:
                    res = await self.writer.write(lines)
                except (SinkUnavailable, SinkRejected) as exc:
                    self._failed(exc)
                    for c in chunks:
                        await self._spool_q.put(c)
                    continue
                self._ok(res.stored, res.dropped)
                for c in chunks:
                    c.done()
            finally:
                for _ in chunks:
                    self._q.task_done()

    async def _spool_loop(self) -> None:
        while True:
            chunks = [await self._spool_q.get()]
            while not self._spool_q.empty() and len(chunks) < 256:
                chunks.append(self._spool_q.get_nowait())
            try:
                n = sum(len(c.lines) for c in chunks)
                try:
                    dropped = await self.spool.append([c.lines for c in chunks])
                except OSError as exc:
                    self._spool_failed(exc, chunks, n)
                    continue
                if self.spool_error is not None:
                    log.warning("spool: writable again (%d appends had failed)",
                                self.spool_errors)
                    self.spool_error = None
                self.spooled += n
                self.spool_dropped += dropped
                self.spool_points = self.spool.points
                if dropped:
                    log.error("spool full (%d MB): dropped the %d oldest points",
                              self.settings.spool_max_mb, dropped)
                for c in chunks:
                    c.done()
                self._wake.set()
            finally:
                for _ in chunks:
                    self._spool_q.task_done()

    def _spool_failed(self, exc: OSError, chunks: list[Chunk], points: int) -> None:
        """Neither InfluxDB nor the disk took these points: count, tell, carry on."""
        first = self.spool_error is None
        self.spool_error = f"{type(exc).__name__}: {exc}"[:300]
        self.spool_errors += 1
        self.spool_lost += points
        self.metrics.spool_errors.inc()
        # The first failure of a run of them is a WARNING; repeats (every batch while the
        # disk stays full) would flood the log, so INFO until an append works again.
        log.log(logging.WARNING if first else logging.INFO,
                "spool append failed (%s): %d points not kept; their messages stay "
                "unacknowledged for the broker to redeliver", self.spool_error, points)
        for c in chunks:
            c.failed()

    async def _replay_loop(self) -> None:
        backoff = Backoff(base_s=0.25, cap_s=30.0, jitter=1.0, min_s=0.0)
        while True:
            if self.spool_points == 0 and self._spool_q.empty():
                if self.mode != "direct":
                    if self.influx_ok or await self.writer.ping():
                        self._set_mode("direct", "spool replayed")
                        backoff.reset()
                        continue
                    await asyncio.sleep(backoff.next())
                    continue
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.spool_points == 0:
                await asyncio.sleep(0.01)  # the spooler is appending: let it finish
                continue
            lines, pos, n = await self.spool.read(self.replay_points)
            try:
                res = await self.writer.write(lines)
            except SinkUnavailable as exc:
                self._failed(exc)
                await asyncio.sleep(max(backoff.next(), exc.retry_after_s or 0.0))
                continue
            except SinkRejected as exc:
                self._failed(exc)
                log.error("InfluxDB refuses our credentials (%s); spooling, retry in %.0f s",
                          exc.status, STOP_RETRY_S)
                await asyncio.sleep(STOP_RETRY_S)
                continue
            backoff.reset()
            await self.spool.commit(pos, n)
            self._ok(res.stored, res.dropped)
            self.replayed += n
            self.spool_points = self.spool.points
