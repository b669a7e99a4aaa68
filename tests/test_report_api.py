"""``GET /reports`` on the real API (aiohttp on 127.0.0.1, the SQLite store a simulated
month wrote), scoped by the team token; and the HTML report in a real browser (Debian's
chromium through Playwright), offline and complete."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from anju.alarms import AlarmManager, SqliteAlarmStore, make_api
from anju.devices.registry import Site, load_site
from anju.report.api import add_reports
from anju.report.build import build_report
from anju.report.output import write_report
from anju.report.period import parse_period
from anju.report.scope import scope_for
from anju.simulators.month import plan_month, run_month, write_month_site

TOKENS = {"ANJU_TOKEN_PROPERTY_SLOW": "tok-report-slow-0123",
          "ANJU_TOKEN_SUPERVISOR_STREET": "tok-report-street-0123"}
Q = {"from": "2026-11-01", "to": "2026-12-01"}


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report-api")
    write_month_site(root / "site")
    site = load_site(root / "site")
    p = parse_period(Q["from"], Q["to"])
    run_month(site, plan_month(site, p.start_ms, p.end_ms), root / "state")
    return root / "site", root / "state"


@pytest.fixture
async def client(month: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[TestClient[Any, Any]]:
    for k, v in TOKENS.items():
        monkeypatch.setenv(k, v)
    site: Site = load_site(month[0])
    store = SqliteAlarmStore(month[1])
    app = make_api(AlarmManager(site, store), store, site, health=lambda: {"mqtt": True},
                   registry=CollectorRegistry())
    add_reports(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c
    store.close()


def _auth(env: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[env]}"}


async def test_reports_need_a_token(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/reports", params=Q)).status == 401
    bad = await client.get("/reports", params=Q, headers={"Authorization": "Bearer nope"})
    assert bad.status == 401


async def test_a_company_sees_itself_and_a_street_office_ranks_all(
        client: TestClient[Any, Any]) -> None:
    r = await client.get("/reports", params=Q, headers=_auth("ANJU_TOKEN_PROPERTY_SLOW"))
    assert r.status == 200
    body = await r.json()
    assert [c["company"] for c in body["companies"]] == ["property-slow"]
    assert {e["estate"] for e in body["estates"]} == {"e003", "e004"}
    r = await client.get("/reports", params=Q, headers=_auth("ANJU_TOKEN_SUPERVISOR_STREET"))
    body = await r.json()
    assert [c["company"] for c in body["ranking"]] == [
        "property-prompt", "property-slow", "property-negligent"]
    bad = await client.get("/reports", params={"from": "2026-12-01", "to": "2026-11-01"},
                           headers=_auth("ANJU_TOKEN_SUPERVISOR_STREET"))
    assert bad.status == 400


async def test_the_html_report_is_served_with_a_closed_csp(
        client: TestClient[Any, Any]) -> None:
    r = await client.get("/reports", params={**Q, "format": "html"},
                         headers=_auth("ANJU_TOKEN_SUPERVISOR_STREET"))
    assert r.status == 200 and r.content_type == "text/html"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    text = await r.text()
    assert "<svg" in text and "<script" not in text and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # no from/to: the last full month before the API's clock (the console's link)
    r = await client.get("/reports", params={"format": "html"},
                         headers=_auth("ANJU_TOKEN_SUPERVISOR_STREET"))
    assert r.status == 200


CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and
                 Path(p).exists()), None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_html_report_renders_offline_in_chromium(month: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    site = load_site(month[0])
    report = build_report(site, month[1], parse_period(Q["from"], Q["to"]), scope_for(site))
    page_path = write_report(report, tmp_path)["html"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1150, "height": 900})
            urls: list[str] = []
            page.on("request", lambda req: urls.append(req.url))
            page.goto(page_path.as_uri())
            assert urls == [page_path.as_uri()]  # nothing else is fetched
            charts = page.locator("svg.chart")
            assert charts.count() >= 4
            box = charts.first.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 40
            ranks = page.locator("table").first.locator("tbody tr")
            assert [ranks.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == [
                "property-prompt", "property-slow", "property-negligent"]
            assert "Accountability report" in page.locator("h1").inner_text()
        finally:
            browser.close()
