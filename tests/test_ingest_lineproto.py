"""Line protocol: the vectorised encoder against a plain per-point reference, and escaping
proven by round trips through a real InfluxDB (write, query back, compare)."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anju.devices.batch import Batch, KindBatch
from anju.devices.registry import Site, load_site
from anju.ingest.lineproto import (
    LineEncoder,
    escape_key,
    format_float,
    quote_string,
    stored_string_value,
    stored_tag_value,
    tag_value,
)
from anju.kinds import KINDS
from anju.services import LocalServices

SITE_YAML = """estates:
  - id: e1
    buildings:
      - {id: b1, floors: 18}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root: Path = tmp_path_factory.mktemp("site")
    (root / "site.yaml").write_text(SITE_YAML)
    cam = '"{""mount_height_m"": 1.5, ""distance_m"": 30, ""tilt_deg"": 20, ' \
          '""focal_px"": 1000, ""cy_px"": 540}"'
    lift = '"{""rated_speed_mps"": 1.5, ""top_floor"": 18, ""bottom_floor"": -1}"'
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        "s-1,smoke,e1,b1,12,\"stair A, east=1\",\n"
        "s-2,smoke,e1,b1,,,\n"
        f"l-1,elevator,e1,b1,,car 1,{lift}\n"
        "w-1,water,e1,b1,-1,\"pump\\,room\\\",\n"
        f"c-1,camera,e1,b1,,,{cam}\n"
        "f-1,firelane,e1,b1,,fire lane,\n"
        "a-1,access,e1,b1,1,\"gate=main\",\"{\"\"held_open_s\"\": 120}\"\n"
        "p-1,patrol,e1,b1,1,lobby,\n",
        encoding="utf-8")
    return load_site(root)


def _reference_line(site: Site, kb: KindBatch, row: int) -> str | None:
    """One point, the obvious way: an f-string per field."""
    dt = site.devices
    dev = int(kb.device[row])
    b = site.buildings[int(dt.building[dev])]
    tags = [f"building={b.id}", f"device={dt.ids[dev]}", f"estate={b.estate}"]
    if not math.isnan(dt.floor[dev]):
        tags.append(f"floor={int(dt.floor[dev])}")
    if dt.zone[dev] and tag_value(dt.zone[dev]):
        tags.append(f"zone={tag_value(dt.zone[dev])}")
    fields = []
    for pos, f in enumerate(kb.kind.columns):
        v = float(kb.values[row, pos])
        if math.isnan(v) or not f.stored:
            continue
        if f.type == "float":
            fields.append(f"{f.name}={v!r}")
        elif f.type == "int":
            fields.append(f"{f.name}={int(v)}i")
        elif f.type == "bool":
            fields.append(f"{f.name}={'true' if v else 'false'}")
        else:
            fields.append(f"{f.name}={quote_string(f.choices[int(v)])}")
    if not fields:
        return None
    return f"{kb.kind.name},{','.join(tags)} {','.join(fields)} {int(kb.ts[row])}"


def test_example_lines(site: Site) -> None:
    kb = KindBatch(KINDS["smoke"], np.array([0, 1], np.int32), np.array([5, 6], np.int64),
                   np.array([-1, -1], np.int64),
                   np.array([[0.02, 22.5, np.nan, 0.0], [0.1, 20.0, 99.5, np.nan]]))
    enc = LineEncoder(site).encode(Batch({"smoke": kb}))
    assert sorted(enc.lines) == sorted([
        "smoke,building=b1,device=s-1,estate=e1,floor=12,zone=stair\\ A\\,\\ east\\=1 "
        "smoke_db_m=0.02,temp_c=22.5,tamper=false 5",
        "smoke,building=b1,device=s-2,estate=e1 smoke_db_m=0.1,temp_c=20.0,battery_pct=99.5 6",
    ])
    # zone `pump\,room\`: its trailing backslash is dropped, the comma escaped after the
    # literal backslash
    assert LineEncoder(site).prefix(3) == \
        "water,building=b1,device=w-1,estate=e1,floor=-1,zone=pump\\\\,room "


@st.composite
def _kind_batch(draw: st.DrawFn, site: Site, kind: str | None = None) -> KindBatch:
    kind = kind or draw(st.sampled_from(sorted(KINDS)))
    spec = KINDS[kind]
    devs = site.devices.of_kind(kind)
    n = draw(st.integers(0, 30))
    cols = []
    for f in spec.columns:
        if f.type == "float":
            el = st.floats(allow_nan=False, allow_infinity=False, width=64)
        elif f.type == "int":
            el = st.integers(-(2**52), 2**52).map(float)
        elif f.type == "bool":
            el = st.sampled_from([0.0, 1.0])
        else:
            el = st.integers(0, len(f.choices) - 1).map(float)
        cols.append(draw(st.lists(st.one_of(el, st.just(math.nan)), min_size=n, max_size=n)))
    values = np.array(cols, dtype=np.float64).T.reshape(n, len(spec.columns))
    return KindBatch(spec, np.array(draw(st.lists(st.sampled_from(devs.tolist()), min_size=n,
                                                  max_size=n)), np.int32).reshape(n),
                     np.array(draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)),
                              np.int64).reshape(n),
                     np.full(n, -1, np.int64), values)


def test_keys_that_cannot_be_written_are_refused() -> None:
    assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    for bad in ("", "a\\", "a\\,b", "a\nb"):
        with pytest.raises(ValueError):
            escape_key(bad)


@given(data=st.data())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_encoder_matches_reference(site: Site, data: st.DataObject) -> None:
    kb = data.draw(_kind_batch(site))
    enc = LineEncoder(site).encode_kind(kb)
    ref = [_reference_line(site, kb, r) for r in range(len(kb))]
    assert sorted(enc.lines) == sorted(x for x in ref if x is not None)
    assert enc.empty == sum(x is None for x in ref)


@given(data=st.data())
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_gathered_chunk_encodes_as_its_parts(site: Site, data: st.DataObject) -> None:
    """Storage encodes the batches it gathered as one (KindBatch.concat per kind): the
    same lines, in the same order, as encoding each small batch."""
    first = data.draw(_kind_batch(site))
    parts = [first] + [data.draw(_kind_batch(site, first.kind.name)) for _ in range(3)]
    enc = LineEncoder(site)
    whole = KindBatch.concat(parts)
    assert len(whole) == sum(len(p) for p in parts)
    separate = [enc.encode_kind(p) for p in parts]
    joined = enc.encode_kind(whole)
    assert sorted(joined.lines) == sorted(x for e in separate for x in e.lines)
    assert joined.empty == sum(e.empty for e in separate)


# -- round trips through a real InfluxDB -------------------------------------------------------

_texts = st.text(st.characters(codec="utf-8"), min_size=0, max_size=24)
# Characters the escaping must get right, drawn often.
_nasty = st.text(st.sampled_from(list(',= "\\\n\r\tx=é中\x00')), min_size=0, max_size=12)
_strings = st.one_of(_nasty, _texts)
_keys = st.text(st.characters(codec="utf-8", exclude_characters="\\\n\r"), max_size=12)
_clock = itertools.count(1)


@pytest.mark.integration
@given(items=st.lists(st.tuples(_strings, _keys, _strings,
                                st.floats(allow_nan=False, allow_infinity=False)),
                      min_size=1, max_size=25))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_escaping_round_trips_through_influxdb(services: LocalServices, influx_db: str,
                                               items: list[tuple[str, str, str, float]]) -> None:
    base = next(_clock) * 1000
    lines = []
    expect = {}
    for i, (tag, key_tail, text, x) in enumerate(items):
        ts = base + i
        tv = tag_value(tag)
        key = escape_key("k" + key_tail)  # "k": a key may not be empty
        tags = f",zone={tv}" if tv is not None else ""
        lines.append(f"rt{tags} s={quote_string(text)},{key}=1i,x={format_float(x)} {ts}")
        expect[ts] = (stored_tag_value(tag), stored_string_value(text), x,
                      "k" + key_tail)
    services.influx.write(influx_db, "\n".join(lines))
    res = services.influx.query(f"SELECT * FROM rt WHERE time >= {base}ms AND time < "
                                f"{base + 1000}ms", db=influx_db, epoch="ms")
    series = res["results"][0]["series"][0]
    cols = series["columns"]
    got = {}
    for row in series["values"]:
        r = dict(zip(cols, row, strict=True))
        keys = [c for c in cols if c not in ("time", "s", "x", "zone") and r[c] == 1]
        got[r["time"]] = (r.get("zone"), r["s"], r["x"], keys)
    assert set(got) == set(expect)
    for ts, (zone, s, x, key) in expect.items():
        gz, gs, gx, gkeys = got[ts]
        # JSON may spell a float as an integer literal (4.68e16 → 46809267941403210)
        assert gz == zone and gs == s and float(gx) == x
        assert key in gkeys


@pytest.mark.integration
def test_encoded_batch_is_accepted_verbatim(site: Site, services: LocalServices,
                                            influx_db: str) -> None:
    now = int(time.time() * 1000)
    rows = {
        "smoke": (np.array([0, 1]), [[0.02, 22.5, np.nan, 1.0], [0.1, 20.0, 99.5, np.nan]]),
        "elevator": (np.array([2]), [[-1.0, -0.5, 0.0, 1.0, 0.0, np.nan, 1.0, 12.5, 0.0]]),
        "camera": (np.array([4]), [[1.0, 0.93]]),
    }
    kinds = {}
    for kind, (devs, vals) in rows.items():
        n = len(devs)
        kinds[kind] = KindBatch(KINDS[kind], devs.astype(np.int32),
                                np.arange(now, now + n, dtype=np.int64), np.full(n, -1),
                                np.array(vals, dtype=np.float64))
    enc = LineEncoder(site).encode(Batch(kinds))
    services.influx.write(influx_db, "\n".join(enc.lines))
    cam = services.influx.query("SELECT * FROM camera", db=influx_db)["results"][0]["series"][0]
    assert dict(zip(cam["columns"], cam["values"][0], strict=True))["event"] == "falling_object"
    lift = services.influx.query("SELECT * FROM elevator", db=influx_db)["results"][0]
    row = dict(zip(lift["series"][0]["columns"], lift["series"][0]["values"][0], strict=True))
    assert row["floor"] == -1 and row["door_open"] is False and row["zone"] == "car 1"
    assert services.influx.count("smoke", influx_db) == 2
