"""The pipeline's own monthly report (anju.app.monthly_report): once a month is over, its
report goes into the session's real InfluxDB as ``report_monthly`` points, the same as
``anju report --influx`` writes; once only, across restarts; never for a month anju did
not run through; again later when InfluxDB could not take it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from anju.app.monthly_report import FILE_NAME, MonthlyReport
from anju.config import Settings
from anju.devices.registry import Site, load_site
from anju.errors import SinkUnavailable
from anju.report.build import build_report
from anju.report.period import month_of, parse_period
from anju.report.scope import scope_for
from anju.services import LocalServices, free_port
from anju.simulators.month import plan_month, run_month, write_month_site

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")


def _ms(*when: int) -> int:
    return int(dt.datetime(*when, tzinfo=TZ).timestamp() * 1000)


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture(scope="module")
def november(tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, Path]:
    """The simulated November 2026 of test_report_month.py, in a state dir."""
    root = tmp_path_factory.mktemp("november")
    site = load_site(write_month_site(root / "site"))
    period = parse_period("2026-11-01", "2026-12-01")
    run_month(site, plan_month(site, period.start_ms, period.end_ms), root / "state")
    return site, root / "state"


def _settings(services: LocalServices, db: str, state: Path, **kw: object) -> Settings:
    args: dict[str, object] = {"influx_url": services.influx.url, "influx_db": db,
                               "state_dir": state, **kw}
    return Settings(**args)  # type: ignore[arg-type]


def _points(services: LocalServices, db: str) -> list[dict[str, object]]:
    res = services.influx.query("SELECT * FROM report_monthly", db=db, epoch="ms")
    series = res["results"][0].get("series", [])
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]


async def test_a_finished_month_is_written_once_and_only_if_anju_ran_through_it(
        services: LocalServices, influx_db: str, november: tuple[Site, Path]) -> None:
    site, state = november
    record = state / FILE_NAME
    record.unlink(missing_ok=True)
    clock = Clock(_ms(2026, 11, 20))  # first started on 20 November
    monthly = MonthlyReport(site, _settings(services, influx_db, state), clock=clock)
    assert monthly.due() is None  # October: before anju ran
    clock.ms = _ms(2026, 12, 1, 1, 10)
    assert monthly.due() is None  # November: anju missed its first weeks
    assert await monthly.step() is None
    assert _points(services, influx_db) == []

    # as if anju had run since 15 October: November is due at the turn of the month
    record.write_bytes(orjson.dumps({"since_ms": _ms(2026, 10, 15), "written": []}))
    clock.ms = _ms(2026, 12, 1, 0, 30)
    monthly = MonthlyReport(site, _settings(services, influx_db, state), clock=clock)
    assert monthly.due() is None  # the month's last alarms may still come: an hour's grace
    clock.ms = _ms(2026, 12, 1, 1, 10)
    period = monthly.due()
    assert period is not None and period.start_ms == _ms(2026, 11, 1)
    points = await monthly.step()
    report = build_report(site, state, period, scope_for(site))
    rows = report.tables["companies"] + report.tables["estates"]
    assert points == len(rows) > 0
    stored = _points(services, influx_db)
    assert len(stored) == len(rows)
    assert {p["time"] for p in stored} == {_ms(2026, 11, 1)}
    by_company = {p["company"]: p for p in stored if p["level"] == "company"}
    for row in report.tables["companies"]:
        assert by_company[row["company"]]["alarms"] == float(row["alarms"])

    # once: not again in this run, nor after a restart, nor later in December
    assert await monthly.step() is None
    clock.ms = _ms(2026, 12, 31, 23, 59)
    again = MonthlyReport(site, _settings(services, influx_db, state), clock=clock)
    assert again.due() is None
    # the turn of the year: December is due (nothing in it, but anju ran through it)
    clock.ms = _ms(2027, 1, 1, 1, 1)
    december = again.due()
    assert december is not None and december.start_ms == _ms(2026, 12, 1)
    assert orjson.loads(record.read_bytes())["written"] == ["2026-11"]


async def test_influxdb_unreachable_leaves_the_month_due(
        services: LocalServices, influx_db: str, november: tuple[Site, Path]) -> None:
    site, state = november
    (state / FILE_NAME).write_bytes(orjson.dumps({"since_ms": _ms(2026, 10, 15),
                                                  "written": []}))
    clock = Clock(_ms(2026, 12, 2))
    down = _settings(services, influx_db, state,
                     influx_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SinkUnavailable):
        await MonthlyReport(site, down, clock=clock).step()
    monthly = MonthlyReport(site, _settings(services, influx_db, state), clock=clock)
    assert monthly.due() is not None
    assert (await monthly.step() or 0) > 0
    assert monthly.due() is None


def test_a_damaged_record_starts_again_from_now(tmp_path: Path,
                                                 november: tuple[Site, Path]) -> None:
    site, _ = november
    (tmp_path / FILE_NAME).write_bytes(b"{not json")
    clock = Clock(_ms(2026, 12, 1, 1, 10))
    monthly = MonthlyReport(site, Settings(state_dir=tmp_path), clock=clock)
    assert monthly.due() is None  # November began before "now": the command's to write
    assert orjson.loads((tmp_path / FILE_NAME).read_bytes())["since_ms"] == clock.ms


@pytest.mark.parametrize(("now", "expected_s"), [
    ((2026, 12, 15), 3600.0),  # at most an hour's nap
    ((2026, 12, 31, 23, 59, 30), 3600.0),
    ((2027, 1, 1, 0, 59, 30), 31.0),  # the turn and its grace, and a second past them
    ((2027, 2, 1, 0, 59, 50), 11.0),
])
def test_it_wakes_when_a_month_is_due(tmp_path: Path, november: tuple[Site, Path],
                                      now: tuple[int, ...], expected_s: float) -> None:
    site, _ = november
    monthly = MonthlyReport(site, Settings(state_dir=tmp_path), clock=Clock(_ms(*now)))
    assert monthly._until_next_due() == pytest.approx(expected_s)


def test_months_of_a_zone_with_summer_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    march = month_of(int(dt.datetime(2026, 3, 15, tzinfo=berlin).timestamp() * 1000),
                     "Europe/Berlin")
    assert march.start_ms == int(dt.datetime(2026, 3, 1, tzinfo=berlin).timestamp() * 1000)
    assert march.end_ms == int(dt.datetime(2026, 4, 1, tzinfo=berlin).timestamp() * 1000)
    assert march.hours == 31 * 24 - 1  # the clocks go forward on 29 March


async def test_months_missed_while_down_are_written_oldest_first(
        tmp_path: Path, november: tuple[Site, Path]) -> None:
    site, state = november
    (state / FILE_NAME).write_bytes(orjson.dumps({"since_ms": _ms(2026, 10, 1),
                                                  "written": []}))
    written: list[int] = []

    async def write(report: object) -> int:
        written.append(report.meta["period"]["from_ms"])  # type: ignore[attr-defined]
        return 1

    clock = Clock(_ms(2027, 1, 3))  # down from before the turn of November until now
    monthly = MonthlyReport(site, Settings(state_dir=state), clock=clock, write=write)
    while await monthly.step() is not None:
        pass
    assert written == [_ms(2026, 10, 1), _ms(2026, 11, 1), _ms(2026, 12, 1)]
    assert orjson.loads((state / FILE_NAME).read_bytes())["written"] == [
        "2026-10", "2026-11", "2026-12"]


@pytest.mark.parametrize("record", [
    {"since_ms": 0, "written": None}, {"since_ms": 0}, {"since_ms": 0, "written": [1]},
    {"since_ms": "x", "written": []}, [1, 2]])
def test_a_malformed_record_is_started_again(tmp_path: Path, november: tuple[Site, Path],
                                             record: object) -> None:
    site, _ = november
    (tmp_path / FILE_NAME).write_bytes(orjson.dumps(record))
    clock = Clock(_ms(2026, 12, 5))
    assert MonthlyReport(site, Settings(state_dir=tmp_path), clock=clock).due() is None
    assert orjson.loads((tmp_path / FILE_NAME).read_bytes()) == {"since_ms": clock.ms,
                                                                  "written": []}


def test_a_record_from_a_clock_ahead_is_brought_back(tmp_path: Path,
                                                     november: tuple[Site, Path]) -> None:
    site, _ = november
    (tmp_path / FILE_NAME).write_bytes(orjson.dumps({"since_ms": _ms(2030, 1, 1),
                                                     "written": []}))
    clock = Clock(_ms(2026, 12, 5))
    MonthlyReport(site, Settings(state_dir=tmp_path), clock=clock).due()
    assert orjson.loads((tmp_path / FILE_NAME).read_bytes())["since_ms"] == clock.ms


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        Settings(report_timezone="Mars/Olympus")
