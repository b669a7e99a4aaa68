"""``anju bench report --json`` runs (a smoke run on a few estates, not a timing)."""

from __future__ import annotations

import orjson
from typer.testing import CliRunner

from anju.cli import app


def test_bench_report_quick_prints_its_figures() -> None:
    res = CliRunner().invoke(app, ["bench", "report", "--quick", "--json"])
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert out["estates"] == 3 and out["companies"] == 3
    assert out["alarms_read"] > 0 and out["events"] > out["alarms"]
    assert out["budget_s"] == 60.0 and isinstance(out["within_budget"], bool)
