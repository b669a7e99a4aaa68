"""`anju rules eval`, `anju rules check` and `anju bench rules` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"
if not EXAMPLES.exists():  # a clone outside the workspace: the copy kept with the tests
    EXAMPLES = Path(__file__).resolve().parent / "data" / "examples"


def anju(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anju.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_eval_of_the_example_recording(tmp_path: Path) -> None:
    out = tmp_path / "alarms.jsonl"
    res = anju("rules", "eval", "--site", str(EXAMPLES / "site"), "--input",
               str(EXAMPLES / "replay.jsonl"), "--output", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert summary["messages"] == 14 and summary["readings"] == 12
    assert summary["rejected"] == {"invalid_utf8": 1, "not_finite": 1}
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert summary["alarms"] == len(events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    raised = {(e["rule"], e["device"]): e for e in events if e["event"] == "raised"}
    assert raised[("elevator.door_open_moving", "lift-1")]["ts"] == 1767225601000
    assert raised[("smoke.alarm", "smk-1")]["ts"] == 1767225620000
    fall = raised[("camera.falling_object", "cam-1")]
    assert fall["floor"] == 9 and fall["details"]["floor"] == 9
    assert {"apex_m", "apex_se_m"} <= set(fall["details"])
    for e in events:  # CONTRACT §4 fields, every one
        assert set(e) >= {"alarm_id", "event", "rule", "severity", "kind", "device", "estate",
                          "building", "floor", "zone", "ts", "started_at", "value", "message",
                          "details", "teams"}
    assert raised[("smoke.alarm", "smk-1")]["teams"] == ["property-demo1"]


def test_eval_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        out = tmp_path / f"a{i}.jsonl"
        assert anju("rules", "eval", "--site", str(EXAMPLES / "site"), "--input",
                    str(EXAMPLES / "replay.jsonl"), "--output", str(out)).returncode == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_eval_counts_bad_lines_and_carries_on(tmp_path: Path) -> None:
    rec = tmp_path / "bad.jsonl"
    rec.write_bytes(b"not json\n"
                    b'{"topic": "anju/demo1/b1/smoke/smk-1"}\n'
                    b'{"topic": "anju/demo1/b1/smoke/smk-1", "payload_b64": "%%%"}\n'
                    b'{"topic": "x/y", "payload": {}}\n'
                    b'{"topic": "anju/demo1/b1/smoke/smk-1", "payload": '
                    b'{"ts": 1767225600000, "smoke_db_m": 0.01, "temp_c": 21.0}}\n')
    res = anju("rules", "eval", "--site", str(EXAMPLES / "site"), "--input", str(rec),
               "--output", str(tmp_path / "o.jsonl"), "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert s["messages"] == 5 and s["readings"] == 1
    assert s["rejected"] == {"bad_record": 3, "bad_topic": 1}


def test_eval_threshold_override_changes_the_outcome(tmp_path: Path) -> None:
    res = anju("rules", "eval", "--site", str(EXAMPLES / "site"), "--input",
               str(EXAMPLES / "replay.jsonl"), "--output", str(tmp_path / "o.jsonl"),
               "--set", "smoke.alarm.threshold=0.5", "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert "smoke.alarm" not in s["by_rule"]


def test_bad_site_and_bad_rules_exit_2_naming_the_place(tmp_path: Path) -> None:
    res = anju("rules", "eval", "--site", str(tmp_path), "--input", "x", "--output", "y")
    assert res.returncode == 2 and "site.yaml" in res.stderr
    bad = tmp_path / "r.yaml"
    bad.write_text("- id: smoke.x\n  kind: smoke\n  condition: smoke_db > 1\n"
                   "  severity: major\n  roles: [property]\n", encoding="utf-8")
    res = anju("rules", "check", "--rules", str(bad))
    assert res.returncode == 2
    assert "r.yaml" in res.stderr and "smoke.x" in res.stderr and "smoke_db" in res.stderr


def test_check_lists_the_catalogue() -> None:
    res = anju("rules", "check", "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert s["rules"] == 34 and "smoke.fire_confirmed" in s["by_id"]


@pytest.mark.parametrize("traffic", ["city", "stress"])
def test_bench_rules_smoke(traffic: str) -> None:
    res = anju("bench", "rules", "--readings", "30000", "--devices", "2000", "--traffic",
               traffic, "--batch-size", "5000", "--baseline-readings", "5000", "--json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert set(s) >= {"readings", "rules", "readings_per_s", "baseline_readings_per_s", "speedup"}
    assert s["readings"] >= 30000 and s["rules"] == 34 and s["devices"] >= 2000
    assert s["speedup"] == round(s["readings_per_s"] / s["baseline_readings_per_s"], 2)
    assert s["agree_on_baseline"] is True
    assert isinstance(s["batch_fixed_cost_us"], float) and s["batch_fixed_cost_us"] >= 0
    assert isinstance(s["tick_cost_us"], float) and s["tick_cost_us"] > 0


def _site_with(tmp_path: Path, extra: str) -> Path:
    import shutil

    site = tmp_path / "site"
    shutil.copytree(EXAMPLES / "site", site)
    for f in site.iterdir():
        f.chmod(0o644)
    with (site / "site.yaml").open("a", encoding="utf-8") as fh:
        fh.write(extra)
    return site


def test_a_mistyped_override_is_refused_where_it_was_written(tmp_path: Path) -> None:
    site = _site_with(tmp_path, "rules:\n  smoke.alarmm: {threshold: 0.2}\n")
    lines = (site / "site.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "smoke.alarmm" in text)
    for args in (("rules", "check", "--site", str(site)), ("devices", "check", "--site",
                                                            str(site))):
        res = anju(*args)
        assert res.returncode == 2, args
        assert f"site.yaml:{line}" in res.stderr and "did you mean 'smoke.alarm'" in res.stderr


def test_a_mistyped_parameter_on_the_command_line_is_blamed_on_it() -> None:
    res = anju("rules", "check", "--site", str(EXAMPLES / "site"), "--set",
               "smoke.alarm.treshold=0.2")
    assert res.returncode == 2
    assert "--set" in res.stderr and "did you mean 'threshold'" in res.stderr


def test_eval_of_a_file_that_is_no_recording_fails(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("root:x:0:0:root:/root:/bin/bash\nhello\n", encoding="utf-8")
    res = anju("rules", "eval", "--site", str(EXAMPLES / "site"), "--input", str(junk),
               "--output", str(tmp_path / "o.jsonl"))
    assert res.returncode == 1
    assert "no line is a recording record" in res.stderr and "line 1" in res.stderr
