"""The on-disk spool: order, durability across reopen, torn tails, the size bound."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from anju.ingest.metrics import ingest_metrics
from anju.ingest.spool import AsyncSpool, Spool


def _chunk(start: int, n: int) -> list[str]:
    return [f'm,t=a\\ b f="x\\"{i}" {i}' for i in range(start, start + n)]


def _drain(sp: Spool, max_points: int = 7) -> list[str]:
    out: list[str] = []
    while sp.points:
        lines, pos, n = sp.read(max_points)
        assert len(lines) == n
        out += lines
        sp.commit(pos, n)
    return out


def test_replays_in_order_across_segments_and_reopen(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 10 << 20, segment_bytes=300)
    sp.open()
    expect: list[str] = []
    for k in range(10):
        sp.append([_chunk(k * 5, 5)])
        expect += _chunk(k * 5, 5)
    assert sp.points == 50 and sp.segments > 3
    lines, pos, n = sp.read(12)
    sp.commit(pos, n)
    sp.close()

    again = Spool(tmp_path, 10 << 20, segment_bytes=300)
    again.open()
    assert again.points == 50 - n
    assert lines + _drain(again) == expect
    assert again.points == 0
    again.append([_chunk(100, 3)])
    assert _drain(again) == _chunk(100, 3)
    again.close()
    assert len(list(tmp_path.glob("*.seg"))) <= 1


def test_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 10 << 20)
    sp.open()
    sp.append([_chunk(0, 3)])
    sp.append([_chunk(3, 3)])
    sp.close()
    seg = next(tmp_path.glob("*.seg"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])  # a crash in the middle of the second record
    sp = Spool(tmp_path, 10 << 20)
    sp.open()
    assert sp.points == 3
    sp.append([_chunk(6, 2)])
    assert _drain(sp) == _chunk(0, 3) + _chunk(6, 2)
    sp.close()


def test_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    m = ingest_metrics(reg)
    sp = Spool(tmp_path, 2000, segment_bytes=400, metrics=m)
    sp.open()
    for k in range(40):
        sp.append([_chunk(k * 4, 4)])
        assert sp.bytes <= 2000 + 400
    assert sp.dropped > 0
    rest = _drain(sp, 1000)
    assert len(rest) + sp.dropped == 160
    assert rest == [ln for k in range(40) for ln in _chunk(k * 4, 4)][-len(rest):]
    assert reg.get_sample_value("anju_spool_points_dropped_total") == sp.dropped
    assert reg.get_sample_value("anju_spool_points_replayed_total") == len(rest)
    sp.close()


def test_drop_while_a_read_is_outstanding(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1500, segment_bytes=300)
    sp.open()
    for k in range(3):
        sp.append([_chunk(k * 4, 4)])
    _lines, pos, n = sp.read(4)
    for k in range(3, 30):
        sp.append([_chunk(k * 4, 4)])  # drops the segments just read
    sp.commit(pos, n)
    rest = _drain(sp, 1000)
    assert rest and rest[-1] == _chunk(116, 4)[-1]
    assert sp.points == 0
    sp.close()


async def test_async_facade(tmp_path: Path) -> None:
    sp = AsyncSpool(Spool(tmp_path, 1 << 20))
    await sp.open()
    await sp.append([_chunk(0, 2), _chunk(2, 2)])
    lines, pos, n = await sp.read(100)
    await sp.commit(pos, n)
    await sp.close()
    assert lines == _chunk(0, 4) and sp.spool.points == 0


def test_a_failed_append_raises_and_leaves_no_torn_record(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 10 << 20, segment_bytes=64)  # a segment per append
    sp.open()
    sp.append([_chunk(0, 5)])
    seg_files = sorted(tmp_path.glob("*.seg"))
    # The next segment's file name is taken by a directory: opening it fails (EISDIR), as a
    # full disk or an I/O error would fail an append.
    blocker = tmp_path / f"{len(seg_files):016d}.seg"
    blocker.mkdir()
    try:
        sp.append([_chunk(5, 5)])
    except OSError:
        pass
    else:
        raise AssertionError("the append should have failed")
    points = sp.points
    blocker.rmdir()
    sp.append([_chunk(10, 5)])  # works again, after the failure
    assert sp.points == points + 5
    sp.close()
    again = Spool(tmp_path, 10 << 20, segment_bytes=64)
    again.open()
    got = _drain(again)
    assert got[:5] == _chunk(0, 5) and got[-5:] == _chunk(10, 5)
    assert len(got) == again.replayed
