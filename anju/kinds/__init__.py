"""The table of device kinds, discovered from the modules of this package.

Each module defines ``KIND``, a :class:`~anju.devices.spec.KindSpec`. The order is the
modules' names, so kind codes are stable for a given set of kinds.
"""

from __future__ import annotations

import importlib
import pkgutil

from anju.devices.spec import KindSpec

__all__ = ["KINDS", "KIND_CODES", "kind_names"]


def _discover() -> dict[str, KindSpec]:
    found: dict[str, KindSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        spec = importlib.import_module(f"{__name__}.{info.name}").KIND
        if not isinstance(spec, KindSpec) or spec.name != info.name:
            raise TypeError(f"{__name__}.{info.name}.KIND must be a KindSpec named {info.name!r}")
        found[spec.name] = spec
    return found


KINDS: dict[str, KindSpec] = _discover()
KIND_CODES: dict[str, int] = {name: i for i, name in enumerate(KINDS)}


def kind_names() -> tuple[str, ...]:
    return tuple(KINDS)
