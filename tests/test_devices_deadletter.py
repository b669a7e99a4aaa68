"""The dead-letter file: record format, 1 KiB cut, rotation, buffering, threads."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import orjson
import pytest

from anju.devices.batch import BatchBuilder
from anju.devices.deadletter import PAYLOAD_LIMIT, DeadLetters, letter
from anju.devices.decode import Decoder, Rejection
from anju.devices.registry import load_site
from anju.devices.sample import write_site


def rej(payload: bytes = b'{"ts": 1}', reason: str = "missing_field", n: int = 0,
        topic: str = "anju/e1/b1/smoke/smoke-1") -> Rejection:
    return Rejection(topic, reason, f"detail {n}", payload, 1_767_225_600_000 + n,
                     "smoke-1", "temp_c")


def lines(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_record(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deadletters.jsonl"
    with DeadLetters(path, max_bytes=1 << 20) as dead:
        dead.write(rej())
        dead.write(rej(b"\xff\xfe not utf-8", "invalid_utf8", 1))
    assert lines(path) == [
        {"received_ms": 1_767_225_600_000, "topic": "anju/e1/b1/smoke/smoke-1",
         "reason": "missing_field", "detail": "detail 0", "field": "temp_c",
         "device": "smoke-1", "payload": '{"ts": 1}', "payload_b64": False, "payload_bytes": 9,
         "truncated": False},
        {"received_ms": 1_767_225_600_001, "topic": "anju/e1/b1/smoke/smoke-1",
         "reason": "invalid_utf8", "detail": "detail 1", "field": "temp_c",
         "device": "smoke-1", "payload": base64.b64encode(b"\xff\xfe not utf-8").decode(),
         "payload_b64": True, "payload_bytes": 12, "truncated": False},
    ]
    assert dead.counts == {"missing_field": 1, "invalid_utf8": 1}
    assert dead.written == 2 and dead.dropped == 0


def test_payload_cut_to_1kib(tmp_path: Path) -> None:
    text = ("x" * (PAYLOAD_LIMIT - 1) + "安" + "y" * 5000).encode()  # 安 straddles the cut
    rec = letter(rej(text))
    assert rec["payload"] == "x" * (PAYLOAD_LIMIT - 1) and not rec["payload_b64"]
    assert rec["truncated"] and rec["payload_bytes"] == len(text)
    binary = bytes(range(256)) * 10
    rec = letter(rej(binary))
    assert rec["payload_b64"] and base64.b64decode(rec["payload"]) == binary[:PAYLOAD_LIMIT]
    # a lone surrogate in a topic still makes a line
    with DeadLetters(tmp_path / "d.jsonl", 1 << 20) as dead:
        dead.write(rej(topic="anju/\ud800"))
    assert json.loads((tmp_path / "d.jsonl").read_bytes())["topic"] == "anju/\ud800"


def test_rotation_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    with DeadLetters(path, max_bytes=4096, keep=3, flush_bytes=1000) as dead:
        for n in range(400):
            dead.write(rej(n=n))
            if n % 50 == 0:
                dead.flush()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["dl.jsonl", "dl.jsonl.1", "dl.jsonl.2", "dl.jsonl.3"]
    assert all(f.stat().st_size <= 4096 for f in files)
    kept = [r for name in ("dl.jsonl.3", "dl.jsonl.2", "dl.jsonl.1", "dl.jsonl")
            for r in lines(tmp_path / name)]
    numbers = [int(r["detail"].split()[1]) for r in kept]
    assert numbers == list(range(400 - len(numbers), 400))  # the newest, in order
    assert dead.rotations > 3 and dead.written == 400


def test_reopening_appends_and_counts_the_old_size(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    with DeadLetters(path, max_bytes=4096, keep=1) as dead:
        for n in range(10):
            dead.write(rej(n=n))
    with DeadLetters(path, max_bytes=4096, keep=1) as dead:
        for n in range(10, 40):
            dead.write(rej(n=n))
    assert path.stat().st_size <= 4096 and (tmp_path / "dl.jsonl.1").exists()
    assert not (tmp_path / "dl.jsonl.2").exists()


def test_flushed_periodically_without_close(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    dead = DeadLetters(path, max_bytes=1 << 20, flush_interval_s=0.05)
    try:
        dead.write(rej())
        assert path.stat().st_size == 0  # write() only queues
        deadline = time.monotonic() + 5
        while path.stat().st_size == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(lines(path)) == 1
    finally:
        dead.close()
    dead.close()  # idempotent


def test_threads(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    with DeadLetters(path, max_bytes=1 << 22, flush_bytes=4096) as dead:
        def writer(k: int) -> None:
            for n in range(500):
                dead.write(rej(reason=f"r{k}", n=n))
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert dead.counts == {f"r{k}": 500 for k in range(4)}
    assert len(lines(path)) == dead.written == 2000


def test_bounded_buffer_drops_and_counts(tmp_path: Path) -> None:
    with DeadLetters(tmp_path / "dl.jsonl", 1 << 20, flush_interval_s=60,
                     flush_bytes=1 << 30, max_pending_bytes=1000) as dead:
        for n in range(20):
            dead.write(rej(n=n))
        assert dead.dropped > 0 and sum(dead.counts.values()) == 20
    assert dead.written + dead.dropped == 20


def test_write_is_cheap(tmp_path: Path) -> None:
    with DeadLetters(tmp_path / "dl.jsonl", 1 << 24) as dead:
        r = rej(b'{"ts": 1767225600000, "smoke_db_m": NaN, "temp_c": 22.0}', "not_finite")
        t0 = time.perf_counter()
        for _ in range(5000):
            dead.write(r)
        per = (time.perf_counter() - t0) / 5000
    print(f"DeadLetters.write: {per * 1e6:.1f} µs")
    assert per < 200e-6


def test_as_the_decoders_on_reject(tmp_path: Path) -> None:
    site = load_site(write_site(tmp_path / "site"))
    path = tmp_path / "dl.jsonl"
    with DeadLetters(path, 1 << 20) as dead:
        dec = Decoder(site, on_reject=dead)
        dec.decode("anju/e1/b1/smoke/smoke-1", b'{"ts": 1767225600000, "smoke_db_m": NaN, '
                   b'"temp_c": 1}', BatchBuilder(), now_ms=1_767_225_600_000, received_ms=7)
        dec.decode("anju/e1/b1/gas/x", b"{}", BatchBuilder(), received_ms=8)
    got = [(r["reason"], r["received_ms"], r["field"], r["device"]) for r in lines(path)]
    assert got == [("not_finite", 7, "smoke_db_m", "smoke-1"), ("bad_topic", 8, None, None)]
    assert dict(dead.counts) == dict(dec.rejected)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DeadLetters(tmp_path / "x", max_bytes=100)
    with pytest.raises(ValueError):
        DeadLetters(tmp_path / "x", max_bytes=1 << 20, keep=-1)
