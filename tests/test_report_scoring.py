"""Report settings from site.yaml: bad ones are errors naming the field; percentiles are
nearest-rank."""

from __future__ import annotations

import pytest

from anju.report.figures import nearest_rank
from anju.report.period import last_month, parse_period
from anju.report.scoring import level_for, settings_from_site


@pytest.mark.parametrize(("raw", "field"), [
    ({"weights": {"speed": 1}}, "report"),
    ({"weights": {"ack_p90": -1}}, "report"),
    ({"levels": {"B": 60, "A": 70}}, "report"),
    ({"ack_p90_zero_s": 0}, "report.ack_p90_zero_s"),
    ({"colour": "red"}, "report.colour"),
])
def test_bad_report_settings_name_the_file_and_field(raw: dict[str, object], field: str
                                                     ) -> None:
    with pytest.raises(ValueError, match=rf"site.yaml: {field}"):
        settings_from_site(raw)


def test_levels_and_percentiles() -> None:
    s = settings_from_site({"levels": {"A": 80, "B": 50}, "lowest_level": "D"})
    assert [level_for(x, s) for x in (95, 80, 79.9, 10, None)] == ["A", "A", "B", "D", None]
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 0.9) == 4.0
    assert nearest_rank([], 0.5) is None


def test_periods_are_local_months() -> None:
    p = parse_period("2026-11-01", "2026-12-01")
    assert p.hours == 30 * 24 and p.label(p.start_ms) == "2026-11-01 00:00"
    assert p.start_ms == 1793462400000  # 2026-10-31T16:00Z: midnight in Asia/Shanghai
    assert last_month(p.end_ms + 5 * 86_400_000) == p
    with pytest.raises(ValueError, match="empty"):
        parse_period("2026-12-01", "2026-11-01")
