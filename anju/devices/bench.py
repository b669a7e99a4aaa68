"""The cost of decoding: per message and per reading, single readings and gateway batches.

``anju devices bench-decode`` runs it. The decoder is timed end to end as the pipeline
uses it: topic parse, orjson, the strict checks, rows into a :class:`BatchBuilder`, and
:meth:`BatchBuilder.build` into numpy columns; gateway batches in takes of 16 through
``decode_many`` (the columnar path), and again on the reference path alone. The strict
pydantic models
(:mod:`anju.devices.schema`) are timed on the same readings, for comparison.
Readings are a mix of every kind (a tenth of camera readings carry a 12-point track).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from anju.devices.batch import BatchBuilder
from anju.devices.decode import Decoder
from anju.devices.registry import Site, load_site
from anju.devices.sample import write_site
from anju.devices.schema import validate_reading
from anju.kinds import KINDS

__all__ = ["bench_decode", "sample_reading"]

_NOW = 1_767_225_600_000
_TRACK = [[t * 40, 1800.0, 1000.0 + 0.02 * t * t] for t in range(12)]


def sample_reading(kind: str, rng: random.Random, ts: int) -> dict[str, Any]:
    """A plausible reading of ``kind`` (every kind of the table)."""
    if kind == "smoke":
        return {"ts": ts, "seq": ts // 1000, "smoke_db_m": round(rng.uniform(0, 0.05), 3),
                "temp_c": round(rng.uniform(18, 28), 1), "battery_pct": 87.0}
    if kind == "elevator":
        return {"ts": ts, "floor": rng.randint(-1, 18), "speed_mps": round(rng.uniform(-2, 2), 2),
                "door_open": False, "in_door_zone": rng.random() < 0.5, "occupied": True,
                "power_ok": True, "accel_rms_mg": round(rng.uniform(5, 30), 1)}
    if kind == "water":
        return {"ts": ts, "level_pct": 64.0, "pressure_mpa": round(rng.uniform(0.25, 0.35), 3),
                "flow_m3h": round(rng.uniform(5, 15), 2), "pump_running": True, "ph": 7.2,
                "chlorine_mg_l": 0.4, "turbidity_ntu": 0.3}
    if kind == "camera":
        if rng.random() < 0.1:
            return {"ts": ts, "event": "falling_object", "track": _TRACK, "confidence": 0.9}
        return {"ts": ts, "event": "heartbeat"}
    if kind == "patrol":
        if rng.random() < 0.3:
            return {"ts": ts, "event": "checkin", "guard_id": rng.randint(1, 20)}
        return {"ts": ts, "event": "heartbeat", "battery_pct": 76.0}
    if kind == "firelane":
        occupied = rng.random() < 0.1
        return {"ts": ts, "occupied": occupied, "vehicles": int(occupied),
                "occupied_s": rng.randint(0, 200) if occupied else 0}
    if kind == "access":
        event = rng.choice(("heartbeat", "heartbeat", "granted", "denied"))
        r: dict[str, Any] = {"ts": ts, "event": event, "door_open": event == "granted",
                             "open_s": 0}
        if event != "heartbeat":
            r["credential"] = rng.choice(("card", "face", "plate"))
        return r
    raise ValueError(f"no sample reading for kind {kind!r}")


def _messages(site: Site, n: int, per_message: int,
              rng: random.Random) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """n messages of ``per_message`` readings, and the same readings one per payload."""
    d = site.devices
    kinds = list(KINDS)  # in kind-code order
    ids = d.ids
    msgs: list[tuple[str, bytes]] = []
    singles: list[tuple[str, bytes]] = []
    for m in range(n):
        items = []
        for k in range(per_message):
            i = (m * per_message + k) % len(ids)
            kind = kinds[int(d.kind[i])]
            r = sample_reading(kind, rng, _NOW - 60_000 + (m * per_message + k) % 60_000)
            items.append((ids[i], kind, r))
        if per_message == 1:
            dev, kind, r = items[0]
            msgs.append((f"anju/e1/b1/{kind}/{dev}", orjson.dumps(r)))
        else:
            msgs.append(("anju/e1/b1/batch/gw-e1-b1",
                         orjson.dumps([{"device": dev, **r} for dev, _, r in items])))
        singles += [(kind, orjson.dumps(r)) for _, kind, r in items]
    return msgs, singles


_TAKE = 16  # messages the live batcher hands the decoder at once (anju.ingest.batcher)


def _time_decoder(site: Site, msgs: list[tuple[str, bytes]], repeat: int,
                  columnar: bool = True) -> float:
    """Gateway batches go through ``decode_many`` in takes, as the live batcher sends them;
    ``columnar=False`` times the reference path alone."""
    runs = []
    for _ in range(repeat):
        dec = Decoder(site, columnar=columnar)
        builder = BatchBuilder()
        t0 = time.perf_counter()
        for i in range(0, len(msgs), _TAKE):
            dec.decode_many(msgs[i:i + _TAKE], builder, _NOW)
        batch = builder.build()
        runs.append(time.perf_counter() - t0)
        if dec.rejected or batch.messages != len(msgs):
            raise AssertionError(f"benchmark readings were rejected: {dict(dec.rejected)}")
    return min(runs)


def _time_pydantic(singles: list[tuple[str, bytes]], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for kind, payload in singles:
            validate_reading(kind, payload, now_ms=_NOW)
        runs.append(time.perf_counter() - t0)
    return min(runs)


def bench_decode(messages: int = 20_000, batch: int = 100, repeat: int = 5,
                 seed: int = 1) -> dict[str, Any]:
    """Decoding cost in µs; the best of ``repeat`` runs (as timeit reports: on a shared
    machine the other runs measure the neighbours) on a generated site."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="anju-bench-") as tmp:
        site = load_site(write_site(Path(tmp), per_building=max(25, batch // 4 + 1)))
    single_msgs, singles = _messages(site, messages, 1, rng)
    batch_msgs, _ = _messages(site, max(1, messages // batch), batch, rng)
    t_single = _time_decoder(site, single_msgs, repeat)
    t_batch = _time_decoder(site, batch_msgs, repeat)
    t_batch_ref = _time_decoder(site, batch_msgs, repeat, columnar=False)
    sample = singles[: min(len(singles), 5000)]
    t_pyd = _time_pydantic(sample, repeat)
    n_batch_readings = len(batch_msgs) * batch
    return {
        "single": {"messages": len(single_msgs), "readings": len(single_msgs),
                   "us_per_message": round(t_single / len(single_msgs) * 1e6, 3),
                   "us_per_reading": round(t_single / len(single_msgs) * 1e6, 3)},
        f"batch{batch}": {"messages": len(batch_msgs), "readings": n_batch_readings,
                          "us_per_message": round(t_batch / len(batch_msgs) * 1e6, 3),
                          "us_per_reading": round(t_batch / n_batch_readings * 1e6, 3),
                          # the same batches on the reference path alone (columnar off)
                          "reference_us_per_reading": round(
                              t_batch_ref / n_batch_readings * 1e6, 3)},
        "pydantic_us_per_reading": round(t_pyd / len(sample) * 1e6, 3),
        "repeat": repeat,
    }
