"""Strict decoding of MQTT messages (CONTRACT.md §1–§2) into columnar batches.

The hot path is hand-written type checks on the dicts orjson gives (about 1 µs a
reading); :mod:`anju.devices.schema` holds the equivalent strict pydantic models, and a
property test proves both accept and reject exactly the same readings. Every rejection
has a ``reason`` (a metric label) and is handed to ``on_reject`` for the dead-letter file.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from anju.devices.batch import BatchBuilder
from anju.devices.kinds import KINDS
from anju.devices.registry import ID_RE, Site
from anju.devices.spec import KindSpec
from anju.errors import PayloadError

__all__ = [
    "MAX_PAYLOAD",
    "MAX_TS_AHEAD_MS",
    "MIN_TS_MS",
    "REASONS",
    "Decoder",
    "Rejection",
    "parse_payload",
    "parse_topic",
]

MAX_PAYLOAD = 256 * 1024
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_AHEAD_MS = 10 * 60 * 1000
_INT_LIMIT = 2**53  # ints travel as float64 columns: keep them exact

#: Every reason a message or reading can be rejected for; metric labels.
REASONS = (
    "too_large", "invalid_utf8", "invalid_json", "bad_topic", "not_a_reading",
    "unknown_device", "wrong_place", "kind_mismatch", "missing_device",
    "unknown_field", "missing_field", "wrong_type", "not_boolean", "not_finite",
    "bad_value", "missing_ts", "ts_out_of_range", "bad_track",
)


class _NonFinite:
    """Stands for a NaN / Infinity / overflowing literal found by the lenient parser."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<non-finite>"


_NONFINITE = _NonFinite()


def _lenient_float(text: str) -> float | _NonFinite:
    v = float(text)
    return v if math.isfinite(v) else _NONFINITE


def parse_payload(payload: bytes) -> Any:
    """The payload's JSON value, with non-finite numbers replaced by a sentinel.

    orjson is strict and fast; when it refuses, the stdlib parser tells whether the
    fault is a NaN/Infinity/overflow in one reading (so the others of an array are kept)
    or the message as a whole.
    """
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_utf8", f"byte {exc.start}: {exc.reason}") from None
    try:
        return json.loads(text, parse_constant=lambda _c: _NONFINITE, parse_float=_lenient_float)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("invalid_json", str(exc)[:200]) from None


@dataclass(frozen=True, slots=True)
class Topic:
    estate: str
    building: str
    kind: str | None  # None for a gateway batch topic
    device: str  # device id, or gateway id for a batch


def parse_topic(topic: str) -> Topic:
    """Parses ``anju/{estate}/{building}/{kind}/{device}`` or ``…/batch/{gateway}``."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "anju":
        raise PayloadError("bad_topic", f"{topic[:200]!r}: expected anju/estate/building/kind/device")
    _, estate, building, kind, device = parts
    for what, value in (("estate", estate), ("building", building), ("device", device)):
        if not ID_RE.fullmatch(value):
            raise PayloadError("bad_topic", f"{what} {value[:80]!r} is not [A-Za-z0-9_-]{{1,64}}")
    if kind == "batch":
        return Topic(estate, building, None, device)
    if kind not in KINDS:
        raise PayloadError("bad_topic", f"unknown kind {kind[:40]!r}")
    return Topic(estate, building, kind, device)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected message or reading, as kept in the dead-letter file."""

    topic: str
    reason: str
    detail: str
    payload: bytes
    received_ms: int
    device: str | None = None
    field: str | None = None


class _KindCheck:
    """Precomputed per-kind lookups for the hot path."""

    __slots__ = ("check", "choices", "fields", "name", "pos", "required", "spec")

    def __init__(self, spec: KindSpec) -> None:
        self.spec = spec
        self.name = spec.name
        pos = {f.name: i for i, f in enumerate(spec.columns)}
        self.fields = {f.name: (f.type, pos.get(f.name, -1)) for f in spec.fields}
        self.choices = {f.name: {c: float(i) for i, c in enumerate(f.choices)}
                        for f in spec.fields if f.type == "enum"}
        self.required = tuple(f.name for f in spec.fields if f.required)
        self.check = spec.check


def _check_track(value: Any) -> list[list[float]]:
    if type(value) is not list:
        raise PayloadError("bad_track", "track must be a list of [t_ms, x_px, y_px]", field="track")
    out = []
    last_t = -1
    for p in value:
        if type(p) is not list or len(p) != 3:
            raise PayloadError("bad_track", "each track point is [t_ms, x_px, y_px]", field="track")
        t, x, y = p
        if type(t) is not int or t < 0 or t <= last_t:
            raise PayloadError("bad_track", "track times are increasing integers ≥ 0",
                               field="track")
        for c in (x, y):
            tc = type(c)
            if tc is _NonFinite:
                raise PayloadError("not_finite", "track coordinate", field="track")
            if tc is not float and tc is not int:
                raise PayloadError("bad_track", "track coordinates are numbers", field="track")
        last_t = t
        out.append([float(t), float(x), float(y)])
    return out


class Decoder:
    """Decodes messages into a :class:`BatchBuilder`, judging each reading on its own.

    ``now_ms`` is the receiving clock; in replay pass ``None`` and the clock is the
    newest accepted reading (CONTRACT §2).
    """

    def __init__(self, site: Site, *, on_reject: Callable[[Rejection], None] | None = None,
                 estates: set[str] | None = None) -> None:
        self.site = site
        self._index = site.devices.index
        self._dev_kind = [list(KINDS)[k] for k in site.devices.kind.tolist()]
        self._dev_estate = [site.buildings[b].estate for b in site.devices.building.tolist()]
        self._dev_building = [site.buildings[b].id for b in site.devices.building.tolist()]
        self._checks = {name: _KindCheck(spec) for name, spec in KINDS.items()}
        self._estates = estates
        self.on_reject = on_reject
        self.messages = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.newest_ts = 0

    # -- public -----------------------------------------------------------------------
    def decode(self, topic: str, payload: bytes, builder: BatchBuilder,
               now_ms: int | None = None, received_ms: int = 0) -> int:
        """Decodes one message; returns how many readings it contributed."""
        self.messages += 1
        builder.messages += 1
        try:
            t = parse_topic(topic)
            if self._estates is not None and t.estate not in self._estates:
                raise PayloadError("wrong_place", f"estate {t.estate!r} is not in this partition")
            value = parse_payload(payload)
        except PayloadError as exc:
            self._reject(topic, exc, payload, received_ms)
            return 0
        if t.kind is None:
            if type(value) is not list:
                self._reject(topic, PayloadError("not_a_reading", "a batch is a JSON array"),
                             payload, received_ms)
                return 0
            items = value
        elif type(value) is list:
            items = value
        else:
            items = [value]
        if not items:
            return 0
        added = 0
        for reading in items:
            try:
                self._one(t, reading, builder, now_ms)
                added += 1
            except PayloadError as exc:
                self._reject(topic, exc, orjson.dumps(reading, default=repr) if len(items) > 1
                             else payload, received_ms,
                             device=reading.get("device") if type(reading) is dict else None)
        self.accepted += added
        return added

    def reject_message(self, topic: str, reason: str, detail: str, payload: bytes,
                       received_ms: int = 0) -> None:
        """Counts a message refused before decoding (e.g. by the replay reader)."""
        self.messages += 1
        self._reject(topic, PayloadError(reason, detail), payload, received_ms)

    # -- internals --------------------------------------------------------------------
    def _reject(self, topic: str, exc: PayloadError, payload: bytes, received_ms: int,
                device: Any = None) -> None:
        self.rejected[exc.reason] += 1
        if self.on_reject is not None:
            self.on_reject(Rejection(topic, exc.reason, exc.detail, payload, received_ms,
                                     device if isinstance(device, str) else None, exc.field))

    def _one(self, t: Topic, reading: Any, builder: BatchBuilder, now_ms: int | None) -> None:
        if type(reading) is not dict:
            raise PayloadError("not_a_reading", "a reading is a JSON object")
        dev_id = t.device
        if t.kind is None:
            dev_id = reading.get("device")
            if dev_id is None:
                raise PayloadError("missing_device", "batch items name their device",
                                   field="device")
            if type(dev_id) is not str:
                raise PayloadError("wrong_type", "device is a string", field="device")
        elif "device" in reading and reading["device"] != dev_id:
            raise PayloadError("wrong_place", f"reading names device {reading['device']!r} "
                               f"on the topic of {dev_id!r}", field="device")
        i = self._index.get(dev_id)
        if i is None:
            raise PayloadError("unknown_device", f"{str(dev_id)[:80]!r} is not registered",
                               field="device")
        kind = self._dev_kind[i]
        if self._dev_estate[i] != t.estate or self._dev_building[i] != t.building:
            raise PayloadError("wrong_place", f"{dev_id!r} is registered in "
                               f"{self._dev_estate[i]}/{self._dev_building[i]}")
        if t.kind is not None and t.kind != kind:
            raise PayloadError("kind_mismatch", f"{dev_id!r} is a {kind}, not a {t.kind}")
        rk = reading.get("kind")
        if rk is not None and rk != kind:
            raise PayloadError("kind_mismatch", f"{dev_id!r} is a {kind}, not {rk!r}",
                               field="kind")

        ts = reading.get("ts")
        if ts is None:
            raise PayloadError("missing_ts", "ts is required", field="ts")
        if type(ts) is not int:
            raise PayloadError("not_finite" if ts is _NONFINITE else "wrong_type",
                               "ts is integer milliseconds", field="ts")
        clock = now_ms if now_ms is not None else self.newest_ts
        if ts < MIN_TS_MS or (clock and ts > clock + MAX_TS_AHEAD_MS):
            raise PayloadError("ts_out_of_range", f"ts {ts} before 2000 or > 10 min ahead",
                               field="ts")
        seq = reading.get("seq", -1)
        if seq != -1 or "seq" in reading:
            if type(seq) is not int or seq < 0 or seq >= 2**63:
                raise PayloadError("bad_value", "seq is an integer ≥ 0", field="seq")

        kc = self._checks[kind]
        row, _ = builder.new_row(kind)
        extra: dict[str, Any] | None = None
        fields = kc.fields
        for key, v in reading.items():
            f = fields.get(key)
            if f is None:
                if key in ("ts", "seq", "device", "kind"):
                    continue
                raise PayloadError("unknown_field", f"{key[:64]!r} is not a {kind} field",
                                   field=key[:64])
            ftype, pos = f
            tv = type(v)
            if ftype == "float":
                if tv is float:
                    row[pos] = v  # orjson never yields a non-finite float
                elif tv is int and -_INT_LIMIT < v < _INT_LIMIT:
                    row[pos] = float(v)
                else:
                    raise _type_error(key, v, "a number")
            elif ftype == "bool":
                if tv is bool:
                    row[pos] = 1.0 if v else 0.0
                elif tv is int:
                    raise PayloadError("not_boolean", f"{key} is true/false, not {v}", field=key)
                else:
                    raise _type_error(key, v, "true or false")
            elif ftype == "int":
                if tv is int and -_INT_LIMIT < v < _INT_LIMIT:
                    row[pos] = float(v)
                else:
                    raise _type_error(key, v, "an integer")
            elif ftype == "enum":
                code = kc.choices[key].get(v) if tv is str else None
                if code is None:
                    if tv is not str:
                        raise _type_error(key, v, "a string")
                    raise PayloadError("bad_value", f"{key} {v[:40]!r} not in "
                                       f"{tuple(kc.choices[key])}", field=key)
                row[pos] = code
            else:  # track
                extra = {key: _check_track(v)}
        for name in kc.required:
            if name not in reading:
                raise PayloadError("missing_field", f"{name} is required for {kind}", field=name)
        if kc.check is not None:
            kc.check(reading)
        builder.add(kind, i, ts, seq, row, extra)
        if ts > self.newest_ts:
            self.newest_ts = ts


def _type_error(key: str, v: Any, want: str) -> PayloadError:
    if v is _NONFINITE:
        return PayloadError("not_finite", f"{key} is NaN, Infinity or overflows", field=key)
    if isinstance(v, int) and not isinstance(v, bool) and want != "a string":
        return PayloadError("not_finite", f"{key} {v} overflows", field=key)
    return PayloadError("wrong_type", f"{key} must be {want}, got {type(v).__name__}", field=key)
