"""Columnar batches: decoded readings as numpy columns plus a device index.

Inside anju a batch is columns, not objects: the rule engine and the InfluxDB encoder
work on whole arrays. Every numeric, boolean and enum field is a float64 column with
NaN for "not measured" (booleans 0/1, enums their index in ``choices``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anju.devices.spec import KindSpec
from anju.kinds import KINDS

__all__ = ["Batch", "BatchBuilder", "KindBatch"]


@dataclass
class KindBatch:
    """The readings of one kind in a batch, in arrival order."""

    kind: KindSpec
    device: np.ndarray  # int32, registry index
    ts: np.ndarray  # int64 ms
    seq: np.ndarray  # int64, -1 when absent
    values: np.ndarray  # float64 (n, len(kind.columns))
    extras: list[dict[str, Any]] = field(default_factory=list)  # non-columnar (camera track)
    extra_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __len__(self) -> int:
        return len(self.ts)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, _column_pos(self.kind, name)]

    def take(self, rows: np.ndarray) -> KindBatch:
        """A new batch of the given rows (in the given order)."""
        extras, extra_rows = [], []
        if len(self.extra_rows):
            where = {int(r): i for i, r in enumerate(self.extra_rows)}
            for new, old in enumerate(rows.tolist()):
                if old in where:
                    extras.append(self.extras[where[old]])
                    extra_rows.append(new)
        return KindBatch(self.kind, self.device[rows], self.ts[rows], self.seq[rows],
                         self.values[rows], extras, np.asarray(extra_rows, dtype=np.int64))

    @classmethod
    def concat(cls, parts: list[KindBatch]) -> KindBatch:
        """The readings of ``parts`` (batches of one kind) one after the other."""
        if len(parts) == 1:
            return parts[0]
        extras: list[dict[str, Any]] = []
        extra_rows: list[np.ndarray] = []
        start = 0
        for kb in parts:
            extras += kb.extras
            extra_rows.append(kb.extra_rows + start)
            start += len(kb)
        return cls(parts[0].kind, np.concatenate([kb.device for kb in parts]),
                   np.concatenate([kb.ts for kb in parts]),
                   np.concatenate([kb.seq for kb in parts]),
                   np.concatenate([kb.values for kb in parts]), extras,
                   np.concatenate(extra_rows).astype(np.int64))

    def sorted_by_time(self) -> KindBatch:
        """Stable sort by ts: ties keep arrival order."""
        order = np.argsort(self.ts, kind="stable")
        if len(order) and (order == np.arange(len(order))).all():
            return self
        return self.take(order)


_POS_CACHE: dict[str, dict[str, int]] = {}


def _column_pos(kind: KindSpec, name: str) -> int:
    pos = _POS_CACHE.get(kind.name)
    if pos is None:
        pos = {f.name: i for i, f in enumerate(kind.columns)}
        _POS_CACHE[kind.name] = pos
    return pos[name]


@dataclass
class Batch:
    """Readings of every kind decoded from a run of messages."""

    kinds: dict[str, KindBatch]
    messages: int = 0

    @property
    def readings(self) -> int:
        return sum(len(kb) for kb in self.kinds.values())

    def __bool__(self) -> bool:
        return any(len(kb) for kb in self.kinds.values())


class _Block:
    """Readings of one kind already in columns (the columnar gateway decoder's output)."""

    __slots__ = ("device", "extra_rows", "extras", "seq", "ts", "values")

    def __init__(self, device: np.ndarray, ts: np.ndarray, seq: np.ndarray, values: np.ndarray,
                 extras: list[dict[str, Any]], extra_rows: list[int]) -> None:
        self.device = device
        self.ts = ts
        self.seq = seq
        self.values = values
        self.extras = extras
        self.extra_rows = extra_rows  # relative to the block's first row


class _KindRows:
    __slots__ = ("blocks", "device", "extra_rows", "extras", "pos", "seq", "spec", "ts",
                 "values", "width")

    def __init__(self, spec: KindSpec) -> None:
        self.spec = spec
        self.pos = {f.name: i for i, f in enumerate(spec.columns)}
        self.width = len(self.pos)
        self.device: list[int] = []
        self.ts: list[int] = []
        self.seq: list[int] = []
        self.values: list[float] = []  # row after row, flat: np.array is 3× faster on it
        self.extras: list[dict[str, Any]] = []
        self.extra_rows: list[int] = []  # relative to the first row of the lists
        # rows that came as columns, in arrival order; the lists above follow them
        self.blocks: list[_Block] = []

    def seal(self) -> None:
        """Moves the rows appended so far into a block, so that a block added next stays
        after them (arrival order)."""
        if not self.ts:
            return
        n = len(self.ts)
        self.blocks.append(_Block(
            np.asarray(self.device, dtype=np.int32), np.asarray(self.ts, dtype=np.int64),
            np.asarray(self.seq, dtype=np.int64),
            np.array(self.values, dtype=np.float64).reshape(n, self.width),
            self.extras, self.extra_rows))
        self.device, self.ts, self.seq, self.values = [], [], [], []
        self.extras, self.extra_rows = [], []


class BatchBuilder:
    """Accumulates validated readings row by row; :meth:`build` turns them into columns."""

    def __init__(self) -> None:
        self._kinds: dict[str, _KindRows] = {}
        self.messages = 0
        self.readings = 0
        self._reset()

    def _reset(self) -> None:
        self._kinds = {name: _KindRows(spec) for name, spec in KINDS.items()}
        self.messages = 0
        self.readings = 0

    def add(self, kind: str, device: int, ts: int, seq: int, row: list[float],
            extra: dict[str, Any] | None = None) -> None:
        """Adds one validated reading: ``row`` holds the kind's columns in order (NaN
        for "not measured"), ``extra`` its non-columnar fields (a camera's track)."""
        k = self._kinds[kind]
        if len(row) != k.width:
            raise ValueError(f"{kind} rows have {k.width} columns, not {len(row)}")
        if extra:
            k.extra_rows.append(len(k.ts))
            k.extras.append(extra)
        k.device.append(device)
        k.ts.append(ts)
        k.seq.append(seq)
        k.values.extend(row)
        self.readings += 1

    def add_block(self, kind: str, device: np.ndarray, ts: np.ndarray, seq: np.ndarray,
                  values: np.ndarray, extras: list[dict[str, Any]] | None = None,
                  extra_rows: list[int] | None = None) -> None:
        """Adds validated readings already in columns: ``values`` is (n, columns) float64,
        ``extra_rows`` the rows (0-based in this block) whose non-columnar fields are in
        ``extras``. They follow every reading added before, however it was added."""
        k = self._kinds[kind]
        if values.shape != (len(ts), k.width):
            raise ValueError(f"{kind} blocks are (n, {k.width}), not {values.shape}")
        k.seal()
        k.blocks.append(_Block(device, ts, seq, values, extras or [], extra_rows or []))
        self.readings += len(ts)

    def rows(self, kind: str) -> _KindRows:
        """The row lists of one kind, for a decoder that appends to them directly (the hot
        path saves a call per reading); keep them equally long, as :meth:`add` does."""
        return self._kinds[kind]

    def new_row(self, kind: str) -> tuple[list[float], dict[str, int]]:
        """An all-NaN row of ``kind`` and the position of each column in it."""
        k = self._kinds[kind]
        return [np.nan] * k.width, k.pos

    def build(self) -> Batch:
        """The readings so far as columns; the builder starts afresh."""
        out: dict[str, KindBatch] = {}
        for name, k in self._kinds.items():
            if k.blocks:
                out[name] = _from_blocks(k)
                continue
            if not k.ts:
                continue
            out[name] = KindBatch(
                kind=k.spec,
                device=np.asarray(k.device, dtype=np.int32),
                ts=np.asarray(k.ts, dtype=np.int64),
                seq=np.asarray(k.seq, dtype=np.int64),
                values=np.array(k.values, dtype=np.float64).reshape(len(k.ts), k.width),
                extras=k.extras,
                extra_rows=np.asarray(k.extra_rows, dtype=np.int64),
            )
        batch = Batch(out, self.messages)
        self._reset()
        return batch


def _from_blocks(k: _KindRows) -> KindBatch:
    k.seal()
    blocks = k.blocks
    if len(blocks) == 1:
        b = blocks[0]
        return KindBatch(k.spec, b.device.astype(np.int32, copy=False), b.ts, b.seq, b.values,
                         b.extras, np.asarray(b.extra_rows, dtype=np.int64))
    extras: list[dict[str, Any]] = []
    extra_rows: list[int] = []
    start = 0
    for b in blocks:
        extras += b.extras
        extra_rows += [start + r for r in b.extra_rows]
        start += len(b.ts)
    return KindBatch(
        kind=k.spec,
        device=np.concatenate([b.device for b in blocks]).astype(np.int32, copy=False),
        ts=np.concatenate([b.ts for b in blocks]),
        seq=np.concatenate([b.seq for b in blocks]),
        values=np.concatenate([b.values for b in blocks]),
        extras=extras,
        extra_rows=np.asarray(extra_rows, dtype=np.int64),
    )
