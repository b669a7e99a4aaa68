"""The console in a real browser: Debian's chromium driven by Playwright (Python).

The API (with the console mounted, as ``anju run`` serves it) runs on 127.0.0.1 over a
real SQLite store; alarms are raised through the alarm manager, as the pipeline does.
Skipped only when chromium (or the playwright client) is absent; ``make test`` installs
chromium with apt-get.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from anju.alarms import AlarmManager, SqliteAlarmStore, make_api
from anju.devices.registry import Site, load_site
from anju.rules.transition import Transition
from anju.web import add_console

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and
                 Path(p).exists()), None)
async_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required"]
SITE_YAML = """
estates:
  - {id: e1, name: 安居苑, buildings: [{id: b1, floors: 18}]}
  - {id: e2, buildings: [{id: b1, floors: 6}]}
teams:
  - {id: prop-e1, role: property, estates: [e1], token_env: B_TOKEN_E1}
  - {id: prop-e2, role: property, estates: [e2], token_env: B_TOKEN_E2}
"""
TOKENS = {"prop-e1": "tok-browser-e1-0123", "prop-e2": "tok-browser-e2-0123"}
XSS = "<img src=x onerror=alert(1)>"
WAIT_MS = 10_000  # a bound on each wait, not a measurement


def tr(subject: str, ts: int, *, severity: str = "major", zone: str | None = "stair-A",
       rule: str = "smoke.alarm", kind: str = "smoke", estate: str = "e1") -> Transition:
    return Transition(rule=rule, event="raised", kind=kind, severity=severity,
                      roles=("property",), subject=subject, device=subject, estate=estate,
                      building="b1", floor=7, zone=zone, ts=ts, started_at=ts, value=61.0,
                      message=f"{rule} at {subject}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    for team, tok in TOKENS.items():
        monkeypatch.setenv(f"B_TOKEN_{team[-2:].upper()}", tok)
    (tmp_path / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (tmp_path / "devices.csv").write_text("device,kind,estate,building\n", encoding="utf-8")
    return load_site(tmp_path)


@pytest.fixture
async def served(site: Site, tmp_path: Path) -> AsyncIterator[tuple[str, AlarmManager,
                                                                   SqliteAlarmStore]]:
    store = SqliteAlarmStore(tmp_path / "state")
    reg = CollectorRegistry()
    mgr = AlarmManager(site, store, registry=reg)
    app = make_api(mgr, store, site, registry=reg, health=lambda: {"mqtt": "connected"})
    add_console(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", mgr, store
    finally:
        await runner.cleanup()
        store.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def sign_in(page: Any, url: str, token: str) -> None:
    await page.goto(url)
    await page.fill("#token", token)
    await page.click("#signin-form button[type=submit]")
    # the stream is open; its snapshot may still be on its way (wait for rows where needed)
    await page.wait_for_selector("#live.on", timeout=WAIT_MS)


async def test_console_live_ack_assign_comment_and_english(served: Any, browser: Any) -> None:
    url, mgr, store = served
    import time

    now = int(time.time() * 1000)
    [old] = await asyncio.to_thread(mgr.on_transitions, [tr("s-1", now - 60_000, zone=XSS)])
    await asyncio.to_thread(mgr.on_transitions, [tr("s-9", now, estate="e2")])

    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url)
    assert await page.get_attribute("html", "lang") == "zh-CN"
    assert (await page.text_content("#signin-form button")) == "登录"
    await page.fill("#token", "wrong-token")
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#signin-error:has-text('令牌无效')", timeout=WAIT_MS)
    await sign_in(page, url, TOKENS["prop-e1"])

    # the alarm that was open before: rendered, its zone as text, not markup
    row = page.locator(f"tr[data-id='{old.alarm_id}']")
    await row.wait_for(timeout=WAIT_MS)
    assert XSS in (await row.locator("td.where").text_content() or "")
    assert await page.locator("#alarms img").count() == 0
    assert await page.locator("#alarms tbody tr").count() == 1  # not e2's alarm

    # a critical alarm pushed live: listed first, with the visible and audible cue
    [crit] = await asyncio.to_thread(mgr.on_transitions, [
        tr("h-1", now, severity="critical", rule="heat.fixed")])
    await page.wait_for_selector(f"tr[data-id='{crit.alarm_id}']", timeout=WAIT_MS)
    ids = await page.eval_on_selector_all("#alarms tbody tr", "rs => rs.map(r => r.dataset.id)")
    assert ids == [crit.alarm_id, old.alarm_id]
    assert await page.get_attribute("body", "data-cues") == "1"
    assert await page.get_attribute("body", "data-beeps") == "1"
    assert await page.is_visible("#cue")
    deadline = await page.locator(f"tr[data-id='{crit.alarm_id}'] td[data-due]").count()
    assert deadline == 1  # the escalation countdown runs

    # act on it from its page: acknowledge, assign, comment; each lands in the timeline
    await page.click(f"tr[data-id='{crit.alarm_id}']")
    await page.wait_for_selector("#detail:not([hidden]) #d-timeline li[data-event=raised]",
                                 timeout=WAIT_MS)
    await page.fill("#ack-by", "王师傅")
    await page.fill("#ack-note", "已到现场")
    await page.click("#ack-form button[type=submit]")
    await page.wait_for_selector("#d-timeline li[data-event=acknowledged]", timeout=WAIT_MS)
    await page.fill("#assign-to", "赵队长")
    await page.fill("#assign-by", "王师傅")
    await page.click("#assign-form button[type=submit]")
    await page.wait_for_selector("#d-timeline li[data-event=assigned]", timeout=WAIT_MS)
    await page.fill("#comment-text", XSS)
    await page.click("#comment-form button[type=submit]")
    await page.wait_for_selector("#d-timeline li[data-event=commented]", timeout=WAIT_MS)
    assert XSS in (await page.text_content("#d-timeline li[data-event=commented]") or "")
    events = await asyncio.to_thread(store.events, crit.alarm_id)
    assert [e.event for e in events] == ["raised", "acknowledged", "assigned", "commented"]
    assert events[1].details["ack"] == {"by": "王师傅", "note": "已到现场", "team": "prop-e1"}
    assert events[2].details["assign"]["to"] == "赵队长"
    # the list follows the stream: acknowledged, assigned
    state = page.locator(f"tr[data-id='{crit.alarm_id}'] td.state")
    await state.filter(has_text="已确认").wait_for(timeout=WAIT_MS)

    # English
    await page.click("#lang")
    assert await page.get_attribute("html", "lang") == "en"
    assert (await page.text_content("header h1")) == "Anju · control room"
    assert (await page.text_content("#alarms th:first-child")) == "Severity"
    assert (await state.text_content()) == "acknowledged"
    assert (await page.text_content("#lang")) == "中文"

    # another estate's team sees nothing of it
    other = await browser.new_page()
    await sign_in(other, url, TOKENS["prop-e2"])
    await other.wait_for_selector("#alarms tbody tr", timeout=WAIT_MS)  # e2's one alarm
    ids2 = await other.eval_on_selector_all("#alarms tbody tr", "rs => rs.map(r => r.dataset.id)")
    assert crit.alarm_id not in ids2 and old.alarm_id not in ids2 and len(ids2) == 1

    assert dialogs == [] and errors == []


async def test_held_alarms_are_shown_apart_with_their_reason(served: Any, browser: Any) -> None:
    """An inhibited alarm (issue 18) is listed, marked held, with what inhibits it."""
    url, mgr, _ = served
    import time

    now = int(time.time() * 1000)
    gw = Transition(rule="gateway.offline", event="raised", kind="gateway", severity="major",
                    roles=("property",), subject="gw-1", device="gw-1", estate="e1",
                    building="b1", floor=None, zone=None, ts=now, started_at=now, value=None,
                    message="gateway gw-1 offline")
    [source] = await asyncio.to_thread(mgr.on_transitions, [gw])
    [held] = await asyncio.to_thread(mgr.on_transitions, [
        tr("s-2", now + 1000, rule="device.offline")])
    assert held.details["inhibited_by"] == source.alarm_id
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in(page, url, TOKENS["prop-e1"])
    row = page.locator(f"tr[data-id='{held.alarm_id}']")
    await row.wait_for(timeout=WAIT_MS)
    assert await row.get_attribute("data-held") == "inhibited"
    assert "held" in (await row.get_attribute("class") or "")
    assert (await row.locator(".held-why").text_content()) == \
        f"已抑制，未通知（由 {source.alarm_id}）"
    plain = page.locator(f"tr[data-id='{source.alarm_id}']")
    assert await plain.get_attribute("data-held") is None
    assert await plain.locator(".held-why").count() == 0
    assert errors == []
