"""One call from a site, a store and a period to a :class:`Report` (CLI, API, bench)."""

from __future__ import annotations

from pathlib import Path

from anju.alarms.store import AlarmStore
from anju.devices.registry import Site
from anju.report.figures import Report, Windows, compute
from anju.report.load import load_sqlite, load_store
from anju.report.period import Period
from anju.report.scope import Scope
from anju.report.scoring import settings_from_site

__all__ = ["build_report"]


def build_report(site: Site, source: str | Path | AlarmStore, period: Period, scope: Scope,
                 *, maintenance: Windows | None = None) -> Report:
    """The report of ``scope`` over ``period``; ``source`` is a state dir or SQLite file
    (read directly, read-only) or a live :class:`AlarmStore` (an SQLite store is read
    through its file; any other through its interface)."""
    settings = settings_from_site(site.report_settings, str(site.root / "site.yaml"))
    if isinstance(source, str | Path):
        table = load_sqlite(source, period, scope.estates)
    else:
        path = getattr(source, "path", None)
        if isinstance(path, str) and path != ":memory:":
            table = load_sqlite(path, period, scope.estates)
        else:
            table = load_store(source, period, scope.estates)
    return compute(site, scope, period, table, settings, maintenance=maintenance)
