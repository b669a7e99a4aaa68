"""`anju rules eval` of the example recording gives, byte for byte, the alarms it gave
before the package moves of issue 16 (tests/data/examples/alarms.expected.jsonl, written
by commit 671fa70): moving code must not move an alarm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "examples"


def test_example_replay_alarms_are_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "alarms.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "anju.cli", "rules", "eval", "--site", str(DATA / "site"),
         "--input", str(DATA / "replay.jsonl"), "--output", str(out)],
        capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    expected = (DATA / "alarms.expected.jsonl").read_bytes()
    assert expected.count(b"\n") == 4  # the four alarms of the example
    assert out.read_bytes() == expected
