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
from anju.rules.model import CompiledRule
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["enrich_trajectory", "event_transitions"]


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


def event_transitions(rules: list[CompiledRule], kb: KindBatch, site: Site,
                      render: Renderer) -> list[Transition]:
    """The raised transitions of a kind's event ``rules`` over its batch ``kb``."""
    if not rules:
        return []
    cols: dict[str, Any] = {f.name: kb.values[:, i] for i, f in enumerate(kb.kind.columns)}
    extras = dict(zip(kb.extra_rows.tolist(), kb.extras, strict=True))
    out = []
    for r in rules:
        assert r.condition is not None
        hit = np.flatnonzero(r.condition.measured(cols, len(kb))
                             & r.condition.test_vector(cols))
        for i in hit.tolist():
            out.append(_transition(r, int(kb.device[i]), int(kb.ts[i]),
                                   {k: float(v[i]) for k, v in cols.items()},
                                   extras.get(i), site, render))
    return out


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
