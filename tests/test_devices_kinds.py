"""Walk the kind table: every kind folder has its schema, heartbeat, rules, simulator,
dashboard and docs, and no module outside ``anju/kinds/`` names a kind."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from anju.devices.schema import json_schema
from anju.devices.spec import COMMON_FIELDS, FieldSpec, KindSpec
from anju.kinds import KIND_CODES, KINDS, kind_names, kind_rules_file
from anju.rules.model import load_rules
from anju.simulators.fleet import Fleet

DOCS = Path(__file__).resolve().parents[1] / "docs" / "devices.md"
CONTRACT_KINDS = {"elevator", "smoke", "water", "camera"}  # CONTRACT §1


def test_the_contract_kinds_are_all_there() -> None:
    assert CONTRACT_KINDS <= set(KINDS)
    assert list(KIND_CODES) == list(KINDS) == list(kind_names()) == sorted(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_is_complete(kind: str) -> None:
    spec = KINDS[kind]
    module = importlib.import_module(f"anju.kinds.{kind}.schema")
    assert module.KIND is spec and (module.__doc__ or "").strip()
    assert spec.name == kind and spec.title and spec.heartbeat_s > 0
    assert spec.fields and all(f.doc for f in spec.fields)
    assert any(f.required for f in spec.fields)
    assert not COMMON_FIELDS & set(spec.field_index)
    for f in spec.fields:
        assert (f.type == "enum") == bool(f.choices), f.name
    for p in spec.params:
        assert p.doc and p.type in ("int", "float")
    # schema: the pydantic model and its JSON Schema exist
    assert set(json_schema(kind)["properties"]) >= set(spec.field_index)
    # rules beside the kind: its rules.yaml, and they are in the default catalogue
    assert kind_rules_file(kind).is_file(), f"no anju/kinds/{kind}/rules.yaml"
    assert any(r.kind == kind for r in load_rules().rules), f"no default rule for {kind}"
    # its simulator: a fleet of this kind and the incidents it can stage
    sim = importlib.import_module(f"anju.kinds.{kind}.simulator")
    assert issubclass(sim.FLEET, Fleet) and sim.INCIDENTS, f"anju/kinds/{kind}/simulator.py"
    assert all(t.kind == kind for t in sim.INCIDENTS.values())
    # its dashboard: limits from the rules in force and its operator views
    dash = importlib.import_module(f"anju.kinds.{kind}.dashboard")
    assert callable(dash.tuning) and callable(dash.panels), f"anju/kinds/{kind}/dashboard.py"
    # docs name the kind and every field and param
    docs = DOCS.read_text(encoding="utf-8")
    assert f"`{kind}`" in docs
    for name in [*spec.field_index, *(p.name for p in spec.params)]:
        assert f"`{name}`" in docs, f"docs/devices.md does not mention {kind}.{name}"


def test_a_kind_may_not_redefine_common_fields() -> None:
    with pytest.raises(ValueError, match="common"):
        KindSpec("gas", "gas", 60.0, (FieldSpec("ts", "int", "no"),))


ANJU = Path(__file__).resolve().parents[1] / "anju"
# Modules that still name kinds, and why (docs/architecture.md): the city planner decides
# which devices a building has; the benchmarks' synthetic payloads; the scenario binder's
# floor check of a lift; the simulated month of the accountability report (a city planner
# too) and the report's figures, which are about named incidents (falling objects, trapped
# passengers, camera coverage) the bureaus ask for. Shrink this list.
_STILL_NAMING_KINDS = {
    "app/bench_ingest.py", "app/bench_rules.py", "devices/bench.py", "simulators/city.py",
    "simulators/scenario.py", "simulators/month.py", "report/figures.py",
}


def test_no_module_outside_kinds_names_a_kind() -> None:
    """Adding a kind is one folder: code elsewhere reads the kind table, never a name."""
    named = re.compile(r"""["']({})["'.]""".format("|".join(map(re.escape, KINDS))))
    offenders = set()
    for path in ANJU.rglob("*.py"):
        rel = path.relative_to(ANJU).as_posix()
        if rel.startswith("kinds/") or rel in _STILL_NAMING_KINDS:
            continue
        if named.search(path.read_text(encoding="utf-8")):
            offenders.add(rel)
    assert not offenders, f"these modules name a kind: {sorted(offenders)}"
