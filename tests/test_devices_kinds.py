"""Walk the kind table: every kind has its schema, heartbeat, docs and rules."""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path

import pytest

from anju.devices.kinds import KIND_CODES, KINDS, kind_names
from anju.devices.schema import json_schema
from anju.devices.spec import COMMON_FIELDS, FieldSpec, KindSpec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "devices.md"
CONTRACT_KINDS = {"elevator", "smoke", "water", "camera"}  # CONTRACT §1


def test_the_contract_kinds_are_all_there() -> None:
    assert CONTRACT_KINDS <= set(KINDS)
    assert list(KIND_CODES) == list(KINDS) == list(kind_names()) == sorted(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_is_complete(kind: str) -> None:
    spec = KINDS[kind]
    module = importlib.import_module(f"anju.devices.kinds.{kind}")
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
    # rules beside the kind: the default catalogue has a file for it
    catalogue = resources.files("anju.rules") / "catalogue" / f"{kind}.yaml"
    assert catalogue.is_file(), f"no default rules for {kind}"
    # docs name the kind and every field and param
    docs = DOCS.read_text(encoding="utf-8")
    assert f"`{kind}`" in docs
    for name in [*spec.field_index, *(p.name for p in spec.params)]:
        assert f"`{name}`" in docs, f"docs/devices.md does not mention {kind}.{name}"


def test_a_kind_may_not_redefine_common_fields() -> None:
    with pytest.raises(ValueError, match="common"):
        KindSpec("gas", "gas", 60.0, (FieldSpec("ts", "int", "no"),))
