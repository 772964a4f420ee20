"""The camera settings and recordings pages in a real browser: Playwright for Python driving Debian's
Chromium (/usr/bin/chromium, headless) against a real platform with the web role and simulated cameras.

A setting changed on the page is what the camera then holds (its own state, read in the test); the
recordings timeline shows the files the camera's 72H search gives; what a camera's ability report says
it cannot do is greyed out with the reason.  Screenshots go to ``_trial_temp/screenshots/`` as in
tests/interop/test_web_portal.py.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from twisted.internet import reactor, threads

from globaleye.device.protocol import messages as m
from globaleye.util.clock import BEIJING
from tests.browser import PageErrors, PortalPlatform, log_in, run_in_browser, screenshots, wait_for

OWNER, PASSWORD = "13300000401", "correct horse"
CAMERA, NO_STORAGE, NVR = "81100000401", "81100000402", "81100000403"
WIFI_PASSWORD = "Portal-Wifi-0815"


class WebSettingsPortalTests(PortalPlatform):
    timeout = 180

    async def setUp(self) -> None:  # type: ignore[override]
        await self.start_settings_portal(OWNER, PASSWORD, CAMERA, NO_STORAGE, NVR)

    async def test_settings_page_changes_what_the_camera_reports(self) -> None:
        folder = screenshots()
        base, platform = self.base, self.platform
        state = self.cameras[CAMERA].state
        no_storage = self.cameras[NO_STORAGE]

        def script(browser: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
            page = context.new_page()
            errors = PageErrors(page)
            log_in(page, base, OWNER, PASSWORD)
            page.wait_for_selector(f"li[data-dev-id='{CAMERA}']")

            # From the device page to its settings.
            page.goto(base + f"/#/devices/{CAMERA}")
            page.click("#settings-link")
            page.wait_for_url(f"**/#/devices/{CAMERA}/settings")
            page.wait_for_selector("#video-form[data-loaded='main']")
            seen["loaded_rate"] = page.get_by_label("帧率 (帧/秒)").input_value()
            seen["cif_main"] = page.locator("#video-frame-size option[value='CIF']").is_disabled()
            # Video: D1, 10 fps, 512 kbit/s, saved; the camera holds it.
            page.get_by_label("分辨率").select_option("D1")
            page.get_by_label("帧率 (帧/秒)").fill("10")
            page.get_by_label("码率", exact=True).select_option("512")
            page.click("#video-save")
            page.wait_for_selector("#video-status[data-kind='ok']")
            wait_for(lambda: state.video(0, m.StreamType.MAIN).frame_rate == 10)
            # The sub stream's sizes: 720P greyed out there.
            page.get_by_label("码流").first.select_option("sub")
            page.wait_for_selector("#video-form[data-loaded='sub']")
            seen["p720_sub"] = page.locator("#video-frame-size option[value='720P']").is_disabled()

            # Wi-Fi: the camera's scan, one chosen, its password sent and then cleared from the page.
            page.wait_for_selector("#wifi-list input[value='Store-Office']")
            seen["networks"] = page.locator("#wifi-list input[name=ssid]").evaluate_all("l => l.map(i => i.value)")
            page.locator("#wifi-list input[value='Store-Guest']").check()
            seen["open_password"] = (page.get_by_label("无线网络密码").is_disabled(),
                                     page.get_by_label("无线网络密码").get_attribute("title"))
            page.locator("#wifi-list input[value='Store-Office']").check()
            page.get_by_label("无线网络密码").fill(WIFI_PASSWORD)
            page.click("#wifi-join")
            page.wait_for_selector("#wifi-status[data-kind='ok']")
            seen["password_after"] = page.get_by_label("无线网络密码").input_value()
            wait_for(lambda: state.wifi.ssid == "Store-Office")

            # Recording: loop off, full-day on, a Monday and Wednesday window added.
            page.wait_for_selector("#record-windows li.empty")
            page.get_by_label("循环录像 (存满后覆盖最早的录像)").uncheck()
            wait_for(lambda: state.record_loop == 0)
            page.wait_for_selector("#recording-status[data-kind='ok']")
            page.get_by_label("全天录像").check()
            wait_for(lambda: state.record_full.get(0) == 1)
            page.get_by_label("周一").check()
            page.get_by_label("周三").check()
            page.get_by_label("开始时间").fill("09:00")
            page.get_by_label("结束时间").fill("18:30")
            page.click("#window-add")
            page.wait_for_selector("#record-windows li[data-window-id]")
            seen["windows"] = page.locator("#record-windows li[data-window-id] span:first-child").all_inner_texts()
            wait_for(lambda: len(state.record_policies.get(0, [])) == 2)
            # The same window again overlaps: refused with the rule, in Chinese.
            page.click("#window-add")
            page.wait_for_selector("#recording-status[data-kind='error']")
            seen["overlap"] = page.locator("#recording-status").inner_text()
            # Delete Wednesday's.
            page.get_by_role("button", name="删除 周三 09:00–18:30").click()
            page.wait_for_selector("#record-windows li[data-window-id] >> nth=0")
            wait_for(lambda: len(state.record_policies.get(0, [])) == 1)

            # Reboot with the confirm step: cancel first (nothing sent), then confirm.
            seen["firmware"] = page.locator("#firmware-version").inner_text()
            page.click("#reboot")
            seen["confirm_shown"] = page.locator("#reboot-confirm").is_visible()
            page.click("#reboot-no")
            seen["after_cancel"] = state.reboot_requested
            page.click("#reboot")
            page.click("#reboot-yes")
            page.wait_for_selector("#maintenance-status[data-kind='ok']")
            wait_for(lambda: state.reboot_requested == 1)
            page.screenshot(path=os.path.join(folder, "settings.png"), full_page=True)
            seen["null_text"] = "null" in page.locator("#view").inner_text()
            seen["overflow"] = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")

            # A camera without storage: its recording controls greyed out, saying why.
            page.goto(base + f"/#/devices/{NO_STORAGE}/settings")
            page.wait_for_selector("#recording-status:has-text('没有存储')")
            seen["no_storage"] = [(page.locator(s).is_disabled(), page.locator(s).get_attribute("title"))
                                  for s in ("#full-day", "#loop-recording", "#window-add")]
            page.screenshot(path=os.path.join(folder, "settings-no-storage.png"), full_page=True)
            # In English.
            page.click("#lang-switch")
            page.wait_for_selector("#video-card h2:has-text('Video')")
            page.set_viewport_size({"width": 1280, "height": 800})
            page.goto(base + f"/#/devices/{CAMERA}/settings")
            page.wait_for_selector("#video-form[data-loaded='main']")
            seen["rate_en"] = page.get_by_label("Frame rate (fps)").input_value()
            page.screenshot(path=os.path.join(folder, "settings-en-desktop.png"), full_page=True)
            # A camera gone offline: said at the top, every control greyed out with the reason.
            threads.blockingCallFromThread(reactor, no_storage.stop)
            wait_for(lambda: not threads.blockingCallFromThread(reactor, platform.gateway.is_online, NO_STORAGE))
            page.goto(base + f"/#/devices/{NO_STORAGE}/settings")
            page.wait_for_selector("#settings-offline")
            seen["offline"] = (page.locator("#settings-offline").inner_text(), page.locator("#video-save").is_disabled(),
                               page.locator("#reboot").get_attribute("title"))
            seen["errors"] = errors
            context.close()
            return seen

        seen = await run_in_browser(script)
        self.assertEqual(seen["loaded_rate"], "25")
        self.assertTrue(seen["cif_main"], "32H: the main stream has no CIF")
        self.assertTrue(seen["p720_sub"], "32H: the sub stream has no 720P")
        video = state.video(0, m.StreamType.MAIN)
        self.assertEqual((video.frame_size, video.frame_rate, video.bit_rate), (m.FrameSize.D1, 10, 6))
        self.assertEqual(seen["rate_en"], "10", "the page reads back what the camera reports")
        self.assertEqual(seen["networks"], [h.ssid for h in state.wifi_scan()])
        self.assertEqual((state.wifi.ssid, state.wifi.password), ("Store-Office", WIFI_PASSWORD))
        self.assertEqual(seen["password_after"], "")
        self.assertEqual(seen["open_password"], (True, "这个网络不加密，不需要密码"))
        self.assertEqual((state.record_loop, state.record_full.get(0)), (0, 1))
        self.assertEqual(seen["windows"], ["周一 09:00–18:30", "周三 09:00–18:30"])
        self.assertEqual(seen["overlap"], "录像时间段不能重叠")
        [kept] = state.record_policies[0]
        self.assertEqual((kept.week, kept.start_time, kept.end_time), (1, "09:00", "18:30"))
        self.assertTrue(seen["confirm_shown"])
        self.assertEqual((seen["after_cancel"], state.reboot_requested), (0, 1))
        self.assertIn("V2.0.0", seen["firmware"])
        self.assertEqual(seen["no_storage"], [(True, "这个摄像头没有存储，不能录像"),
                                              (True, "这个摄像头没有本地存储"),
                                              (True, "这个摄像头没有存储，不能录像")])
        self.assertEqual(self.cameras[NO_STORAGE].state.record_policies, {})
        self.assertFalse(seen["overflow"], "the page fits a phone's width")
        self.assertFalse(seen["null_text"])
        self.assertEqual(seen["offline"], ("The camera is offline: its settings cannot be read or changed now.", True,
                                           "Camera offline"))
        self.assertEqual(seen["errors"], [], "no script errors, nothing refused by the CSP")
        for name in ("settings.png", "settings-no-storage.png", "settings-en-desktop.png"):
            self.assertGreater(os.path.getsize(os.path.join(folder, name)), 1000, name)

    async def test_recordings_timeline_shows_the_cameras_files(self) -> None:
        folder = screenshots()
        base = self.base
        files = self.cameras[CAMERA].state.recordings(0)
        today = datetime.datetime.fromtimestamp(reactor.seconds(), BEIJING).strftime("%Y%m%d")
        yesterday = (datetime.datetime.fromtimestamp(reactor.seconds(), BEIJING)
                     - datetime.timedelta(days=1)).strftime("%Y%m%d")

        def between(day: str, start: str, end: str) -> list[str]:
            return [f.file_name for f in files if f.start_time < f"{day}{end}" and f.end_time > f"{day}{start}"]

        def on(day: str) -> list[str]:
            return between(day, "0000", "2400")

        def script(browser: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
            page = context.new_page()
            errors = PageErrors(page)
            log_in(page, base, OWNER, PASSWORD)
            page.goto(base + f"/#/devices/{CAMERA}")
            page.click("#recordings-link")
            page.wait_for_url(f"**/#/devices/{CAMERA}/recordings")
            page.wait_for_selector("#timeline[data-files]", timeout=20000)
            seen["today_files"] = page.locator("#recording-list button").evaluate_all(
                "l => l.map(b => b.dataset.file)")
            seen["today_rects"] = page.locator("#timeline rect.file").count()
            seen["status"] = page.locator("#recordings-status").inner_text()
            # Yesterday: a fuller day, chosen with the day picker.
            page.get_by_label("日期").fill(f"{yesterday[:4]}-{yesterday[4:6]}-{yesterday[6:]}")
            page.click("#recordings-search")
            page.wait_for_selector(f"#timeline[data-files='{len(on(yesterday))}']", timeout=30000)
            seen["yesterday_files"] = page.locator("#recording-list button").evaluate_all(
                "l => l.map(b => b.dataset.file)")
            # The first file's bar: 00:00 at the left edge of the timeline.
            first = page.locator("#timeline rect.file").first
            seen["first_x"] = first.get_attribute("x")
            first.click()
            page.wait_for_selector("#recording-detail:not([hidden])")
            seen["detail"] = (page.locator("#detail-name").inner_text(), page.locator("#detail-duration").inner_text())
            play = page.locator("#play-recording")
            seen["play"] = play.get_attribute("href")
            seen["overflow"] = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
            page.screenshot(path=os.path.join(folder, "recordings.png"), full_page=True)
            # Narrowed by time (72H searches by day and time): yesterday 01:00-02:00 only.
            page.get_by_label("从").fill("01:00")
            page.get_by_label("到").fill("02:00")
            page.click("#recordings-search")
            page.wait_for_selector(f"#timeline[data-files='{len(between(yesterday, '0100', '0200'))}']", timeout=30000)
            seen["hour_files"] = page.locator("#recording-list button").evaluate_all("l => l.map(b => b.dataset.file)")
            # A camera without storage of its own: its recordings cannot be searched, said so.
            page.goto(base + f"/#/devices/{NO_STORAGE}/recordings")
            page.wait_for_selector("#recordings-status[data-kind='error']")
            seen["no_storage"] = page.locator("#recordings-status").inner_text()
            page.set_viewport_size({"width": 1280, "height": 800})
            page.goto(base + f"/#/devices/{CAMERA}/recordings")
            page.wait_for_selector("#timeline[data-files]", timeout=20000)
            page.locator("#recording-list button").first.click()
            page.screenshot(path=os.path.join(folder, "recordings-desktop.png"), full_page=True)
            seen["errors"] = errors
            context.close()
            return seen

        seen = await run_in_browser(script)
        self.assertEqual(seen["today_files"], on(today))
        self.assertEqual(seen["today_rects"], len(on(today)))
        self.assertIn(str(len(on(today))), seen["status"])
        self.assertEqual(seen["yesterday_files"], on(yesterday))
        self.assertGreater(len(on(yesterday)), 10, "more than one page of 72H")
        self.assertEqual(seen["hour_files"], between(yesterday, "0100", "0200"))
        self.assertLess(len(seen["hour_files"]), len(on(yesterday)), "the hour is narrower than the day")
        first = [f for f in files if f.file_name == on(yesterday)[0]][0]
        start_minute = 0 if first.start_time[:8] < yesterday else int(first.start_time[8:10]) * 60 + int(
            first.start_time[10:12])
        self.assertEqual(seen["first_x"], str(start_minute))
        self.assertEqual(seen["detail"], (first.file_name, "5 分钟"))
        # The chosen file opens the playback page (tests/interop/test_web_playback.py plays it).
        self.assertEqual(seen["play"], f"#/devices/{CAMERA}/recordings/0/{seen['detail'][0]}")
        self.assertEqual(seen["no_storage"], "这个摄像头没有本地存储")
        self.assertFalse(seen["overflow"], "the page fits a phone's width")
        self.assertEqual(seen["errors"], [], "no script errors, nothing refused by the CSP")
        for name in ("recordings.png", "recordings-desktop.png"):
            self.assertGreater(os.path.getsize(os.path.join(folder, name)), 1000, name)

    async def test_a_channel_of_an_nvr_is_chosen_on_both_pages(self) -> None:
        """An NVR has 4 channels (its 32H ChannelNum): the pages offer a picker, and what is set or searched
        is the chosen channel's."""
        base = self.base
        nvr = self.cameras[NVR].state

        def script(browser: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844})
            page = context.new_page()
            page.goto(base + "/#/login")
            # In English, by the fields' English labels.
            page.get_by_label("Mobile number").fill(OWNER)
            page.get_by_label("Password").fill(PASSWORD)
            page.click("#login-form button[type=submit]")
            page.wait_for_url("**/#/devices")
            page.goto(base + f"/#/devices/{NVR}/settings")
            page.wait_for_selector("#record-windows li")
            seen["channels"] = page.locator("#channel option").count()
            page.get_by_label("Channel").select_option("2")
            page.wait_for_selector("#channel option[value='2'][selected]", state="attached")
            page.wait_for_selector("#record-windows li.empty")
            page.get_by_label("Tue").check()
            page.click("#window-add")
            page.wait_for_selector("#record-windows li[data-window-id]")
            page.goto(base + f"/#/devices/{NVR}/recordings")
            page.wait_for_selector("#timeline[data-files]", timeout=20000)
            seen["picked"] = page.locator("#channel").input_value()
            seen["files"] = page.locator("#recording-list button").evaluate_all("l => l.map(b => b.dataset.file)")
            context.close()
            return seen

        seen = await run_in_browser(script)
        self.assertEqual(seen["channels"], 4)
        self.assertEqual(list(nvr.record_policies), [2])
        [window] = nvr.record_policies[2]
        self.assertEqual((window.week, window.start_time, window.end_time), (2, "08:00", "20:00"))
        self.assertEqual(seen["picked"], "2")
        self.assertTrue(seen["files"])
        self.assertTrue(all(name.startswith(f"{NVR}_2_") for name in seen["files"]), seen["files"][:3])
