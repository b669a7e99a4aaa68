"""``anju devices check | credentials | schema | bench-decode`` (CONTRACT §7)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anju.cli import app
from anju.devices.credentials import group_id
from anju.devices.sample import write_site
from anju.kinds import KINDS

# the sample site: 2 estates × 2 buildings, one device of every kind in each building
DEVICES = 4 * len(KINDS)


def anju(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, in a child process: exit code, stdout, stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "anju.cli", *args], capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return write_site(tmp_path / "site", estates=2, buildings=2, per_building=1)


def test_check_json(site: Path) -> None:
    r = anju("devices", "check", "--site", str(site), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out) == {"estates", "buildings", "devices", "by_kind", "load_s"}
    assert (out["estates"], out["buildings"], out["devices"]) == (2, 4, DEVICES)
    assert out["by_kind"] == dict.fromkeys(KINDS, 4)
    assert 0 <= out["load_s"] < 2


def test_check_human(site: Path) -> None:
    r = CliRunner().invoke(app, ["devices", "check", "--site", str(site)])
    assert r.exit_code == 0 and f"{DEVICES} devices" in r.output and "OK" in r.output


def test_invalid_registry_exits_2_naming_file_line_field(site: Path) -> None:
    devices = (site / "devices.csv").read_text().splitlines()
    dev, _kind, rest = devices[3].split(",", 2)  # line 4: whichever kind it is, now gas
    devices[3] = f"{dev},gas,{rest}"
    (site / "devices.csv").write_text("\n".join(devices) + "\n")
    r = anju("devices", "check", "--site", str(site), "--json")
    assert r.returncode == 2
    assert r.stdout == ""
    assert f"{site / 'devices.csv'}:4 [kind]: unknown kind 'gas'" in r.stderr
    assert "Traceback" not in r.stderr
    r2 = CliRunner().invoke(app, ["devices", "credentials", "--site", str(site), "--out",
                                  str(site / "creds")])
    assert r2.exit_code == 2 and "devices.csv:4 [kind]" in r2.output
    assert not (site / "creds").exists()


def test_credentials(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "creds"
    monkeypatch.setenv("T_ANJU_PIPE_PW", "pipe-secret")
    r = CliRunner().invoke(app, ["devices", "credentials", "--site", str(site), "--out",
                                 str(out), "--json", "--pipeline-password-env", "T_ANJU_PIPE_PW"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["users"] == 1 + DEVICES + 4 and summary["new"] == DEVICES + 5
    assert summary["by_role"] == {"pipeline": 1, "device": DEVICES, "gateway": 4}
    # the broker's group (Debian's mosquitto) may read what the broker reads, not the rest
    readable = 0o640 if summary["group"] == "mosquitto" else 0o600
    assert summary["group"] == ("mosquitto" if group_id("mosquitto") is not None else None)
    for name in ("passwd", "acl", "mosquitto.conf"):
        assert stat.S_IMODE((out / name).stat().st_mode) == readable, name
    assert stat.S_IMODE((out / "credentials.csv").stat().st_mode) == 0o600
    assert "allow_anonymous false" in (out / "mosquitto.conf").read_text()
    assert "anju-pipeline,pipe-secret,pipeline" in (out / "credentials.csv").read_text()
    assert "pipe-secret" not in r.output  # no secrets printed
    # rerun: nothing new; --rotate: all new
    r = CliRunner().invoke(app, ["devices", "credentials", "--site", str(site), "--out",
                                 str(out)])
    assert r.exit_code == 0 and f"0 new passwords, {DEVICES + 5} kept" in r.output
    r = CliRunner().invoke(app, ["devices", "credentials", "--site", str(site), "--out",
                                 str(out), "--rotate", "--json"])
    assert json.loads(r.output.strip().splitlines()[-1])["new"] == DEVICES + 5


def test_credentials_env_var_missing(site: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["devices", "credentials", "--site", str(site), "--out",
                                 str(tmp_path / "c"), "--pipeline-password-env",
                                 "T_ANJU_SURELY_UNSET"])
    assert r.exit_code == 2


def test_schema() -> None:
    r = CliRunner().invoke(app, ["devices", "schema", "elevator"])
    assert r.exit_code == 0
    schema = json.loads(r.output)
    assert schema["additionalProperties"] is False and "door_open" in schema["properties"]
    assert CliRunner().invoke(app, ["devices", "schema", "gas"]).exit_code == 2


def test_bench_decode_json() -> None:
    r = CliRunner().invoke(app, ["devices", "bench-decode", "--messages", "400", "--batch",
                                 "10", "--repeat", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["single"]["messages"] == 400 and out["batch10"]["readings"] == 400
    assert out["single"]["us_per_reading"] > 0 and out["pydantic_us_per_reading"] > 0
    assert out["batch10"]["reference_us_per_reading"] > 0


def test_credentials_unknown_group_and_bad_listen(site: Path, tmp_path: Path) -> None:
    base = ["devices", "credentials", "--site", str(site), "--out", str(tmp_path / "c")]
    r = CliRunner().invoke(app, [*base, "--group", "t-anju-no-such-group"])
    assert r.exit_code == 2 and "no such group" in r.output
    r = CliRunner().invoke(app, [*base, "--listen", "host:99999"])
    assert r.exit_code == 2 and "--listen" in r.output
    assert not (tmp_path / "c").exists()
