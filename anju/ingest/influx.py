"""The InfluxDB writer: line protocol over HTTP, v1 ``/write`` or v2 ``/api/v2/write``.

What to do with each answer is decided in ONE table, :func:`classify` (after Telegraf's
InfluxDB output): 2xx done; 400 drop and count (a partial write counts what InfluxDB says it
dropped); 413 split the batch in halves; 408/429/5xx, timeouts and refused connections are
:class:`~anju.errors.SinkUnavailable` (back off with jitter, honouring ``Retry-After``; the
caller spools meanwhile); 401/403 are :class:`~anju.errors.SinkRejected` (stop and report:
credentials are wrong, retrying soon cannot help). A 404 (v1 "database not found", v2
"bucket not found") is treated as unavailable: the data is kept until someone creates it.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp

from anju.config import Settings
from anju.errors import ConfigError, SinkRejected, SinkUnavailable
from anju.httputil import parse_retry_after
from anju.ingest.metrics import IngestMetrics, ingest_metrics

__all__ = ["Action", "InfluxWriter", "WriteResult", "classify"]


class Action(enum.Enum):
    DONE = "done"
    DROP = "drop"  # the data is bad: count it, never retry
    SPLIT = "split"  # too large: halve and try each half
    RETRY = "retry"  # InfluxDB is down, overloaded or not ready: back off, keep the data
    STOP = "stop"  # not allowed: report, keep the data, retry only slowly


def classify(status: int) -> Action:
    """The one table from an HTTP status of a write to what the writer does."""
    if 200 <= status < 300:
        return Action.DONE
    if status == 413:
        return Action.SPLIT
    if status in (401, 403):
        return Action.STOP
    if status in (404, 408, 429) or status >= 500:
        return Action.RETRY
    if 400 <= status < 500:
        return Action.DROP
    return Action.RETRY  # 1xx/3xx: not an answer we understand; keep the data


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What became of the points of one :meth:`InfluxWriter.write`."""

    stored: int
    dropped: int = 0


_DROPPED_RE = re.compile(rb"dropped=(\d+)")


class InfluxWriter:
    """An async context manager holding one HTTP session to InfluxDB.

    ``write`` is safe to call from several tasks at once (the connection pool allows
    ``connections``); it raises :class:`SinkUnavailable` or :class:`SinkRejected` and
    otherwise returns what was stored and what InfluxDB refused for good.
    """

    def __init__(self, settings: Settings, *, metrics: IngestMetrics | None = None,
                 timeout_s: float = 10.0, connections: int = 4) -> None:
        self.settings = settings
        self.metrics = metrics or ingest_metrics(None)
        self.timeout_s = timeout_s
        self.connections = connections
        base = settings.influx_url
        if settings.influx_api == "v2":
            self.url = f"{base}/api/v2/write"
            self.params = {"bucket": settings.influx_db, "precision": "ms"}
            if settings.influx_org:
                self.params["org"] = settings.influx_org
        else:
            self.url = f"{base}/write"
            self.params = {"db": settings.influx_db, "precision": "ms"}
        self.headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.influx_token is not None:
            # Both APIs take a token this way (1.8+ with auth, 2.x, 3.x); never logged.
            self.headers["Authorization"] = f"Token {settings.influx_token.get_secret_value()}"
        self._session: aiohttp.ClientSession | None = None

    def validate(self) -> None:
        """Configuration errors before any socket opens."""
        if self.settings.influx_api == "v2" and not self.settings.influx_org:
            raise ConfigError("ANJU_INFLUX_API=v2 needs ANJU_INFLUX_ORG (the bucket's org)")

    async def __aenter__(self) -> Self:
        self.validate()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=self.connections),
        )
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests --------------------------------------------------------------------------
    async def ping(self) -> bool:
        """``GET /ping`` answers 204 (1.x, and the compatibility endpoint of 2.x/3.x)."""
        try:
            async with self._sess().get(f"{self.settings.influx_url}/ping") as resp:
                return resp.status == 204
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def ensure_database(self) -> bool:
        """v1: ``CREATE DATABASE`` (a no-op when it exists), as Telegraf does, so a fresh
        InfluxDB needs no set-up. Best effort: False when it could not (no rights, down)."""
        if self.settings.influx_api != "v1":
            return False
        name = self.settings.influx_db.replace("\\", "\\\\").replace('"', '\\"')
        try:
            async with self._sess().post(f"{self.settings.influx_url}/query",
                                         data={"q": f'CREATE DATABASE "{name}"'},
                                         headers={k: v for k, v in self.headers.items()
                                                  if k == "Authorization"}) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def write(self, lines: Sequence[str]) -> WriteResult:
        """Writes points (one line each); splits on 413, drops and counts on 400."""
        if not lines:
            return WriteResult(0)
        payload = "\n".join(lines).encode()
        t0 = time.perf_counter()
        try:
            async with self._sess().post(self.url, params=self.params, data=payload,
                                         headers=self.headers) as resp:
                status = resp.status
                body = await resp.read() if status >= 300 else b""
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.metrics.write_seconds.labels("error").observe(time.perf_counter() - t0)
            raise SinkUnavailable(f"InfluxDB write failed: {type(exc).__name__}: {exc}") from exc
        action = classify(status)
        self.metrics.write_seconds.labels(action.value).observe(time.perf_counter() - t0)
        if action is Action.DONE:
            self.metrics.points.labels("stored").inc(len(lines))
            return WriteResult(len(lines))
        detail = f"InfluxDB answered {status}: {body[:300].decode(errors='replace')}"
        if action is Action.DROP:
            m = _DROPPED_RE.search(body)
            dropped = min(len(lines), int(m.group(1))) if m else len(lines)
            self.metrics.points.labels("stored").inc(len(lines) - dropped)
            self.metrics.points.labels("dropped").inc(dropped)
            return WriteResult(len(lines) - dropped, dropped)
        if action is Action.SPLIT:
            if len(lines) == 1:
                self.metrics.points.labels("dropped").inc(1)
                return WriteResult(0, 1)
            half = len(lines) // 2
            a = await self.write(lines[:half])
            b = await self.write(lines[half:])
            return WriteResult(a.stored + b.stored, a.dropped + b.dropped)
        if action is Action.STOP:
            raise SinkRejected(detail, status)
        raise SinkUnavailable(detail, retry_after)

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("InfluxWriter used outside `async with`")
        return self._session
