"""Normal traffic: contract payloads the decoder accepts, realistic values and cadences that
satisfy no rule, the same bytes for the same seed whatever the shard."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from anju.devices.batch import Batch, BatchBuilder, KindBatch
from anju.devices.decode import Decoder
from anju.devices.registry import Site, load_site
from anju.kinds import KINDS
from anju.simulators.city import plan_city, write_site
from anju.simulators.traffic import Traffic, record

# 07:30 in Shanghai: the morning peak, when lifts are busiest.
PEAK_MS = 1_772_407_800_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    out = tmp_path_factory.mktemp("city")
    write_site(plan_city(2, seed=7), out)
    return load_site(out)


def _recording(site: Site, seconds: float, seed: int = 1, start: int = PEAK_MS,
               **kw: object) -> bytes:
    buf = io.BytesIO()
    record(Traffic(site, start_ms=start, duration_s=seconds, seed=seed, **kw), buf)  # type: ignore[arg-type]
    return buf.getvalue()


def _decode(site: Site, data: bytes) -> tuple[Decoder, Batch]:
    decoder = Decoder(site)
    builder = BatchBuilder()
    for line in data.splitlines():
        rec = orjson.loads(line)
        decoder.decode(rec["topic"], orjson.dumps(rec["payload"]), builder)
    return decoder, builder.build()


@pytest.fixture(scope="module")
def peak(site: Site) -> tuple[bytes, Decoder, Batch]:
    data = _recording(site, 15 * 60)
    decoder, batch = _decode(site, data)
    return data, decoder, batch


def _per_device(kb: KindBatch) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    order = np.lexsort((kb.ts, kb.device))
    dev, ts = kb.device[order], kb.ts[order]
    bounds = np.flatnonzero(np.r_[True, dev[1:] != dev[:-1], True])
    for a, b in itertools.pairwise(bounds.tolist()):
        yield int(dev[a]), order[a:b], ts[a:b]


def test_decoder_accepts_everything(peak: tuple[bytes, Decoder, Batch]) -> None:
    data, decoder, batch = peak
    assert decoder.rejected == {}
    assert decoder.accepted == len(data.splitlines()) == batch.readings > 20_000
    assert set(batch.kinds) == set(KINDS)
    assert all(len(kb) for kb in batch.kinds.values())


def test_recording_is_in_time_order_with_seq(peak: tuple[bytes, Decoder, Batch]) -> None:
    data, _, batch = peak
    ts = [orjson.loads(line)["payload"]["ts"] for line in data.splitlines()]
    assert ts == sorted(ts)
    for kb in batch.kinds.values():
        for _, rows, _ in _per_device(kb):
            assert list(kb.seq[rows]) == list(range(len(rows)))


def test_reporting_cadence(peak: tuple[bytes, Decoder, Batch]) -> None:
    _, _, batch = peak
    for kind, period in (("smoke", 60_000), ("camera", 60_000), ("water", 10_000)):
        for _, _, ts in _per_device(batch.kinds[kind]):
            assert set(np.diff(ts).tolist()) == {period}, kind
    lifts = batch.kinds["elevator"]
    speed = lifts.column("speed_mps")
    door = lifts.column("door_open")
    for _, rows, ts in _per_device(lifts):
        gaps = np.diff(ts)
        assert gaps.max() <= 30_000  # idle: every 30 s
        active = (speed[rows] != 0) | (door[rows] == 1)
        # moving or doors open: every second
        assert np.all(gaps[active[:-1]] <= 1_000)


def test_elevators_raise_nothing(site: Site, peak: tuple[bytes, Decoder, Batch]) -> None:
    _, _, batch = peak
    kb = batch.kinds["elevator"]
    c = {name: kb.column(name) for name in ("floor", "speed_mps", "door_open", "in_door_zone",
                                            "occupied", "alarm_button", "power_ok",
                                            "accel_rms_mg", "ebike")}
    rated = site.devices.param("rated_speed_mps")[kb.device]
    assert np.all(np.abs(c["speed_mps"]) <= rated)  # never above rated, let alone 115 %
    assert np.all(c["speed_mps"][c["door_open"] == 1] == 0)  # doors open only at rest
    stopped = c["speed_mps"] == 0
    assert np.all(c["in_door_zone"][stopped] == 1)  # at rest only level at a landing
    assert np.all(c["accel_rms_mg"] < 150)
    assert np.all((c["power_ok"] == 1) & (c["alarm_button"] == 0) & (c["ebike"] == 0))
    top = site.devices.param("top_floor")[kb.device]
    bottom = site.devices.param("bottom_floor")[kb.device]
    assert np.all((c["floor"] >= bottom) & (c["floor"] <= top) & (c["floor"] != 0))
    assert np.any(c["speed_mps"] > 0) and np.any(c["speed_mps"] < 0)
    assert np.any(c["occupied"] == 1) and np.any(c["door_open"] == 1)
    # a passenger never waits behind closed doors at rest: at most the second before
    # departure (trapped needs 60 s)
    waiting = stopped & (c["occupied"] == 1) & (c["door_open"] == 0)
    for _, rows, ts in _per_device(kb):
        w = waiting[rows]
        starts = np.flatnonzero(w & ~np.r_[False, w[:-1]])
        ends = np.flatnonzero(w & ~np.r_[w[1:], False])
        assert all(ts[e] - ts[s] <= 2_000 for s, e in zip(starts, ends, strict=True))


def test_smoke_detectors_raise_nothing(peak: tuple[bytes, Decoder, Batch]) -> None:
    kb = peak[2].kinds["smoke"]
    assert np.all((kb.column("smoke_db_m") >= 0) & (kb.column("smoke_db_m") < 0.05))
    temp = kb.column("temp_c")
    assert np.all((temp > 10) & (temp < 32))
    assert np.all(kb.column("battery_pct") > 20)
    assert np.all(kb.column("tamper") == 0)


def test_pump_rooms_raise_nothing(peak: tuple[bytes, Decoder, Batch]) -> None:
    kb = peak[2].kinds["water"]
    level, pressure, flow = (kb.column(n) for n in ("level_pct", "pressure_mpa", "flow_m3h"))
    assert np.all((level >= 30) & (level <= 90))
    assert np.all((pressure >= 0.25) & (pressure <= 0.45))
    assert np.all(flow >= 0)
    # GB 5749-2022: free chlorine 0.05–2 mg/L, turbidity ≤ 1 NTU, pH 6.5–8.5
    assert np.all((kb.column("chlorine_mg_l") > 0.05) & (kb.column("chlorine_mg_l") < 2))
    assert np.all(kb.column("turbidity_ntu") < 1)
    assert np.all((kb.column("ph") > 6.5) & (kb.column("ph") < 8.5))
    assert np.all(kb.column("pump_fault") == 0)
    for _, rows, _ in _per_device(kb):  # water.burst: never 0.10 MPa under the 30 s max
        p = pressure[rows]
        window_max = np.max(np.lib.stride_tricks.sliding_window_view(p, 4), axis=1)
        assert np.all(window_max - p[3:] < 0.10)


def test_same_seed_same_bytes(site: Site) -> None:
    a = _recording(site, 180, seed=5)
    assert a == _recording(site, 180, seed=5)
    assert a != _recording(site, 180, seed=6)


def test_a_shard_is_a_subset_of_the_whole(site: Site) -> None:
    whole = _recording(site, 180)
    mine = np.flatnonzero(site.devices.building % 3 == 1)
    ids = {site.devices.ids[i] for i in mine.tolist()}
    shard = _recording(site, 180, devices=mine)
    expected = [ln for ln in whole.splitlines()
                if orjson.loads(ln)["topic"].rsplit("/", 1)[1] in ids]
    assert shard.splitlines() == expected


def test_gateway_batches_carry_the_same_readings(site: Site, tmp_path: Path) -> None:
    by_device = _recording(site, 120)
    by_gateway = _recording(site, 120, via="gateway")
    decoder, batch = _decode(site, by_gateway)
    assert decoder.rejected == {}
    assert all(orjson.loads(ln)["topic"].split("/")[3] == "batch"
               for ln in by_gateway.splitlines())
    assert batch.readings == len(by_device.splitlines())
    singles = sorted(orjson.dumps(orjson.loads(ln)["payload"]) for ln in by_device.splitlines())
    items = []
    for ln in by_gateway.splitlines():
        for item in orjson.loads(ln)["payload"]:
            item.pop("device")
            items.append(orjson.dumps(item))
    assert sorted(items) == singles
