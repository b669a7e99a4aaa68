"""The generated city: a valid site directory in realistic numbers, the same for a seed."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from anju.cli import app
from anju.devices.registry import load_site
from anju.kinds import KINDS
from anju.rules.trajectory import Calibration, row_heights
from anju.simulators.city import FACADES, plan_city, write_site


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("city")
    write_site(plan_city(6, seed=3, webhook_port=9123), out)
    return out


def test_site_loads_with_every_kind(city: Path) -> None:
    site = load_site(city)
    summary = site.summary()
    assert summary["estates"] == 6
    assert set(summary["by_kind"]) == set(KINDS)
    assert all(n > 0 for n in summary["by_kind"].values())
    assert (city / "gateways.csv").exists() and len(site.gateways) == len(site.buildings)


def test_numbers_are_realistic(city: Path) -> None:
    site = load_site(city)
    d = site.devices
    kinds = list(KINDS)
    for e in site.estates.values():
        assert 4 <= len(e.buildings) <= 20
        pumps = [i for i in range(len(d)) if kinds[d.kind[i]] == "water"
                 and site.buildings[d.building[i]].estate == e.id]
        assert len(pumps) == 1
    per_building = Counter((int(b), kinds[k]) for b, k in zip(d.building, d.kind, strict=True))
    for b in site.buildings:
        assert 6 <= b.floors <= 33
        assert 2 <= per_building[(b.index, "elevator")] <= 6
        # a falling-object camera per facade, and one in the lobby watching for e-bikes
        assert per_building[(b.index, "camera")] == len(FACADES) + 1
        # two detectors on every landing, basements included
        assert per_building[(b.index, "smoke")] == 2 * (b.floors + b.basements)
    lifts = d.of_kind("elevator")
    assert np.all(d.param("rated_speed_mps")[lifts] >= 1.0)
    assert np.all(d.param("top_floor")[lifts] == [site.buildings[b].floors
                                                   for b in d.building[lifts]])


def test_camera_calibration_sees_the_whole_facade(city: Path) -> None:
    site = load_site(city)
    d = site.devices
    facade = [i for i in d.of_kind("camera").tolist()
              if not math.isnan(float(d.param("mount_height_m")[i]))]
    assert facade  # the lobby cameras (e-bikes) have no calibration; the facade ones do
    for i in facade:
        params = {n: float(d.param(n)[i]) for n in ("mount_height_m", "distance_m", "tilt_deg",
                                                     "focal_px", "cy_px")}
        assert 1.0 <= params["mount_height_m"] <= 3.0
        assert 15.0 <= params["distance_m"] <= 40.0
        assert 1450 <= params["focal_px"] <= 1550 and params["cy_px"] == 1080.0
        b = site.buildings[d.building[i]]
        top_row_height = float(row_heights([0.0], Calibration.from_params(params))[0])
        assert top_row_height >= b.floors * b.floor_height_m  # the roof line is in view
        assert not math.isnan(top_row_height)


def test_teams_and_webhooks(city: Path) -> None:
    site = load_site(city)
    roles = Counter(t.role for t in site.teams)
    assert roles["property"] == 6 and roles["fire"] == 1 and roles["supervisor"] >= 1
    fire = next(t for t in site.teams if t.role == "fire")
    assert fire.estates == ("*",)
    for t in site.teams:
        assert t.webhook == f"http://127.0.0.1:9123/hooks/{t.id}"
        assert t.secret_env and t.secret_env.startswith("ANJU_SECRET_")
        assert t.token_env and t.token_env.startswith("ANJU_TOKEN_")
    supervised = {e for t in site.teams if t.role == "supervisor" for e in t.estates}
    assert 0 < len(supervised) < 6  # some estates have a housing office on the system


def test_same_seed_same_city(tmp_path: Path) -> None:
    write_site(plan_city(3, seed=9), tmp_path / "a")
    write_site(plan_city(3, seed=9), tmp_path / "b")
    write_site(plan_city(3, seed=10), tmp_path / "c")
    for name in ("site.yaml", "devices.csv", "gateways.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "devices.csv").read_bytes() != \
        (tmp_path / "c" / "devices.csv").read_bytes()


def test_cli_site(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "site", "--estates", "2", "--seed", "7",
                                      "--out", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["estates"] == 2 and summary["devices"] == len(load_site(tmp_path / "s").devices)
