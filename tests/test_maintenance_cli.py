"""``anju maintenance add|list|end``: against a real state dir, with clear errors, and
against a running pipeline (another process writing the same SQLite file)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from anju.alarms.maintenance import MaintenanceBook
from anju.cli import app
from anju.commands.maintenance import parse_time
from tests.test_alarms_operation import _elevator, _events
from tests.test_supervision import _got, _stop, sup  # noqa: F401  (the rig's fixture)

SITE = """\
estates:
  - {id: e1, district: 西城区, street: 东街街道, community: 花园社区,
     buildings: [{id: b1, floors: 6}]}
teams:
  - {id: property, role: property, estates: [e1]}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "site.yaml").write_text(SITE, encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        "l-1,elevator,e1,b1,,car-1,\"{\"\"rated_speed_mps\"\":1.0,\"\"top_floor\"\":6,"
        "\"\"bottom_floor\"\":1}\"\n"
        "s-1,smoke,e1,b1,3,stair,\n", encoding="utf-8")
    return root


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["maintenance", *args])
    return r.exit_code, r.stdout, r.stderr


def _last_json(out: str) -> Any:
    return orjson.loads(out.strip().splitlines()[-1])


def test_parse_time() -> None:
    now = 1_772_409_600_000
    assert parse_time("now", now) == now
    assert parse_time("now+2h", now) == now + 7_200_000
    assert parse_time("+90m", now) == now + 5_400_000
    assert parse_time("-1d", now) == now - 86_400_000
    assert parse_time("1772409600123", now) == 1_772_409_600_123
    assert parse_time("2026-03-02T08:00", now) == 1_772_409_600_000  # China time
    assert parse_time("2026-03-02T00:00+00:00", now) == 1_772_409_600_000
    with pytest.raises(ValueError, match="not a time"):
        parse_time("tomorrow", now)


def test_add_list_end_on_a_state_dir(site: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    code, out, err = _run("list", "--state-dir", state)
    assert code == 2 and "no alarm store" in err

    code, out, err = _run("add", "--site", str(site), "--device", "l-1", "--to", "now+2h",
                          "--by", "维保公司", "--reason", "半月维保", "--state-dir", state,
                          "--json")
    assert code == 0, err
    w = _last_json(out)
    assert (w["scope"], w["target"], w["estate"], w["by"], w["reason"]) == (
        "device", "l-1", "e1", "维保公司", "半月维保")
    assert 7_199_000 <= w["to_ms"] - w["from_ms"] <= 7_201_000
    code, out, _ = _run("add", "--site", str(site), "--building", "b1", "--estate", "e1",
                        "--from", "2026-03-02T08:00", "--to", "2026-03-02T09:00", "--by", "x",
                        "--state-dir", state, "--json")
    b = _last_json(out)
    assert code == 0 and (b["scope"], b["target"]) == ("building", "e1/b1")
    assert b["from_ms"] == 1_772_409_600_000

    # the past window is left out unless --all; the book sees what the CLI wrote
    code, out, _ = _run("list", "--state-dir", state, "--json")
    assert code == 0 and [x["id"] for x in _last_json(out)["windows"]] == [w["id"]]
    code, out, _ = _run("list", "--state-dir", state, "--all")
    assert code == 0 and "#1 device l-1" in out and "#2 building e1/b1" in out
    assert "[active]" in out and "[over]" in out

    code, out, err = _run("end", str(w["id"]), "--by", "王工", "--state-dir", state, "--json")
    assert code == 0, err
    ended = _last_json(out)
    assert ended["ended_by"] == "王工" and ended["to_ms"] < w["to_ms"]
    book = MaintenanceBook(Path(state) / "alarms.sqlite3")
    try:
        assert [a["action"] for a in book.audit()] == ["end", "add", "add"]
        assert book.audit()[0]["by"] == "王工"
    finally:
        book.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "nope", "--to", "+1h", "--by", "x"], "unknown device 'nope'"),
    (["--building", "e1/b9", "--to", "+1h", "--by", "x"], "unknown building 'b9'"),
    (["--estate", "e9", "--to", "+1h", "--by", "x"], "unknown estate 'e9'"),
    (["--device", "l-1", "--from", "+2h", "--to", "+1h", "--by", "x"], "must be after --from"),
    (["--device", "l-1", "--from", "+1h", "--to", "+1h", "--by", "x"], "must be after --from"),
    (["--device", "l-1", "--to", "soon", "--by", "x"], "'soon' is not a time"),
    (["--device", "l-1", "--by", "x"], "--to is required"),
    (["--device", "l-1", "--to", "+1h"], "--by is required"),
    (["--to", "+1h", "--by", "x"], "name a device, a building or an estate"),
    (["--device", "l-1", "--estate", "e1", "--to", "+1h", "--by", "x"],
     "name a device, or a building, or an estate"),
])
def test_add_refuses_clearly(site: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, out, err = _run("add", "--site", str(site), "--state-dir", str(tmp_path / "st"),
                          *args)
    assert code == 2 and message in err, (code, out, err)
    assert not (tmp_path / "st" / "alarms.sqlite3").exists()  # nothing written


def test_end_refuses_clearly(site: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    _run("add", "--site", str(site), "--device", "l-1", "--to", "+1h", "--by", "x",
         "--state-dir", state)
    assert "no maintenance window 7" in _run("end", "7", "--by", "x", "--state-dir", state)[2]
    assert "--by is required" in _run("end", "1", "--state-dir", state)[2]
    assert _run("end", "1", "--by", "x", "--state-dir", state)[0] == 0
    code, _, err = _run("end", "1", "--by", "x", "--state-dir", state)
    assert code == 2 and "already ended by x" in err


async def _cli(*args: str) -> Any:
    """``anju maintenance …`` in its own process, as an operator would run it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anju.cli", "maintenance", *args, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return _last_json(out.decode())


@pytest.mark.integration
async def test_window_added_by_the_cli_takes_effect_in_a_running_pipeline(
        sup: Any, tmp_path: Path) -> None:  # noqa: F811
    r = await sup()
    try:
        await r.start()
        state = str(r.settings.state_dir)
        # the pipeline's clock is the test's: the window is given in its ms
        w = await _cli("add", "--site", str(tmp_path / "site"), "--device", "l-1",
                       "--from", str(r.clock.now), "--to", str(r.clock.now + 3_600_000),
                       "--by", "维保公司", "--reason", "半月维保", "--state-dir", state)
        for _ in range(12):  # stopped between floors under the technicians' hands
            await r.step("elevator", "l-1", [{**_elevator(r.clock.now + 1000, moving=False),
                                               "in_door_zone": False}])
        [fault] = r.raised("elevator.stopped_outside_zone")
        assert fault["details"]["maintenance"] is True
        assert fault["details"]["maintenance_window"] == w["id"]
        listed = await _cli("list", "--state-dir", state, "--all")
        assert [x["id"] for x in listed["windows"]] == [w["id"]]
        # ended from the terminal at the pipeline's time: the elevator is maintained then
        await _cli("end", str(w["id"]), "--by", "王工", "--at", str(r.clock.now),
                   "--state-dir", state)
        await r.tick(1000)
        listed = await _cli("list", "--state-dir", state, "--all")
        assert listed["maintained"] == {"l-1": listed["windows"][0]["to_ms"]}
        assert all(rule != "elevator.stopped_outside_zone" for _, rule in _got(r.rx, "property"))
        assert r.p is not None
        assert [e["rule"] for e in _events(r.p) if e["event"] == "raised"] == [
            "elevator.stopped_outside_zone"]
    finally:
        await _stop(r)
