"""Strict pydantic models of readings, generated from the kind table (CONTRACT.md §2).

One model per kind: ``extra="forbid"``, strict types (a boolean is ``true``/``false``,
never 0/1; numbers finite; integers exact in a float64 column), ``ts`` an integer ≥
2000-01-01 and at most 10 minutes ahead of the clock given in the validation context.
They are the reference the fast hand-written decoder (:mod:`anju.devices.decode`) is
tested against, and the source of each kind's JSON Schema (``anju devices schema KIND``).

:func:`validate_reading` maps pydantic's errors onto the decoder's reasons, so that a
reading with one fault is rejected for the same reason by both.
"""

from __future__ import annotations

import itertools
import math
from functools import cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from anju.devices.spec import (
    EXACT_INT,
    MAX_TS_AHEAD_MS,
    MAX_TS_MS,
    MIN_TS_MS,
    FieldSpec,
    KindSpec,
    as_parsed,
)
from anju.errors import PayloadError
from anju.kinds import KINDS

__all__ = ["ReadingModel", "json_schema", "reading_model", "validate_reading"]

# Every value first goes through ``as_parsed``: an integer literal beyond 64 bits is a
# float, exactly as orjson (the decoder's parser) reads it.
_Parsed = BeforeValidator(as_parsed)
_Float = Annotated[float, Field(strict=True, allow_inf_nan=False), _Parsed]
_Int = Annotated[int, Field(strict=True, gt=-EXACT_INT, lt=EXACT_INT), _Parsed]
_Bool = Annotated[bool, Field(strict=True), _Parsed]
_Str = Annotated[str, Field(strict=True), _Parsed]
_TrackTime = Annotated[int, Field(strict=True, ge=0, lt=EXACT_INT), _Parsed]


def _increasing(track: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    for a, b in itertools.pairwise(track):
        if b[0] <= a[0]:
            raise PydanticCustomError("bad_track", "track times must increase")
    return track


# No ``_Parsed`` on the containers: a before-validator would hand the strict tuple a
# Python list, which strict mode refuses; the error mapping reads a huge int as parsed.
_Track = Annotated[list[tuple[_TrackTime, _Float, _Float]], AfterValidator(_increasing)]


class ReadingModel(BaseModel):
    """Fields common to every reading; each kind's model adds its own.

    Validation context (all optional): ``now_ms`` the receiving clock (replay: the
    newest accepted reading); ``device`` the device id of a device topic (a reading
    naming another device is ``wrong_place``); ``batch`` true on a gateway's batch
    topic, where ``device`` is required.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    kind_name: ClassVar[str] = ""
    kind_spec: ClassVar[KindSpec | None] = None

    ts: Annotated[int, _Parsed] = Field(
        strict=True,
        description="device clock, integer ms since the Unix epoch (UTC); ≥ 2000-01-01 and "
                    "at most 10 minutes ahead of the receiving clock",
        json_schema_extra={"minimum": MIN_TS_MS, "maximum": MAX_TS_MS},
    )
    seq: Annotated[int, Field(strict=True, ge=0, lt=EXACT_INT), _Parsed] = Field(
        None, description="per-device counter, for gap detection")  # type: ignore[assignment]
    device: _Str = Field(  # type: ignore[assignment]
        None, description="the device id: required in a gateway's batch, else the topic's")
    kind: _Str = Field(  # type: ignore[assignment]
        None, description="the device's kind; must agree with the registry")

    @field_validator("ts")
    @classmethod
    def _ts_range(cls, ts: int, info: ValidationInfo) -> int:
        clock = (info.context or {}).get("now_ms")
        limit = min(clock + MAX_TS_AHEAD_MS, MAX_TS_MS) if clock else MAX_TS_MS
        if ts < MIN_TS_MS or ts > limit:
            raise PydanticCustomError("ts_out_of_range", "ts {ts} out of range", {"ts": ts})
        return ts

    @field_validator("device")
    @classmethod
    def _same_device(cls, device: str, info: ValidationInfo) -> str:
        topic_device = (info.context or {}).get("device")
        if topic_device is not None and device != topic_device:
            raise PydanticCustomError("wrong_place", "reading names another device")
        return device

    @field_validator("kind")
    @classmethod
    def _same_kind(cls, kind: str) -> str:
        if kind != cls.kind_name:
            raise PydanticCustomError("kind_mismatch", "not a {kind}", {"kind": cls.kind_name})
        return kind

    @model_validator(mode="after")
    def _whole(self, info: ValidationInfo) -> ReadingModel:
        if (info.context or {}).get("batch") and self.device is None:
            raise PydanticCustomError("missing_device", "batch items name their device")
        spec = self.kind_spec
        if spec is not None and spec.check is not None:
            try:
                spec.check({k: getattr(self, k) for k in self.model_fields_set})
            except PayloadError as exc:
                raise PydanticCustomError(exc.reason, exc.detail or exc.reason) from None
        return self


def _field_type(f: FieldSpec) -> Any:
    if f.type == "float":
        return _Float
    if f.type == "int":
        return _Int
    if f.type == "bool":
        return _Bool
    if f.type == "enum":
        return Annotated[Literal[f.choices], _Parsed]
    return _Track


def _no_null_defaults(schema: dict[str, Any]) -> None:
    # Optional fields default to "absent", not null: a null is rejected (wrong_type).
    for prop in schema.get("properties", {}).values():
        if prop.get("default", 0) is None:
            del prop["default"]


@cache
def reading_model(kind: str) -> type[ReadingModel]:
    """The strict pydantic model of one kind's readings."""
    spec = KINDS[kind]
    fields: dict[str, Any] = {}
    for f in spec.fields:
        doc = f.doc + (f" ({f.unit})" if f.unit else "")
        if f.required:
            fields[f.name] = (_field_type(f), Field(description=doc))
        else:
            # Default None is never validated: absent means "not measured", while an
            # explicit null fails the strict type.
            fields[f.name] = (_field_type(f), Field(None, description=doc))
    extra: dict[str, Any] = {"description": f"{spec.title}: one reading"}
    if spec.schema_extra:
        extra.update(spec.schema_extra)
    model = create_model(
        f"{kind.capitalize()}Reading",
        __base__=ReadingModel,
        __config__=None,
        **fields,
    )
    model.kind_name = kind
    model.kind_spec = spec
    model.model_config["json_schema_extra"] = {**extra}
    model.model_config["title"] = f"anju {kind} reading"
    model.model_rebuild(force=True)
    return model


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one kind's readings."""
    schema = reading_model(kind).model_json_schema()
    _no_null_defaults(schema)
    schema["properties"]["kind"]["const"] = kind
    return schema


def validate_reading(kind: str, payload: bytes | str, *, now_ms: int | None = None,
                     device: str | None = None, batch: bool = False) -> ReadingModel:
    """Validates one reading (JSON text) of ``kind``; raises :class:`PayloadError` with
    the reason the decoder gives for the first fault pydantic reports."""
    model = reading_model(kind)
    try:
        return model.model_validate_json(
            payload, strict=True, context={"now_ms": now_ms, "device": device, "batch": batch})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        reason = _reason(KINDS[kind], err)
        loc = err.get("loc") or ()
        raise PayloadError(reason, err.get("msg", ""),
                           field=str(loc[0]) if loc else None) from None


def _reason(spec: KindSpec, err: Any) -> str:
    """Maps a pydantic error onto the decoder's reason (see decode.REASONS)."""
    typ: str = err["type"]
    loc = err.get("loc") or ()
    name = str(loc[0]) if loc else None
    if typ in _CUSTOM:
        return typ
    if name is None:
        return "invalid_json" if typ == "json_invalid" else "not_a_reading"
    value = as_parsed(err.get("input"))
    non_finite = type(value) is float and not math.isfinite(value)
    if name == "track" and len(loc) > 1:  # inside the track: a point too short is "missing"
        return "not_finite" if non_finite else "bad_track"
    if typ == "missing":
        return {"ts": "missing_ts", "device": "missing_device"}.get(name, "missing_field")
    if typ == "extra_forbidden":
        return "unknown_field"
    if non_finite:
        return "not_finite"
    if name == "track":
        return "bad_track"
    if typ == "finite_number":
        return "not_finite"
    if name == "seq" and typ == "greater_than_equal":
        return "bad_value"
    if typ in ("greater_than", "less_than"):  # beyond ±2**53: overflows the column
        return "not_finite"
    ftype = spec.field(name).type if name in spec.field_index else None
    number = type(value) in (int, float)
    if ftype == "bool" and number:
        return "not_boolean"
    if ftype == "enum" and typ == "literal_error" and type(value) is str:
        return "bad_value"
    return "wrong_type"


_CUSTOM = frozenset({"ts_out_of_range", "wrong_place", "kind_mismatch", "missing_device",
                     "missing_field",  # a kind's cross-field check (a patrol checkin's guard_id)
                     "bad_track", "bad_value", "not_finite"})
