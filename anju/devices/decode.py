"""Strict decoding of MQTT messages (CONTRACT.md §1–§2) into columnar batches.

The hot path is hand-written type checks on the dicts orjson gives (about a microsecond
a reading, see docs/devices.md); :mod:`anju.devices.schema` holds the equivalent strict
pydantic models, and a property test (tests/test_decode_schema.py) proves both accept
and reject exactly the same readings, for the same reason. Every rejection has a
``reason`` (one of :data:`REASONS`, a metric label) and is handed to ``on_reject``
(the dead-letter file).

Order of judgement for a reading, first failure wins: routing (device, place, kind),
``ts``, ``seq``, then the fields in the reading's order (unknown field, type, value),
then missing required fields, then the kind's own cross-field check.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from anju.devices.batch import BatchBuilder
from anju.devices.registry import ID_RE, Site
from anju.devices.spec import (
    COMMON_FIELDS,
    EXACT_INT,
    MAX_TS_AHEAD_MS,
    MAX_TS_MS,
    MIN_TS_MS,
    KindSpec,
    as_parsed,
)
from anju.errors import PayloadError
from anju.kinds import KINDS

__all__ = [
    "MAX_PAYLOAD",
    "MAX_TS_AHEAD_MS",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "REASONS",
    "Decoder",
    "Rejection",
    "Topic",
    "parse_payload",
    "parse_topic",
]

MAX_PAYLOAD = 256 * 1024  # CONTRACT §1: "at most 256 KiB"

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
        return "NaN"


_NONFINITE = _NonFinite()


def _lenient_float(text: str) -> float | _NonFinite:
    v = float(text)
    return v if math.isfinite(v) else _NONFINITE


def _lenient_int(text: str) -> Any:
    # The same reading of an integer literal as orjson's (see spec.as_parsed).
    v = as_parsed(int(text))
    return _NONFINITE if type(v) is float and not math.isfinite(v) else v


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether a string of ``obj`` holds an unpaired surrogate escape (``"\\ud800"``)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        t = type(o)
        if t is str:
            try:
                o.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif t is list:
            stack.extend(o)
        elif t is dict:
            stack.extend(o)
            stack.extend(o.values())
    return False


def parse_payload(payload: bytes) -> Any:
    """The payload's JSON value, with non-finite numbers replaced by a sentinel.

    orjson is strict and fast; when it refuses, the stdlib parser (told to read numbers
    exactly as orjson does) tells whether the fault is a NaN / Infinity / overflowing
    literal in one reading, so that the other readings of an array are kept, or the
    message as a whole. The stdlib parser accepts unpaired surrogate escapes, which
    orjson (and RFC 8259 §8.2's interoperable strings) refuse: so do we.
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
        value = json.loads(text, parse_constant=lambda _c: _NONFINITE,
                           parse_float=_lenient_float, parse_int=_lenient_int)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("invalid_json", str(exc)[:200]) from None
    if _has_lone_surrogate(value):
        raise PayloadError("invalid_json", "unpaired UTF-16 surrogate escape in a string")
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic; ``kind`` is None for a gateway's batch topic."""

    estate: str
    building: str
    kind: str | None  # None for a gateway batch topic
    device: str  # device id, or gateway id for a batch


def parse_topic(topic: str) -> Topic:
    """Parses ``anju/{estate}/{building}/{kind}/{device}`` or ``…/batch/{gateway}``."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "anju":
        raise PayloadError("bad_topic",
                           f"{topic[:200]!r}: expected anju/estate/building/kind/device")
    _, estate, building, kind, device = parts
    for what, value in (("estate", estate), ("building", building), ("device", device)):
        if not ID_RE.fullmatch(value):
            raise PayloadError("bad_topic",
                               f"{what} {value[:80]!r} is not [A-Za-z0-9_-]{{1,64}}")
    if kind == "batch":
        return Topic(estate, building, None, device)
    if kind not in KINDS:
        raise PayloadError("bad_topic", f"unknown kind {kind[:40]!r}")
    return Topic(estate, building, kind, device)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected message or reading, as kept in the dead-letter file.

    ``payload`` is the whole message for a single reading, the offending reading
    re-encoded for one item of an array.
    """

    topic: str
    reason: str
    detail: str
    payload: bytes
    received_ms: int
    device: str | None = None
    field: str | None = None


# Field types as interned tokens: the hot loop compares them by identity.
_FLOAT, _BOOL, _INT, _ENUM, _TRACK = "float", "bool", "int", "enum", "track"
_TYPE_TOKEN = {"float": _FLOAT, "bool": _BOOL, "int": _INT, "enum": _ENUM, "track": _TRACK}
_NAN = math.nan


class _KindCheck:
    """Precomputed per-kind lookups for the hot path."""

    __slots__ = ("check", "choices", "fields", "name", "required", "required_set", "spec",
                 "width")

    def __init__(self, spec: KindSpec) -> None:
        self.spec = spec
        self.name = spec.name
        pos = {f.name: i for i, f in enumerate(spec.columns)}
        self.width = len(pos)
        self.fields = {f.name: (_TYPE_TOKEN[f.type], pos.get(f.name, -1)) for f in spec.fields}
        self.choices = {f.name: {c: float(i) for i, c in enumerate(f.choices)}
                        for f in spec.fields if f.type == "enum"}
        self.required = tuple(f.name for f in spec.fields if f.required)
        self.required_set = frozenset(self.required)
        self.check = spec.check


def _wrong(key: str, v: Any, want: str, reason: str = "wrong_type") -> PayloadError:
    """A type error: ``not_finite`` when the value is a non-finite number."""
    if v is _NONFINITE:
        return PayloadError("not_finite", f"{key} is NaN, Infinity or overflows", field=key)
    return PayloadError(reason, f"{key} must be {want}, got {_json_type(v)}", field=key)


def _json_type(v: Any) -> str:
    t = type(v)
    if t is bool:
        return "a boolean"
    if t is int or t is float:
        return "a number"
    if t is str:
        return "a string"
    if t is list:
        return "an array"
    if t is dict:
        return "an object"
    return "null" if v is None else t.__name__


def _check_track(value: Any) -> list[list[float]]:
    """``[[t_ms, x_px, y_px], ...]``: every point's types first, then the time order
    (the same order in which the pydantic model reports)."""
    if type(value) is not list:
        raise _wrong("track", value, "a list of [t_ms, x_px, y_px]", "bad_track")
    out = []
    for p in value:
        if type(p) is not list or len(p) != 3:
            raise _wrong("track", p, "[t_ms, x_px, y_px] points", "bad_track")
        t, x, y = p
        if type(t) is not int:
            raise _wrong("track", t, "integer ms", "bad_track")
        if not 0 <= t < EXACT_INT:
            raise PayloadError("bad_track", f"track time {t} out of range", field="track")
        for c in (x, y):
            tc = type(c)
            if tc is not float and tc is not int:
                raise _wrong("track", c, "numbers", "bad_track")
        out.append([float(t), float(x), float(y)])
    last = -1.0
    for p in out:
        if p[0] <= last:
            raise PayloadError("bad_track", "track times must increase", field="track")
        last = p[0]
    return out


class _Route:
    """What a topic says, resolved once against the registry and cached."""

    __slots__ = ("error", "index", "kc", "topic")

    def __init__(self, topic: Topic, index: int, kc: _KindCheck | None,
                 error: tuple[str, str] | None) -> None:
        self.topic = topic
        self.index = index  # the device's registry index (device topics; -1 for a batch)
        self.kc = kc  # the device's kind (device topics)
        self.error = error  # (reason, detail) every reading on this topic is rejected with


_ROUTE_CACHE_MAX = 1 << 18  # topics remembered; cleared when full (bad topics never are)


class Decoder:
    """Decodes messages into a :class:`BatchBuilder`, judging each reading on its own.

    ``now_ms`` is the receiving clock; in replay pass ``None`` and the clock is the
    newest accepted reading (CONTRACT §2). ``estates`` restricts to a partition.
    Not thread-safe: one decoder per consumer.
    """

    def __init__(self, site: Site, *, on_reject: Callable[[Rejection], None] | None = None,
                 estates: set[str] | None = None, columnar: bool = True) -> None:
        self.site = site
        # Gateway batches first try the columnar path (anju.devices.columnar), which takes
        # a message only when all its readings are valid; ``columnar=False`` keeps every
        # message on the reference path below (the oracle of tests/test_decode_columnar.py).
        # Imported here: columnar builds on this module's neighbours, not the reverse.
        from anju.devices.columnar import columnar_decoder

        self._columnar = columnar_decoder(site) if columnar else None
        self._index = site.devices.index
        names = list(KINDS)
        self._checks = {name: _KindCheck(spec) for name, spec in KINDS.items()}
        self._dev_check = [self._checks[names[k]] for k in site.devices.kind.tolist()]
        bld = site.buildings
        self._dev_place = [(bld[b].estate, bld[b].id) for b in site.devices.building.tolist()]
        self._estates = estates
        self._routes: dict[str, _Route] = {}
        self.on_reject = on_reject
        self.messages = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.newest_ts = 0
        # gateway id → receiving clock of its newest batch: the alarm stage's gateway watch
        # (gateway.offline, and which device.offline alarms a silent gateway explains)
        self.gateway_seen: dict[str, int] = {}

    # -- public -----------------------------------------------------------------------
    def decode_many(self, messages: Sequence[tuple[str, bytes]], builder: BatchBuilder,
                    now_ms: int, received_ms: int | None = None) -> int:
        """Decodes messages received together (live: one receiving clock), in order;
        returns how many readings they contributed. The same as :meth:`decode` on each,
        but gateway batches are judged together on the columnar path, whose fixed cost
        (numpy calls) is then paid once for all of them."""
        columnar = self._columnar
        if columnar is None:
            return sum(self.decode(t, p, builder, now_ms, received_ms) for t, p in messages)
        added = 0
        group: list[tuple[str, str, list[Any]]] = []
        held: list[tuple[str, bytes, _Route]] = []

        def reference(i: int) -> None:
            nonlocal added
            topic, payload, _ = held[i]
            added += self.decode(topic, payload, builder, now_ms, received_ms, columnar=False)

        def flush() -> None:
            nonlocal added
            if not group:
                return
            verdicts = columnar.take(group, builder, now_ms, self.newest_ts, reference)
            for (_, _, route), verdict in zip(held, verdicts, strict=True):
                if verdict is not None:
                    self.messages += 1
                    builder.messages += 1
                    added += self._columnar_done(route.topic, *verdict, now_ms)
            group.clear()
            held.clear()

        for topic, payload in messages:
            route = self._routes.get(topic)
            if route is None:
                try:
                    route = self._route(topic)
                except PayloadError:
                    route = None  # decode() rejects it
            items = None
            if route is not None and route.topic.kind is None and len(payload) <= MAX_PAYLOAD:
                items = columnar.parse(payload)
            if route is None or items is None:  # not a valid batch as a whole
                flush()
                added += self.decode(topic, payload, builder, now_ms, received_ms,
                                     columnar=False)
            else:
                group.append((route.topic.estate, route.topic.building, items))
                held.append((topic, payload, route))
        flush()
        return added

    def decode(self, topic: str, payload: bytes, builder: BatchBuilder,
               now_ms: int | None = None, received_ms: int | None = None, *,
               columnar: bool = True) -> int:
        """Decodes one message; returns how many readings it contributed.

        ``received_ms`` (for dead letters) defaults to ``now_ms``. An empty array is a
        message of no readings, not a rejection. ``columnar=False``: the reference path
        only (a gateway batch already refused by the columnar path).
        """
        self.messages += 1
        builder.messages += 1
        try:
            route = self._routes.get(topic)
            if route is None:
                route = self._route(topic)
            if (columnar and route.topic.kind is None and self._columnar is not None
                    and len(payload) <= MAX_PAYLOAD
                    and (items := self._columnar.parse(payload)) is not None):
                t = route.topic
                took = self._columnar.take([(t.estate, t.building, items)], builder, now_ms,
                                           self.newest_ts, _nothing)[0]
                if took is not None:  # every reading valid; else judged one by one below
                    return self._columnar_done(t, *took, now_ms)
            value = parse_payload(payload)
        except PayloadError as exc:
            self._reject(topic, exc, payload, _rcv(received_ms, now_ms))
            return 0
        t = route.topic
        if t.kind is None and now_ms is not None:
            self.gateway_seen[t.device] = now_ms
        if type(value) is list:
            items = value
        elif t.kind is None:
            self._reject(topic, PayloadError("not_a_reading", "a batch is a JSON array"),
                         payload, _rcv(received_ms, now_ms), t.device)
            return 0
        else:
            items = [value]
        added = 0
        for reading in items:
            try:
                self._one(route, reading, builder, now_ms)
                added += 1
            except PayloadError as exc:
                if t.kind is not None:
                    device = t.device
                elif type(reading) is dict and type(reading.get("device")) is str:
                    device = reading["device"]
                else:
                    device = None
                self._reject(topic, exc, payload if len(items) == 1 else _encode_item(reading),
                             _rcv(received_ms, now_ms), device)
        self.accepted += added
        return added

    def reject_message(self, topic: str, reason: str, detail: str, payload: bytes,
                       received_ms: int = 0) -> None:
        """Counts a message refused before decoding (e.g. by the replay reader)."""
        self.messages += 1
        self._reject(topic, PayloadError(reason, detail), payload, received_ms)

    # -- internals --------------------------------------------------------------------
    def _columnar_done(self, t: Topic, added: int, newest: int, now_ms: int | None) -> int:
        """The bookkeeping of :meth:`decode` for a batch the columnar path took whole."""
        if now_ms is not None:
            self.gateway_seen[t.device] = now_ms
        if newest > self.newest_ts:
            self.newest_ts = newest
        self.accepted += added
        return added

    def _route(self, topic: str) -> _Route:
        t = parse_topic(topic)
        if self._estates is not None and t.estate not in self._estates:
            raise PayloadError("wrong_place", f"estate {t.estate!r} is not in this partition")
        if t.kind is None:
            route = _Route(t, -1, None, None)
        else:
            i = self._index.get(t.device, -1)
            kc = self._dev_check[i] if i >= 0 else None
            error = None
            if kc is None:
                error = ("unknown_device", f"{t.device!r} is not registered")
            elif self._dev_place[i] != (t.estate, t.building):
                error = ("wrong_place", f"{t.device!r} is registered in "
                         f"{'/'.join(self._dev_place[i])}")
            elif kc.name != t.kind:
                error = ("kind_mismatch", f"{t.device!r} is a {kc.name}, not a {t.kind}")
            route = _Route(t, i, kc, error)
        if len(self._routes) >= _ROUTE_CACHE_MAX:
            self._routes.clear()
        self._routes[topic] = route
        return route

    def _reject(self, topic: str, exc: PayloadError, payload: bytes, received_ms: int,
                device: str | None = None) -> None:
        self.rejected[exc.reason] += 1
        if self.on_reject is not None:
            self.on_reject(Rejection(topic, exc.reason, exc.detail, payload, received_ms,
                                     device, exc.field))

    def _one(self, route: _Route, reading: Any, builder: BatchBuilder,
             now_ms: int | None) -> None:
        if type(reading) is not dict:
            raise PayloadError("not_a_reading", f"a reading is a JSON object, not "
                               f"{_json_type(reading)}")
        # -- routing: who speaks, and may it speak here (CONTRACT §1) -----------------
        t = route.topic
        if t.kind is None:
            if "device" not in reading:
                raise PayloadError("missing_device", "batch items name their device",
                                   field="device")
            dev_id = reading["device"]
            if type(dev_id) is not str:
                raise _wrong("device", dev_id, "a string")
            i = self._index.get(dev_id, -1)
            if i < 0:
                raise PayloadError("unknown_device", f"{dev_id[:80]!r} is not registered",
                                   field="device")
            if self._dev_place[i] != (t.estate, t.building):
                raise PayloadError("wrong_place", f"{dev_id!r} is registered in "
                                   f"{'/'.join(self._dev_place[i])}", field="device")
            kc = self._dev_check[i]
        else:
            if "device" in reading:
                named = reading["device"]
                if type(named) is not str:
                    raise _wrong("device", named, "a string")
                if named != t.device:
                    raise PayloadError("wrong_place", f"reading names device {named[:80]!r} "
                                       f"on the topic of {t.device!r}", field="device")
            if route.error is not None:
                reason, detail = route.error
                raise PayloadError(reason, detail,
                                   field=None if reason == "kind_mismatch" else "device")
            i = route.index
            kc = route.kc  # type: ignore[assignment]  # set on every error-free device route
        kind = kc.name
        if "kind" in reading:
            rk = reading["kind"]
            if type(rk) is not str:
                raise _wrong("kind", rk, "a string")
            if rk != kind:
                raise PayloadError("kind_mismatch", f"{t.device!r} is a {kind}, not "
                                   f"{rk[:40]!r}", field="kind")

        # -- ts and seq ------------------------------------------------------------------
        if "ts" not in reading:
            raise PayloadError("missing_ts", "ts is required", field="ts")
        ts = reading["ts"]
        if type(ts) is not int:
            raise _wrong("ts", ts, "integer milliseconds")
        clock = now_ms if now_ms is not None else self.newest_ts
        limit = min(clock + MAX_TS_AHEAD_MS, MAX_TS_MS) if clock else MAX_TS_MS
        if ts < MIN_TS_MS or ts > limit:
            raise PayloadError("ts_out_of_range",
                               f"ts {ts} before 2000-01-01 or more than 10 min ahead "
                               f"of {clock or 'the year 2100'}", field="ts")
        seq = -1
        if "seq" in reading:
            seq = reading["seq"]
            if type(seq) is not int:
                raise _wrong("seq", seq, "an integer")
            if seq < 0:
                raise PayloadError("bad_value", f"seq {seq} is negative", field="seq")
            if seq >= EXACT_INT:
                raise PayloadError("not_finite", f"seq {seq} overflows", field="seq")

        # -- the kind's fields ---------------------------------------------------------------
        row = [_NAN] * kc.width
        extra: dict[str, Any] | None = None
        fields = kc.fields
        for key, v in reading.items():
            f = fields.get(key)
            if f is None:
                if key in COMMON_FIELDS:
                    continue
                raise PayloadError("unknown_field", f"{key[:64]!r} is not a {kind} field",
                                   field=key[:64])
            ftype, pos = f
            tv = type(v)
            if ftype is _FLOAT:
                # orjson never yields a non-finite float nor an int float() cannot hold
                if tv is float or tv is int:
                    row[pos] = v
                else:
                    raise _wrong(key, v, "a number")
            elif ftype is _BOOL:
                if tv is bool:
                    row[pos] = 1.0 if v else 0.0
                elif tv is int or tv is float:
                    raise PayloadError("not_boolean", f"{key} is true or false, not {v}",
                                       field=key)
                else:
                    raise _wrong(key, v, "true or false")
            elif ftype is _INT:
                if tv is not int:
                    raise _wrong(key, v, "an integer")
                if not -EXACT_INT < v < EXACT_INT:
                    raise PayloadError("not_finite", f"{key} {v} overflows", field=key)
                row[pos] = v
            elif ftype is _ENUM:
                if tv is not str:
                    raise _wrong(key, v, "a string")
                code = kc.choices[key].get(v)
                if code is None:
                    raise PayloadError("bad_value", f"{key} {v[:40]!r} not in "
                                       f"{tuple(kc.choices[key])}", field=key)
                row[pos] = code
            else:  # track
                extra = {key: _check_track(v)}
        if not kc.required_set <= reading.keys():  # one set operation in C
            name = next(n for n in kc.required if n not in reading)
            raise PayloadError("missing_field", f"{name} is required for {kind}", field=name)
        if kc.check is not None:
            kc.check(reading)
        rows = builder.rows(kind)
        if extra is not None:
            rows.extra_rows.append(len(rows.ts))
            rows.extras.append(extra)
        rows.device.append(i)
        rows.ts.append(ts)
        rows.seq.append(seq)
        rows.values.extend(row)
        builder.readings += 1
        if ts > self.newest_ts:
            self.newest_ts = ts


def _nothing(_i: int) -> None:
    """A message the columnar path refused: :meth:`Decoder.decode` goes on with it."""


def _rcv(received_ms: int | None, now_ms: int | None) -> int:
    return received_ms if received_ms is not None else (now_ms or 0)


def _encode_item(reading: Any) -> bytes:
    """One item of an array, re-encoded for its dead letter; never raises."""
    try:
        return orjson.dumps(reading, default=repr)
    except TypeError:  # orjson.JSONEncodeError: nested deeper than orjson writes
        pass
    try:
        return json.dumps(reading, default=repr, ensure_ascii=True).encode()
    except (ValueError, RecursionError):
        return repr(reading)[:2048].encode("utf-8", "replace")
