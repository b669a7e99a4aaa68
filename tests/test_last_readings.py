"""The devices' last readings saved across restarts (anju.app.last_readings): laid out in
whatever device order the registry has at load, the engine's own times first, nothing
taken from a file that cannot be read."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from anju.app.last_readings import FILE_NAME, LastReadings
from anju.devices.registry import Site, load_site
from anju.rules.clock import NEVER


def _site(root: Path, devices: list[str]) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        "estates:\n  - {id: e1, buildings: [{id: b1, floors: 6}]}\nteams: []\n",
        encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building\n" + "".join(f"{d},smoke,e1,b1\n" for d in devices),
        encoding="utf-8")
    return load_site(root)


def _times(site: Site, known: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    newest = np.full(len(site.devices), NEVER, np.int64)
    recv = np.full(len(site.devices), NEVER, np.int64)
    for dev, (ts, at) in known.items():
        newest[site.devices.index[dev]], recv[site.devices.index[dev]] = ts, at
    return newest, recv


def test_saved_times_come_back_in_the_next_registrys_order(tmp_path: Path) -> None:
    first = _site(tmp_path / "a", ["s-1", "s-2", "s-3"])
    lr = LastReadings(tmp_path, first)
    assert lr.load(first) == 0  # a first start: no file
    assert lr.save(first.devices, *_times(first, {"s-1": (100, 150), "s-3": (300, 360)}),
                   lr.view) == 2
    assert not list(tmp_path.glob(f".{FILE_NAME}.*"))  # no temporary file left

    # the next run's registry: reordered, s-3 removed, s-4 added
    second = _site(tmp_path / "b", ["s-4", "s-1", "s-2"])
    again = LastReadings(tmp_path, second)
    assert again.load(second) == 1
    newest, recv = again.merged(*_times(second, {}))
    assert newest.tolist() == [NEVER, 100, NEVER] and recv.tolist() == [NEVER, 150, NEVER]

    # what the engine has heard since wins over what was saved, when it is newer
    newest, recv = again.merged(*_times(second, {"s-1": (500, 510), "s-4": (400, 420)}))
    assert newest.tolist() == [400, 500, NEVER] and recv.tolist() == [420, 510, NEVER]
    # a backlog redelivered after a crash, older than what was saved, does not go back
    newest, recv = again.merged(*_times(second, {"s-1": (90, 520)}))
    assert newest.tolist() == [NEVER, 100, NEVER] and recv.tolist() == [NEVER, 150, NEVER]

    # a save keeps a device heard only in an earlier run: still known after two restarts
    assert again.save(second.devices, *_times(second, {"s-4": (400, 420)}), again.view) == 2
    third = LastReadings(tmp_path, second)
    assert third.load(second) == 2
    assert third.merged(*_times(second, {}))[0].tolist() == [400, 100, NEVER]

    # a registry reload lays the same saved times out in its order
    fourth = _site(tmp_path / "c", ["s-2", "s-1"])
    assert third.use(fourth) == 1
    assert third.merged(*_times(fourth, {}))[1].tolist() == [NEVER, 150]


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken",
                                     b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': "
                                     b"False, 'shape': (0,), }" + b" " * 60 + b"\n"])
def test_an_unreadable_file_is_logged_and_the_view_starts_empty(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes) -> None:
    site = _site(tmp_path / "a", ["s-1"])
    (tmp_path / FILE_NAME).write_bytes(content)
    lr = LastReadings(tmp_path, site)
    with caplog.at_level(logging.WARNING, logger="anju.app.last_readings"):
        assert lr.load(site) == 0
    assert "cannot be read" in caplog.text
    assert lr.merged(*_times(site, {}))[0].tolist() == [NEVER]
    # the next save replaces it
    assert lr.save(site.devices, *_times(site, {"s-1": (7, 8)}), lr.view) == 1
    assert LastReadings(tmp_path, site).load(site) == 1


def test_a_file_with_arrays_of_different_lengths_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = _site(tmp_path / "a", ["s-1", "s-2"])
    np.savez(tmp_path / FILE_NAME, ids=np.array(["s-1", "s-2"]), newest=np.array([1]),
             recv_at=np.array([1, 2]))
    with caplog.at_level(logging.WARNING, logger="anju.app.last_readings"):
        assert LastReadings(tmp_path, site).load(site) == 0
    assert "different lengths" in caplog.text


def test_a_save_taken_across_a_registry_reload_keeps_each_time_with_its_device(
        tmp_path: Path) -> None:
    """The engine's arrays (and the saved view) were copied in the old device order; the
    reload then laid the view out in the new one: the save writes each time under the
    device it belongs to, by the old table."""
    old = _site(tmp_path / "a", ["s-1", "s-2", "s-3"])
    new = _site(tmp_path / "b", ["s-3", "s-9", "s-1"])
    lr = LastReadings(tmp_path, old)
    lr.load(old)
    engine = _times(old, {"s-1": (11, 12), "s-3": (31, 32)})
    view = lr.view  # taken with the copies, on the loop
    assert lr.use(new) == 0  # the reload's swap, while the save waits for its thread
    assert lr.save(old.devices, *engine, view) == 2
    again = LastReadings(tmp_path, new)
    assert again.load(new) == 2
    assert again.merged(*_times(new, {}))[0].tolist() == [31, NEVER, 11]
    # arrays of one registry and a view of another (here of another length) are not
    # mixed: nothing is written
    shorter = _site(tmp_path / "c", ["s-1", "s-2"])
    lr.use(shorter)
    assert lr.save(old.devices, *engine, lr.view) == 0
