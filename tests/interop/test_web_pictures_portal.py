"""The settings page's picture policies (75H-77H) in a real browser: Playwright for Python driving Debian's
Chromium (/usr/bin/chromium, headless) against a real platform with the web role and simulated cameras
(the harness of tests/interop/test_web_settings_portal.py, in tests/browser.py).

A policy added on the page is what the camera then holds (its own state, read in the test); a rule broken
is said in the page's language and nothing reaches the camera; delete removes it from the camera; a camera
without cloud storage (32H) has the cloud choice greyed out.
"""

from __future__ import annotations

import os
from typing import Any

from globaleye.device.protocol import messages as m
from tests.browser import PageErrors, PortalPlatform, log_in, run_in_browser, screenshots, wait_for

OWNER, PASSWORD = "13300000401", "correct horse"
CAMERA, NO_STORAGE, NVR = "81100000401", "81100000402", "81100000403"


class WebPicturesPortalTests(PortalPlatform):
    timeout = 180

    async def setUp(self) -> None:  # type: ignore[override]
        await self.start_settings_portal(OWNER, PASSWORD, CAMERA, NO_STORAGE, NVR)

    async def test_picture_policies_on_the_settings_page(self) -> None:
        folder = screenshots()
        base = self.base
        state = self.cameras[CAMERA].state
        no_cloud = self.cameras[NO_STORAGE].state

        def held() -> list[tuple[int, str, str, int]]:
            return sorted((p.store_type, p.entry.start_time, p.entry.end_time, p.entry.interval)
                          for p in state.picture_policies.get(0, []))

        def script(browser: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
            page = context.new_page()
            errors = PageErrors(page, ignore=lambda text: True)  # uncaught exceptions only
            log_in(page, base, OWNER, PASSWORD)
            page.goto(base + f"/#/devices/{CAMERA}/settings")
            page.wait_for_selector("#picture-policies li.empty")
            seen["empty"] = page.locator("#picture-policies").inner_text()
            # FTP: only a time of day; the window and interval are hidden.
            seen["ftp_window_hidden"] = page.locator("#picture-window").is_hidden()
            page.get_by_label("抓拍起始时刻").fill("09:30")
            page.click("#picture-add")
            page.wait_for_selector("#picture-policies li[data-picture-id]")
            wait_for(lambda: len(state.picture_policies.get(0, [])) == 1)
            # Cloud: every 300 s from 10:00 to 12:00.
            page.get_by_label("图片存到").select_option("cloud")
            page.get_by_label("抓拍起始时刻").fill("10:00")
            page.get_by_label("抓拍截止时刻").fill("12:00")
            page.get_by_label("间隔（秒）").fill("300")
            page.click("#picture-add")
            page.wait_for_selector("#picture-policies li[data-picture-id] >> nth=1")
            wait_for(lambda: len(state.picture_policies.get(0, [])) == 2)
            seen["listed"] = page.locator("#picture-policies li span").all_inner_texts()
            # Overlapping: refused with the rule, in Chinese; nothing reaches the camera.
            page.get_by_label("抓拍起始时刻").fill("11:00")
            page.get_by_label("抓拍截止时刻").fill("13:00")
            page.click("#picture-add")
            page.wait_for_selector("#picture-status[data-kind='error']")
            seen["overlap"] = page.locator("#picture-status").inner_text()
            seen["after_overlap"] = len(state.picture_policies.get(0, []))
            # Delete the FTP one by its button's accessible name.
            page.get_by_role("button", name="删除 FTP（每天定时一张） · 每天 09:30").click()
            wait_for(lambda: len(state.picture_policies.get(0, [])) == 1)
            page.wait_for_selector("#picture-status[data-kind='ok']")
            seen["after_delete"] = page.locator("#picture-policies li span").all_inner_texts()
            page.locator("#picture-card").screenshot(path=os.path.join(folder, "settings-pictures.png"))
            # A camera without cloud storage: cloud greyed out.
            page.goto(base + f"/#/devices/{NO_STORAGE}/settings")
            page.wait_for_selector("#picture-policies li.empty")
            seen["cloud_disabled"] = page.locator("#picture-storage option[value='cloud']").is_disabled()
            seen["errors"] = errors
            context.close()
            return seen

        seen = await run_in_browser(script)
        self.assertEqual(seen["errors"], [])
        self.assertIn("还没有抓拍策略", seen["empty"])
        self.assertTrue(seen["ftp_window_hidden"])
        self.assertEqual(seen["listed"], ["FTP（每天定时一张） · 每天 09:30", "天翼云 · 10:00–12:00 · 每隔 300 s"])
        self.assertIn("重叠", seen["overlap"])
        self.assertEqual(seen["after_overlap"], 2)
        self.assertEqual(seen["after_delete"], ["天翼云 · 10:00–12:00 · 每隔 300 s"])
        self.assertEqual(held(), [(m.PictureStoreType.ESTORE, "10:00", "12:00", 300)])
        self.assertTrue(seen["cloud_disabled"])
        self.assertEqual(no_cloud.picture_policies, {})
