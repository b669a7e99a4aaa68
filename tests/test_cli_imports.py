"""``anju --help`` stays light: the command tree imports no numpy, aiohttp or pydantic."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
sys.argv = ["anju", "--help"]
from anju.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("numpy", "aiohttp", "pydantic") if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def test_anju_help_imports_no_numpy_aiohttp_or_pydantic() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=60, check=False)
    result = json.loads(out.stderr.strip().splitlines()[-1])
    assert result["code"] in (0, None)
    assert "rules" in out.stdout and "simulate" in out.stdout  # the help was printed
    assert result["heavy"] == []


def test_run_help_still_lists_every_setting() -> None:
    out = subprocess.run([sys.executable, "-m", "anju.cli", "run", "--help"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0
    assert "ANJU_MQTT_URL" in out.stdout and "ANJU_CONFIG" in out.stdout
