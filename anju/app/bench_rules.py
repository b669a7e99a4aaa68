"""``anju bench rules``: the vectorised engine against the scalar reference, same readings.

Readings of every kind over a generated site (≥ 10 000 devices), mostly normal with
a sprinkling of faults so that rules do fire, go through the engine in batches with a
clock tick after each, exactly as the live pipeline does. The baseline is the reference
engine — the oracle of the property tests, unchanged — over a prefix of the same
batches; its rate is measured, not extrapolated, and the two engines' transitions on
that prefix are compared.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from anju.devices.batch import Batch, KindBatch
from anju.devices.registry import Site, load_site
from anju.devices.sample import write_site
from anju.kinds import KINDS
from anju.rules.engine import RuleEngine
from anju.rules.model import load_rules
from anju.rules.reference import ReferenceEngine

__all__ = ["make_batches", "run_bench"]

T0 = 1_767_225_600_000


def _values(kind: str, n: int, rng: np.random.Generator, fault: np.ndarray) -> np.ndarray:
    """Plausible readings of one kind as float64 columns (NaN = not measured)."""
    spec = KINDS[kind]
    cols: dict[str, np.ndarray] = {}
    if kind == "smoke":
        cols["smoke_db_m"] = np.where(fault, 0.3, rng.uniform(0, 0.05, n))
        cols["temp_c"] = np.where(fault, rng.uniform(40, 70, n), rng.normal(24, 1.5, n))
        cols["battery_pct"] = np.where(rng.random(n) < 0.5, rng.uniform(25, 100, n), np.nan)
        cols["tamper"] = np.where(rng.random(n) < 0.2, fault * 1.0, np.nan)
    elif kind == "elevator":
        moving = rng.random(n) < 0.6
        speed = np.where(moving, rng.uniform(-1.7, 1.7, n), 0.0)
        cols["floor"] = rng.integers(-1, 18, n).astype(float)
        cols["speed_mps"] = np.where(fault, 2.5, speed)
        cols["door_open"] = np.where(fault | ~moving & (rng.random(n) < 0.3), 1.0, 0.0)
        cols["in_door_zone"] = np.where(moving, 0.0, 1.0)
        cols["occupied"] = (rng.random(n) < 0.5) * 1.0
        cols["alarm_button"] = np.where(rng.random(n) < 0.3, 0.0, np.nan)
        cols["power_ok"] = np.where(rng.random(n) < 0.3, 1.0, np.nan)
        cols["accel_rms_mg"] = np.where(rng.random(n) < 0.5,
                                        np.where(fault, 200.0, rng.uniform(5, 60, n)), np.nan)
        cols["ebike"] = np.where(rng.random(n) < 0.3, fault * 1.0, np.nan)
    elif kind == "water":
        cols["level_pct"] = rng.uniform(30, 90, n)
        # each pump room near its own operating point, with sensor noise
        cols["pressure_mpa"] = np.where(fault, 0.1, 0.3 + rng.normal(0, 0.005, n))
        cols["flow_m3h"] = 12 + rng.normal(0, 0.5, n)
        cols["pump_running"] = np.ones(n)
        cols["pump_fault"] = np.where(rng.random(n) < 0.5, (rng.random(n) < 0.002) * 1.0,
                                      np.nan)
        cols["chlorine_mg_l"] = rng.uniform(0.1, 1.0, n)
        cols["turbidity_ntu"] = rng.uniform(0.1, 0.9, n)
        cols["ph"] = rng.uniform(6.8, 8.2, n)
    elif kind == "camera":
        ev = spec.field("event").choices
        # heartbeat; a fault is obstructed or an e-bike charging
        cols["event"] = np.where(fault, np.where(rng.random(n) < 0.5, ev.index("obstructed"),
                                                 ev.index("ebike_charging")), 0.0)
        cols["confidence"] = np.full(n, np.nan)
    elif kind == "patrol":
        checkin = rng.random(n) < 0.3
        cols["event"] = np.where(checkin, spec.field("event").choices.index("checkin"), 0.0)
        cols["guard_id"] = np.where(checkin, rng.integers(1, 20, n), np.nan)
    elif kind == "firelane":
        occupied = fault | (rng.random(n) < 0.05)
        cols["occupied"] = occupied * 1.0
        cols["vehicles"] = occupied * 1.0
        cols["occupied_s"] = np.where(occupied, np.where(fault, 400.0, rng.uniform(0, 200, n)),
                                      0.0)
    elif kind == "access":
        # heartbeat, granted or, with a fault, denied (a burst needs several in a row)
        cols["event"] = np.where(fault, 2.0, (rng.random(n) < 0.2) * 1.0)
        cols["door_open"] = (cols["event"] == 1.0) * 1.0
        cols["open_s"] = np.where(cols["door_open"] > 0, rng.uniform(0, 20, n), 0.0)
    out = np.full((n, len(spec.columns)), np.nan)
    for j, f in enumerate(spec.columns):
        if f.name in cols:
            out[:, j] = cols[f.name]
    return out


#: reporting period of one device, by kind (ms): an elevator reports every second while
#: it moves and every 30 s otherwise (2 s on average here); the others at their heartbeat
PERIOD_MS = {"elevator": 2_000, "smoke": 60_000, "water": 10_000, "camera": 60_000,
             "patrol": 300_000, "firelane": 60_000, "access": 60_000}
FAULT_RATE = 0.0005


def make_batches(site: Site, readings: int, batch_size: int, seed: int = 7
                 ) -> Iterator[tuple[Batch, int]]:
    """Yields (batch, tick time): every device reports at its kind's period (with a random
    phase), so windows hold what they would live; a batch spans about ``batch_size``
    readings' worth of data time."""
    rng = np.random.default_rng(seed)
    kinds = site.devices.kind
    by_kind = {k: np.flatnonzero(kinds == i) for i, k in enumerate(KINDS)}
    phase = {k: rng.integers(0, PERIOD_MS.get(k, 60_000), len(by_kind[k])) for k in KINDS}
    total_hz = sum(len(by_kind[k]) * 1000 / PERIOD_MS.get(k, 60_000) for k in KINDS)
    span = max(1, round(batch_size / total_hz * 1000))
    made = 0
    t_lo = T0
    while made < readings:
        t_hi = t_lo + span
        parts: dict[str, KindBatch] = {}
        for kind in KINDS:
            devs, ph, period = by_kind[kind], phase[kind], PERIOD_MS.get(kind, 60_000)
            first = ph + -(-(t_lo - T0 - ph) // period) * period  # first report ≥ t_lo
            dev_parts, ts_parts = [], []
            k = 0
            while True:
                ts = T0 + first + k * period
                inside = ts < t_hi
                if not inside.any():
                    break
                dev_parts.append(devs[inside])
                ts_parts.append(ts[inside])
                k += 1
            if not dev_parts:
                continue
            dev = np.concatenate(dev_parts).astype(np.int32)
            ts = np.concatenate(ts_parts).astype(np.int64)
            cnt = len(dev)
            fault = rng.random(cnt) < FAULT_RATE
            parts[kind] = KindBatch(KINDS[kind], dev, ts, np.full(cnt, -1, np.int64),
                                    _values(kind, cnt, rng, fault))
        batch = Batch(parts, messages=sum(len(p) for p in parts.values()))
        t_lo = t_hi
        made += batch.readings
        yield batch, t_hi


def city_batches(estates: int, readings: int, batch_size: int, seed: int = 7
                 ) -> tuple[Site, list[tuple[Batch, int]]]:
    """A simulated city (``anju simulate site``) and its traffic as batches of about
    ``batch_size`` readings: the simulator's own signal generators (elevators move in
    trips, detectors drift with the day, pumps follow demand) plus the incidents of the
    bundled ``hour`` scenario, whose city is the first two estates of this one."""
    from anju.errors import ConfigError
    from anju.simulators.city import plan_city
    from anju.simulators.city import write_site as write_city
    from anju.simulators.fleets import FLEETS, FleetContext
    from anju.simulators.scenario import bind, load_scenario

    with tempfile.TemporaryDirectory(prefix="anju-bench-") as tmp:
        site = load_site(write_city(plan_city(estates, seed), Path(tmp) / "city"))
    try:
        incidents = bind(load_scenario("hour"), site).incidents
    except ConfigError:
        incidents = []  # a city too small for the scenario: normal traffic only
    devs = site.devices
    kinds = list(KINDS)
    rate_hz = sum(1000 / PERIOD_MS.get(kinds[k], 60_000) for k in devs.kind.tolist())
    # a first guess from the nominal periods; then each span is corrected by what the
    # last one held, so that batches hold about ``batch_size`` readings as the city's
    # traffic rises and falls with the day (never less than the live tick's second)
    span = max(1000, round(batch_size / rate_hz * 1000))
    ctx = FleetContext(site, seed, T0, T0 + 10**9)
    fleets = [cls(ctx, np.flatnonzero(devs.kind == kinds.index(kind)), incidents)
              for kind, cls in FLEETS.items() if (devs.kind == kinds.index(kind)).any()]
    out: list[tuple[Batch, int]] = []
    made = 0
    t0 = T0
    while made < readings:
        parts: dict[str, KindBatch] = {}
        for fleet in fleets:
            r = fleet.advance(t0, t0 + span)
            if not len(r):
                continue
            spec = KINDS[r.kind]
            values = np.full((len(r), len(spec.columns)), np.nan)
            for j, f in enumerate(spec.columns):
                if f.name in r.cols:
                    values[:, j] = r.cols[f.name]
            parts[r.kind] = KindBatch(spec, r.dev.astype(np.int32), r.ts.astype(np.int64),
                                      np.full(len(r), -1, np.int64), values)
        t0 += span
        batch = Batch(parts, messages=sum(len(p) for p in parts.values()))
        made += batch.readings
        out.append((batch, t0))
        if batch.readings:
            span = max(1000, round(span * batch_size / batch.readings))
    return site, out


def _drive(engine: Any, batches: list[tuple[Batch, int]]) -> tuple[float, list[Any]]:
    out: list[Any] = []
    t0 = time.perf_counter()
    for batch, now in batches:
        out.extend(engine.process(batch))
        out.extend(engine.tick(now))
    return time.perf_counter() - t0, out


def _key(t: Any) -> tuple[Any, ...]:
    return (t.ts, t.rule, t.subject, t.event, t.started_at)


def run_bench(*, readings: int = 1_000_000, devices: int = 10_000, batch_size: int = 10_000,
              baseline_readings: int = 100_000, seed: int = 7, traffic: str = "city",
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs the benchmark; returns the contract's figures and a few more.

    ``traffic="city"``: a simulated city of at least ``devices`` devices and its normal
    traffic. ``traffic="stress"``: independent random readings with 0.05 % faults, so
    conditions flip on nearly every reading — a worst case for the run machinery.
    """
    say = progress or (lambda _m: None)
    if traffic == "city":
        from anju.simulators.city import plan_city

        estates = 2  # the hour scenario's city is the first two estates
        while len(plan_city(estates, seed).devices) < devices:
            estates += 1
        say(f"simulating a city of {estates} estates and {readings:,} readings …")
        site, batches = city_batches(estates, readings, batch_size, seed)
    else:
        per_building = {"smoke": 60, "elevator": 20, "water": 10, "camera": 10, "access": 2,
                        "firelane": 1, "patrol": 2}
        buildings = max(1, -(-devices // sum(per_building.values())))
        estates = max(1, buildings // 10)
        with tempfile.TemporaryDirectory(prefix="anju-bench-") as tmp:
            root = write_site(Path(tmp) / "site", estates=estates,
                              buildings=-(-buildings // estates), floors=18,
                              per_building=per_building)
            site = load_site(root)
        batches = list(make_batches(site, readings, batch_size, seed))
    rules = load_rules(site)
    say(f"site: {len(site.devices)} devices, {len(rules)} rules")
    total = sum(b.readings for b, _ in batches)

    say("vectorised engine …")
    RuleEngine(site, rules).process(batches[0][0])  # warm caches and imports
    fast_s, fast_out = _drive(RuleEngine(site, rules), batches)

    prefix: list[tuple[Batch, int]] = []
    n = 0
    for b in batches:
        if n >= baseline_readings:
            break
        prefix.append(b)
        n += b[0].readings
    say(f"reference engine on the first {n} readings …")
    slow_s, slow_out = _drive(ReferenceEngine(site, rules), prefix)
    _, fast_prefix = _drive(RuleEngine(site, rules), prefix)
    agree = sorted(map(_key, fast_prefix)) == sorted(map(_key, slow_out))

    fixed_us, tick_us = _fixed_cost_us(site, rules, batches, total / fast_s)

    # the ratio of the figures reported, so that speedup == readings_per_s / baseline
    rate = round(total / fast_s)
    base = round(n / slow_s)
    return {
        "traffic": traffic,
        "readings": total,
        "rules": len(rules),
        "devices": len(site.devices),
        "batch_size": batch_size,
        "readings_per_s": rate,
        "baseline_readings_per_s": base,
        "speedup": round(rate / base, 2),
        "baseline_readings": n,
        "transitions": len(fast_out),
        "agree_on_baseline": agree,
        "seconds": round(fast_s, 3),
        "batch_fixed_cost_us": fixed_us,
        "tick_cost_us": tick_us,
    }


def _fixed_cost_us(site: Site, rules: Any, batches: list[tuple[Batch, int]],
                   rate: float, size: int = 100, count: int = 2000) -> tuple[float, float]:
    """What one batch costs beyond its readings, and what a clock tick costs: the same
    traffic cut into consecutive batches of about ``size`` readings (the first ``count``
    of them; the full catalogue, warmed up), the mean time of ``process`` on one minus its
    readings at the large-batch rate ``rate`` — the live pipeline's small, quick batches
    pay it every few milliseconds — and the mean time of the tick after each. Ticks are
    timed apart: live they come once a second (``tick_s``), not once a batch."""
    small: list[tuple[Batch, int]] = []
    for b, t in batches:
        parts = max(1, b.readings // size)
        for j in range(parts):
            cut = {k: kb.take(np.arange(j * len(kb) // parts, (j + 1) * len(kb) // parts))
                   for k, kb in b.kinds.items()}
            part = Batch({k: kb for k, kb in cut.items() if len(kb)}, messages=0)
            if part:
                small.append((part, t))
        if len(small) >= count:
            break
    if len(small) < 20:
        return 0.0, 0.0
    engine = RuleEngine(site, rules)
    _drive(engine, small[:10])  # warm
    timed = small[10:count]
    processing = ticking = 0.0
    clock = time.perf_counter
    for batch, now in timed:
        t0 = clock()
        engine.process(batch)
        t1 = clock()
        engine.tick(now)
        processing += t1 - t0
        ticking += clock() - t1
    per_batch = processing / len(timed)
    readings = sum(b.readings for b, _ in timed) / len(timed)
    return (round(max(0.0, per_batch - readings / rate) * 1e6, 1),
            round(ticking / len(timed) * 1e6, 1))
