"""A site's traffic as MQTT messages in data-time order, window by window.

:class:`Traffic` runs a fleet per kind over consecutive windows of data time, numbers
each device's readings (``seq``), encodes them as the payloads of CONTRACT.md §2 and
orders them by ``ts``. Messages go either one reading per device topic
(``anju/{estate}/{building}/{kind}/{device}``) or, ``via="gateway"``, as one batch per
building and second on the building gateway's topic (``…/batch/{gateway}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np
import numpy.typing as npt
import orjson

from anju.devices.registry import Site
from anju.kinds import KINDS
from anju.simulators.fleets import FLEETS, BoundIncident, FleetContext, Readings
from anju.simulators.scenario import BoundScenario

__all__ = ["DECIMALS", "Message", "Traffic", "encode", "record"]

#: Decimals each float field is sent with: what a real terminal resolves.
DECIMALS = {
    "speed_mps": 2, "accel_rms_mg": 1, "smoke_db_m": 3, "temp_c": 1, "battery_pct": 1,
    "level_pct": 1, "pressure_mpa": 3, "flow_m3h": 2, "chlorine_mg_l": 2, "turbidity_ntu": 2,
    "ph": 2, "confidence": 2,
}
WINDOW_MS = 60_000  # live traffic is made a minute of data time at a time
RECORD_WINDOW_MS = 600_000  # a recording ten minutes at a time (the bytes are the same)


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message: ``ts`` is its (newest) reading's data time."""

    ts: int
    topic: str
    payload: bytes
    readings: int


def encode(r: Readings, seq: npt.NDArray[np.int64],
           device: list[str] | None = None) -> list[dict[str, object]]:
    """The readings as JSON-ready dicts: ``ts``, ``seq`` (and ``device``), then the
    fields in the kind's order, absent (NaN) fields left out."""
    spec = KINDS[r.kind]
    names: list[str] = []
    values: list[list[object]] = []
    for f in spec.fields:
        col = r.cols.get(f.name)
        if col is None or f.type == "track":
            continue
        missing = np.isnan(col)
        if missing.all():
            continue
        if f.type == "bool":
            vals: list[object] = (col > 0.5).tolist()
        elif f.type == "int":
            vals = np.where(missing, 0, col).astype(np.int64).tolist()
        elif f.type == "enum":
            vals = [f.choices[i] for i in np.where(missing, 0, col).astype(np.int64).tolist()]
        else:
            vals = np.round(col, DECIMALS.get(f.name, 3)).tolist()
        if missing.any():
            vals = [None if m else v for v, m in zip(vals, missing.tolist(), strict=True)]
        names.append(f.name)
        values.append(vals)
    ts = r.ts.tolist()
    sq = seq.tolist()
    if device is None and r.extra is None and not any(None in v for v in values):
        # The common case, every field present: dicts built in C.
        keys = ("ts", "seq", *names)
        return [dict(zip(keys, row, strict=True)) for row in zip(ts, sq, *values, strict=True)]
    out: list[dict[str, object]] = []
    for i in range(len(ts)):
        d: dict[str, object] = {"ts": ts[i], "seq": sq[i]}
        if device is not None:
            d["device"] = device[i]
        for name, vals in zip(names, values, strict=True):
            v = vals[i]
            if v is not None:
                d[name] = v
        if r.extra is not None and r.extra[i] is not None:
            d.update(r.extra[i])
        out.append(d)
    return out


class Traffic:
    """The traffic of ``site`` (optionally with a scenario's incidents) from ``start_ms``.

    ``devices`` restricts it to some device indices (a publisher's shard); each device's
    readings are the same whatever the others, and whatever ``window_ms`` (how much data
    time is made at once). Iterate :meth:`messages` once.
    """

    def __init__(self, site: Site, *, start_ms: int, duration_s: float, seed: int = 0,
                 scenario: BoundScenario | None = None,
                 devices: npt.ArrayLike | None = None,
                 via: Literal["device", "gateway"] = "device",
                 window_ms: int = WINDOW_MS) -> None:
        self.site = site
        self.start_ms = int(start_ms)
        self.end_ms = self.start_ms + int(duration_s * 1000)
        self.via = via
        self.window_ms = window_ms
        incidents: list[BoundIncident] = scenario.incidents if scenario else []
        ctx = FleetContext(site, seed, self.start_ms, self.end_ms)
        devs = site.devices
        chosen = (np.arange(len(devs), dtype=np.int64) if devices is None
                  else np.asarray(devices, dtype=np.int64))
        self.fleets = []
        for kind, fleet_cls in FLEETS.items():
            mine = chosen[devs.kind[chosen] == list(KINDS).index(kind)]
            if mine.size:
                self.fleets.append(fleet_cls(ctx, np.sort(mine), incidents))
        self.seq = np.zeros(len(devs), dtype=np.int64)
        kinds = list(KINDS)
        self.topics = [
            f"anju/{site.buildings[b].estate}/{site.buildings[b].id}/{kinds[k]}/{d}"
            for d, k, b in zip(devs.ids, devs.kind.tolist(), devs.building.tolist(), strict=True)
        ]
        self.gateways: dict[int, str] = {}
        if via == "gateway":
            by_place = {place: gw for gw, place in sorted(site.gateways.items())}
            for b in site.buildings:
                self.gateways[b.index] = by_place.get((b.estate, b.id), f"{b.estate}-{b.id}-gw")
        self.published_readings = 0

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def windows(self) -> Iterator[list[Message]]:
        """The messages of each window of data time, in ``ts`` order."""
        t0 = self.start_ms
        while t0 < self.end_ms:
            t1 = min(t0 + self.window_ms, self.end_ms)
            yield self._window(t0, t1)
            t0 = t1

    def messages(self) -> Iterator[Message]:
        for window in self.windows():
            yield from window

    def _window(self, t0: int, t1: int) -> list[Message]:
        ts_parts: list[npt.NDArray[np.int64]] = []
        dev_parts: list[npt.NDArray[np.int64]] = []
        docs: list[dict[str, object]] = []
        for fleet in self.fleets:
            r = fleet.advance(t0, t1)
            if not len(r):
                continue
            # seq: each device's readings counted in time order.
            order = np.lexsort((r.ts, r.dev))
            r = r.take(order)
            first = np.r_[True, r.dev[1:] != r.dev[:-1]]
            run_start = np.maximum.accumulate(np.where(first, np.arange(len(r)), 0))
            seq = self.seq[r.dev] + (np.arange(len(r)) - run_start)
            np.add.at(self.seq, r.dev, 1)
            ids = [self.site.devices.ids[i] for i in r.dev.tolist()] if self.via == "gateway" \
                else None
            docs.extend(encode(r, seq, ids))
            ts_parts.append(r.ts)
            dev_parts.append(r.dev)
        if not docs:
            return []
        ts = np.concatenate(ts_parts)
        dev = np.concatenate(dev_parts)
        order = np.lexsort((dev, ts))
        self.published_readings += int(ts.size)
        if self.via == "device":
            return [Message(int(ts[i]), self.topics[int(dev[i])], orjson.dumps(docs[i]), 1)
                    for i in order.tolist()]
        return self._batches(ts, dev, docs, order)

    def _batches(self, ts: npt.NDArray[np.int64], dev: npt.NDArray[np.int64],
                 docs: list[dict[str, object]], order: npt.NDArray[np.intp]) -> list[Message]:
        """One batch per building and second of data time, on the gateway's topic."""
        bld = self.site.devices.building[dev]
        sec = ts // 1000
        out: list[Message] = []
        groups: dict[tuple[int, int], list[int]] = {}
        for i in order.tolist():
            groups.setdefault((int(sec[i]), int(bld[i])), []).append(i)
        for (_, b), rows in groups.items():
            building = self.site.buildings[b]
            topic = f"anju/{building.estate}/{building.id}/batch/{self.gateways[b]}"
            payload = orjson.dumps([docs[i] for i in rows])
            out.append(Message(int(ts[rows[-1]]), topic, payload, len(rows)))
        out.sort(key=lambda m: m.ts)
        return out


def record(traffic: Traffic, out: IO[bytes] | Path) -> tuple[int, int]:
    """Writes the traffic as a replay (CONTRACT §7: ``{"topic": …, "payload": …}`` lines).

    Returns (messages, readings).
    """
    traffic.window_ms = max(traffic.window_ms, RECORD_WINDOW_MS)
    if isinstance(out, Path):
        with out.open("wb") as fh:
            return record(traffic, fh)
    n = readings = 0
    heads: dict[str, bytes] = {}
    for window in traffic.windows():
        parts = []
        for m in window:
            head = heads.get(m.topic)
            if head is None:
                head = heads[m.topic] = b'{"topic":' + orjson.dumps(m.topic) + b',"payload":'
            parts.append(head + m.payload + b"}\n")
        out.write(b"".join(parts))
        n += len(window)
        readings += sum(m.readings for m in window)
    return n, readings
