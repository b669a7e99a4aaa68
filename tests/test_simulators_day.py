"""A whole simulated day of one building's normal traffic: nothing rejected, no alarm.

One building of a generated estate (its lifts, landing detectors and cameras, and the
estate's pump room) so that the day stays a few seconds of test; the rule engine is the
real one, through the replay path of ``anju rules eval``.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from anju.app.replay import replay
from anju.devices.registry import load_site
from anju.rules import load_rules
from anju.simulators.city import plan_city, write_site
from anju.simulators.traffic import Traffic, record

DAY_START_MS = 1_772_380_800_000  # 2026-03-02T00:00+08:00


@pytest.mark.parametrize("seed", [3])  # a 22-storey tower with four lifts and basements
def test_a_day_of_normal_traffic_raises_no_alarm(tmp_path: Path, seed: int) -> None:
    plan = plan_city(1, seed=seed)
    plan.devices = [row for row in plan.devices if row[3] == "b01"]
    write_site(plan, tmp_path)
    site = load_site(tmp_path)
    assert {"camera", "elevator", "smoke", "water"} <= {
        k for k, n in site.summary()["by_kind"].items() if n}

    t0 = time.perf_counter()
    buf = io.BytesIO()
    messages, readings = record(Traffic(site, start_ms=DAY_START_MS, duration_s=86_400,
                                        seed=seed), buf)
    generated_s = time.perf_counter() - t0
    buf.seek(0)
    result = replay(site, load_rules(site), buf, tick_ms=60_000, max_batch=50_000)

    assert result.messages == messages and result.readings == readings > 50_000
    assert result.rejected == {}
    raised = [(e.rule, e.device, e.ts) for e in result.events if e.event == "raised"]
    assert raised == []
    assert generated_s < 20
