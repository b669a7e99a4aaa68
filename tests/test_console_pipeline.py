"""The console in Debian's chromium against a REAL pipeline (issue 17's "done when"):
an in-process :class:`Pipeline` on the session's Mosquitto and InfluxDB, its API and
console on a loopback port, its webhooks to a real aiohttp receiver.

One test walks an operator's shift: sign in; a heat reading published over MQTT becomes a
live critical alarm row (with the banner and the beep) within 1 s of the publish; its
zone, a would-be script, shows as text; acknowledge, assign and comment from the page,
each in the timeline and at the webhook receiver; the device-health view gives each
device's last reading time; another estate's token sees nothing of it.

The pipeline's receiving clock is injected and held at the wall time the test started, so
no heartbeat runs out while it works (the never-reporting detector stays "never heard",
not offline) and the page's countdowns read sensibly.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from anju.alarms.receiver import WebhookReceiver
from anju.app.pipeline import Pipeline
from anju.config import Settings
from anju.devices.registry import load_site
from anju.services import LocalServices, free_port
from tests.mqtt_support import until
from tests.test_console_browser import ARGS, CHROMIUM, WAIT_MS, XSS, async_api, sign_in

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")]

SECRET = b"console-hook-secret"
TOKEN_A, TOKEN_B = "tok-console-a-0123456", "tok-console-b-0123456"
LATENCY_BOUND_MS = 1000  # issue 17: a new alarm is on the page within 1 s


class HeldClock:
    """The pipeline's receiving clock: the wall time at construction, until moved."""

    def __init__(self) -> None:
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now


def _write_site(root: Path, a: str, b: str, hook: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        "estates:\n"
        f"  - {{id: {a}, name: 安居苑, buildings: [{{id: b1, floors: 18}}]}}\n"
        f"  - {{id: {b}, buildings: [{{id: b1, floors: 6}}]}}\n"
        "teams:\n"
        f"  - {{id: prop-a, role: property, estates: [{a}], webhook: '{hook}',\n"
        "     secret_env: CONSOLE_T_SECRET, token_env: CONSOLE_T_TOKEN_A}\n"
        f"  - {{id: prop-b, role: property, estates: [{b}], token_env: CONSOLE_T_TOKEN_B}}\n",
        encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone\n"
        f"h-1,smoke,{a},b1,7,{XSS}\n"
        f"h-2,smoke,{a},b1,8,stair-B\n"  # never reports
        f"h-9,smoke,{b},b1,2,hall\n", encoding="utf-8")


@pytest.fixture
async def rig(services: LocalServices, influx_db: str, topic_prefix: str, cid: str,
              tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> AsyncIterator[tuple[Pipeline, WebhookReceiver, mqtt.Client, str, str]]:
    monkeypatch.setenv("CONSOLE_T_SECRET", SECRET.decode())
    monkeypatch.setenv("CONSOLE_T_TOKEN_A", TOKEN_A)
    monkeypatch.setenv("CONSOLE_T_TOKEN_B", TOKEN_B)
    estate_b = f"{topic_prefix}b"
    rx = WebhookReceiver({"prop-a": SECRET})
    await rx.start()
    _write_site(tmp_path / "site", topic_prefix, estate_b, rx.url("prop-a"))
    site = load_site(tmp_path / "site")
    port = free_port()
    settings = Settings(mqtt_url=services.mosquitto.url, influx_url=services.influx.url,
                        influx_db=influx_db, state_dir=tmp_path / "state",
                        api_addr=f"127.0.0.1:{port}", mqtt_client_id=cid,
                        batch_linger_ms=5, tick_s=0.05)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    pub.connect(services.mosquitto.host, services.mosquitto.port)
    pub.loop_start()
    p = Pipeline(settings, site, registry=CollectorRegistry(), clock=HeldClock())
    try:
        async with p:
            await until(lambda: p.consumer.subscribed)
            yield p, rx, pub, f"http://127.0.0.1:{port}", topic_prefix
    finally:
        pub.loop_stop()
        pub.disconnect()
        await rx.stop()


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    async with async_api.async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


# Records, in the page, when each alarm row first appears (Date.now(): the same system
# clock as the test's time.time()), so the latency is measured where the operator sees it.
_WATCH_ROWS = """() => {
  window.__rowSeen = {};
  const note = () => {
    for (const tr of document.querySelectorAll('#alarms tbody tr[data-id]')) {
      if (!(tr.dataset.id in window.__rowSeen)) window.__rowSeen[tr.dataset.id] = Date.now();
    }
  };
  new MutationObserver(note).observe(document.querySelector('#alarms tbody'),
                                     {childList: true});
}"""


async def test_console_on_a_live_pipeline(rig: Any, chromium: Any) -> None:
    browser = chromium
    p, rx, pub, url, estate = rig
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in(page, url, TOKEN_A)
    assert await page.is_hidden("#signin") and await page.is_visible("#alarms")
    assert await page.locator("#alarms tbody tr").count() == 0
    await page.evaluate(_WATCH_ROWS)

    # a heat reading over MQTT → a live alarm row within 1 s of the publish
    reading = {"ts": p._now(), "smoke_db_m": 0.01, "temp_c": 71.5}
    published_ms = time.time() * 1000
    info = pub.publish(f"anju/{estate}/b1/smoke/h-1", orjson.dumps(reading), qos=1)
    row = page.locator("#alarms tbody tr[data-severity=critical]")
    await row.wait_for(timeout=WAIT_MS)
    await asyncio.to_thread(info.wait_for_publish, 10)
    alarm_id = await row.get_attribute("data-id")
    assert alarm_id is not None
    seen_ms = await page.evaluate(f"window.__rowSeen[{orjson.dumps(alarm_id).decode()}]")
    latency_ms = seen_ms - published_ms
    print(f"publish → row on the page: {latency_ms:.0f} ms")
    assert 0 < latency_ms < LATENCY_BOUND_MS
    assert "heat.fixed" in (await row.text_content() or "")

    # the zone from devices.csv, a would-be script, is text; the critical cue went off
    assert XSS in (await row.locator("td.where").text_content() or "")
    assert await page.locator("img").count() == 0
    assert await page.get_attribute("body", "data-beeps") == "1"
    assert await page.is_visible("#cue")

    # acknowledge, assign, comment from the alarm's page: each in the timeline
    await row.click()
    await page.wait_for_selector("#d-timeline li[data-event=raised]", timeout=WAIT_MS)
    await page.fill("#ack-by", "王师傅")
    await page.fill("#ack-note", "已到现场")
    await page.click("#ack-form button[type=submit]")
    await page.wait_for_selector("#d-timeline li[data-event=acknowledged]", timeout=WAIT_MS)
    await page.fill("#assign-to", "赵队长")
    await page.fill("#assign-by", "王师傅")
    await page.click("#assign-form button[type=submit]")
    await page.wait_for_selector("#d-timeline li[data-event=assigned]", timeout=WAIT_MS)
    await page.fill("#comment-by", "王师傅")
    await page.fill("#comment-text", "灭火器已取")
    await page.click("#comment-form button[type=submit]")
    await page.wait_for_selector("#d-timeline li[data-event=commented]", timeout=WAIT_MS)
    assert "赵队长" in (await page.text_content("#d-timeline li[data-event=assigned]") or "")

    # … and each a signed webhook event at the property team's receiver
    def hooked() -> list[str]:
        return [a.event()["event"] for a in rx.accepted.get("prop-a", [])
                if a.event()["alarm_id"] == alarm_id]

    await until(lambda: hooked() == ["raised", "acknowledged", "assigned", "commented"])
    assert all(a.signature_ok for a in rx.attempts)
    by_event = {a.event()["event"]: a.event() for a in rx.accepted["prop-a"]}
    assert by_event["acknowledged"]["details"]["ack"]["by"] == "王师傅"
    assert by_event["assigned"]["details"]["assign"]["to"] == "赵队长"
    assert by_event["commented"]["details"]["comment"]["text"] == "灭火器已取"
    await page.click("#detail-close")

    # device health: the detector's last reading time, and the one never heard
    await page.click("#tab-health")
    building = page.locator("#health-buildings tbody tr")
    await building.first.wait_for(timeout=WAIT_MS)
    assert await building.count() == 1
    cells = await building.first.locator("td").all_text_contents()
    assert cells[:4] == ["安居苑", "b1", "2", "1"]  # two detectors, one has reported
    never = page.locator("#health-devices tr[data-device=h-2]")
    await never.wait_for(timeout=WAIT_MS)
    await building.first.click()  # every device of the building
    h1 = page.locator("#health-devices tr[data-device=h-1] td.last")
    await h1.wait_for(timeout=WAIT_MS)
    shown = await page.evaluate(
        "ms => new Date(ms).toLocaleString('zh-CN', {hour12: false})", reading["ts"])
    assert await h1.text_content() == shown
    health = await page.evaluate(
        "async () => (await fetch('/devices/health?devices=all')).json()")
    dev = {d["device"]: d for d in health["devices"]}
    assert dev["h-1"]["last_reading_ts"] == reading["ts"]
    assert dev["h-1"]["last_received_at"] == p._now() and dev["h-2"]["last_reading_ts"] is None

    # another estate's team: nothing of it, on the page or from the API
    other = await browser.new_page()
    await sign_in(other, url, TOKEN_B)
    assert await other.locator("#alarms tbody tr").count() == 0
    status = await other.evaluate(
        "async id => (await fetch('/alarms/' + encodeURIComponent(id))).status", alarm_id)
    assert status == 404
    await other.click("#tab-health")
    await other.locator("#health-buildings tbody tr").first.wait_for(timeout=WAIT_MS)
    assert await other.locator("#health-devices tr[data-device=h-1]").count() == 0
    theirs = await other.locator("#health-buildings tbody tr td").all_text_contents()
    assert theirs[0] == f"{estate}b" and len(theirs) == 8

    assert dialogs == [] and errors == []
