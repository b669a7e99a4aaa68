"""Access-control doors (门禁): a report every 60 s, and the events incidents stage.

Normal traffic, on each door's one-minute grid: most reports are heartbeats (door shut);
some are a resident let in — ``granted`` with the credential used (card, face, plate, QR
code) and the door open a few seconds — more by day than at night; a rare one is an
expired card ``denied``. Two reports a minute apart are as close as two refusals ever
come, far from access.denied_burst's five in a minute, and no door stays open long, so
normal traffic raises nothing. Refusals are kept away from staged incidents so that each
is judged alone.

Incidents: ``door_forced`` (opened without a credential, shut again after ``duration_s``),
``door_held_open`` (opened with a card and propped open), ``card_trying`` (someone
presenting ``count`` refused credentials ``every_s`` apart) and ``door_tamper``.
While a door is open it reports every 10 s with how long it has been open.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anju.kinds import KINDS
from anju.simulators._noise import uniform
from anju.simulators.fleet import (
    BoundIncident,
    CadenceFleet,
    FleetContext,
    FloatArray,
    IncidentType,
    IntArray,
    Override,
    local_hour,
    outside_spans,
)

__all__ = ["INCIDENTS", "AccessFleet"]

_SPEC = KINDS["access"]
_EVENTS = _SPEC.field("event").choices
_CREDENTIALS = _SPEC.field("credential").choices
_OPEN_PERIOD_MS = 10_000  # reports while the door is open
_QUIET_MS = 300_000  # no normal refusal this close to a staged incident
Credential = Literal["card", "face", "plate", "qr", "pin"]


class DoorForcedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(20.0, gt=0, le=3600, description="open this long, then shut")


class DoorHeldOpenParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration_s: float = Field(180.0, gt=0, le=86_400, description="propped open this long")
    credential: Credential = Field("card", description="what opened it (a courier: qr)")


class CardTryingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(6, ge=1, le=60, description="refused credentials presented")
    every_s: float = Field(8.0, ge=1, le=600, description="one every this many seconds")
    credential: Credential = "card"


class DoorTamperParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


INCIDENTS = {
    t.name: t for t in (
        IncidentType("door_forced", "access", DoorForcedParams,
                     "the door is forced open (no credential), shut after `duration_s`"),
        IncidentType("door_held_open", "access", DoorHeldOpenParams,
                     "the door is opened with a card and propped open for `duration_s`"),
        IncidentType("card_trying", "access", CardTryingParams,
                     "`count` refused credentials, `every_s` apart, at one door"),
        IncidentType("door_tamper", "access", DoorTamperParams,
                     "the controller's or reader's housing is opened"),
    )
}


class AccessFleet(CadenceFleet):
    """All access-control doors of a run."""

    kind = "access"
    period_ms: ClassVar[int] = 60_000

    def __init__(self, ctx: FleetContext, devices: Any, incidents: list[BoundIncident]) -> None:
        super().__init__(ctx, devices, incidents)
        self.quiet: dict[int, list[tuple[int, int]]] = {}
        for inc in self.incidents:
            if inc.type in INCIDENTS:
                self._bind(inc)

    def model(self, local: IntArray, ts: IntArray) -> dict[str, FloatArray]:
        seed, keys = self.ctx.seed, self.keys[local]
        hour = local_hour(ts)
        day = (hour >= 6.5) & (hour < 23)
        u = uniform(seed, keys, ts, 0xAC)
        granted = u < np.where(day, 0.2, 0.03)
        denied = (u >= 0.5) & (u < 0.5 + np.where(day, 0.003, 0.001))
        denied &= outside_spans(local, ts, self.quiet)
        event = np.where(granted, _EVENTS.index("granted"),
                         np.where(denied, _EVENTS.index("denied"), _EVENTS.index("heartbeat")))
        # residents mostly show a card or their face; cars at a gate their plate
        cred = (uniform(seed, keys, ts, 0xC4) * 4).astype(np.int64)  # card, face, plate, qr
        opened = np.where(granted, 2.0 + np.floor(uniform(seed, keys, ts, 0x0B) * 12), 0.0)
        return {
            "event": event.astype(np.float64),
            "door_open": granted.astype(np.float64),
            "open_s": opened,
            "credential": np.where(granted | denied, cred.astype(np.float64), np.nan),
        }

    def _bind(self, inc: BoundIncident) -> None:
        at = self.ctx.start_ms + inc.at_ms
        p = inc.params
        for dev in inc.devices:
            if dev not in self.local:
                continue
            loc = self.local[dev]
            if inc.type == "door_forced":
                self._open(loc, at, at + int(p.duration_s * 1000), "forced", None)
            elif inc.type == "door_held_open":
                self._open(loc, at, at + int(p.duration_s * 1000), "granted",
                           _CREDENTIALS.index(p.credential))
            elif inc.type == "card_trying":
                step = int(p.every_s * 1000)
                end = at + (p.count - 1) * step + 1
                self.quiet.setdefault(loc, []).append((at - _QUIET_MS, end + _QUIET_MS))
                self.overrides.append(Override(
                    loc, at, end, step,
                    _report("denied", False, None, _CREDENTIALS.index(p.credential)),
                    keep_normal=True))
            else:  # door_tamper
                self.overrides.append(Override(loc, at, at + 1, None,
                                               _report("tamper", False, None, None),
                                               keep_normal=True))

    def _open(self, loc: int, at: int, shut: int, first: str, credential: int | None
              ) -> None:
        """The door opens at ``at`` (``first`` is that report's event, ``credential`` the
        index of what opened it), reports every 10 s with how long it has been open, and
        shuts at ``shut``."""
        self.quiet.setdefault(loc, []).append((at - _QUIET_MS, shut + _QUIET_MS))
        self.overrides.append(Override(loc, at, at + 1, None,
                                       _report(first, True, at, credential),
                                       keep_normal=True))
        if shut > at + _OPEN_PERIOD_MS:
            self.overrides.append(Override(loc, at + _OPEN_PERIOD_MS, shut, _OPEN_PERIOD_MS,
                                           _report("heartbeat", True, at, None)))
        # normal reports while it is open would say it is shut: dropped
        self.overrides.append(Override(loc, at + 1, shut, None))
        self.overrides.append(Override(loc, shut, shut + 1, None,
                                       _report("heartbeat", False, None, None),
                                       keep_normal=True))


def _report(event: str, door_open: bool, opened_at: int | None, credential: int | None) -> Any:
    code = float(_EVENTS.index(event))

    def fn(ts: IntArray, cols: dict[str, FloatArray]) -> dict[str, FloatArray]:
        cols["event"] = np.full(ts.size, code)
        cols["door_open"] = np.full(ts.size, float(door_open))
        cols["open_s"] = (np.zeros(ts.size) if opened_at is None
                          else ((ts - opened_at) // 1000).astype(np.float64))
        cols["credential"] = np.full(ts.size, np.nan if credential is None
                                     else float(credential))
        return cols
    return fn


FLEET = AccessFleet  # the kind table (anju.simulators.fleets) reads this name
