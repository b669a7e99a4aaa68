"""Hand-tuned limits and extra panels of each kind, from ``anju/kinds/<kind>/dashboard.py``.

The generic per-field panels of :mod:`anju.dashboards.kinds` need nothing from here; a
kind's ``dashboard.py`` adds what an operator of that kind asks for: ``tuning(rules)``, the
rule thresholds drawn on the charts, and ``panels(spec, tuning)``, views that are not one
field (elevator trips, smoke by floor, falling objects by origin floor). This module holds
the helpers they share. Every threshold is read from the rules in force — the catalogue
with the site's overrides (``anju dashboards build --site DIR``) — so a dashboard never
shows a limit the engine does not apply; a rule the site disables draws no line. A kind
without a ``dashboard.py`` still gets its full generic dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.influxql import scope
from anju.dashboards.panels import thresholds
from anju.devices.spec import KindSpec
from anju.kinds import KINDS, kind_module
from anju.rules.model import RuleSet

__all__ = ["DEVICE_SCOPE", "FieldTuning", "KindTuning", "PanelBuilder", "PanelList",
           "RulesInForce", "band", "extra_panels", "fmt", "kind_dashboard_module", "limit",
           "tuning_for"]

PanelBuilder = cogbuilder.Builder[dash.Panel]
PanelList = list[PanelBuilder]
DEVICE_SCOPE = scope("estate", "building", "device")


@dataclass(frozen=True, slots=True)
class FieldTuning:
    """How to draw one field: aggregates, limits (base colour + steps), axis range, a note."""

    aggs: tuple[str, ...] = ()
    base: str = "green"
    steps: tuple[tuple[float, str], ...] = ()
    min_val: float | None = None
    max_val: float | None = None
    note: str = ""

    def limits(self) -> db.ThresholdsConfig | None:
        """The thresholds to draw, or None when the field has no limits."""
        return thresholds(self.base, *self.steps) if self.steps else None

    def step(self, i: int = 0) -> float | None:
        """The ``i``-th limit, or None when the rule that sets it is not in force."""
        return self.steps[i][0] if len(self.steps) > i else None


KindTuning = dict[str, FieldTuning]


def fmt(v: float) -> str:
    """A limit as an operator reads it (no trailing zeros)."""
    return f"{v:g}"


class RulesInForce:
    """Parameters of the rules in force; None for a rule that is disabled or unknown."""

    def __init__(self, rules: RuleSet) -> None:
        self._by_id = {r.id: r for r in rules.rules}

    def param(self, rule: str, name: str) -> float | None:
        r = self._by_id.get(rule)
        return None if r is None else r.params.get(name)

    def held(self, rule: str) -> str:
        r = self._by_id.get(rule)
        return f" for {fmt(r.for_s)} s" if r is not None and r.for_s else ""


def limit(*pairs: tuple[float | None, str]) -> tuple[tuple[float, str], ...]:
    """The steps whose limit is in force."""
    return tuple((v, c) for v, c in pairs if v is not None)


def band(low: float | None, high: float | None, base: str = "red") -> tuple[
        str, tuple[tuple[float, str], ...]]:
    """Base colour and steps of an acceptable band [low, high]: red outside it."""
    if low is None:
        return "green", limit((high, "red"))
    return base, limit((low, "green"), (high, "red"))


def tuning_for(rules: RuleSet) -> dict[str, KindTuning]:
    """Per kind and field, how to draw it, with the limits of ``rules`` (the rules in force):
    each kind's ``anju/kinds/<kind>/dashboard.py`` ``tuning``."""
    r = RulesInForce(rules)
    out: dict[str, KindTuning] = {}
    for kind in KINDS:
        mod = kind_dashboard_module(kind)
        if mod is not None:
            out[kind] = mod.tuning(r)
    return out


def kind_dashboard_module(kind: str) -> ModuleType | None:
    """``anju.kinds.<kind>.dashboard``, or None for a kind without one (it still gets its
    generic dashboard)."""
    try:
        return kind_module(kind, "dashboard")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"anju.kinds.{kind}", f"anju.kinds.{kind}.dashboard"):
            raise
        return None


def extra_panels(spec: KindSpec, tuning: KindTuning) -> PanelList | None:
    """The kind's hand-made operator views (its ``dashboard.py`` ``panels``), or None."""
    mod = kind_dashboard_module(spec.name)
    return None if mod is None else mod.panels(spec, tuning)
