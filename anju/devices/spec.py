"""What a device kind is: its payload fields, heartbeat and registry params.

A kind is declared once, as a :class:`KindSpec` in its own module under
``anju/devices/kinds/``; :mod:`anju.devices.kinds` discovers those modules, so adding a
kind touches its module (and its rules) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FieldSpec", "FieldType", "KindSpec", "ParamSpec"]

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
    field_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_index", {f.name: i for i, f in enumerate(self.fields)})

    @property
    def columns(self) -> tuple[FieldSpec, ...]:
        """The fields that become float64 columns, in declaration order."""
        return tuple(f for f in self.fields if f.columnar)

    def field(self, name: str) -> FieldSpec:
        return self.fields[self.field_index[name]]
