"""Scores from the figures, and the credit level a score suggests.

Each component is a share in [0, 1] where 1 is best; a company's score is 100 × the
weighted mean of the components it has data for (a company with no due alarm is not scored
on acknowledgement). Weights and thresholds come from ``site.yaml``'s ``report:`` section;
``docs/report.md`` explains the defaults. The level is a *suggestion* shown as evidence for
the bureau's own rating (信用等级), never as its verdict.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["COMPONENTS", "ReportSettings", "components", "level_for", "score",
           "settings_from_site"]

#: Component → what it measures (the HTML legend and docs/report.md).
COMPONENTS: dict[str, str] = {
    "ack_in_deadline": "按时确认率 share of due alarms the company acknowledged within the "
                       "escalation deadline",
    "ack_p90": "确认速度 speed of its acknowledgements: 1 at 0 s, 0 at ack_p90_zero_s (p90)",
    "self_acknowledged": "自行确认 share of acknowledgements made by the company itself, "
                         "not by the fire team or a supervisor",
    "closed_by_end": "期末未结 share of its alarms not left open at the end of the period",
    "availability": "设备在线率 device availability, 0 at availability_floor, 1 at 100 %",
    "camera_coverage": "高空抛物监控覆盖 falling-object camera coverage, same scale",
}


class ReportSettings(BaseModel):
    """``site.yaml`` → ``report:``; every key optional."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(default_factory=lambda: {
        "ack_in_deadline": 40.0, "ack_p90": 15.0, "self_acknowledged": 10.0,
        "closed_by_end": 10.0, "availability": 15.0, "camera_coverage": 10.0})
    ack_p90_zero_s: float = Field(900.0, gt=0)
    availability_floor: float = Field(0.90, ge=0, lt=1)
    levels: dict[str, float] = Field(default_factory=lambda: {
        "AAA": 90.0, "AA": 80.0, "A": 70.0, "B": 60.0})
    lowest_level: str = "C"

    @model_validator(mode="after")
    def _check(self) -> ReportSettings:
        unknown = sorted(set(self.weights) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown score components {unknown}; known: {list(COMPONENTS)}")
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError("weights must be ≥ 0 and not all 0")
        mins = list(self.levels.values())
        if mins != sorted(mins, reverse=True):
            raise ValueError("levels must be listed from the highest minimum score down")
        return self


def settings_from_site(raw: dict[str, Any] | None, where: str = "site.yaml") -> ReportSettings:
    """Validates the ``report:`` section; ValueError naming the file and the field."""
    try:
        return ReportSettings.model_validate(raw or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in ("report", *first["loc"]))
        raise ValueError(f"{where}: {loc}: {first['msg']}") from None


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def components(row: dict[str, Any], s: ReportSettings) -> dict[str, float | None]:
    """The components of one company's figures (a ``companies`` row); None: no data."""
    due = row["due"]
    acks = row["acked_own"] + row["acked_by_fire"] + row["acked_by_supervisor"] \
        + row["acked_by_other"]
    out: dict[str, float | None] = {}
    out["ack_in_deadline"] = row["acked_in_deadline"] / due if due else None
    if row["ack_p90_s"] is not None:
        out["ack_p90"] = _clamp(1 - row["ack_p90_s"] / s.ack_p90_zero_s)
    else:
        out["ack_p90"] = 0.0 if due else None  # due alarms and not one acknowledged
    out["self_acknowledged"] = (row["acked_own"] / acks if acks
                                else (0.0 if due else None))
    seen = row["alarms"] + row["open_at_start"]
    out["closed_by_end"] = 1 - row["open_at_end"] / seen if seen else None
    floor = s.availability_floor
    for key, value in (("availability", row["availability"]),
                       ("camera_coverage", row["camera_coverage"])):
        out[key] = None if value is None else _clamp((value - floor) / (1 - floor))
    return out


def score(comps: dict[str, float | None], s: ReportSettings) -> float | None:
    """100 × the weighted mean of the components with data; None when none has."""
    num = den = 0.0
    for key, value in comps.items():
        w = s.weights.get(key, 0.0)
        if value is None or w == 0:
            continue
        num += w * value
        den += w
    return round(100 * num / den, 2) if den else None


def level_for(value: float | None, s: ReportSettings) -> str | None:
    """The suggested credit level of a score: the first level whose minimum it reaches."""
    if value is None:
        return None
    for name, minimum in s.levels.items():
        if value >= minimum:
            return name
    return s.lowest_level
