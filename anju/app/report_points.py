"""Writing the report's figures into InfluxDB (``anju report --influx``, the demo).

The lines come from :func:`anju.report.influx.report_lines`; they go through the same
writer as the readings (:class:`anju.ingest.influx.InfluxWriter`: v1 or v2 API, token,
retry classification), so the report lands wherever ``ANJU_INFLUX_*`` sends the readings
and the ``anju-report`` dashboard finds it beside them.
"""

from __future__ import annotations

from anju.config import Settings
from anju.errors import SinkRejected
from anju.ingest.influx import InfluxWriter
from anju.report.figures import Report
from anju.report.influx import report_lines

__all__ = ["write_report_points"]


async def write_report_points(report: Report, settings: Settings) -> int:
    """Writes the report's company and estate points; returns how many were stored.

    Raises :class:`SinkUnavailable` when InfluxDB cannot be reached and
    :class:`SinkRejected` when it refuses a point (a field whose type changed, a bad token):
    a report is written whole or the caller hears of it, never partly and silently."""
    lines = report_lines(report)
    async with InfluxWriter(settings) as writer:
        await writer.ensure_database()
        result = await writer.write(lines)
    if result.dropped:
        raise SinkRejected(f"InfluxDB refused {result.dropped} of {len(lines)} report points", 400)
    return result.stored
