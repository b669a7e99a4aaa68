"""The city of a scenario's ``site:`` recipe: the generated city, then what supervision
adds (issue 18) — estates moved to other streets and communities, supervisor teams by
jurisdiction, the city's name, escalation chains and supervision settings."""

from __future__ import annotations

from dataclasses import replace

from anju.simulators.city import CityPlan, _team, plan_city
from anju.simulators.scenario import SiteRecipe

__all__ = ["plan_recipe"]


def plan_recipe(recipe: SiteRecipe, *, webhook_port: int = 9000,
                webhook_host: str = "127.0.0.1") -> CityPlan:
    """:func:`plan_city` of the recipe with its supervision additions; ValueError names an
    estate of ``places`` the city does not have."""
    plan = plan_city(recipe.estates, recipe.seed, webhook_port=webhook_port,
                     webhook_host=webhook_host)
    ids = {e.id for e in plan.estates}
    for eid in recipe.places:
        if eid not in ids:
            raise ValueError(f"site.places: estate {eid!r} is not in the city "
                             f"({', '.join(sorted(ids))})")
    for i, e in enumerate(plan.estates):
        where = recipe.places.get(e.id, {})
        plan.estates[i] = replace(e, district=where.get("district", e.district),
                                  street=where.get("street", e.street),
                                  community=where.get("community", e.community))
    base = f"http://{webhook_host}:{webhook_port}/hooks"
    for t in recipe.teams:
        team = _team(str(t["id"]), str(t.get("role", "supervisor")), [], base)
        del team["estates"]
        plan.teams.append({**team, **t})
    if recipe.city is not None:
        plan.extra["city"] = recipe.city
    if recipe.escalation is not None:
        plan.extra["escalation"] = recipe.escalation
    if recipe.supervision is not None:
        plan.extra["supervision"] = recipe.supervision
    if recipe.params:
        known = {row[0] for row in plan.devices}
        for dev in recipe.params:
            if dev not in known:
                raise ValueError(f"site.params: device {dev!r} is not in the city")
        plan.devices = [(*row[:6], {**(row[6] or {}), **recipe.params[row[0]]})
                        if row[0] in recipe.params else row for row in plan.devices]
    return plan
