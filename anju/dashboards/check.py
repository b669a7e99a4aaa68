"""Run every InfluxQL query of the dashboards against a real InfluxDB, as Grafana would.

``anju dashboards check`` and the tests use it: each query is interpolated by
:mod:`anju.dashboards.macros` and sent to InfluxQL's ``GET /query``; the outcome says
whether InfluxDB answered with an error and how many series came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from anju.dashboards.macros import InfluxQuery, TimeRange, grafana_interval, interpolate
from anju.errors import SinkUnavailable

__all__ = ["QueryOutcome", "run_queries"]


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """What InfluxDB said to one interpolated query."""

    query: InfluxQuery
    influxql: str
    series: int
    rows: int
    error: str | None
    body: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def _count(body: Mapping[str, Any]) -> tuple[int, int, str | None]:
    if "error" in body:
        return 0, 0, str(body["error"])
    series = rows = 0
    for result in body.get("results") or []:
        if "error" in result:
            return 0, 0, str(result["error"])
        for s in result.get("series") or []:
            series += 1
            rows += len(s.get("values") or [])
    return series, rows, None


async def run_queries(
    influx_url: str,
    db: str,
    queries: Iterable[InfluxQuery],
    *,
    time_range: TimeRange,
    variables: Mapping[str, Sequence[str]] | None = None,
    interval: str = "10s",
    interval_ms: int = 10_000,
    token: str | None = None,
    timeout_s: float = 10.0,
    screen_px: int | None = None,
    min_interval_ms: int = 1_000,
) -> list[QueryOutcome]:
    """Interpolate and run each query, one at a time (a dashboard's worth: no flood).

    With ``screen_px`` (a dashboard ``screen_px`` wide), ``$__interval`` is Grafana's for
    each panel instead of ``interval``: its range over its width in pixels, rounded, not
    below ``min_interval_ms`` (the datasource's ``timeInterval``, 1 s as provisioned)."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    outcomes: list[QueryOutcome] = []
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        for query in queries:
            rng = TimeRange(relative=query.time_from) if query.time_from else time_range
            iv, iv_ms = interval, interval_ms
            if screen_px is not None:
                px = round(screen_px * (query.width or 24) / 24)
                iv, iv_ms = grafana_interval(rng.span_ms(), px, min_interval_ms)
            text = interpolate(query.query, time_range=rng, interval=iv,
                               interval_ms=iv_ms, variables=variables)
            params = {"db": db, "q": text, "epoch": "ms"}
            try:
                async with session.get(f"{influx_url}/query", params=params) as resp:
                    body = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise SinkUnavailable(f"InfluxDB at {influx_url}: {exc!r}") from exc
            body = body if isinstance(body, dict) else {}
            series, rows, error = _count(body)
            outcomes.append(QueryOutcome(query, text, series, rows, error, body))
    return outcomes


def run_queries_sync(*args: Any, **kwargs: Any) -> list[QueryOutcome]:
    """:func:`run_queries` for a synchronous caller (the CLI)."""
    return asyncio.run(run_queries(*args, **kwargs))
