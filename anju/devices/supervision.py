"""Supervision policy of ``site.yaml`` (issue 18): escalation chains, inhibition and the
maintenance settings, validated at the edge and handed to the alarm stages as dataclasses.

```yaml
escalation:
  unacknowledged_after_s: 300          # as before: a one-step chain (supervisor) when no chain
  chains:                              # per severity, or per rule id (a rule's wins)
    critical:
      steps:
        - {after_s: 0, notify: [property]}
        - {after_s: 300, notify: [community, street]}
        - {after_s: 900, notify: [district]}
        - {after_s: 1800, notify: [city]}
      repeat_s: 600                    # reminders after the last step (0: none)
      repeat_from: 1                   # reminders go to the targets of steps 1… (default: last)
supervision:
  gateway_silent_s: 90                 # gateway.offline after this long without a batch
  maintenance_overdue_days: 15         # elevator.maintenance_overdue (TSG T5002: 15 days)
  inhibit:                             # replaces the defaults below when given
    - {source: gateway.offline, target: device.offline, scope: building}
```

A ``notify`` item is a role (``property``, ``fire``, ``supervisor``) or a level of the
supervision chain (``estate``, ``community``, ``street``, ``district``, ``city``: the
supervisor teams at that level over the alarm's estate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anju.kinds import KINDS

__all__ = [
    "DEFAULT_INHIBITS",
    "NOTIFY",
    "Chain",
    "ChainModel",
    "Inhibit",
    "InhibitModel",
    "Step",
    "Supervision",
    "SupervisionModel",
    "legacy_chain",
]

Notify = Literal["property", "fire", "supervisor", "estate", "community", "street",
                 "district", "city"]
NOTIFY: tuple[str, ...] = ("property", "fire", "supervisor", "estate", "community", "street",
                           "district", "city")


class _StepModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after_s: float = Field(ge=0)
    notify: list[Notify] = Field(min_length=1)


class ChainModel(BaseModel):
    """One escalation chain as written in site.yaml."""

    model_config = ConfigDict(extra="forbid")
    steps: list[_StepModel] = Field(min_length=1)
    repeat_s: float = Field(0, ge=0)
    repeat_from: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> ChainModel:
        times = [s.after_s for s in self.steps]
        if times != sorted(times):
            raise ValueError("steps must be in order of after_s")
        if self.repeat_from is not None and self.repeat_from >= len(self.steps):
            raise ValueError(f"repeat_from {self.repeat_from}: the chain has "
                             f"{len(self.steps)} steps (0…{len(self.steps) - 1})")
        return self


class InhibitModel(BaseModel):
    """``source`` (a rule), while open, inhibits ``target`` alarms in the same scope."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    scope: Literal["building", "estate", "device"] = "building"


class SupervisionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gateway_silent_s: float = Field(90, gt=0)
    # None: each kind's own statutory interval (KindSpec.maintenance_days)
    maintenance_overdue_days: float | None = Field(None, gt=0)
    inhibit: list[InhibitModel] | None = None


@dataclass(frozen=True, slots=True)
class Step:
    after_ms: int
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """An escalation chain: ``steps`` by time from the raise; reminders every ``repeat_ms``
    (0: none) to the targets of ``steps[repeat_from:]``. ``fallback_fire`` keeps today's
    rule for the one-step chain of ``unacknowledged_after_s``: where an estate has no
    supervisor team, a critical alarm escalates to its fire team."""

    steps: tuple[Step, ...]
    repeat_ms: int = 0
    repeat_from: int = 0
    fallback_fire: bool = False

    @staticmethod
    def from_model(m: ChainModel) -> Chain:
        steps = tuple(Step(round(s.after_s * 1000), tuple(s.notify)) for s in m.steps)
        last = len(steps) - 1
        return Chain(steps, round(m.repeat_s * 1000),
                     last if m.repeat_from is None else m.repeat_from)


def legacy_chain(unacknowledged_after_s: float) -> Chain:
    """Today's single escalation step as a chain: the supervisors after the delay, then a
    reminder each delay, to the fire team for critical alarms where there is no supervisor."""
    ms = round(unacknowledged_after_s * 1000)
    return Chain((Step(ms, ("supervisor",)),), ms, 0, fallback_fire=True)


@dataclass(frozen=True, slots=True)
class Inhibit:
    source: str
    target: str
    scope: str


#: A building's power cut stops its lifts and everything else there; a silent gateway
#: silences every device behind it (its building, per gateways.csv).
DEFAULT_INHIBITS: tuple[Inhibit, ...] = (
    Inhibit("gateway.offline", "device.offline", "building"),
    *(Inhibit(src, dst, "building") for spec in KINDS.values() for src, dst in spec.inhibits),
)


@dataclass(frozen=True, slots=True)
class Supervision:
    """The supervision settings a site runs with."""

    chains: dict[str, Chain]  # severity or rule id → chain
    default_chain: Chain
    inhibits: tuple[Inhibit, ...] = DEFAULT_INHIBITS
    gateway_silent_ms: int = 90_000
    maintenance_overdue_ms: int | None = None  # None: each kind's maintenance_days

    def chain_for(self, rule: str, severity: str) -> Chain:
        """The rule's own chain, else its severity's, else the one-step default."""
        return self.chains.get(rule) or self.chains.get(severity) or self.default_chain

    @staticmethod
    def build(unacknowledged_after_s: float, chains: dict[str, ChainModel],
              sup: SupervisionModel | None) -> Supervision:
        sup = sup or SupervisionModel.model_validate({})
        return Supervision(
            chains={k: Chain.from_model(v) for k, v in chains.items()},
            default_chain=legacy_chain(unacknowledged_after_s),
            inhibits=DEFAULT_INHIBITS if sup.inhibit is None else tuple(
                Inhibit(i.source, i.target, i.scope) for i in sup.inhibit),
            gateway_silent_ms=round(sup.gateway_silent_s * 1000),
            maintenance_overdue_ms=None if sup.maintenance_overdue_days is None
            else round(sup.maintenance_overdue_days * 86_400_000),
        )
