"""Helpers for rule tests: a small site and readings fed straight to the engines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from anju.devices.batch import Batch, BatchBuilder
from anju.devices.registry import Site, load_site
from anju.kinds import KINDS

T0 = 1_767_225_600_000

SITE_YAML = """\
estates:
  - id: e1
    name: 蓝堡湾小区
    buildings:
      - {id: b1, floors: 12, floor_height_m: 3.0}
      - {id: b2, floors: 20, floor_height_m: 3.0}
teams:
  - {id: property-e1, role: property, estates: [e1], webhook: 'http://127.0.0.1:9/p'}
  - {id: fire-1, role: fire, estates: ['*'], webhook: 'http://127.0.0.1:9/f'}
"""

DEVICES_CSV = """\
device,kind,estate,building,floor,zone,params
s1,smoke,e1,b1,5,stair-A,
s2,smoke,e1,b1,5,stair-B,
s3,smoke,e1,b1,5,corridor,
s4,smoke,e1,b1,6,stair-A,
l1,elevator,e1,b1,,car-1,"{""rated_speed_mps"": 1.5, ""top_floor"": 12, ""bottom_floor"": -1}"
w1,water,e1,b1,-1,pump-room,
c1,camera,e1,b1,,south,"{""mount_height_m"": 2.5, ""distance_m"": 25.0, ""tilt_deg"": 40.0, \
""focal_px"": 1500.0, ""cy_px"": 1080.0}"
"""


def small_site(tmp: Path, extra_yaml: str = "") -> Site:
    root = tmp / "site"
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(SITE_YAML + extra_yaml, encoding="utf-8")
    (root / "devices.csv").write_text(DEVICES_CSV, encoding="utf-8")
    return load_site(root)


def batch_of(site: Site, readings: list[tuple[str, int, dict[str, Any]]]) -> Batch:
    """A batch from (device id, ts, fields) triples; missing fields are not measured."""
    b = BatchBuilder()
    kinds = list(KINDS)
    for dev_id, ts, fields in readings:
        i = site.devices.index[dev_id]
        kind = kinds[int(site.devices.kind[i])]
        row, pos = b.new_row(kind)
        extra = None
        for k, v in fields.items():
            if k == "track":
                extra = {"track": v}
                continue
            spec = KINDS[kind].field(k)
            if spec.type == "enum":
                row[pos[k]] = float(spec.choices.index(v))
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                row[pos[k]] = math.nan
            else:
                row[pos[k]] = float(v)
        b.add(kind, i, ts, -1, row, extra)
    return b.build()


def key(t: Any) -> tuple[Any, ...]:
    """Everything a transition says, for comparing engines."""
    value = None if t.value is None else round(t.value, 9)
    details = tuple(sorted((k, repr(v)) for k, v in t.details.items()))
    return (t.ts, t.rule, t.subject, t.event, t.started_at, value, details, t.floor)


def run_stream(engine: Any, site: Site, stream: list[Any], *, start: int = T0,
               settle_ms: int = 3_600_000) -> list[tuple[Any, ...]]:
    """Drives an engine (vectorised or reference) through a generated stream of
    ``(op, step_ms, payload)``: ``"r"`` a reading ``(device, fields)`` (fields of None
    left out), ``"cut"`` the end of a batch, anything else a clock tick; then a last tick
    ``settle_ms`` later lets every duration and silence play out. Returns the transitions'
    keys, so two engines' runs compare directly."""
    out: list[Any] = []
    t = start
    pending: list[tuple[str, int, dict[str, Any]]] = []

    def flush() -> None:
        if pending:
            out.extend(engine.process(batch_of(site, pending)))
            pending.clear()

    for op, step, payload in stream:
        t = max(start, t + step)
        if op == "r":
            dev, fields = payload
            pending.append((dev, t, {k: v for k, v in fields.items() if v is not None}))
        elif op == "cut":
            flush()
        else:
            flush()
            out.extend(engine.tick(t))
    flush()
    out.extend(engine.tick(t + settle_ms))
    return [key(x) for x in out]
