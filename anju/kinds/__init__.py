"""The table of device kinds, discovered from the folders of this package.

A kind is one folder, ``anju/kinds/<kind>/``, holding everything that knows its name:
``schema.py`` (``KIND``, a :class:`~anju.devices.spec.KindSpec`), ``rules.yaml`` (its
default rules), ``simulator.py`` (its fleet and incidents) and ``dashboard.py`` (its
Grafana panels). The registries of the areas read those files from here, so adding a kind
is one new folder. The order is the folders' names, so kind codes are stable for a given
set of kinds.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import resources
from importlib.resources.abc import Traversable
from types import ModuleType

from anju.devices.spec import KindSpec

__all__ = ["KINDS", "KIND_CODES", "kind_module", "kind_names", "kind_rules_file"]


def _kind_folders() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if info.ispkg and not info.name.startswith("_"))


def _discover() -> dict[str, KindSpec]:
    found: dict[str, KindSpec] = {}
    for name in _kind_folders():
        spec = importlib.import_module(f"{__name__}.{name}.schema").KIND
        if not isinstance(spec, KindSpec) or spec.name != name:
            raise TypeError(f"{__name__}.{name}.schema.KIND must be a KindSpec named {name!r}")
        found[spec.name] = spec
    return found


KINDS: dict[str, KindSpec] = _discover()
KIND_CODES: dict[str, int] = {name: i for i, name in enumerate(KINDS)}


def kind_names() -> tuple[str, ...]:
    """The names of the known kinds, in kind-code order."""
    return tuple(KINDS)


def kind_module(kind: str, part: str) -> ModuleType:
    """The module ``anju.kinds.<kind>.<part>`` (``simulator``, ``dashboard``), imported on
    demand so that reading the kind table does not load every area's dependencies."""
    return importlib.import_module(f"{__name__}.{kind}.{part}")


def kind_rules_file(kind: str) -> Traversable:
    """The packaged ``rules.yaml`` of a kind (its default rules)."""
    return resources.files(__name__) / kind / "rules.yaml"
