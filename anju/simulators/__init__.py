"""Simulators: a generated city, its sensors' traffic, incidents with ground truth,
publishers and the demo (docs/simulators.md).

- :mod:`~anju.simulators.city` — ``plan_city`` / ``write_site``: a site directory.
- :mod:`~anju.simulators.fleets` — a signal generator (fleet) per device kind, and the
  incidents each can stage.
- :mod:`~anju.simulators.scenario` — scenarios as YAML: incidents and expected alarms.
- :mod:`~anju.simulators.traffic` — ``Traffic``: payloads in data-time order; ``record``.
- :mod:`~anju.simulators.publish` / :mod:`~anju.simulators.run` — paho publishers.
- :mod:`~anju.simulators.scoring` — the detection scorecard.
- :mod:`~anju.app.demo` — ``anju demo``.

The names below are imported lazily, so that ``anju --help`` does not load numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Scorecard",
    "Traffic",
    "bind",
    "ground_truth",
    "load_scenario",
    "plan_city",
    "record",
    "run_demo",
    "score",
    "write_site",
]

_HOMES = {
    "plan_city": "city", "write_site": "city", "Traffic": "traffic", "record": "traffic",
    "load_scenario": "scenario", "bind": "scenario", "score": "scoring",
    "ground_truth": "scoring", "Scorecard": "scoring", "run_demo": "demo",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
