"""Whose estates a report covers: a team's (as its token sees them), a jurisdiction's
(district / street / community of each estate), or the whole site."""

from __future__ import annotations

from dataclasses import dataclass

from anju.devices.registry import Site

__all__ = ["JURISDICTION_LEVELS", "Scope", "parse_jurisdiction", "scope_for"]

#: The levels below the city (the site), outermost first (issue 18's chain).
JURISDICTION_LEVELS = ("district", "street", "community")


@dataclass(frozen=True, slots=True)
class Scope:
    """The estates of a report, in site order, and how the report names them."""

    estates: tuple[str, ...]
    label: str
    team: str | None = None
    jurisdiction: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "team": self.team,
                "jurisdiction": dict(self.jurisdiction), "estates": len(self.estates)}


def parse_jurisdiction(text: str) -> tuple[tuple[str, str], ...]:
    """``street=东街街道`` or ``district=红旗区,street=东街街道``; ValueError otherwise."""
    out: list[tuple[str, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in JURISDICTION_LEVELS or not value:
            raise ValueError(f"jurisdiction {part!r}: expected LEVEL=NAME with LEVEL one of "
                             f"{', '.join(JURISDICTION_LEVELS)}")
        out.append((key, value))
    if not out:
        raise ValueError("an empty jurisdiction")
    return tuple(out)


def scope_for(site: Site, *, team: str | None = None,
              jurisdiction: tuple[tuple[str, str], ...] = ()) -> Scope:
    """The estates both the team (when given) and the jurisdiction (when given) cover.

    Raises ValueError for an unknown team or a jurisdiction that names no estate, so that a
    typo gives an error rather than an empty report."""
    estates = list(site.estates.values())
    label = "全市 / whole site"
    if team is not None:
        t = next((t for t in site.teams if t.id == team), None)
        if t is None:
            raise ValueError(f"no team {team!r} in {site.root / 'site.yaml'}")
        estates = [e for e in estates if t.covers(e.id)]
        label = f"{team}"
    if jurisdiction:
        estates = [e for e in estates
                   if all(str(getattr(e, k, "") or "") == v for k, v in jurisdiction)]
        where = " ".join(v for _, v in jurisdiction)
        label = where if team is None else f"{label} · {where}"
        if not estates:
            raise ValueError(f"no estate in jurisdiction "
                             f"{','.join(f'{k}={v}' for k, v in jurisdiction)}")
    return Scope(tuple(e.id for e in estates), label, team, jurisdiction)
