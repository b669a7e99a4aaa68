"""Every rejection reason, one table row (or more) each; arrays judged reading by reading;
the example replay; the decoder never raises, whatever the bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anju.devices.batch import BatchBuilder
from anju.devices.decode import MAX_PAYLOAD, REASONS, Decoder, Rejection, parse_topic
from anju.devices.registry import Site, load_site
from anju.devices.sample import write_site
from anju.devices.spec import MAX_TS_AHEAD_MS, MIN_TS_MS
from anju.errors import PayloadError

NOW = 1_767_225_600_000
# write_site(estates=2, buildings=2): smoke-1 e1/b1, smoke-2 e1/b2, smoke-3 e2/b1 …
SMOKE = {"ts": NOW, "smoke_db_m": 0.02, "temp_c": 21.5}
LIFT = {"ts": NOW, "floor": 3, "speed_mps": 0.0, "door_open": False, "in_door_zone": True,
        "occupied": False}
TRACK = [[0, 10.0, 100.0], [50, 10.0, 110.0], [100, 10.0, 125.0], [150, 10.0, 145.0]]
CAM = {"ts": NOW, "event": "falling_object", "track": TRACK, "confidence": 0.9}
T_SMOKE = "anju/e1/b1/smoke/smoke-1"
T_LIFT = "anju/e1/b1/elevator/elevator-1"
T_CAM = "anju/e1/b1/camera/camera-1"
T_BATCH = "anju/e1/b1/batch/gw-1"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return load_site(write_site(tmp_path_factory.mktemp("site"), estates=2, buildings=2))


def j(obj: object) -> bytes:
    return json.dumps(obj).encode()  # orjson would refuse the ints beyond 64 bits


def w(base: dict, **changes: object) -> bytes:
    """``base`` with fields changed; a value of ``...`` removes the field."""
    out = {k: v for k, v in {**base, **changes}.items() if v is not ...}
    return j(out)


# (reason, topic, payload, field) — payload is one reading, or a message refused whole
CASES: list[tuple[str, str, bytes, str | None]] = [
    ("too_large", T_SMOKE, j(SMOKE)[:-1] + b" " * MAX_PAYLOAD + b"}", None),
    ("invalid_utf8", T_SMOKE, b"\xff\xfe not utf-8", None),
    ("invalid_utf8", T_SMOKE, b'{"ts": 1767225600000, "smoke_db_m": "\xed\xa0\x80"}', None),
    ("invalid_json", T_SMOKE, b'{"ts": 1767225600000,', None),
    ("invalid_json", T_SMOKE, b'{"ts": 1767225600000, "x": "\\ud800"}', None),
    ("invalid_json", T_SMOKE, b"\xef\xbb\xbf" + j(SMOKE), None),
    ("invalid_json", T_SMOKE, b"", None),
    ("bad_topic", "anju/e1/b1/gas/smoke-1", j(SMOKE), None),
    ("bad_topic", "anju/e1/b1/smoke", j(SMOKE), None),
    ("bad_topic", "anju/e1/b1/smoke/smoke-1/x", j(SMOKE), None),
    ("bad_topic", "other/e1/b1/smoke/smoke-1", j(SMOKE), None),
    ("bad_topic", "anju/e 1/b1/smoke/smoke-1", j(SMOKE), None),
    ("bad_topic", "anju/e1/b1/smoke/" + "s" * 65, j(SMOKE), None),
    ("bad_topic", "anju/e1/b1/smoke/+", j(SMOKE), None),
    ("not_a_reading", T_SMOKE, b"5", None),
    ("not_a_reading", T_SMOKE, b'"reading"', None),
    ("not_a_reading", T_SMOKE, b"null", None),
    ("not_a_reading", T_SMOKE, b"[[1, 2]]", None),
    ("not_a_reading", T_BATCH, w(SMOKE, device="smoke-1"), None),
    ("unknown_device", "anju/e1/b1/smoke/smoke-999", j(SMOKE), "device"),
    ("unknown_device", T_BATCH, j([{**SMOKE, "device": "ghost"}]), "device"),
    ("wrong_place", "anju/e1/b1/smoke/smoke-2", j(SMOKE), "device"),  # smoke-2 is in e1/b2
    ("wrong_place", "anju/e2/b1/smoke/smoke-1", j(SMOKE), "device"),  # another estate
    ("wrong_place", T_SMOKE, w(SMOKE, device="smoke-3"), "device"),  # speaks for another
    ("wrong_place", T_BATCH, j([{**SMOKE, "device": "smoke-2"}]), "device"),
    ("kind_mismatch", "anju/e1/b1/water/smoke-1", j(SMOKE), None),
    ("kind_mismatch", T_SMOKE, w(SMOKE, kind="water"), "kind"),
    ("kind_mismatch", T_BATCH, j([{**SMOKE, "device": "smoke-1", "kind": "camera"}]), "kind"),
    ("missing_device", T_BATCH, j([SMOKE]), "device"),
    ("unknown_field", T_SMOKE, w(SMOKE, colour="red"), "colour"),
    ("unknown_field", T_SMOKE, w(SMOKE, door_open=True), "door_open"),
    ("unknown_field", T_SMOKE, w(SMOKE, Ts=NOW), "Ts"),
    ("missing_field", T_SMOKE, w(SMOKE, temp_c=...), "temp_c"),
    ("missing_field", T_LIFT, w(LIFT, occupied=...), "occupied"),
    ("wrong_type", T_SMOKE, w(SMOKE, temp_c="21.5"), "temp_c"),
    ("wrong_type", T_SMOKE, w(SMOKE, temp_c=None), "temp_c"),
    ("wrong_type", T_SMOKE, w(SMOKE, temp_c=True), "temp_c"),
    ("wrong_type", T_SMOKE, w(SMOKE, battery_pct=[50]), "battery_pct"),
    ("wrong_type", T_LIFT, w(LIFT, floor=3.0), "floor"),
    ("wrong_type", T_LIFT, w(LIFT, floor=2**64), "floor"),  # read as a float, like orjson
    ("wrong_type", T_SMOKE, w(SMOKE, ts=float(NOW)), "ts"),
    ("wrong_type", T_SMOKE, w(SMOKE, ts=str(NOW)), "ts"),
    ("wrong_type", T_SMOKE, w(SMOKE, seq="1"), "seq"),
    ("wrong_type", T_CAM, w(CAM, event=1), "event"),
    ("wrong_type", T_SMOKE, w(SMOKE, device=7), "device"),
    ("wrong_type", T_BATCH, j([{**SMOKE, "device": None}]), "device"),
    ("not_boolean", T_LIFT, w(LIFT, door_open=1), "door_open"),
    ("not_boolean", T_LIFT, w(LIFT, occupied=0), "occupied"),
    ("not_boolean", T_SMOKE, w(SMOKE, tamper=0.0), "tamper"),
    ("not_finite", T_SMOKE, b'{"ts": 1767225600000, "smoke_db_m": NaN, "temp_c": 1}', "smoke_db_m"),
    ("not_finite", T_SMOKE, b'{"ts": 1767225600000, "smoke_db_m": 1, "temp_c": -Infinity}',
     "temp_c"),
    ("not_finite", T_SMOKE, b'{"ts": 1767225600000, "smoke_db_m": 1e999, "temp_c": 1}',
     "smoke_db_m"),
    ("not_finite", T_SMOKE, b'{"ts": 1767225600000, "smoke_db_m": 1, "temp_c": 1' + b"0" * 400
     + b"}", "temp_c"),
    ("not_finite", T_LIFT, w(LIFT, floor=2**53), "floor"),
    ("not_finite", T_LIFT, w(LIFT, floor=-(2**60)), "floor"),
    ("not_finite", T_SMOKE, w(SMOKE, seq=2**53), "seq"),
    ("not_finite", T_SMOKE, b'{"ts": NaN, "smoke_db_m": 1, "temp_c": 1}', "ts"),
    ("not_finite", T_CAM, j(CAM).replace(b"145.0", b"NaN"), "track"),
    ("bad_value", T_CAM, w(CAM, event="explosion", track=...), "event"),
    ("bad_value", T_CAM, w(CAM, event="Heartbeat", track=...), "event"),
    ("bad_value", T_SMOKE, w(SMOKE, seq=-1), "seq"),
    ("missing_ts", T_SMOKE, w(SMOKE, ts=...), "ts"),
    ("ts_out_of_range", T_SMOKE, w(SMOKE, ts=MIN_TS_MS - 1), "ts"),
    ("ts_out_of_range", T_SMOKE, w(SMOKE, ts=0), "ts"),
    ("ts_out_of_range", T_SMOKE, w(SMOKE, ts=NOW + MAX_TS_AHEAD_MS + 1), "ts"),
    ("ts_out_of_range", T_SMOKE, w(SMOKE, ts=2**63 - 1), "ts"),
    ("bad_track", T_CAM, w(CAM, track=TRACK[:3]), "track"),
    ("bad_track", T_CAM, w(CAM, track=[]), "track"),
    ("bad_track", T_CAM, w(CAM, track=...), "track"),
    ("bad_track", T_CAM, w(CAM, event="heartbeat"), "track"),
    ("bad_track", T_CAM, w(CAM, track=[TRACK[1], TRACK[0], *TRACK[2:]]), "track"),
    ("bad_track", T_CAM, w(CAM, track=[[0, 1.0], *TRACK[1:]]), "track"),
    ("bad_track", T_CAM, w(CAM, track=[[0, True, 1.0], *TRACK[1:]]), "track"),
    ("bad_track", T_CAM, w(CAM, track=[[-1, 1.0, 1.0], *TRACK[1:]]), "track"),
    ("bad_track", T_CAM, w(CAM, track={"t": 1}), "track"),
]


def decode(site: Site, topic: str, payload: bytes,
           now_ms: int | None = NOW) -> tuple[int, list[Rejection], BatchBuilder]:
    rejections: list[Rejection] = []
    builder = BatchBuilder()
    n = Decoder(site, on_reject=rejections.append).decode(topic, payload, builder,
                                                          now_ms=now_ms, received_ms=123)
    return n, rejections, builder


def test_every_reason_has_a_case() -> None:
    assert {c[0] for c in CASES} == set(REASONS)


@pytest.mark.parametrize(("reason", "topic", "payload", "field"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rejection(site: Site, reason: str, topic: str, payload: bytes,
                   field: str | None) -> None:
    n, rejections, builder = decode(site, topic, payload)
    assert n == 0 and builder.build().readings == 0
    assert [(r.reason, r.field) for r in rejections] == [(reason, field)], rejections
    r = rejections[0]
    assert r.topic == topic and r.received_ms == 123 and r.detail
    assert r.payload == payload  # a single reading or whole message: kept as received


def test_good_readings_of_every_kind_are_kept(site: Site) -> None:
    water = {"ts": NOW, "level_pct": 60, "pressure_mpa": 0.3, "flow_m3h": 10.5,
             "pump_running": True, "ph": 7.2, "seq": 5}
    msgs = [(T_SMOKE, j(SMOKE)), (T_LIFT, j(LIFT)), (T_CAM, j(CAM)),
            ("anju/e1/b1/water/water-1", j(water)),
            (T_CAM, w(CAM, event="heartbeat", track=...)),
            (T_SMOKE, w(SMOKE, device="smoke-1", kind="smoke", seq=0, ts=MIN_TS_MS)),
            (T_SMOKE, w(SMOKE, ts=NOW + MAX_TS_AHEAD_MS)),
            (T_SMOKE, j(SMOKE)[:-1] + b" " * (MAX_PAYLOAD - len(j(SMOKE))) + b"}")]
    builder = BatchBuilder()
    dec = Decoder(site)
    assert sum(dec.decode(t, p, builder, now_ms=NOW) for t, p in msgs) == len(msgs)
    batch = builder.build()
    assert not dec.rejected and batch.readings == len(msgs)
    cam = batch.kinds["camera"]
    assert cam.column("event").tolist() == [1.0, 0.0]  # index in choices
    assert cam.extras == [{"track": [[float(a), b, c] for a, b, c in TRACK]}]
    wat = batch.kinds["water"]
    assert wat.seq.tolist() == [5] and wat.column("pump_running").tolist() == [1.0]
    assert (wat.column("chlorine_mg_l") != wat.column("chlorine_mg_l")).all()  # NaN: absent
    assert batch.kinds["smoke"].seq.tolist() == [-1, 0, -1, -1]


def test_arrays_are_judged_reading_by_reading(site: Site) -> None:
    payload = (b"[" + j(SMOKE) + b', {"ts": 1767225601000, "smoke_db_m": NaN, "temp_c": 1}, '
               + w(SMOKE, ts=NOW + 2) + b", 7, " + w(SMOKE, tamper=1) + b"]")
    n, rejections, builder = decode(site, T_SMOKE, payload)
    assert n == 2
    assert [r.reason for r in rejections] == ["not_finite", "not_a_reading", "not_boolean"]
    assert all(r.device == "smoke-1" for r in rejections)
    # each rejected item is kept alone, re-encoded, not the whole message
    assert orjson.loads(rejections[2].payload)["tamper"] == 1
    assert builder.build().kinds["smoke"].ts.tolist() == [NOW, NOW + 2]


def test_gateway_batch(site: Site) -> None:
    items = [{**SMOKE, "device": "smoke-1"}, {**LIFT, "device": "elevator-1", "kind": "elevator"},
             {**SMOKE, "device": "smoke-2"}, {**SMOKE, "device": "ghost"}, SMOKE,
             {**CAM, "device": "camera-1"}]
    n, rejections, builder = decode(site, T_BATCH, j(items))
    assert n == 3
    assert [(r.reason, r.device) for r in rejections] == [
        ("wrong_place", "smoke-2"), ("unknown_device", "ghost"), ("missing_device", None)]
    batch = builder.build()
    assert {k: len(v) for k, v in batch.kinds.items()} == {"smoke": 1, "elevator": 1,
                                                           "camera": 1}
    assert batch.messages == 1


def test_empty_array_is_no_reading_and_no_rejection(site: Site) -> None:
    assert decode(site, T_SMOKE, b"[]")[:2] == (0, [])
    assert decode(site, T_BATCH, b"[]")[:2] == (0, [])


def test_replay_clock_is_the_newest_accepted_reading(site: Site) -> None:
    dec = Decoder(site)
    b = BatchBuilder()
    # no clock yet: anything from 2000 to 2100 is accepted and sets the clock
    assert dec.decode(T_SMOKE, w(SMOKE, ts=NOW), b) == 1
    assert dec.decode(T_SMOKE, w(SMOKE, ts=NOW + MAX_TS_AHEAD_MS), b) == 1
    assert dec.newest_ts == NOW + MAX_TS_AHEAD_MS
    assert dec.decode(T_SMOKE, w(SMOKE, ts=NOW + 2 * MAX_TS_AHEAD_MS + 1), b) == 0
    assert dec.decode(T_SMOKE, w(SMOKE, ts=NOW - 86_400_000), b) == 1  # late data is fine
    assert dec.newest_ts == NOW + MAX_TS_AHEAD_MS
    assert dict(dec.rejected) == {"ts_out_of_range": 1}
    # before any accepted reading the bound is 2100-01-01 (a ts column must stay int64)
    fresh = Decoder(site)
    assert fresh.decode(T_SMOKE, w(SMOKE, ts=4_102_444_800_000), b) == 1
    fresh = Decoder(site)
    assert fresh.decode(T_SMOKE, w(SMOKE, ts=4_102_444_800_001), b) == 0
    assert fresh.decode(T_SMOKE, w(SMOKE, ts=2**64 - 1), b) == 0
    assert dict(fresh.rejected) == {"ts_out_of_range": 2}


def test_partition_filter(site: Site) -> None:
    dec = Decoder(site, estates={"e2"})
    assert dec.decode(T_SMOKE, j(SMOKE), BatchBuilder(), now_ms=NOW) == 0
    assert dict(dec.rejected) == {"wrong_place": 1}
    assert dec.decode("anju/e2/b1/smoke/smoke-3", j(SMOKE), BatchBuilder(), now_ms=NOW) == 1


def test_parse_topic() -> None:
    t = parse_topic("anju/e-1/B_2/camera/cam-9")
    assert (t.estate, t.building, t.kind, t.device) == ("e-1", "B_2", "camera", "cam-9")
    assert parse_topic("anju/e1/b1/batch/gw").kind is None
    with pytest.raises(PayloadError):
        parse_topic("anju/e1/b1/Smoke/x")


# -- the example replay (CONTRACT §7 input format), inline so the test stands alone --------
EXAMPLE_SITE_YAML = """\
estates:
  - id: demo1
    name: 上海公馆小区
    district: 红旗区
    buildings:
      - {id: b1, floors: 12, floor_height_m: 3.0}
"""
EXAMPLE_DEVICES = """\
device,kind,estate,building,floor,zone,params
smk-1,smoke,demo1,b1,6,stair-A,
smk-2,smoke,demo1,b1,6,"corridor, east",
lift-1,elevator,demo1,b1,,car-1,"{""rated_speed_mps"": 1.5, ""top_floor"": 12, ""bottom_floor"": -1}"
pump-1,water,demo1,b1,-1,pump-room,
cam-1,camera,demo1,b1,,facade-south,"{""mount_height_m"": 2.5, ""distance_m"": 25.0, ""tilt_deg"": 40.0, ""focal_px"": 1500.0, ""cy_px"": 1080.0}"
"""  # noqa: E501
EXAMPLE_REPLAY = r"""
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225600000, "smoke_db_m": 0.02, "temp_c": 22.5}}
{"topic": "anju/demo1/b1/elevator/lift-1", "payload": {"ts": 1767225601000, "floor": 3, "speed_mps": 1.5, "door_open": true, "in_door_zone": false, "occupied": true}}
{"topic": "anju/demo1/b1/water/pump-1", "payload": {"ts": 1767225602000, "level_pct": 64.0, "pressure_mpa": 0.31, "flow_m3h": 11.8, "pump_running": true, "chlorine_mg_l": 0.4, "turbidity_ntu": 0.3, "ph": 7.3}}
{"topic": "anju/demo1/b1/camera/cam-1", "payload": {"ts": 1767225603000, "event": "falling_object", "track": [[0, 1800.0, 1027.8], [50, 1800.0, 1031.5], [100, 1800.0, 1036.0], [150, 1800.0, 1041.4], [200, 1800.0, 1047.6], [250, 1800.0, 1054.7], [300, 1800.0, 1062.7], [350, 1800.0, 1071.6], [400, 1800.0, 1081.5], [450, 1800.0, 1092.4], [500, 1800.0, 1104.3], [550, 1800.0, 1117.3]], "confidence": 0.93}}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225605000, "smoke_db_m": 0.02, "temp_c": 22.5}}
{"topic": "anju/demo1/b1/batch/gw-7", "payload": [{"device": "smk-2", "ts": 1767225604000, "smoke_db_m": 0.01, "temp_c": 22.0}]}
{"topic": "anju/demo1/b1/smoke/smk-2", "payload_raw": "{\"ts\": 1767225605000, \"smoke_db_m\": NaN, \"temp_c\": 22.0}"}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload_b64": "//4gbm90IHV0Zi04"}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225610000, "smoke_db_m": 0.35, "temp_c": 22.5}}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225615000, "smoke_db_m": 0.35, "temp_c": 22.5}}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225620000, "smoke_db_m": 0.35, "temp_c": 22.5}}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225625000, "smoke_db_m": 0.35, "temp_c": 22.5}}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225630000, "smoke_db_m": 0.35, "temp_c": 22.5}}
{"topic": "anju/demo1/b1/smoke/smk-1", "payload": {"ts": 1767225635000, "smoke_db_m": 0.35, "temp_c": 22.5}}
"""  # noqa: E501
SHARED_REPLAY = Path("/work/shared/examples/replay.jsonl")


def _payload(msg: dict) -> bytes:
    if "payload" in msg:
        return orjson.dumps(msg["payload"])
    if "payload_raw" in msg:
        return str(msg["payload_raw"]).encode()
    return base64.b64decode(msg["payload_b64"])


@pytest.mark.parametrize("source", ["inline", "shared"])
def test_example_replay(tmp_path: Path, source: str) -> None:
    if source == "shared":
        if not SHARED_REPLAY.exists():
            pytest.skip("no shared example here")
        text = SHARED_REPLAY.read_text(encoding="utf-8")
        root = SHARED_REPLAY.parent / "site"
    else:
        text, root = EXAMPLE_REPLAY, tmp_path
        (root / "site.yaml").write_text(EXAMPLE_SITE_YAML, encoding="utf-8")
        (root / "devices.csv").write_text(EXAMPLE_DEVICES, encoding="utf-8")
    dec = Decoder(load_site(root))
    builder = BatchBuilder()
    for line in text.splitlines():
        if line.strip():
            msg = json.loads(line)
            dec.decode(msg["topic"], _payload(msg), builder)  # replay: data time
    assert (dec.messages, dec.accepted) == (14, 12)
    assert dict(dec.rejected) == {"not_finite": 1, "invalid_utf8": 1}
    batch = builder.build()
    assert batch.readings == 12 and batch.messages == 14
    assert {k: len(v) for k, v in batch.kinds.items()} == {
        "smoke": 9, "elevator": 1, "water": 1, "camera": 1}


# -- no input makes the decoder raise ----------------------------------------------------
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["ts", "seq", "device", "kind", "temp_c", "smoke_db_m", "event",
                         "track", "x"]), kids, max_size=5),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(topic=st.sampled_from([T_SMOKE, T_CAM, T_BATCH, T_LIFT]), payload=st.binary(max_size=64))
def test_any_bytes(site: Site, topic: str, payload: bytes) -> None:
    n, rejections, _ = decode(site, topic, payload)
    assert n + len(rejections) >= 0 and all(r.reason in REASONS for r in rejections)


@settings(max_examples=300, deadline=None)
@given(topic=st.sampled_from([T_SMOKE, T_CAM, T_BATCH, T_LIFT]), value=JSONISH)
def test_any_json(site: Site, topic: str, value: object) -> None:
    payload = json.dumps(value).encode()  # NaN / Infinity included
    n, rejections, builder = decode(site, topic, payload)
    assert all(r.reason in REASONS for r in rejections)
    assert builder.build().readings == n
