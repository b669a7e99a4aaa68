"""``anju bench report``: a month of a generated city through the report, timed.

The city (``anju simulate site``'s generator) gets a month of alarm handling from
:mod:`anju.simulators.month` (its property companies take the prompt / slow / negligent
profiles in turn) through the real alarm lifecycle into an SQLite store; then the report is
made as ``anju report`` makes it — load the site, read the store, compute, write HTML, CSV
and JSON — and timed. Generation is timed apart: it is the set-up, not the subject.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BUDGET_S", "run_bench"]

BUDGET_S = 60.0  # issue 19: a month of a city of 500 estates in under 60 s on two cores


def run_bench(*, estates: int = 500, alarms_per_estate: int = 60, seed: int = 19,
              work: Path | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Generates the city and its month (into ``work``, a temporary directory by default),
    then times the report; returns the figures of the run."""
    from anju.devices.registry import load_site
    from anju.report.build import build_report
    from anju.report.output import write_report
    from anju.report.period import parse_period
    from anju.report.scope import scope_for
    from anju.simulators.city import plan_city, write_site
    from anju.simulators.month import plan_month, run_month

    say = progress or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="anju-bench-report-") as tmp:
        root = work or Path(tmp)
        period = parse_period("2026-11-01", "2026-12-01")
        t = time.perf_counter()
        say(f"generating a city of {estates} estates …")
        write_site(plan_city(estates, seed), root / "site")
        site = load_site(root / "site")
        say(f"{len(site.devices):,} devices; a month of alarms through the lifecycle …")
        plan = plan_month(site, period.start_ms, period.end_ms, seed, alarms_per_estate)
        events = run_month(site, plan, root / "state")
        generate_s = time.perf_counter() - t
        say(f"{len(plan.alarms):,} alarms, {events:,} events in {generate_s:.1f} s; "
            "reporting …")
        cpu0 = os.times()
        t0 = time.perf_counter()
        site = load_site(root / "site")
        t1 = time.perf_counter()
        report = build_report(site, root / "state", period, scope_for(site))
        t2 = time.perf_counter()
        write_report(report, root / "report")
        t3 = time.perf_counter()
        cpu1 = os.times()
    total = t3 - t0
    return {
        "estates": estates, "devices": len(site.devices), "companies":
        len(report.tables["companies"]), "alarms": len(plan.alarms), "events": events,
        "alarms_read": report.meta["alarms_read"], "generate_s": round(generate_s, 2),
        "site_s": round(t1 - t0, 3), "compute_s": round(t2 - t1, 3),
        "write_s": round(t3 - t2, 3), "report_s": round(total, 3),
        "cpu_s": round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 3),
        "budget_s": BUDGET_S, "within_budget": total < BUDGET_S,
    }
