"""Each finished month's accountability report into InfluxDB, by the pipeline.

``anju report --influx`` writes a period's company and estate figures as
``report_monthly`` points for the ``anju-report`` dashboard; until now somebody had to run
it from a timer every month, and the dashboard stayed empty where nobody did. The pipeline
now does it itself: an hour after each turn of a month (local midnight in
``ANJU_REPORT_TIMEZONE``; the hour lets the month's last alarms arrive: a device silent
since 23:50 is only found offline some minutes after midnight), it builds the whole site's
report of that month and writes its points exactly as the command does (the same report,
lines and writer), and records the month in ``report_monthly.json`` in the state dir, so
that a restart does not write it again. A failure (InfluxDB down, a bad ``report:``
section) is tried again after 5 minutes, then less and less often, up to hourly.

Only months that began after the pipeline first ran with this are written (the record
keeps that instant): the month of the installation or the upgrade, without the data of its
first days, would show its companies with nothing to answer for and its devices online,
so it is left to ``anju report --influx``. After downtime across a turn of a month, the
months missed are written on the next start, the oldest first, up to a year back. Several
partitions (``ANJU_PARTITION`` i/N, N > 1) each see only their estates: none of them
writes, and a timer running the command does.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from anju.app.files import replace_file
from anju.config import Settings
from anju.devices.registry import Site
from anju.errors import AnjuError
from anju.report.load import StoreMissing
from anju.report.period import Period, last_month, month_of

__all__ = ["FILE_NAME", "GRACE_MS", "MonthlyReport"]

log = logging.getLogger(__name__)

FILE_NAME = "report_monthly.json"
GRACE_MS = 3_600_000  # a month is built this long after its end
_MONTHS_BACK = 12  # after downtime, months caught up at most
_RETRY_S, _RETRY_MAX_S = 300.0, 3600.0  # after a failure: 5 min, doubling up to an hour
_NAP_S = 3600.0  # wake at least this often to look at the clock (a step, a suspend)


def _key(period: Period) -> str:
    """A month's name in the record (``2026-11``): the same month whatever the zone."""
    return period.label(period.start_ms)[:7]


class MonthlyReport:
    """Writes each finished month's report once (:meth:`step`), for as long as the
    pipeline runs (:meth:`run`)."""

    def __init__(self, site: Site, settings: Settings, *, clock: Callable[[], int],
                 write: Callable[[Any], Awaitable[int]] | None = None) -> None:
        self.site = site
        self.settings = settings
        self.tz = settings.report_timezone
        self.path = Path(settings.state_dir) / FILE_NAME
        self._clock = clock
        self._write = write  # the points' writer (tests); anju.app.report_points by default
        self._state: dict[str, Any] | None = None

    # -- the record of what was written ---------------------------------------------------
    def _load(self) -> dict[str, Any]:
        """The record, read once; started afresh (``since_ms`` now) when missing, damaged
        or ahead of the clock."""
        if self._state is not None:
            return self._state
        now = self._clock()
        state: dict[str, Any] | None
        try:
            state = orjson.loads(self.path.read_bytes())
            if not (isinstance(state, dict) and isinstance(state.get("since_ms"), int)
                    and isinstance(state.get("written"), list)
                    and all(isinstance(m, str) for m in state["written"])):
                raise ValueError("not a record of since_ms and written months")
        except FileNotFoundError:
            state = None
        except (OSError, ValueError) as exc:
            # months before now are then the command's to write, rather than written twice
            log.warning("%s cannot be read (%s): monthly report points are written from the "
                        "next full month on", self.path, exc)
            state = None
        if state is None:
            state = {"since_ms": now, "written": []}
            self._save(state)
        elif state["since_ms"] > now:
            log.warning("%s starts in the future (%d ms, the clock was wrong?): starting it "
                        "again from now", self.path, state["since_ms"])
            state["since_ms"] = now
            self._save(state)
        self._state = state
        return state

    def _save(self, state: dict[str, Any]) -> None:
        replace_file(self.path, orjson.dumps(state))

    # -- one look at the clock -------------------------------------------------------------
    def due(self) -> Period | None:
        """The oldest month not written yet that is over (by :data:`GRACE_MS`) and began
        after the record's start, at most a year back; None when there is none."""
        state = self._load()
        now = self._clock()
        month = last_month(now - GRACE_MS, self.tz)  # the latest month that may be due
        found = None
        for _ in range(_MONTHS_BACK):
            if month.start_ms < state["since_ms"]:
                break
            if _key(month) not in state["written"]:
                found = month
            month = last_month(month.start_ms, self.tz)
        return found

    async def step(self) -> int | None:
        """Writes the due month, if any; returns its points (None: nothing was due).
        Raises what building or writing raised; the month stays due."""
        period = await asyncio.to_thread(self.due)  # it may write the record: a file
        if period is None:
            return None
        # a registry reload replaces the Site's fields whole, on the loop: a shallow copy
        # taken here is one registry for the whole build
        site = copy.copy(self.site)
        report = await asyncio.to_thread(self._build, site, period)
        if self._write is not None:
            points = await self._write(report)
        else:
            from anju.app.report_points import write_report_points

            points = await write_report_points(report, self.settings)
        state = self._load()
        state["written"] = sorted({*state["written"], _key(period)})[-3 * _MONTHS_BACK:]
        await asyncio.to_thread(self._save, state)
        log.info("report of %s written into InfluxDB: %d points of report_monthly",
                 _key(period), points)
        return points

    def _build(self, site: Site, period: Period) -> Any:
        from anju.report.build import build_report
        from anju.report.scope import scope_for

        return build_report(site, self.settings.state_dir, period, scope_for(site))

    async def run(self) -> None:
        """Writes each month once it is over, for as long as the pipeline runs."""
        retry = _RETRY_S
        while True:
            try:
                wrote = await self.step()
                wait = 0.0 if wrote is not None else self._until_next_due()
                retry = _RETRY_S
            except (AnjuError, OSError, ValueError, StoreMissing, sqlite3.Error) as exc:
                log.warning("monthly report: %s; trying again in %.0f s", exc, retry)
                wait, retry = retry, min(_RETRY_MAX_S, retry * 2)
            except Exception:  # a bug in the report must not stop the alarms
                log.exception("monthly report failed; trying again in %.0f s", retry)
                wait, retry = retry, min(_RETRY_MAX_S, retry * 2)
            await asyncio.sleep(wait)

    def _until_next_due(self) -> float:
        """Seconds until the next month is due (its end and the grace), at most
        :data:`_NAP_S`, at least 1."""
        now = self._clock()
        nxt = month_of(now - GRACE_MS, self.tz).end_ms + GRACE_MS
        return max(1.0, min(_NAP_S, (nxt - now) / 1000 + 1))
