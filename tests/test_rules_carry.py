"""Rule state carried across a registry reload (anju.rules.carry): an engine that is
replaced mid-stream by one built for the same devices — listed in another order, so every
index moves — gives exactly the transitions of an engine never replaced."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from anju.devices.registry import load_site
from anju.rules import RuleEngine, load_rules
from anju.rules.carry import carry_state
from tests.rules_support import DEVICES_CSV, SITE_YAML, T0, batch_of, key, small_site
from tests.test_rules_engine import READING, STEP


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    a = small_site(tmp_path_factory.mktemp("a"))
    root = tmp_path_factory.mktemp("b") / "site"
    root.mkdir()
    (root / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    head, *rows = DEVICES_CSV.strip().split("\n")
    (root / "devices.csv").write_text("\n".join([head, *reversed(rows)]) + "\n",
                                      encoding="utf-8")
    return a, load_site(root)


STREAM = st.lists(st.one_of(
    st.tuples(st.just("r"), STEP, READING),
    st.tuples(st.just("tick"), STEP, st.just(None)),
    st.tuples(st.just("reload"), st.just(0), st.just(None)),
), min_size=1, max_size=100)


def _run(sites: tuple[Any, Any], stream: list[Any], reload: bool) -> list[Any]:
    a, b = sites
    engine = RuleEngine(a, load_rules(a))
    out: list[Any] = []
    t = T0
    flip = 0
    for op, step, payload in stream:
        t = max(T0, t + step)
        if op == "r":
            dev, fields = payload
            out += engine.process(batch_of(engine.site, [(dev, t, fields)]), t)
        elif op == "tick":
            out += engine.tick(t)
        elif reload:
            flip ^= 1
            site = (a, b)[flip]
            new = RuleEngine(site, load_rules(site))
            carry_state(engine, new)
            engine = new
    out += engine.tick(t + 3_600_000)
    # a floor's member list follows the registry's order, which the reload reverses
    for x in out:
        if isinstance(x.details.get("devices"), list):
            x.details["devices"] = sorted(x.details["devices"])
    return sorted(key(x) for x in out)


@settings(max_examples=int(os.environ.get("ANJU_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow],
          # no shrinking: these streams shrink for minutes; a failure shows its example
          phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(stream=STREAM)
def test_a_reload_changes_nothing_the_rules_see(sites: tuple[Any, Any],
                                                stream: list[Any]) -> None:
    assert _run(sites, stream, reload=True) == _run(sites, stream, reload=False)


def test_new_devices_start_silent_from_the_reload(tmp_path: Path) -> None:
    site = small_site(tmp_path)
    old = RuleEngine(site, load_rules(site))
    old.process(batch_of(site, [("s1", T0, {"smoke_db_m": 0.0, "temp_c": 20.0})]), T0)
    new = RuleEngine(site, load_rules(site))
    carry_state(old, new)
    assert new.received_ms == T0 and int(new.newest[site.devices.index["s1"]]) == T0
    # w1 never reported: offline 30 s after the receiving clock the state was carried at
    got = [x for x in new.tick(T0 + 30_001) if x.device == "w1"]
    assert [(x.rule, x.ts) for x in got] == [("device.offline", T0 + 30_000)]
