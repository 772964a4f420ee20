"""Cloud recordings on the portal's recordings page (issue 12) in a real browser: Playwright for Python
driving Debian's Chromium (/usr/bin/chromium, headless) against a real platform with the web and storage
roles, a simulated camera, and three consecutive 2-second TS recordings plus a picture put into the store
(tests/integration/test_web_cloud.py's ``store_files``).

The cloud lane shows the three files beside the camera's own lane, with a legend; "play" plays the day
from the first file through static/js/player.js over the API's cloud play.mp4, and ``currentTime`` passes
the first and the second file's end and keeps advancing (continuous across the files); the range download
link answers an MP4; the picture strip's image comes through the API (same origin, under the strict CSP).
Chinese first, then English.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor

from globaleye.s3.backend import PICTURE_BUCKET, RECORD_BUCKET
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from tests.browser import (
    AUTOPLAY,
    PageErrors,
    PortalPlatform,
    launched,
    log_in,
    missing_browser,
    screenshots,
    wait_for,
)
from tests.integration.test_web_cloud import FILES, SECONDS, START, store_files
from tests.util import until

OWNER, PASSWORD = "13300000501", "correct horse"
CAMERA = "81100000501"
#: The first file's start as seconds after the day's midnight (the player's time 0 is midnight).
FIRST = START.hour * 3600 + START.minute * 60 + START.second


class WebCloudPortalTests(PortalPlatform):
    timeout = 180

    async def setUp(self) -> None:  # type: ignore[override]
        reason = missing_browser()
        if reason:
            from twisted.trial.unittest import SkipTest

            raise SkipTest(reason)
        config = platform_config("gateway, http, group, web, storage", gateway={"command_timeout": 3},
                                 soap={"sms_interval": 0.01}, data_dir=os.path.abspath(self.mktemp()))
        self.platform = start_platform(self, config, reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"
        self.camera = await self.start_camera(CAMERA)
        await self.sign_up(OWNER, PASSWORD, CAMERA)
        self.names = await store_files(self, self.platform, CAMERA)

    async def test_cloud_lane_plays_across_files(self) -> None:
        from twisted.internet.threads import deferToThread

        folder = screenshots()
        base = self.base

        def open_day(page: Any) -> None:
            page.goto(base + f"/#/devices/{CAMERA}/recordings")
            page.wait_for_selector("#recordings-day")
            page.fill("#recordings-day", f"{START:%Y-%m-%d}")
            page.click("#recordings-search")
            page.wait_for_selector(f"#cloud-timeline[data-files='{FILES}']")

        def script() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            with launched(AUTOPLAY) as browser:
                context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
                page = context.new_page()
                errors = PageErrors(page)
                log_in(page, base, OWNER, PASSWORD)
                open_day(page)
                seen["lane"] = page.locator("#cloud-timeline rect.cloud-file").evaluate_all(
                    "nodes => nodes.map(n => n.dataset.file)")
                seen["legend"] = page.locator(".timeline-legend").inner_text()
                seen["status"] = page.locator("#cloud-status").inner_text()
                page.wait_for_selector("#cloud-pictures img")
                wait_for(lambda: page.evaluate("document.querySelector('#cloud-pictures img').complete"))
                seen["picture_size"] = page.evaluate(
                    "[document.querySelector('#cloud-pictures img').naturalWidth,"
                    " document.querySelector('#cloud-pictures img').naturalHeight]")
                seen["picture"] = page.evaluate("""async () => {
                    const img = document.querySelector('#cloud-pictures img');
                    const r = await fetch(img.src, { credentials: 'same-origin' });
                    return [img.getAttribute('data-file'), r.status, r.headers.get('content-type')];
                }""")
                seen["range"] = page.evaluate("""async () => {
                    const a = document.getElementById('cloud-range-download');
                    const r = await fetch(a.href, { credentials: 'same-origin' });
                    const body = new Uint8Array(await r.arrayBuffer());
                    return [a.getAttribute('download'), r.status, r.headers.get('content-type'),
                            String.fromCharCode(...body.slice(4, 8)), body.length];
                }""")
                page.click("#cloud-list button[data-index='1']")
                seen["chosen"] = page.locator("#cloud-chosen").inner_text()
                page.click("#cloud-list button[data-index='0']")
                page.click("#cloud-play")
                wait_for(lambda: page.evaluate("document.getElementById('cloud-video').currentTime")
                         > FIRST + SECONDS + 0.3, timeout=30)
                t1 = page.evaluate("document.getElementById('cloud-video').currentTime")
                wait_for(lambda: page.evaluate("document.getElementById('cloud-video').currentTime")
                         > FIRST + 2 * SECONDS + 0.3, timeout=30)
                t2 = page.evaluate("document.getElementById('cloud-video').currentTime")
                seen["times"] = (t1, t2)
                seen["play_state"] = page.locator("#cloud-play-state").get_attribute("data-state")
                # 2×: the stream comes as fast as it is read (X-Scale echoes the speed), the browser plays at 2.
                page.click("#cloud-card button[data-speed='2']")
                wait_for(lambda: page.evaluate("document.getElementById('cloud-video').playbackRate") == 2)
                seen["speed_pressed"] = page.locator("#cloud-card button[data-speed='2']").get_attribute("aria-pressed")
                page.locator("#cloud-card").screenshot(path=os.path.join(folder, "recordings-cloud.png"))
                page.locator(".timeline-box").screenshot(path=os.path.join(folder, "recordings-cloud-lane.png"))
                seen["errors"] = list(errors)
                context.close()
            return seen

        def english() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            with launched() as browser:
                context = browser.new_context(locale="en-US")
                page = context.new_page()
                log_in(page, base, OWNER, PASSWORD)
                open_day(page)
                seen["legend_en"] = page.locator(".timeline-legend").inner_text()
                seen["status_en"] = page.locator("#cloud-status").inner_text()
                seen["camera_state"] = page.locator("#recordings-status").inner_text()
                # The owner deletes the range (10:00:00-11:00:00 by default, the first file chosen).
                page.on("dialog", lambda dialog: dialog.accept())
                page.click("#cloud-range-delete")
                page.wait_for_selector("#cloud-timeline[data-files='0']")
                page.wait_for_function("document.getElementById('cloud-status').textContent.includes('deleted')")
                seen["deleted"] = page.locator("#cloud-status").inner_text()
                context.close()
            return seen

        seen = await deferToThread(script)
        # The camera gone (stolen, say): its cloud recordings are still there, in English too.
        self.camera.stop()
        await until(lambda: not self.platform.gateway.is_online(CAMERA), timeout=30)
        seen.update(await deferToThread(english))
        self.assertEqual(seen["errors"], [])
        self.assertEqual(seen["lane"], self.names[:FILES])
        self.assertIn(self.names[1], seen["chosen"])
        self.assertIn("云端录像", seen["legend"])
        self.assertIn("摄像头上的录像", seen["legend"])
        self.assertIn(f"云端录像 {FILES} 个，图片 1 张", seen["status"])
        self.assertEqual(seen["picture"], [self.names[FILES], 200, "image/jpeg"])
        self.assertEqual(seen["picture_size"], [64, 48], "decoded in the page (same origin, strict CSP)")
        name, status, kind, box, size = seen["range"]
        self.assertEqual((status, kind, box), (200, "video/mp4", "ftyp"))
        self.assertTrue(name.startswith(f"{CAMERA}_0_{START:%Y%m%d%H%M%S}-"), name)
        self.assertGreater(size, 1000)
        t1, t2 = seen["times"]
        self.assertGreater(t1, FIRST + SECONDS, "past the first file's end")
        self.assertGreater(t2, t1, "and still advancing, into the third file")
        self.assertEqual(seen["play_state"], "playing")
        self.assertEqual(seen["speed_pressed"], "true")
        self.assertIn("In the cloud", seen["legend_en"])
        self.assertIn(f"{FILES} cloud recordings, 1 pictures", seen["status_en"])
        self.assertIn("offline", seen["camera_state"].lower())
        self.assertEqual(seen["deleted"], f"{FILES} cloud recordings deleted")
        for name in self.names[:FILES]:
            self.assertIsNone(await self.platform.cloud.backend.head(RECORD_BUCKET, name))
        self.assertIsNotNone(await self.platform.cloud.backend.head(PICTURE_BUCKET, self.names[FILES]))
