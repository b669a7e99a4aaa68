"""The columnar gateway path gives exactly what the reference decoder gives.

``Decoder(site)`` tries gateway batches on the columnar path (anju.devices.columnar) and
falls back to the reference path; ``Decoder(site, columnar=False)`` is the reference path
alone. Hypothesis writes runs of messages — gateway batches of valid readings of every
kind, broken ones (wrong types, 0/1 for booleans, NaN / Infinity / huge literals, unknown
and missing fields, bad enums and tracks, ts out of range or ahead of the clock, unknown
devices, devices of another building, fields of another kind, duplicated keys, duplicated
readings, items that are not objects, payloads that are not arrays or not JSON), mixed
with device-topic messages into the same builder — and both decoders must give the same
batch (rows, order, values, extras), the same rejections (reason, detail, dead-letter
payload, device, field), the same counters and clocks, live and in replay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anju.devices.batch import Batch, BatchBuilder
from anju.devices.decode import MAX_PAYLOAD, Decoder, Rejection
from anju.devices.registry import Site, load_site
from anju.devices.sample import write_site
from anju.devices.spec import MAX_TS_AHEAD_MS, MIN_TS_MS
from anju.kinds import KINDS
from tests.test_decode_schema import NON_FINITE, Raw, mutate, valid_readings

NOW = 1_767_225_600_000
KIND_NAMES = sorted(KINDS)
# write_site(estates=2, buildings=2, per_building=2): {kind}-1, -2 in e1/b1, -3, -4 in e1/b2…
HOME = {kind: [f"{kind}-1", f"{kind}-2"] for kind in KINDS}
AWAY = {kind: [f"{kind}-3", f"{kind}-5", f"{kind}-8"] for kind in KINDS}
T_BATCH = "anju/e1/b1/batch/gw-e1-b1"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return load_site(write_site(Path(tmp_path_factory.mktemp("site")), estates=2, buildings=2,
                                per_building=2))


class Pairs:
    """A JSON object written from (key, value) pairs: keys may repeat (the last wins in
    orjson and msgspec alike; RFC 8259 §4 leaves it to the parser)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs

    def __repr__(self) -> str:
        return f"Pairs({self.pairs!r})"


def dumps(v: Any) -> str:
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps(x)}" for k, x in v.pairs) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(dumps(x) for x in v) + "]"
    return json.dumps(v)


ODD_DEVICES = ["ghost", "", 7, None, True, ["smoke-1"], {"id": "smoke-1"}, "smoke-1 ",
               Raw('"\\ud800"'), Raw('"sm\\u006fke-1"')]
NOT_OBJECTS = [5, "reading", None, [], [{"ts": NOW}], True, Raw("NaN")]


@st.composite
def batch_item(draw: st.DrawFn, faults: bool) -> Any:
    """A valid reading of a device of the topic's building, or (``faults``) a broken one
    (which may, by chance, still be valid)."""
    kind = draw(st.sampled_from(KIND_NAMES))
    r: dict[str, Any] = draw(valid_readings(kind))
    # valid_readings may name the kind's first device; a batch names its own
    r["device"] = draw(st.sampled_from(HOME[kind]))
    if draw(st.booleans()):  # near the clock: in replay, readings then judge each other
        r["ts"] = NOW + draw(st.integers(-2 * MAX_TS_AHEAD_MS, 2 * MAX_TS_AHEAD_MS))
    if not faults:
        return r
    how = draw(st.integers(4, 13))
    if how <= 6:
        for _ in range(draw(st.integers(1, 2))):
            r = draw(mutate(r, kind))
        return r
    if how == 7:  # another device: unknown, elsewhere, of another kind, not a string
        r["device"] = draw(st.sampled_from(
            ODD_DEVICES + AWAY[kind] + [d for k in KINDS if k != kind for d in HOME[k]]))
        return r
    if how == 8:  # a field of another kind
        other = draw(st.sampled_from([k for k in KIND_NAMES if k != kind]))
        f = draw(st.sampled_from(KINDS[other].fields))
        r[f.name] = draw(valid_readings(other)).get(f.name, 1.0)
        return r
    if how == 9:  # a key written twice: the second value is the one judged
        pairs = list(r.items())
        k, _ = draw(st.sampled_from(pairs))
        value = draw(st.sampled_from([r[k], 0.5, 1, True, "x", None, NOW, *NON_FINITE[:2]]))
        at = draw(st.integers(0, len(pairs)))
        if draw(st.booleans()):
            pairs.insert(at, (k, value))  # may come before or after the first
        else:
            pairs.append((k, value))
        return Pairs(pairs)
    if how == 10:  # ts ahead of the clock, or far in the past
        r["ts"] = draw(st.sampled_from([NOW + MAX_TS_AHEAD_MS + 1, NOW + 3_600_000,
                                        MIN_TS_MS, MIN_TS_MS - 1, NOW - 86_400_000]))
        return r
    if how == 11:  # names another kind
        r["kind"] = draw(st.sampled_from([k for k in KIND_NAMES if k != kind] + ["", 1, None]))
        return r
    if how == 12:  # a falling object whose track times do not increase
        times = draw(st.lists(st.integers(0, 50), min_size=4, max_size=6))
        if draw(st.booleans()):
            times.sort()  # increasing, or level where two are equal
        track = [[t, 1.0, 2.0] for t in times]
        return {"device": draw(st.sampled_from(HOME["camera"])), "ts": NOW,
                "event": "falling_object", "track": track}
    return draw(st.sampled_from(NOT_OBJECTS))


@st.composite
def message(draw: st.DrawFn) -> tuple[str, bytes]:
    shape = draw(st.integers(0, 19))
    if shape == 0:  # a device topic in between: rows appended by the reference path
        kind = draw(st.sampled_from(KIND_NAMES))
        r = draw(valid_readings(kind))
        r.pop("device", None)
        return f"anju/e1/b1/{kind}/{kind}-1", dumps(r).encode()
    if shape == 1:  # not an array, not JSON, not UTF-8, another building's topic
        return draw(st.sampled_from([
            (T_BATCH, dumps({"ts": NOW, "device": "smoke-1"}).encode()),
            (T_BATCH, b'[{"ts": 1767225600000, "device": "smoke-1",'),
            (T_BATCH, b"\xef\xbb\xbf[]"),
            (T_BATCH, b'[{"device": "\xff"}]'),
            (T_BATCH, b"null"),
            (T_BATCH, b"[] x"),
            ("anju/e1/b2/batch/gw-e1-b2", dumps([{"ts": NOW, "device": "smoke-1",
                                                  "smoke_db_m": 0.1, "temp_c": 20}]).encode()),
            ("anju/e9/b1/batch/gw-9", b"[]"),
        ]))
    items = draw(st.lists(batch_item(False), max_size=12))
    if shape >= 8:  # one or two broken readings among good ones (else all valid)
        for _ in range(draw(st.integers(1, 2))):
            items.insert(draw(st.integers(0, len(items))), draw(batch_item(True)))
    if items and draw(st.integers(0, 4)) == 0:  # a reading sent twice
        items.insert(draw(st.integers(0, len(items))), draw(st.sampled_from(items)))
    text = dumps(items)
    if draw(st.integers(0, 5)) == 0:
        text = text.replace(", ", ",").replace(": ", ":")  # compact, as gateways send it
    return T_BATCH, text.encode()


def run(site: Site, msgs: list[tuple[str, bytes]], now_ms: int | None, *,
        columnar: bool, together: bool = False
        ) -> tuple[Decoder, list[int], list[Rejection], Batch]:
    """``together``: all messages through one ``decode_many`` (as the live batcher does);
    ``added`` is then their sum."""
    rejections: list[Rejection] = []
    dec = Decoder(site, on_reject=rejections.append, columnar=columnar)
    builder = BatchBuilder()
    if together:
        assert now_ms is not None
        added = [dec.decode_many(msgs, builder, now_ms, received_ms=NOW)]
    else:
        added = [dec.decode(topic, payload, builder, now_ms=now_ms, received_ms=NOW)
                 for topic, payload in msgs]
    return dec, added, rejections, builder.build()


def assert_same_batch(a: Batch, b: Batch) -> None:
    assert a.messages == b.messages
    assert a.kinds.keys() == b.kinds.keys()
    for name, ka in a.kinds.items():
        kb = b.kinds[name]
        for col in ("device", "ts", "seq", "extra_rows"):
            x, y = getattr(ka, col), getattr(kb, col)
            assert x.dtype == y.dtype and np.array_equal(x, y), (name, col, x, y)
        assert ka.values.dtype == kb.values.dtype and ka.values.shape == kb.values.shape
        assert np.array_equal(ka.values, kb.values, equal_nan=True), (name, ka.values, kb.values)
        assert ka.extras == kb.extras, name


def assert_same(site: Site, msgs: list[tuple[str, bytes]], now_ms: int | None) -> None:
    fast, fast_added, fast_rej, fast_batch = run(site, msgs, now_ms, columnar=True)
    ref, ref_added, ref_rej, ref_batch = run(site, msgs, now_ms, columnar=False)
    assert fast._columnar is not None and ref._columnar is None
    assert fast_added == ref_added, msgs
    assert fast_rej == ref_rej, msgs
    assert (fast.messages, fast.accepted, dict(fast.rejected), fast.newest_ts,
            fast.gateway_seen) == (ref.messages, ref.accepted, dict(ref.rejected),
                                   ref.newest_ts, ref.gateway_seen)
    assert_same_batch(fast_batch, ref_batch)
    if now_ms is None:
        return
    many, many_added, many_rej, many_batch = run(site, msgs, now_ms, columnar=True,
                                                 together=True)
    assert many_added == [sum(ref_added)], msgs
    assert many_rej == ref_rej, msgs
    assert (many.messages, many.accepted, dict(many.rejected), many.newest_ts,
            many.gateway_seen) == (ref.messages, ref.accepted, dict(ref.rejected),
                                   ref.newest_ts, ref.gateway_seen)
    assert_same_batch(many_batch, ref_batch)


EXAMPLES = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@EXAMPLES
@given(msgs=st.lists(message(), min_size=1, max_size=6))
def test_same_as_reference_live(site: Site, msgs: list[tuple[str, bytes]]) -> None:
    assert_same(site, msgs, NOW)


@EXAMPLES
@given(msgs=st.lists(message(), min_size=1, max_size=4))
def test_same_as_reference_in_replay(site: Site, msgs: list[tuple[str, bytes]]) -> None:
    """In replay the clock is the newest accepted reading, reading after reading."""
    assert_same(site, msgs, None)


def test_valid_batches_take_the_columnar_path(site: Site, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Not vacuous: a batch of valid readings of every kind never reaches the reference
    path, and gives the reference path's batch."""
    items = [
        {"device": "smoke-1", "ts": NOW, "seq": 3, "smoke_db_m": 0.02, "temp_c": 21},
        {"device": "elevator-2", "ts": NOW - 5, "floor": -1, "speed_mps": 1.5,
         "door_open": False, "in_door_zone": True, "occupied": True, "kind": "elevator"},
        {"device": "camera-1", "ts": NOW - 9, "event": "falling_object", "confidence": 1,
         "track": [[0, 1, 2.5], [40, 1, 3], [80, 1.5, 4], [120, 2, 6]]},
        {"device": "water-2", "ts": NOW, "level_pct": 50, "pressure_mpa": 0.3,
         "flow_m3h": 2.0, "pump_running": True, "ph": 7.1},
        {"device": "camera-2", "ts": NOW - 1, "event": "heartbeat"},
    ]
    msgs = [(T_BATCH, json.dumps(items).encode()), (T_BATCH, json.dumps(items[::-1]).encode())]
    assert_same(site, msgs, NOW)

    def reference(*_args: object) -> None:
        raise AssertionError("a valid batch reached the reference path")

    monkeypatch.setattr(Decoder, "_one", reference)
    _, added, rejections, batch = run(site, msgs, NOW, columnar=True)
    assert added == [5, 5] and not rejections and batch.readings == 10
    _, added, rejections, batch = run(site, msgs, NOW, columnar=True, together=True)
    assert added == [10] and not rejections and batch.readings == 10
    assert batch.kinds["camera"].extras[0]["track"][0] == [0.0, 1.0, 2.5]


def test_one_bad_reading_sends_the_batch_to_the_reference_path(site: Site) -> None:
    good = {"device": "smoke-1", "ts": NOW, "smoke_db_m": 0.02, "temp_c": 21}
    bad = {**good, "temp_c": "21"}
    msgs = [(T_BATCH, json.dumps([good, bad, good]).encode())]
    _, added, rejections, batch = run(site, msgs, NOW, columnar=True)
    assert added == [2] and [r.reason for r in rejections] == ["wrong_type"]
    assert batch.readings == 2
    assert_same(site, msgs, NOW)


def test_too_large_and_deeply_nested(site: Site) -> None:
    item = {"device": "smoke-1", "ts": NOW, "smoke_db_m": 0.02, "temp_c": 21}
    big = json.dumps([item] * (MAX_PAYLOAD // 60 + 1)).encode()
    assert len(big) > MAX_PAYLOAD
    deep = b'[{"device": "smoke-1", "ts": 1767225600000, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}]"
    for payload in (big, deep, b"[" * 100_000):
        assert_same(site, [(T_BATCH, payload)], NOW)
