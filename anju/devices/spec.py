"""What a device kind is: its payload fields, heartbeat and registry params.

A kind is declared once, as a :class:`KindSpec` in its folder's ``schema.py`` under
``anju/kinds/{kind}/``; :mod:`anju.kinds` discovers those folders, so adding a
kind touches its folder and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "COMMON_FIELDS",
    "EXACT_INT",
    "MAX_TS_AHEAD_MS",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "FieldSpec",
    "FieldType",
    "KindSpec",
    "ParamSpec",
    "as_parsed",
]

# -- rules every reading of every kind obeys (CONTRACT.md §2) -------------------------------
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_AHEAD_MS = 10 * 60 * 1000  # ahead of the receiving clock (replay: newest reading)
# 2100-01-01T00:00:00Z. The contract bounds ts by a clock; a replay has none before its
# first accepted reading, and a ts past int64 would overflow the batch's ts column.
MAX_TS_MS = 4_102_444_800_000
# Integers travel in float64 columns: beyond ±(2**53 − 1) they are no longer exact, so a
# larger integer "overflows" the column and is rejected as not_finite.
EXACT_INT = 2**53
# orjson reads an integer literal outside [-2**63, 2**64) as a float (RFC 8259 §6 lets a
# parser limit the range of numbers); the lenient parser and the pydantic models do the same.
_I64_MIN, _U64_END = -(2**63), 2**64
#: Fields every reading may carry besides its kind's own (CONTRACT.md §1–§2).
COMMON_FIELDS = frozenset({"ts", "seq", "device", "kind"})


def as_parsed(value: object) -> object:
    """The value orjson would have produced for an integer literal: a float (±inf when
    it overflows float64) outside the 64-bit range, the integer itself otherwise."""
    if type(value) is int and not _I64_MIN <= value < _U64_END:
        try:
            return float(value)
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")
    return value

FieldType = Literal["int", "float", "bool", "enum", "track"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a reading. Numeric, boolean and enum fields become float64 columns
    (NaN = not measured; booleans 0/1; enums their index in ``choices``)."""

    name: str
    type: FieldType
    doc: str
    required: bool = True
    choices: tuple[str, ...] = ()
    stored: bool = True  # written to InfluxDB (a camera's track is not: CONTRACT §6)
    unit: str = ""

    @property
    def columnar(self) -> bool:
        """Whether the field lives in a float64 column (everything but tracks)."""
        return self.type != "track"


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A registry parameter of a kind (from the ``params`` column of devices.csv)."""

    name: str
    type: Literal["int", "float"]
    doc: str
    required: bool = True
    example: float = 0.0  # a plausible value, for docs and generated sample sites


@dataclass(frozen=True)
class KindSpec:
    """Everything anju knows about a kind of device."""

    name: str
    title: str  # human name, Chinese / English
    heartbeat_s: float  # the slowest normal reporting interval; offline after 3 of them
    fields: tuple[FieldSpec, ...]
    params: tuple[ParamSpec, ...] = ()
    doc: str = ""
    # Extra per-reading check after the field types passed; raises PayloadError.
    check: Callable[[dict[str, Any]], None] | None = None
    # What ``check`` enforces, said in JSON Schema for the kind's published schema.
    schema_extra: dict[str, Any] | None = None
    # Statutory maintenance interval: past it without a maintenance record, the rule
    # ``{kind}.maintenance_overdue`` is raised (anju.alarms.stages.OverdueWatch).
    maintenance_days: float | None = None
    # (source rule, target rule): while the source is open on a device of this kind, the
    # target is inhibited in its building (a lift's power cut silences the building).
    inhibits: tuple[tuple[str, str], ...] = ()
    field_index: dict[str, int] = field(init=False, repr=False, compare=False)
    #: the fields that become float64 columns, in declaration order (read per batch by the
    #: engine and the decoders: computed once)
    columns: tuple[FieldSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        clash = COMMON_FIELDS.intersection(f.name for f in self.fields)
        if clash:
            raise ValueError(f"kind {self.name!r}: {sorted(clash)} are common to every reading")
        object.__setattr__(self, "field_index", {f.name: i for i, f in enumerate(self.fields)})
        object.__setattr__(self, "columns", tuple(f for f in self.fields if f.columnar))

    def field(self, name: str) -> FieldSpec:
        return self.fields[self.field_index[name]]
