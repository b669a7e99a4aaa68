"""Takes docs/console.md's screenshots: the console on the demo's city, in chromium.

    .venv/bin/python docs/img/console_screenshots.py [--seconds 90] [--at 0.6]

Runs ``anju demo`` (its own Mosquitto, InfluxDB, pipeline and publisher), reads the
console's address and token from the line the demo prints, and at ``--at`` of the run signs
in with Debian's chromium (Playwright, ``executable_path=/usr/bin/chromium``), acts on the
most urgent alarm (acknowledge, assign, comment) and saves 1280×800 PNGs next to this file.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright

OUT = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required"]
HINT = re.compile(r"Console: (\S+) — sign in with team (\S+)'s token: (\S+)")


# what docs/console.md shows, per language
SHOTS = {"zh": ("alarms", "health", "health-devices"), "en": ("alarm",)}


async def shoot(url: str, token: str, lang: str) -> None:
    def keep(name: str) -> bool:
        return name in SHOTS[lang]

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page: Page = await b.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(url)
        if lang == "en":
            await page.click("#lang")
        await page.fill("#token", token)
        await page.click("#signin-form button[type=submit]")
        await page.wait_for_selector("#live.on")
        await page.wait_for_selector("#alarms tbody tr")
        await page.wait_for_timeout(1500)  # the ticking clocks fill in
        if keep("alarms"):
            await page.screenshot(path=OUT / f"console-alarms-{lang}.png")
        first = page.locator("#alarms tbody tr").first
        await first.click()
        await page.wait_for_selector("#d-timeline li[data-event=raised]")
        if not await page.locator("#ack-form").is_hidden():
            await page.fill("#ack-by", "王师傅" if lang == "zh" else "Wang")
            await page.fill("#ack-note", "已到现场" if lang == "zh" else "on site")
            await page.click("#ack-form button[type=submit]")
            await page.wait_for_selector("#d-timeline li[data-event=acknowledged]")
        await page.fill("#assign-to", "赵队长" if lang == "zh" else "Captain Zhao")
        await page.fill("#assign-by", "王师傅" if lang == "zh" else "Wang")
        await page.click("#assign-form button[type=submit]")
        await page.wait_for_selector("#d-timeline li[data-event=assigned]")
        await page.fill("#comment-by", "王师傅" if lang == "zh" else "Wang")
        await page.fill("#comment-text", "已疏散本层住户" if lang == "zh" else
                        "residents of the floor evacuated")
        await page.click("#comment-form button[type=submit]")
        await page.wait_for_selector("#d-timeline li[data-event=commented]")
        await page.wait_for_timeout(800)  # the webhook deliveries' outcomes
        if keep("alarm"):
            await page.screenshot(path=OUT / f"console-alarm-{lang}.png")
        await page.click("#detail-close")
        await page.click("#tab-health")
        await page.wait_for_selector("#health-buildings tbody tr")
        await page.wait_for_timeout(500)
        if keep("health"):
            await page.screenshot(path=OUT / f"console-health-{lang}.png")
        # the devices needing attention, each with its last reading time
        await page.locator("#health-devices-title").scroll_into_view_if_needed()
        await page.evaluate("document.querySelector('#health-devices-title').scrollIntoView()")
        if keep("health-devices"):
            await page.screenshot(path=OUT / f"console-health-devices-{lang}.png")
        await b.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--at", type=float, default=0.85, help="fraction of the run")
    ap.add_argument("--lang", choices=["zh", "en"], action="append")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="anju-shots-"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anju.cli", "demo", "--seconds", str(args.seconds),
        "--workdir", str(work), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    hint = None
    async with asyncio.timeout(60):
        while hint is None:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise SystemExit("the demo ended before printing the console's address")
            hint = HINT.search(line)
    drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling
    url, team, token = hint.groups()
    print(f"console at {url} as {team}; shooting at {args.at:.0%} of the run")
    await asyncio.sleep(args.seconds * args.at)
    for lang in args.lang or ["zh", "en"]:
        await shoot(url, token, lang)
    await proc.wait()
    await drain


if __name__ == "__main__":
    asyncio.run(main())
