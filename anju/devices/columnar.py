"""Gateway batches decoded straight into columns, judged by the strict decoder (issue 15).

A gateway's batch (``anju/{estate}/{building}/batch/{gateway}``, CONTRACT §1) carries
readings of many devices and kinds. The reference path (:meth:`Decoder._one
<anju.devices.decode.Decoder>`) walks each reading's dict in Python, ~3 µs a reading;
here msgspec parses the whole payload in C into one typed struct per reading — the union
of every kind's fields, each with its exact type and range, unknown fields refused — and
the rest (registry, place, kind, ``ts`` against the clock, which fields belong to which
kind, required fields) is a handful of numpy operations over a whole take of messages.

**Exactness by construction.** This path accepts a message only when *every* reading in it
would be accepted by the reference path, and then adds exactly the rows the reference path
would. The moment anything is off — a parse or type error, an unknown device, a field of
another kind, a ``ts`` ahead of the clock, a bad track — it gives up on that message
(:meth:`ColumnarDecoder.take` reports ``None`` for it) and the reference path decodes the
message from its bytes again, at its place in the order: it finds the reasons,
keeps the good readings and writes the dead letters. So rejection reasons and dead letters
are the reference decoder's own; tests/test_decode_columnar.py checks with hypothesis that
both give the same rows, rejections and counters on random valid and broken batches.

**Why msgspec and not orjson + numpy.** The two candidates, prototyped on 1 000 messages
of 100 mixed readings (CPU time, best of 8 interleaved rounds, the shared 2-core box):

================================================================  ============
candidate (parse + pull values into float64 columns)              µs a reading
================================================================  ============
orjson.loads alone / msgspec typed decode alone                   0.48 / 0.44
orjson → dicts, grouped by key order, a type set per column,
``np.fromiter`` (and still missing range, kind and track checks)  1.92
msgspec union struct → ``np.fromiter`` of every numeric field      1.51
================================================================  ============

msgspec checks types and ranges while it parses, in C; orjson hands back dicts whose
every value must then be type-checked from Python. So msgspec. What it became, against
the reference path (``Decoder(site, columnar=False)``), same method, load 9–15:

===========================================  =========  ================  ===============
traffic                                      reference  columnar, alone   in takes of 16
===========================================  =========  ================  ===============
smoke, elevator, water (``bench ingest``)    3.27–3.60  2.91–2.96         **1.87–2.05**
the four kinds (a quarter cameras)           4.32–4.58  4.01–4.13         **3.08–3.30**
===========================================  =========  ================  ===============

(µs a reading, ``build()`` included.) A take (:meth:`Decoder.decode_many
<anju.devices.decode.Decoder>`, what the batcher sends) pays the numpy calls once for all
its messages; alone, a 100-reading message pays them itself. Cameras cost more because
their cross-field check and tracks are Python, reading by reading, as in the reference
path. What is left is mostly msgspec's parse (~0.45) and pulling each kind's own values
out of the structs (``np.fromiter``).

Kinds may share a field name (``occupied``, ``door_open``, ``event``) when they give it
one type; should two kinds ever type one name differently, :func:`columnar_decoder`
returns ``None`` and every batch takes the reference path (still correct, only slower).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from operator import attrgetter, is_, itemgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec.structs import astuple

from anju.devices.batch import BatchBuilder
from anju.devices.registry import Site
from anju.devices.spec import (
    EXACT_INT,
    MAX_TS_AHEAD_MS,
    MAX_TS_MS,
    MIN_TS_MS,
    FieldSpec,
    KindSpec,
)
from anju.errors import PayloadError
from anju.kinds import KINDS

__all__ = ["ColumnarDecoder", "columnar_decoder"]


class _Absent:
    """Default of a non-numeric field the reading does not carry (never valid JSON)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()
_NAN = math.nan
# The reference path's ranges (decode.Decoder._one), as msgspec constraints: a value
# outside them is a validation error, hence the reference path.
_Ts = Annotated[int, msgspec.Meta(ge=MIN_TS_MS, le=MAX_TS_MS)]
_Seq = Annotated[int, msgspec.Meta(ge=0, lt=EXACT_INT)]
_Int = Annotated[int, msgspec.Meta(gt=-EXACT_INT, lt=EXACT_INT)]
_TrackTime = Annotated[int, msgspec.Meta(ge=0, lt=EXACT_INT)]


def _field_type(f: FieldSpec) -> Any:
    """msgspec's type for a field: strict (``true`` is not a number, ``1`` not a boolean,
    ``3.0`` not an integer, ``null`` nothing) as the reference path is."""
    if f.type == "float":
        return float  # accepts JSON integers, as the reference path does
    if f.type == "bool":
        return bool
    if f.type == "int":
        return _Int
    if f.type == "enum":
        return Literal[f.choices]
    return list[tuple[_TrackTime, float, float]]


class ColumnarDecoder:
    """The fast path for gateway batches; one per :class:`~anju.devices.decode.Decoder`.

    A message of 100 readings costs a few dozen numpy calls whatever it holds, so the
    checks are arranged to be few calls over the whole message, not one per kind or field.
    """

    def __init__(self, site: Site, fields: dict[str, FieldSpec]) -> None:
        self._index = site.devices.index
        # one row past the last device stands for an unregistered one: in no building
        self._unknown = len(site.devices.kind)
        self._dev_kind = np.append(np.asarray(site.devices.kind, dtype=np.intp), 0)
        self._dev_building = np.append(np.asarray(site.devices.building, dtype=np.intp), -1)
        self._building = {(b.estate, b.id): b.index for b in site.buildings}
        self._kind_names = list(KINDS)
        # The union struct: the common fields, then every kind's fields (a name two kinds
        # share, with one type, is one field; an enum's choices are all kinds' together,
        # each kind's own checked after). A field the reading does not carry keeps its
        # default *object* — NaN for numeric fields (no JSON value decodes to NaN), a
        # sentinel for the others — so one tuple comparison, identity first, tells that a
        # reading carries no field of another kind.
        struct_fields: list[Any] = [("device", str), ("ts", _Ts), ("seq", _Seq, -1),
                                    ("kind", str, _ABSENT)]
        for f in fields.values():
            default = _NAN if f.type in ("float", "bool", "int") else _ABSENT
            struct_fields.append((f.name, _field_type(f), default))
        reading: Any = msgspec.defstruct("GatewayReading", struct_fields,
                                         forbid_unknown_fields=True, gc=False)
        self._parse = msgspec.json.Decoder(list[reading]).decode
        defaults = tuple(f[2] if len(f) > 2 else None for f in struct_fields)
        pos = {f[0]: i for i, f in enumerate(struct_fields)}
        self._kinds = [_KindPlan(spec, pos, defaults) for spec in KINDS.values()]
        # kinds whose readings need Python: a track to check, or a cross-field check
        self._special = np.array([bool(p.tracks) or p.spec.check is not None
                                  for p in self._kinds])
        self._common = (itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3))

    def parse(self, payload: bytes) -> list[Any] | None:
        """The batch's readings as typed structs, or ``None`` when any of them breaks a
        type, a range or the field list (then only the reference path can say which)."""
        try:
            items: list[Any] = self._parse(payload)
        except (msgspec.DecodeError, RecursionError):
            return None
        return items

    def take(self, group: list[tuple[str, str, list[Any]]], builder: BatchBuilder,
             now_ms: int | None, newest_ts: int,
             reference: Callable[[int], None]) -> list[tuple[int, int] | None]:
        """Adds the readings of parsed batches — ``(estate, building, items)`` each, in
        arrival order — to ``builder``; for each, ``(readings, newest ts)`` when all its
        readings were valid, else ``None``: such a message adds nothing here, and
        ``reference(i)`` is called for it at its place in the order (so that the reference
        path appends its good readings between the batches before and after it).

        ``now_ms`` None (replay: the clock is the newest accepted reading, ``newest_ts``
        before the first) is for a group of one message. The numpy calls are per group,
        not per message: a group of 16 gateway messages pays them once.
        """
        counts = [len(items) for _, _, items in group]
        total = sum(counts)
        out: list[tuple[int, int] | None] = [(0, 0)] * len(group)
        if total == 0:
            return out
        items = list(itertools.chain.from_iterable(it for _, _, it in group))
        bad, idx, ts, seq, columns, extras = self._judge(group, counts, items, now_ms,
                                                         newest_ts)
        starts = np.cumsum([0, *counts[:-1]]).tolist()
        nonempty = [i for i, c in enumerate(counts) if c]
        at = np.array([starts[i] for i in nonempty])
        bad_msg = np.logical_or.reduceat(bad, at).tolist()
        newest = np.maximum.reduceat(ts, at).tolist()
        for j, i in enumerate(nonempty):
            out[i] = None if bad_msg[j] else (counts[i], newest[j])
        # runs of good messages go in as blocks; each bad one through the reference path
        run_from = 0  # first row of the current run of good messages
        for i, verdict in enumerate(out):
            if verdict is not None:
                continue
            if starts[i] > run_from:
                self._add(builder, run_from, starts[i], idx, ts, seq, columns, extras)
            reference(i)
            run_from = starts[i] + counts[i]
        if total > run_from:
            self._add(builder, run_from, total, idx, ts, seq, columns, extras)
        return out

    def _judge(self, group: list[tuple[str, str, list[Any]]], counts: list[int],
               items: list[Any], now_ms: int | None, newest_ts: int) -> tuple[Any, ...]:
        """Every reading's verdict (``bad``) and its columns, kind by kind."""
        n = len(items)
        rows_of = list(map(astuple, items))
        get_device, get_ts, get_seq, get_kind = self._common
        # -- routing: registered, in the topic's building (CONTRACT §1) -------------------
        idx = np.fromiter(map(self._index.get, map(get_device, rows_of),
                              itertools.repeat(self._unknown, n)), dtype=np.intp, count=n)
        places = [self._building.get((estate, building), -2) for estate, building, _ in group]
        place = places[0] if len(set(places)) == 1 else np.repeat(places, counts)
        bad = self._dev_building[idx] != place
        kc = self._dev_kind[idx]
        named = list(map(get_kind, rows_of))
        if named.count(_ABSENT) != n:
            names = self._kind_names
            for r, (k, c) in enumerate(zip(named, kc.tolist(), strict=True)):
                if k is not _ABSENT and k != names[c]:
                    bad[r] = True
        # -- ts against the clock (in replay the clock advances reading by reading) -------
        ts = np.fromiter(map(get_ts, rows_of), dtype=np.int64, count=n)
        if now_ms is not None:
            if now_ms:
                bad |= ts > min(now_ms + MAX_TS_AHEAD_MS, MAX_TS_MS)
        else:
            clock = np.maximum.accumulate(np.concatenate(([newest_ts], ts[:-1])))
            bad |= ts > np.where(clock > 0, np.minimum(clock + MAX_TS_AHEAD_MS, MAX_TS_MS),
                                 MAX_TS_MS)
        seq = np.fromiter(map(get_seq, rows_of), dtype=np.int64, count=n)
        # -- fields, kind by kind: none of another kind, every required one there ---------
        # (no need to look for ±inf: msgspec refuses a literal that overflows a float64)
        columns: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        extras: dict[int, dict[str, Any]] = {}
        first = int(kc[0])
        if not (kc != first).any():
            by_kind = [(first, np.arange(n))]
        else:
            order = np.argsort(kc, kind="stable")
            by_kind = [(int(kc[rows[0]]), rows)
                       for rows in np.split(order, np.flatnonzero(np.diff(kc[order])) + 1)]
        for k, rows in by_kind:
            plan = self._kinds[k]
            sub = rows_of if len(rows) == n else [rows_of[r] for r in rows.tolist()]
            if plan.foreign is not None:
                foreign = list(map(plan.foreign, sub))
                if foreign.count(plan.foreign_defaults) != len(sub):
                    wrong = [v != plan.foreign_defaults for v in foreign]
                    bad[rows[np.array(wrong)]] = True
            values, missing = plan.columns(sub)
            if missing is not None:
                bad[rows[missing]] = True
            columns[k] = (rows, values)
            if self._special[k]:
                for r in rows[~bad[rows]].tolist():
                    extra = self._extra(items[r], plan)
                    if extra is None:
                        bad[r] = True
                    elif extra:
                        extras[r] = extra
        return bad, idx, ts, seq, columns, extras

    def _add(self, builder: BatchBuilder, a: int, b: int, idx: np.ndarray, ts: np.ndarray,
             seq: np.ndarray, columns: dict[int, tuple[np.ndarray, np.ndarray]],
             extras: dict[int, dict[str, Any]]) -> None:
        """Adds rows ``a:b`` (all valid) kind by kind, in arrival order within each kind."""
        for k, (rows, values) in columns.items():
            lo, hi = np.searchsorted(rows, (a, b)).tolist()
            if lo == hi:
                continue
            part = rows[lo:hi]
            kind_extras: list[dict[str, Any]] = []
            extra_rows: list[int] = []
            if extras and self._special[k]:
                for j, r in enumerate(part.tolist()):
                    extra = extras.get(r)
                    if extra is not None:
                        extra_rows.append(j)
                        kind_extras.append(extra)
            builder.add_block(self._kind_names[k], idx[part].astype(np.int32), ts[part],
                              seq[part], values[lo:hi], kind_extras, extra_rows)

    def _extra(self, item: Any, plan: _KindPlan) -> dict[str, Any] | None:
        """A reading's non-columnar fields (as the reference path keeps them: a track's
        points as float lists), ``{}`` for none; ``None`` when the reading is invalid."""
        extra: dict[str, Any] = {}
        for name in plan.tracks:
            track = getattr(item, name)
            if track is _ABSENT:
                continue
            last = -1
            for t, _, _ in track:
                if t <= last:
                    return None  # track times must increase: bad_track
                last = t
            extra[name] = [[float(t), x, y] for t, x, y in track]
        check = plan.spec.check
        if check is not None:
            # The kind's own check sees the reading's fields as decoded (absent ones left out).
            fields = {name: v for name, v in zip(plan.check_names, plan.check_get(item),
                                                 strict=True)
                      if v is not _ABSENT and not (type(v) is float and v != v)}
            if fields.get("seq") == -1:
                del fields["seq"]
            try:
                check(fields)
            except PayloadError:
                return None
        return extra


def _tuple_getter(positions: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """An itemgetter that gives a tuple even for one position."""
    return itemgetter(*positions) if len(positions) != 1 else itemgetter(*positions * 2)


class _KindPlan:
    """Where a kind's fields sit in the union struct, and how its columns are made."""

    def __init__(self, spec: KindSpec, pos: dict[str, int], defaults: tuple[Any, ...]) -> None:
        self.spec = spec
        own = {pos[f.name] for f in spec.fields}
        foreign = [p for p in range(4, len(defaults)) if p not in own]
        # the other kinds' fields of a reading (a struct tuple), and them when it has none
        self.foreign = _tuple_getter(foreign) if foreign else None
        self.foreign_defaults = self.foreign(defaults) if self.foreign else ()
        numeric = [f for f in spec.columns if f.type in ("float", "bool", "int")]
        self.n_numeric = len(numeric)
        self.numeric = _tuple_getter([pos[f.name] for f in numeric]) if numeric else None
        # the batch's columns (spec.columns order) from the numeric block and the enums;
        # an enum value of another kind's choices is -1 (refused), an absent one NaN
        self.numeric_cols = [j for j, f in enumerate(spec.columns)
                             if f.type in ("float", "bool", "int")]
        self.enums = [(j, itemgetter(pos[f.name]),
                       {**{c: float(i) for i, c in enumerate(f.choices)}, _ABSENT: _NAN})
                      for j, f in enumerate(spec.columns) if f.type == "enum"]
        self.required_cols = np.array([j for j, f in enumerate(spec.columns) if f.required],
                                      dtype=np.intp)
        self.tracks = [f.name for f in spec.fields if f.type == "track"]
        self.required_tracks = [itemgetter(pos[f.name]) for f in spec.fields
                                if f.type == "track" and f.required]
        self.width = len(spec.columns)
        # what the kind's check is shown: the common fields and the kind's own
        self.check_names = ("device", "ts", "seq", "kind", *(f.name for f in spec.fields))
        self.check_get = attrgetter(*self.check_names)

    def columns(self, sub: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray | None]:
        """The (n, width) float64 columns of readings of this kind (struct tuples), and
        which rows miss a required field (None: none does)."""
        n = len(sub)
        nn = self.n_numeric
        numeric = None
        if self.numeric is not None:
            width = nn if nn != 1 else 2  # a one-field getter gives the field twice
            numeric = np.fromiter(itertools.chain.from_iterable(map(self.numeric, sub)),
                                  dtype=np.float64, count=n * width).reshape(n, width)[:, :nn]
        if numeric is not None and not self.enums and nn == self.width:
            values = numeric
        else:
            values = np.empty((n, self.width))
            if numeric is not None:
                values[:, self.numeric_cols] = numeric
            for j, get, codes in self.enums:
                values[:, j] = np.fromiter(map(codes.get, map(get, sub),
                                               itertools.repeat(-1.0, n)),
                                           dtype=np.float64, count=n)
        missing = np.asarray(np.isnan(values[:, self.required_cols]).any(axis=1))
        if self.enums:
            missing |= (values[:, [j for j, _, _ in self.enums]] < 0).any(axis=1)
        for get in self.required_tracks:
            missing |= np.fromiter(map(is_, map(get, sub), itertools.repeat(_ABSENT, n)),
                                   dtype=bool, count=n)
        return values, (missing if missing.any() else None)


def columnar_decoder(site: Site) -> ColumnarDecoder | None:
    """The fast path for ``site``, or ``None`` when two kinds give one field name different
    types (the union struct cannot type it; every batch then takes the reference path)."""
    fields: dict[str, FieldSpec] = {}
    for spec in KINDS.values():
        for f in spec.fields:
            seen = fields.get(f.name)
            if seen is None:
                fields[f.name] = f
            elif seen.type != f.type:
                return None
            elif f.type == "enum":  # one Literal of both kinds' choices
                extra = tuple(c for c in f.choices if c not in seen.choices)
                fields[f.name] = dataclasses.replace(seen, choices=seen.choices + extra)
    return ColumnarDecoder(site, fields)
