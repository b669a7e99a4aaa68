"""Event rules: one alarm per reading whose condition holds (closed by acknowledgement).

Event rules see every reading, late ones too: a thrown bottle is news whenever it
arrives. A falling-object event is enriched with its origin floor, fitted from the
camera's track (:mod:`anju.rules.trajectory`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from anju.devices.batch import KindBatch
from anju.devices.registry import Site
from anju.rules.jit import compiled
from anju.rules.model import CompiledRule
from anju.rules.program import Conditions, Programs, holds
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["EventRules", "enrich_trajectory", "event_hits"]


def enrich_trajectory(site: Site, dev: int, extra: dict[str, Any] | None
                      ) -> tuple[dict[str, Any], int | None, float | None]:
    """Origin floor of a falling object from its track (CONTRACT §2): details, floor, apex."""
    from anju.rules.trajectory import Calibration, fit_fall

    track = (extra or {}).get("track")
    if not track:
        return {"error": "no track"}, None, None
    d = site.devices
    params = {k: float(d.params[k][dev]) if k in d.params else math.nan for k in
              ("mount_height_m", "distance_m", "tilt_deg", "focal_px", "cy_px")}
    if any(math.isnan(v) for v in params.values()):  # a corridor camera has no calibration
        return {"error": "no calibration"}, None, None
    b = site.buildings[int(d.building[dev])]
    try:
        fit = fit_fall(track, Calibration.from_params(params), b.floors, b.floor_height_m)
    except ValueError as exc:
        return {"error": str(exc)[:200]}, None, None
    details = {"floor": fit.floor, "apex_m": round(fit.apex_m, 2),
               "apex_se_m": round(fit.apex_se_m, 2), "origin_floor": fit.floor,
               "points": fit.points, "inliers": fit.inliers}
    return details, fit.floor, fit.apex_m


class EventRules:
    """A kind's event rules: conditions as programs over the kind's column layout (whose
    first rows are its fields), judged by :func:`event_hits` in the kind's compiled pass
    (:mod:`anju.rules.kind_pass`)."""

    def __init__(self, rules: list[CompiledRule], programs: Programs) -> None:
        self.rules = rules
        self.conditions = Conditions.of(programs, [r.condition for r in rules])

    def transitions(self, hit_rule: np.ndarray, hit_row: np.ndarray, kb: KindBatch,
                    site: Site, render: Renderer) -> list[Transition]:
        """The raised transitions of the hits (rule, row of ``kb``)."""
        extras = dict(zip(kb.extra_rows.tolist(), kb.extras, strict=True))
        names = [f.name for f in kb.kind.columns]
        out = []
        for ri, i in zip(hit_rule.tolist(), hit_row.tolist(), strict=True):
            row = dict(zip(names, kb.values[i].tolist(), strict=True))
            out.append(_transition(self.rules[ri], int(kb.device[i]), int(kb.ts[i]), row,
                                   extras.get(i), site, render))
        return out


# explicit signature: compiled once at import (cached on disk)
@compiled("i8(i8[::1], i8[::1], i8[::1], f8[::1], f8[:, ::1], f8[:, ::1], i8[::1], i8[::1],"
           " i8[::1], i8[::1], i8[::1], i8[::1])")
def event_hits(code: Any, lo: Any, hi: Any, consts: Any, cols: Any, stack: Any, cond_p: Any,
          req_lo: Any, req_hi: Any, req_rows: Any, hit_rule: Any, hit_row: Any
          ) -> int:  # pragma: no cover  (compiled: tests hold it to the reference engine)
    """(rule, row) of each reading on which a rule's condition holds, its required fields
    measured; rule by rule, rows in order."""
    n = cols.shape[1]
    cond = np.empty(n)
    valid = np.empty(n, np.bool_)
    k = 0
    for ri in range(len(cond_p)):
        holds(code, lo, hi, consts, cols, stack, cond_p, req_lo, req_hi, req_rows, ri, cond,
              valid)
        for i in range(n):
            if cond[i] == 1.0:
                hit_rule[k] = ri
                hit_row[k] = i
                k += 1
    return k


def _transition(r: CompiledRule, dev: int, ts: int, row: dict[str, float],
                extra: dict[str, Any] | None, site: Site, render: Renderer) -> Transition:
    value = float(r.value.scalar(row)) if r.value is not None else None
    details = {name: e.scalar(row) for name, e in r.details}
    floor = None
    if r.enrich == "trajectory":
        more, floor, _apex = enrich_trajectory(site, dev, extra)
        details.update(more)
    details = {k: (None if isinstance(v, float) and math.isnan(v) else v)
               for k, v in details.items()}
    return render.device(r, dev, "raised", ts, ts, value, details, floor)
