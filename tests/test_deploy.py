"""deploy/: the systemd unit passes `systemd-analyze verify` (where the command exists)
and agrees with the settings it sets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anju.config import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_anju_service_verifies(tmp_path: Path) -> None:
    text = (DEPLOY / "anju.service").read_text(encoding="utf-8")
    # verify checks that ExecStart's binary exists: point it at this checkout's anju
    anju = Path(sys.executable).with_name("anju")
    unit = tmp_path / "anju.service"
    unit.write_text(text.replace("/opt/anju/venv/bin/anju", str(anju)), encoding="utf-8")
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60, check=False)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if "anju.service" in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_unit_and_env_example_name_real_settings() -> None:
    unit = (DEPLOY / "anju.service").read_text(encoding="utf-8")
    assert "Environment=ANJU_STATE_DIR=/var/lib/anju" in unit and "StateDirectory=anju" in unit
    assert "EnvironmentFile=/etc/anju/anju.env" in unit
    names = {f"ANJU_{n.upper()}" for n in Settings.model_fields}
    for line in (DEPLOY / "anju.env.example").read_text(encoding="utf-8").splitlines():
        if line.startswith("ANJU_"):
            assert line.split("=", 1)[0] in names, line
    dropin = (DEPLOY / "mosquitto-anju.conf").read_text(encoding="utf-8")
    assert "ExecStart=\n" in dropin  # clears Debian's before setting ours
    assert "/etc/mosquitto/anju/mosquitto.conf" in dropin
