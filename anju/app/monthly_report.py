"""Last month's accountability report into InfluxDB, by the pipeline, once the month is over.

``anju report --influx`` writes a period's company and estate figures as
``report_monthly`` points for the ``anju-report`` dashboard; until now somebody had to run
it from a timer every month, and the dashboard stayed empty where nobody did. The pipeline
now does it itself: at start and at each turn of a month (local midnight in
``ANJU_REPORT_TIMEZONE``), it builds the whole site's report of the last full month and
writes its points, exactly as the command does (the same report, the same lines, the same
writer), and records the month in ``report_monthly.json`` in the state dir, so that a
restart does not write it again. InfluxDB unreachable: it tries again every few minutes.

Only months anju ran through are written: the file records when the pipeline first ran
with it, and a month that began before that is left to ``anju report --influx`` (a month
without the data of its first weeks would show its companies with nothing to answer for
and its devices all online). Several partitions (``ANJU_PARTITION`` i/N, N > 1) each see
only their estates: none of them writes, and a timer running the command does.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from anju.config import Settings
from anju.devices.registry import Site
from anju.errors import AnjuError
from anju.report.period import Period, last_month

__all__ = ["FILE_NAME", "MonthlyReport"]

log = logging.getLogger(__name__)

FILE_NAME = "report_monthly.json"
_RETRY_S = 300.0  # InfluxDB down, or the report failing: try again this much later
_NAP_S = 3600.0  # wake at least this often to look at the clock (a step, a suspend)


class MonthlyReport:
    """Writes each finished month's report once (``step``), and keeps doing so (``run``)."""

    def __init__(self, site: Site, settings: Settings, *, clock: Callable[[], int],
                 write: Callable[[Any], Any] | None = None) -> None:
        self.site = site
        self.settings = settings
        self.tz = settings.report_timezone
        self.path = Path(settings.state_dir) / FILE_NAME
        self._clock = clock
        self._write = write  # the points' writer (tests); anju.app.report_points by default
        self._state: dict[str, Any] | None = None

    # -- the record of what was written ---------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self._state is None:
            try:
                state = orjson.loads(self.path.read_bytes())
                if not isinstance(state, dict) or not isinstance(state.get("since_ms"), int):
                    raise ValueError("no since_ms")
            except FileNotFoundError:
                state = {"since_ms": self._clock(), "written": []}
                self._save(state)
            except (OSError, ValueError) as exc:
                # a damaged record: start it again from now (months before are the
                # command's to write), rather than write old months twice or stop
                log.warning("%s cannot be read (%s): monthly report points are written "
                            "from the next full month on", self.path, exc)
                state = {"since_ms": self._clock(), "written": []}
                self._save(state)
            self._state = state
        return self._state

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(state))
        os.replace(tmp, self.path)

    # -- one look at the clock -------------------------------------------------------------
    def due(self) -> Period | None:
        """The last full month, if anju ran through all of it and it is not written yet."""
        state = self._load()
        period = last_month(self._clock(), self.tz)
        if period.start_ms < state["since_ms"] or period.start_ms in state["written"]:
            return None
        return period

    async def step(self) -> int | None:
        """Writes the due month, if any; returns its points (None: nothing was due).
        Raises what building or writing raised; the month stays due."""
        period = await asyncio.to_thread(self.due)  # it may write the record: a file
        if period is None:
            return None
        report = await asyncio.to_thread(self._build, period)
        if self._write is not None:
            points = int(await self._write(report))
        else:
            from anju.app.report_points import write_report_points

            points = await write_report_points(report, self.settings)
        state = self._load()
        state["written"] = sorted({*state["written"], period.start_ms})[-36:]
        await asyncio.to_thread(self._save, state)
        log.info("report of %s written into InfluxDB: %d points of report_monthly",
                 period.label(period.start_ms)[:7], points)
        return points

    def _build(self, period: Period) -> Any:
        from anju.report.build import build_report
        from anju.report.scope import scope_for

        return build_report(self.site, self.settings.state_dir, period, scope_for(self.site))

    async def run(self) -> None:
        """Writes each month once it is over, for as long as the pipeline runs."""
        while True:
            try:
                await self.step()
                wait = self._until_next_month()
            except (AnjuError, OSError, ValueError) as exc:
                log.warning("monthly report: %s; trying again in %.0f s", exc, _RETRY_S)
                wait = _RETRY_S
            except Exception:  # a bug in the report must not stop the alarms
                log.exception("monthly report failed; trying again in %.0f s", _RETRY_S)
                wait = _RETRY_S
            await asyncio.sleep(wait)

    def _until_next_month(self) -> float:
        now = self._clock()
        # a last full month ends where the month holding its argument starts
        this_month = last_month(now, self.tz).end_ms
        next_month = last_month(this_month + 32 * 86_400_000, self.tz).end_ms
        return max(1.0, min(_NAP_S, (next_month - now) / 1000 + 1))
