"""FTP pictures delivered to the owner, end to end (issue 12; §7.5.24 StoreType 0, 36H §7.5.27).

The real platform with the ``storage`` and ``ftp`` roles and the portal; a simulated camera that
registers (REGISTER_RES gives it the FTP server and its own account), gets a 75H FTP picture policy
through the gateway, takes its pictures (PyAV's JPEG), uploads them with Twisted's FTP client and
sends 36H.  The owner's account (made through the JSON API) then finds them in the API's list, newest
first, their bytes served through the API are a JPEG (ffprobe reads it), an SMS with the portal's link
was handed to the SMS sender, and no more than ``[cloud] picture_sms_per_day`` of them under a picture
every second.  A 36H for a file that never came is listed as missing and sends no SMS.  Another
account sees nothing.  Then Chromium (Playwright, /usr/bin/chromium) on the pictures page: a new
picture appears at the top by itself (the 'picture' Server-Sent Event), and its image loads.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest

from globaleye.device.protocol import messages as m
from globaleye.sim.ftpupload import FtpPictures
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from tests.browser import (
    PASSWORD,
    Browser,
    PageErrors,
    PortalPlatform,
    log_in,
    missing_browser,
    run_in_browser,
    screenshots,
)
from tests.ftputil import free_range
from tests.util import run, until

OWNER, STRANGER = "13300000401", "13300000402"
CAMERA = "81100000401"
SMS_PER_DAY = 2


class DeliveryPlatform(PortalPlatform):
    timeout = 120

    async def start_delivery(self, *modules: str) -> None:
        import importlib.util

        if importlib.util.find_spec("av") is None:
            raise SkipTest("PyAV not installed (the simulator's JPEG)")
        reason = missing_browser(*modules) if modules else None
        if reason:
            raise SkipTest(reason)
        first, last = free_range()
        config = platform_config("gateway, http, group, web, storage, ftp", data_dir=os.path.abspath(self.mktemp()),
                                 gateway={"command_timeout": 3}, soap={"sms_interval": 0.01},
                                 ftp={"passive_ports": f"{first}-{last}"},
                                 cloud={"picture_sms_per_day": SMS_PER_DAY})
        self.platform = start_platform(self, config, reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        assert self.platform.ftp is not None
        self.delivery: Any = self.platform.ftp.events.delivery  # type: ignore[attr-defined]
        self.delivery.sms = self.sms  # the platform's sender, as the accounts': the one recording sender
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"
        self.camera = await self.start_camera(CAMERA)
        await self.sign_up(OWNER, PASSWORD, CAMERA)
        await self.sign_up(STRANGER, PASSWORD)
        self.pictures = FtpPictures(self.camera, check_interval=0.1)

    async def policy(self, interval: int) -> None:
        """75H through the gateway: an FTP picture every *interval* s all day (the sim's schedule)."""
        added = await self.platform.gateway.command(CAMERA, m.AddPicturePolicyRequest(
            dev_id=CAMERA, channel_no=0, store_type=m.PictureStoreType.FTP,
            day_policy=(m.PicturePolicy(interval=interval, start_time="00:00", end_time="24:00"),)))
        self.assertEqual(added.result, 0)

    def picture_sms(self) -> list[tuple[str, str]]:
        return [(mobile, text) for mobile, text in self.sms.sent if "new picture" in text]


class DeliveryApiTests(DeliveryPlatform):
    async def test_pictures_reach_the_owner_and_sms_are_limited(self) -> None:
        await self.start_delivery()
        self.pictures.start()
        self.addCleanup(self.pictures.stop)
        await self.policy(1)  # a flood: a picture a second
        await until(lambda: len(self.pictures.uploaded) >= SMS_PER_DAY + 3, timeout=40)
        self.pictures.stop()
        uploaded = list(self.pictures.uploaded)
        await until(lambda: self.delivery.counters["pictures"] >= len(uploaded) and not self.delivery.sending)
        self.assertEqual(self.pictures.failures, 0, self.pictures.last_error)

        # The SMS: the limit held, each to the owner with the portal's page of one of the pictures.
        sent = self.picture_sms()
        self.assertEqual(len(sent), SMS_PER_DAY, sent)
        self.assertGreaterEqual(self.delivery.counters["sms_limited"], len(uploaded) - SMS_PER_DAY)
        for mobile, text in sent:
            self.assertEqual(mobile, OWNER)
            link = text.rsplit(": ", 1)[1]
            self.assertTrue(link.startswith(f"{self.base}/#/devices/{CAMERA}/pictures/{CAMERA}_0_"), text)
            self.assertIn(link.rsplit("/", 1)[1], uploaded)

        # The owner's list: every picture, newest first, from FTP, each named by a 36H.
        owner = Browser(self.base)
        self.assertEqual((await owner.login(OWNER)).code, 200)
        listed = await owner.request("GET", f"/api/v1/devices/{CAMERA}/channels/0/delivered-pictures?size=100")
        self.assertEqual(listed.code, 200, listed.body)
        page = listed.json()
        names = [p["name"] for p in page["pictures"]]
        self.assertEqual(page["total"], len(names))
        self.assertTrue(set(uploaded) <= set(names), (uploaded, names))
        self.assertEqual(names, sorted(names, reverse=True))
        newest = page["pictures"][0]
        self.assertEqual((newest["source"], newest["noticed"], page["missing"]), ("ftp", True, []))
        paged = (await owner.request("GET", f"/api/v1/devices/{CAMERA}/channels/0/delivered-pictures?size=2&page=2"))
        self.assertEqual([p["name"] for p in paged.json()["pictures"]], names[2:4])
        self.assertEqual((await owner.request("GET", f"/api/v1/devices/{CAMERA}/channels/0/delivered-pictures"
                                                     "?size=1000")).code, 400)

        # Its bytes through the API: a JPEG, privately cached; ffprobe reads it.
        picture = await owner.request("GET", newest["url"])
        self.assertEqual(picture.code, 200)
        self.assertEqual(picture.header("content-type"), "image/jpeg")
        self.assertEqual(picture.header("cache-control"), "private, max-age=300")
        self.assertEqual(len(picture.body), newest["size"])
        path = os.path.abspath(self.mktemp()) + ".jpg"
        with open(path, "wb") as f:
            f.write(picture.body)
        probed = await run("ffprobe", ["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of",
                                       "csv=p=0", path])
        self.assertEqual(probed.code, 0, probed.err)
        codec, width, height = probed.out.strip().split(",")
        self.assertEqual(codec, "mjpeg")
        self.assertGreater(int(width) * int(height), 0)

        # A 36H for a file that never arrived: listed as missing, no SMS.
        session = self.camera.session
        assert session is not None
        ghost = f"{CAMERA}_0_20261202235959.JPG"
        await session.request(m.FtpPictureNoticeRequest(dev_id=CAMERA, channel_no=0, file_name=ghost,
                                                        time="20261202235959"), 5)
        page = (await owner.request("GET", f"/api/v1/devices/{CAMERA}/channels/0/delivered-pictures")).json()
        self.assertEqual([p["name"] for p in page["missing"]], [ghost])
        self.assertNotIn(ghost, [p["name"] for p in page["pictures"]])
        self.assertEqual((await owner.request("GET", f"/api/v1/devices/{CAMERA}/delivered-pictures/{ghost}")).code,
                         404)
        self.assertEqual(len(self.picture_sms()), SMS_PER_DAY)

        # Another account: nothing, the same answer as a camera that does not exist.
        stranger = Browser(self.base)
        self.assertEqual((await stranger.login(STRANGER)).code, 200)
        for path in (f"/api/v1/devices/{CAMERA}/channels/0/delivered-pictures", newest["url"]):
            theirs = await stranger.request("GET", path)
            nobodys = await stranger.request("GET", path.replace(CAMERA, "81100000499"))
            self.assertEqual(theirs.code, 404, path)
            self.assertEqual((theirs.code, theirs.body), (nobodys.code, nobodys.body))
        self.assertFalse([mobile for mobile, _ in self.picture_sms() if mobile != OWNER])


class DeliveryPortalTests(DeliveryPlatform):
    async def test_new_picture_appears_on_the_open_page(self) -> None:
        await self.start_delivery("playwright")
        folder, base = screenshots(), self.base

        def shoot() -> str:
            """From the browser's thread: the camera takes, uploads and announces one FTP picture now."""
            return str(threads.blockingCallFromThread(
                reactor, lambda: Deferred.fromCoroutine(self.pictures.shoot(0))))


        def script(browser: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
            page = context.new_page()
            errors = PageErrors(page, ignore=lambda text: not ("Content Security Policy" in text or "Uncaught" in text))
            older = shoot()
            log_in(page, base, OWNER, PASSWORD)
            page.goto(f"{base}/#/devices/{CAMERA}")
            page.click("#pictures-link")
            page.wait_for_selector(f"#delivered-list li.picture[data-name='{older}']")
            # The stream is open (the server has this account's subscription) before the camera shoots.
            deadline = time.monotonic() + 5
            while not self.platform.client.events.count(OWNER) and time.monotonic() < deadline:
                time.sleep(0.05)
            taken = time.monotonic()
            time.sleep(1.1)  # the next second: a new name
            newer = shoot()
            page.wait_for_selector(f"#delivered-list li.picture.new[data-name='{newer}']", timeout=5000)
            seen["seconds"] = time.monotonic() - taken
            seen["first"] = page.locator("#delivered-list li.picture").first.get_attribute("data-name")
            page.wait_for_function("(name) => { const img = document.querySelector("
                                   "`#delivered-list li[data-name='${name}'] img`); "
                                   "return img && img.complete && img.naturalWidth > 0; }", arg=newer)
            seen["title_zh"] = page.locator("h1").inner_text()
            seen["text_zh"] = page.locator("#view").inner_text()
            page.screenshot(path=os.path.join(folder, "delivered-pictures-zh.png"), full_page=True)
            # The SMS's link: the picture shown large (login needed: this browser has the session).
            page.goto(f"{base}/#/devices/{CAMERA}/pictures/{older}")
            page.wait_for_function("() => { const img = document.querySelector('#delivered-view img'); "
                                   "return img && img.complete && img.naturalWidth > 0; }")
            page.click("#lang-switch")
            page.wait_for_function("() => document.documentElement.lang === 'en'")
            page.wait_for_selector("#delivered-list li.picture")
            seen["title_en"] = page.locator("h1").inner_text()
            seen["newer"], seen["older"] = newer, older
            seen["errors"] = list(errors)
            context.close()
            # The SMS's link on a phone with no session: the login page, then the picture itself.
            link = threads.blockingCallFromThread(reactor, lambda: self.picture_sms()[-1][1].rsplit(": ", 1)[1])
            phone = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
            page = phone.new_page()
            page.goto(link)
            page.wait_for_selector("#login-form")
            page.fill("#login-form [name=account]", OWNER)
            page.fill("#login-form [name=password]", PASSWORD)
            page.click("#login-form button[type=submit]")
            page.wait_for_function("() => { const img = document.querySelector('#delivered-view img'); "
                                   "return img && img.complete && img.naturalWidth > 0; }")
            seen["link"], seen["landed"] = link, page.url
            seen["shown"] = page.locator("#delivered-view figcaption").inner_text()
            phone.close()
            return seen

        seen = await run_in_browser(script)
        self.assertEqual(seen["first"], seen["newer"])
        self.assertLess(seen["seconds"], 5)
        self.assertIn("推送的图片", seen["title_zh"])
        self.assertNotIn("null", seen["text_zh"])
        self.assertIn("Delivered pictures", seen["title_en"])
        self.assertEqual(seen["errors"], [])
        self.assertEqual(seen["landed"], seen["link"])
        self.assertEqual(seen["shown"], seen["link"].rsplit("/", 1)[1])
