"""The fast decoder and the strict pydantic models agree on every reading.

Hypothesis builds valid readings of each kind, then breaks them with near misses:
wrong types, 0/1 for booleans, huge integers, NaN / Infinity / overflowing literals
written into the payload text, unknown and missing fields, bad enum values, short or
malformed tracks, ts out of range, a device or kind naming another. For one fault
both must reject for the same reason; for several, both must reject.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anju.devices.batch import BatchBuilder
from anju.devices.decode import Decoder, Rejection
from anju.devices.registry import Site, load_site
from anju.devices.sample import write_site
from anju.devices.schema import json_schema, reading_model, validate_reading
from anju.devices.spec import MAX_TS_AHEAD_MS, MIN_TS_MS, FieldSpec
from anju.errors import PayloadError
from anju.kinds import KINDS

NOW = 1_767_225_600_000  # 2026-01-01
DEVICE = {kind: f"{kind}-1" for kind in KINDS}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return load_site(write_site(Path(tmp_path_factory.mktemp("site"))))


# -- a JSON writer that can also write what json.dumps will not -------------------------------
class Raw:
    """A literal token written as is: NaN, Infinity, 1e999, a 400-digit integer."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:20]})"


def dumps(v: Any) -> str:
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(dumps(x) for x in v) + "]"
    return json.dumps(v)


NON_FINITE = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-1e400"),
              Raw("1" + "0" * 400), Raw("-" + "9" * 330)]
HUGE = [2**53 - 1, 2**53, -(2**53), 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1,
        10**30, -(10**30), Raw("1e23"), Raw("123456789012345678901234567890.0")]
OTHER = ["", "1", "true", [], [1], {}, {"a": 1}, None, True, False, 0, 1, -1, 0.5, 1.0, 3.0,
         -0.0, 1e300]
ANY_VALUE = st.sampled_from(NON_FINITE + HUGE + OTHER)


def field_value(f: FieldSpec) -> st.SearchStrategy[Any]:
    if f.type == "float":
        return st.floats(-1e9, 1e9, allow_nan=False) | st.integers(-(10**9), 10**9)
    if f.type == "int":
        return st.integers(-1000, 1000)
    if f.type == "bool":
        return st.booleans()
    if f.type == "enum":
        return st.sampled_from(f.choices)
    raise AssertionError(f.type)


@st.composite
def tracks(draw: st.DrawFn, min_size: int = 4) -> list[list[Any]]:
    n = draw(st.integers(min_size, 12))
    t0 = draw(st.integers(0, 1000))
    steps = draw(st.lists(st.integers(1, 200), min_size=n, max_size=n))
    out, t = [], t0
    for step in steps:
        out.append([t, draw(st.floats(0, 4000) | st.integers(0, 4000)),
                    draw(st.floats(0, 3000))])
        t += step
    return out


@st.composite
def valid_readings(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    spec = KINDS[kind]
    r: dict[str, Any] = {"ts": draw(st.integers(MIN_TS_MS, NOW + MAX_TS_AHEAD_MS))}
    if draw(st.booleans()):
        r["seq"] = draw(st.integers(0, 2**40))
    if draw(st.integers(0, 5)) == 0:
        r["device"] = DEVICE[kind]
    if draw(st.integers(0, 5)) == 0:
        r["kind"] = kind
    for f in spec.fields:
        if f.type == "track":
            continue
        if f.required or draw(st.booleans()):
            r[f.name] = draw(field_value(f))
    if kind == "camera" and r["event"] == "falling_object":
        r["track"] = draw(tracks())
    if kind == "patrol" and r.get("event") == "checkin" and "guard_id" not in r:
        r["guard_id"] = draw(st.integers(0, 2**31))  # a checkin names its guard
    keys = list(r)
    order = draw(st.permutations(keys))
    return {k: r[k] for k in order}


# -- near misses --------------------------------------------------------------------------
@st.composite
def mutate(draw: st.DrawFn, r: dict[str, Any], kind: str) -> dict[str, Any]:
    spec = KINDS[kind]
    r = dict(r)
    keys = [k for k in r if k != "track"] or ["ts"]
    how = draw(st.sampled_from(["value", "value", "value", "bool01", "huge", "nonfinite",
                                "unknown", "missing", "enum", "track", "ts", "seq", "who"]))
    if how == "value":
        r[draw(st.sampled_from(keys))] = draw(ANY_VALUE)
    elif how == "bool01":
        bools = [f.name for f in spec.fields if f.type == "bool"] or keys
        r[draw(st.sampled_from(bools))] = draw(st.sampled_from([0, 1, 0.0, 1.0, 2]))
    elif how == "huge":
        r[draw(st.sampled_from(keys))] = draw(st.sampled_from(HUGE + NON_FINITE[-2:]))
    elif how == "nonfinite":
        r[draw(st.sampled_from(keys))] = draw(st.sampled_from(NON_FINITE))
    elif how == "unknown":
        name = draw(st.sampled_from(["extra", "Ts", "temp", "smoke_db_m", "floor", "event",
                                     "level_pct", "door_open", "track", "é", "", "__line__"]))
        if name in r or name in spec.field_index:
            name += "_x"
        r[name] = draw(ANY_VALUE)
    elif how == "missing" and r:
        del r[draw(st.sampled_from(list(r)))]
    elif how == "enum":
        enums = [f.name for f in spec.fields if f.type == "enum"] or keys
        r[draw(st.sampled_from(enums))] = draw(st.sampled_from(
            ["HEARTBEAT", "falling-object", " heartbeat", "", "obstructed ", 1, None]))
    elif how == "track":
        r.update(draw(_bad_track(r)))
    elif how == "ts":
        r["ts"] = draw(st.sampled_from([
            MIN_TS_MS - 1, 0, -1, NOW + MAX_TS_AHEAD_MS + 1, 2**62, float(NOW), str(NOW),
            None, True, Raw("1.7672256e12"), Raw("NaN")]))
    elif how == "seq":
        r["seq"] = draw(st.sampled_from([-1, -(2**60), 1.5, 2.0, "1", None, True, 2**53,
                                         2**64, Raw("Infinity")]))
    else:  # who: the reading names another device or kind
        key = draw(st.sampled_from(["device", "kind"]))
        r[key] = draw(st.sampled_from(["other", "camera", "smoke", "smoke-1", "camera-1", 7,
                                       None, ""]))
    return r


@st.composite
def _bad_track(draw: st.DrawFn, r: dict[str, Any]) -> dict[str, Any]:
    good = draw(tracks())
    choice = draw(st.integers(0, 8))
    if choice == 0:  # short
        return {"event": "falling_object", "track": good[: draw(st.integers(0, 3))]}
    if choice == 1:  # a track on another event
        return {"event": draw(st.sampled_from(["heartbeat", "obstructed"])), "track": good}
    if choice == 2:  # missing on a falling_object
        r.pop("track", None)
        return {"event": "falling_object"}
    i = draw(st.integers(0, len(good) - 1))
    p = list(good[i])
    if choice == 3:
        p = p[: draw(st.integers(0, 2))] if draw(st.booleans()) else [*p, 1.0]
    elif choice == 4:
        p[0] = draw(st.sampled_from([-1, 0.0, 1.5, True, "0", None, 2**53, 2**64]))
    elif choice == 5:
        p[draw(st.integers(1, 2))] = draw(st.sampled_from([True, None, "1", [1], *NON_FINITE]))
    elif choice == 6 and i > 0:
        p[0] = good[i - 1][0]  # not increasing
    elif choice == 7:
        good[i] = draw(st.sampled_from([None, 1, "p", {}, Raw("NaN")]))
        return {"event": "falling_object", "track": good}
    else:
        return {"event": "falling_object", "track": draw(st.sampled_from(
            [None, {}, "track", 5, Raw("NaN"), [[0, 1, 2]] * 5]))}
    good[i] = p
    return {"event": "falling_object", "track": good}


# -- the two judges -----------------------------------------------------------------------
def decoder_verdict(site: Site, kind: str, text: str) -> str | None:
    rejections: list[Rejection] = []
    dec = Decoder(site, on_reject=rejections.append)
    n = dec.decode(f"anju/e1/b1/{kind}/{DEVICE[kind]}", text.encode(), BatchBuilder(),
                   now_ms=NOW)
    assert n + len(rejections) == 1
    return rejections[0].reason if rejections else None


def model_verdict(kind: str, text: str) -> str | None:
    try:
        validate_reading(kind, text.encode(), now_ms=NOW, device=DEVICE[kind])
    except PayloadError as exc:
        return exc.reason
    return None


KIND_NAMES = st.sampled_from(sorted(KINDS))
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=st.data(), kind=KIND_NAMES)
def test_valid_readings_are_accepted_by_both(site: Site, data: st.DataObject, kind: str) -> None:
    text = dumps(data.draw(valid_readings(kind)))
    assert decoder_verdict(site, kind, text) is None, text
    assert model_verdict(kind, text) is None, text


@FAST
@given(data=st.data(), kind=KIND_NAMES)
def test_one_fault_same_verdict_same_reason(site: Site, data: st.DataObject, kind: str) -> None:
    r = data.draw(mutate(data.draw(valid_readings(kind)), kind))
    text = dumps(r)
    assert decoder_verdict(site, kind, text) == model_verdict(kind, text), text


@FAST
@given(data=st.data(), kind=KIND_NAMES, n=st.integers(2, 4))
def test_several_faults_same_verdict(site: Site, data: st.DataObject, kind: str, n: int) -> None:
    r = data.draw(valid_readings(kind))
    for _ in range(n):
        r = data.draw(mutate(r, kind))
    text = dumps(r)
    d, m = decoder_verdict(site, kind, text), model_verdict(kind, text)
    assert (d is None) == (m is None), (text, d, m)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), kind=KIND_NAMES, n=st.integers(1, 6))
def test_arrays_are_judged_reading_by_reading(site: Site, data: st.DataObject, kind: str,
                                              n: int) -> None:
    items = []
    for _ in range(n):
        r = data.draw(valid_readings(kind))
        if data.draw(st.booleans()):
            r = data.draw(mutate(r, kind))
        items.append(r)
    alone = [decoder_verdict(site, kind, dumps(r)) for r in items]
    rejections: list[Rejection] = []
    builder = BatchBuilder()
    accepted = Decoder(site, on_reject=rejections.append).decode(
        f"anju/e1/b1/{kind}/{DEVICE[kind]}", dumps(items).encode(), builder, now_ms=NOW)
    if n == 1:
        assert [r.reason for r in rejections] == [a for a in alone if a]
    else:
        assert sorted(r.reason for r in rejections) == sorted(a for a in alone if a)
    assert accepted == alone.count(None) == builder.build().readings


def test_models_cover_the_kind_table() -> None:
    for kind, spec in KINDS.items():
        model = reading_model(kind)
        assert set(model.model_fields) == {"ts", "seq", "device", "kind"} | {
            f.name for f in spec.fields}
        schema = json_schema(kind)
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == {"ts"} | {f.name for f in spec.fields if f.required}
        assert schema["properties"]["kind"]["const"] == kind


def test_model_needs_device_in_a_batch() -> None:
    text = b'{"ts": 1767225600000, "smoke_db_m": 0.1, "temp_c": 20}'
    with pytest.raises(PayloadError) as err:
        validate_reading("smoke", text, batch=True)
    assert err.value.reason == "missing_device"
    validate_reading("smoke", text[:-1] + b', "device": "smoke-1"}', batch=True)


def test_non_finite_helpers_are_what_they_say() -> None:
    assert all(not math.isfinite(json.loads(r.text, parse_constant=float, parse_int=float))
               for r in NON_FINITE)
