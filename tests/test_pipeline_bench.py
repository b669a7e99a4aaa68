"""``anju bench ingest --quick --json`` runs end to end and reports the contract's keys."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.integration


def test_bench_ingest_quick_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "anju.cli", "bench", "ingest", "--quick",
                           "--json", "--live-rate", "2000"],
                          capture_output=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    res = orjson.loads(proc.stdout.decode().strip().splitlines()[-1])
    extra = orjson.loads(next(ln for ln in proc.stderr.decode().splitlines()
                              if ln.startswith("extra: "))[len("extra: "):])
    assert extra["live_msgs_per_s"] == 2000.0  # --live-rate, not 80 % of sustained
    assert extra["alarms_received"] == extra["alarms_injected"] > 0
    assert set(res) == {"published", "stored", "lost", "msgs_per_s", "readings_per_s",
                        "ceiling_msgs_per_s", "ratio", "alarm_latency_ms"}
    assert set(res["alarm_latency_ms"]) == {"p50", "p99"}
    assert res["published"] > 3000 and res["lost"] == 0 and res["stored"] == res["published"]
    assert res["msgs_per_s"] > 0 and res["ceiling_msgs_per_s"] > 0
    assert res["ratio"] == pytest.approx(res["msgs_per_s"] / res["ceiling_msgs_per_s"],
                                         rel=0.01)
    assert res["alarm_latency_ms"]["p99"] is not None
