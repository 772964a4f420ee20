"""Camera settings and the camera's recordings through the web API (/api/v1), over real loopback: a real
platform with the web role, simulated cameras (their own 60H/61H, 62H/63H, 67H-69H, 78H-7BH and 72H
handlers answer), treq as the browser's HTTP client.

Each route is checked against the simulated camera's state: what the API changed is what the camera now
holds and what the get route reports.  The CSRF and IDOR loops of tests/integration/test_web_api.py cover
these routes as well (they iterate over the route table with each route's example).
"""

from __future__ import annotations

import datetime
import random
from typing import Any

from twisted.internet import reactor
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from globaleye.device.protocol import messages as m
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from globaleye.util.clock import BEIJING
from globaleye.web.routes import ROUTES
from tests.browser import PASSWORD, Answer, Browser
from tests.util import http_client, until

OWNER, GUEST = "13300000301", "13300000302"
CAMERA, NO_STORAGE = "81100000301", "81100000302"
WIFI_PASSWORD = "Wifi-Secret-4711"


class RecordingBrowser(Browser):
    """A :class:`Browser` that keeps every answer it was given (to look for the Wi-Fi password in them)."""

    def __init__(self, base: str) -> None:
        super().__init__(base)
        self.answers: list[Answer] = []

    async def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Answer:
        answer = await super().request(method, path, body, **kwargs)
        self.answers.append(answer)
        return answer


class WebSettingsTests(TestCase):
    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        config = platform_config(
            "gateway, http, group, web", gateway={"command_timeout": 2},
            soap={"sms_interval": 0.01, "firmware": "* V2.0.0 ftp://upg:fw-pass@198.51.100.9:2121/fw/V2.0.0.bin"})
        self.platform: PlatformService = start_platform(self, config, reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        self.base = f"http://127.0.0.1:{self.platform.port_of('web')}"
        self.logged: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            from twisted.logger import formatEvent

            self.logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    async def camera(self, dev_id: str = CAMERA, **state: Any) -> SimulatedCamera:
        base = f"http://127.0.0.1:{self.platform.port_of('http')}"
        camera = SimulatedCamera(
            CameraState.for_device(dev_id, device_key("test", dev_id), rtsp_local_port=8554, **state), reactor,
            register_url=base + "/register", timing=Timing(backoff_initial=0.05, backoff_max=0.2),
            rng=random.Random(1), http=http_client())
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: self.platform.gateway.is_online(dev_id))
        while await self.platform.store.get_ability(dev_id) is None:
            await until(lambda: True, step=0.02)
        return camera

    async def owner(self, *cameras: str, account: str = OWNER) -> RecordingBrowser:
        """A person who signed up and logged in through the API, with *cameras* added."""
        browser = RecordingBrowser(self.base)
        self.assertEqual((await browser.request("POST", "/api/v1/sms-codes", {"account": account})).code, 202)
        created = await browser.request("POST", "/api/v1/accounts", {
            "account": account, "password": PASSWORD, "smsCode": self.sms.last_code(account)})
        self.assertEqual(created.code, 201, created.body)
        self.assertEqual((await browser.login(account)).code, 200)
        for dev_id in cameras:
            added = await browser.request("POST", "/api/v1/devices",
                                          {"devId": dev_id, "devKey": device_key("test", dev_id)})
            self.assertEqual(added.code, 201, added.body)
        return browser

    def assertProblem(self, answer: Answer, status: int, kind: str) -> dict[str, Any]:  # noqa: N802
        self.assertEqual(answer.code, status, answer.body)
        self.assertEqual(answer.header("content-type"), "application/problem+json")
        problem = answer.json()
        self.assertEqual((problem["status"], problem["type"]), (status, f"/api/v1/problems/{kind}"))
        return dict(problem)

    # Video parameters ---------------------------------------------------------------------------

    async def test_video_parameters_set_are_what_the_camera_reports(self) -> None:
        camera = await self.camera()
        browser = await self.owner(CAMERA)
        video = f"/api/v1/devices/{CAMERA}/channels/0/video"
        before = await browser.request("GET", video)
        self.assertEqual(before.code, 200, before.body)
        self.assertEqual(before.json(), {"channel": 0, "stream": "main", "frameSize": "720P", "frameRate": 25,
                                         "rateType": "vbr", "bitRate": 1024, "audioInput": True})
        changed = await browser.request("PUT", video, {"stream": "main", "frameSize": "D1", "frameRate": 12,
                                                       "bitRate": 512, "rateType": "cbr"})
        self.assertEqual(changed.code, 200, changed.body)
        # The camera's own state: D1 is the device protocol's 3 (§7.5.6), 512 kbit/s its BitRate code 6.
        held = camera.state.video(0, m.StreamType.MAIN)
        self.assertEqual((held.frame_size, held.frame_rate, held.bit_rate, held.rate_type, held.audio_input),
                         (m.FrameSize.D1, 12, 6, m.RateType.CBR, 1))
        expected = {"channel": 0, "stream": "main", "frameSize": "D1", "frameRate": 12, "rateType": "cbr",
                    "bitRate": 512, "audioInput": True}
        self.assertEqual(changed.json(), expected)
        self.assertEqual((await browser.request("GET", video)).json(), expected)
        # The sub stream is its own.
        sub = await browser.request("GET", video + "?stream=sub")
        self.assertEqual((sub.json()["stream"], sub.json()["frameSize"]), ("sub", "CIF"))
        # 32H: the main stream cannot be CIF, the sub stream cannot be 720P: refused before the camera.
        problem = self.assertProblem(await browser.request("PUT", video, {"stream": "main", "frameSize": "CIF"}),
                                     422, "not-supported")
        self.assertIn("CIF", problem["detail"])
        self.assertProblem(await browser.request("PUT", video, {"stream": "sub", "frameSize": "720P"}), 422,
                           "not-supported")
        self.assertEqual(camera.state.video(0, m.StreamType.MAIN).frame_size, m.FrameSize.D1)
        abilities = (await browser.request("GET", f"/api/v1/devices/{CAMERA}/abilities")).json()
        self.assertEqual(abilities["streams"], {"main": ["720P", "D1"], "sub": ["CIF", "D1"]})
        self.assertEqual((abilities["known"], abilities["localStore"], abilities["cloudStore"]), (True, True, True))
        # Values out of range are the request's fault, 400, and change nothing.
        for body in ({"stream": "main", "frameRate": 40}, {"stream": "main", "bitRate": 1000},
                     {"stream": "third"}, {"stream": "main", "frameSize": "4K"}):
            self.assertProblem(await browser.request("PUT", video, body), 400, "invalid-request")
        self.assertEqual(camera.state.video(0, m.StreamType.MAIN).frame_rate, 12)
        self.assertProblem(await browser.request("GET", f"/api/v1/devices/{CAMERA}/channels/3/video"), 404,
                           "no-such-device")

    # Wi-Fi -------------------------------------------------------------------------------------------

    async def test_wifi_scan_and_join_never_answer_the_password(self) -> None:
        camera = await self.camera()
        browser = await self.owner(CAMERA)
        wifi = f"/api/v1/devices/{CAMERA}/wifi"
        scan = await browser.request("GET", wifi)
        self.assertEqual(scan.code, 200, scan.body)
        hotspots = scan.json()["hotspots"]
        self.assertEqual([h["ssid"] for h in hotspots], [h.ssid for h in camera.state.wifi_scan()])
        self.assertEqual(hotspots[1], {"ssid": "Store-Office", "signal": 74, "security": "wpa2-psk",
                                       "inUse": False})
        joined = await browser.request("PUT", wifi, {"ssid": "Store-Office", "security": "wpa2-psk",
                                                     "password": WIFI_PASSWORD})
        self.assertEqual(joined.code, 202, joined.body)
        self.assertEqual(joined.json(), {"ssid": "Store-Office", "security": "wpa2-psk", "joining": True})
        self.assertEqual((camera.state.wifi.ssid, camera.state.wifi.security, camera.state.wifi.password),
                         ("Store-Office", m.WifiSecurity.WPA2_PSK, WIFI_PASSWORD))
        # The camera refuses a WPA password of 3 characters (its own check): 502, the password not in it.
        refused = await browser.request("PUT", wifi, {"ssid": "Store-Office", "security": "wpa2-psk",
                                                      "password": "abc"})
        self.assertProblem(refused, 502, "camera-refused")
        await browser.request("GET", wifi)
        self.assertProblem(await browser.request("PUT", wifi, {"ssid": "", "security": "none"}), 400,
                           "invalid-request")
        for answer in browser.answers:
            self.assertNotIn(WIFI_PASSWORD.encode(), answer.body)
            self.assertNotIn(b"abc\"", answer.body)
        self.assertFalse([line for line in self.logged if WIFI_PASSWORD in line], "the password is in a log line")
        audit = await self.platform.store.list_audit(OWNER)
        self.assertIn("web-set-wifi", [record.action for record in audit])
        self.assertFalse([r for r in audit if WIFI_PASSWORD in r.detail])

    # Recording windows, full-day and loop recording ----------------------------------------------------

    async def test_recording_windows_four_a_day_then_refused(self) -> None:
        camera = await self.camera()
        browser = await self.owner(CAMERA)
        windows = f"/api/v1/devices/{CAMERA}/channels/0/record-windows"
        empty = await browser.request("GET", windows)
        self.assertEqual(empty.json(), {"maxPerDay": 4, "windows": []})
        four = [{"week": 1, "start": f"{h:02d}:00", "end": f"{h + 2:02d}:00"} for h in (0, 6, 12, 18)]
        added = await browser.request("POST", windows, {"windows": four})
        self.assertEqual(added.code, 201, added.body)
        self.assertEqual([(w["week"], w["start"], w["end"], w["storage"], w["stream"]) for w in added.json()["windows"]],
                         [(1, w["start"], w["end"], "local", "main") for w in four])
        self.assertEqual(len(camera.state.record_policies[0]), 4)
        # A fifth window on Monday breaks §7.5.13: 422 with the rule, and the camera never sees it.
        fifth = self.assertProblem(await browser.request("POST", windows, {"windows": [
            {"week": 1, "start": "21:00", "end": "22:00"}]}), 422, "rule-violation")
        self.assertIn("at most 4", fifth["detail"])
        overlap = self.assertProblem(await browser.request("POST", windows, {"windows": [
            {"week": 2, "start": "08:00", "end": "10:00"}, {"week": 2, "start": "09:00", "end": "11:00"}]}),
            422, "rule-violation")
        self.assertIn("overlap", overlap["detail"])
        self.assertEqual(len(camera.state.record_policies[0]), 4)
        self.assertProblem(await browser.request("POST", windows, {"windows": [
            {"week": 8, "start": "08:00", "end": "10:00"}]}), 400, "invalid-request")
        self.assertProblem(await browser.request("POST", windows, {"windows": [
            {"week": 3, "start": "10:00", "end": "09:00"}]}), 400, "invalid-request")
        # Tuesday is another day: allowed.  Then delete one of Monday's.
        tuesday = await browser.request("POST", windows, {"windows": [{"week": 2, "start": "21:00", "end": "24:00",
                                                                       "stream": "sub"}]})
        self.assertEqual(tuesday.code, 201, tuesday.body)
        listed = (await browser.request("GET", windows)).json()["windows"]
        self.assertEqual(len(listed), 5)
        self.assertEqual(listed[-1]["stream"], "sub")
        first = listed[0]["id"]
        self.assertEqual((await browser.request("DELETE", windows, {"id": first})).code, 204)
        self.assertNotIn(first, [p.policy_id for p in camera.state.record_policies[0]])
        self.assertProblem(await browser.request("DELETE", windows, {"id": first}), 404, "not-found")
        self.assertEqual(len((await browser.request("GET", windows)).json()["windows"]), 4)
        # Monday has room for one more now.
        self.assertEqual((await browser.request("POST", windows, {"windows": [
            {"week": 1, "start": "21:00", "end": "22:00"}]})).code, 201)

    async def test_full_day_and_loop_recording(self) -> None:
        camera = await self.camera()
        browser = await self.owner(CAMERA)
        full = f"/api/v1/devices/{CAMERA}/channels/0/full-day-recording"
        loop = f"/api/v1/devices/{CAMERA}/loop-recording"
        self.assertEqual((await browser.request("GET", full)).json(), {"enabled": False})
        self.assertEqual((await browser.request("GET", loop)).json(), {"enabled": True})
        on = await browser.request("PUT", full, {"enabled": True})
        self.assertEqual((on.code, on.json()), (200, {"enabled": True}), on.body)
        self.assertEqual(camera.state.record_full.get(0), 1)
        off = await browser.request("PUT", loop, {"enabled": False})
        self.assertEqual((off.code, off.json()), (200, {"enabled": False}), off.body)
        self.assertEqual(camera.state.record_loop, 0)
        self.assertEqual((await browser.request("GET", full)).json(), {"enabled": True})
        self.assertEqual((await browser.request("GET", loop)).json(), {"enabled": False})
        self.assertProblem(await browser.request("PUT", loop, {"enabled": "yes"}), 400, "invalid-request")
        self.assertEqual(camera.state.record_loop, 0)

    # What the ability report says the camera cannot do --------------------------------------------------

    async def test_a_camera_without_storage_is_refused_what_needs_it(self) -> None:
        camera = await self.camera(NO_STORAGE, local_store_flag=False, e_store_flag=False)
        browser = await self.owner(NO_STORAGE)
        abilities = (await browser.request("GET", f"/api/v1/devices/{NO_STORAGE}/abilities")).json()
        self.assertEqual((abilities["known"], abilities["localStore"], abilities["cloudStore"]), (True, False, False))
        base = f"/api/v1/devices/{NO_STORAGE}"
        for method, path, body in (
                ("GET", "/loop-recording", None), ("PUT", "/loop-recording", {"enabled": True}),
                ("GET", "/channels/0/full-day-recording", None),
                ("PUT", "/channels/0/full-day-recording", {"enabled": True}),
                ("GET", "/channels/0/record-windows", None),
                ("POST", "/channels/0/record-windows", {"windows": [{"week": 1, "start": "08:00", "end": "09:00"}]}),
                ("GET", "/channels/0/recordings", None)):
            problem = self.assertProblem(await browser.request(method, base + path, body), 422, "not-supported")
            self.assertIn("32H", problem["detail"], path)
        self.assertEqual((camera.state.record_loop, camera.state.record_full, camera.state.record_policies),
                         (1, {}, {}), "nothing reached the camera")
        # Video and Wi-Fi need no storage.
        self.assertEqual((await browser.request("GET", base + "/channels/0/video")).code, 200)

    # Recordings on the camera (72H) ---------------------------------------------------------------------

    async def test_record_search_returns_the_cameras_files_for_a_day(self) -> None:
        camera = await self.camera()
        owner = await self.owner(CAMERA)
        files = camera.state.recordings(0)
        day = files[-1].start_time[:8]
        iso_day = f"{day[:4]}-{day[4:6]}-{day[6:]}"
        on_day = [f for f in files if f.start_time < f"{day}2400" and f.end_time > f"{day}0000"]
        path = f"/api/v1/devices/{CAMERA}/channels/0/recordings?day={iso_day}"
        first = await owner.request("GET", path)
        self.assertEqual(first.code, 200, first.body)
        page = first.json()
        self.assertEqual((page["day"], page["total"], page["page"], page["pageSize"]),
                         (iso_day, len(on_day), 1, 10))
        self.assertEqual(page["pages"], -(-len(on_day) // 10))
        self.assertEqual([r["fileName"] for r in page["recordings"]], [f.file_name for f in on_day[:10]])
        one = page["recordings"][0]
        self.assertEqual((one["size"], one["durationSeconds"]), (on_day[0].file_size, 300))
        start = on_day[0].start_time
        self.assertEqual(one["start"], f"{start[:4]}-{start[4:6]}-{start[6:8]}T{start[8:10]}:{start[10:12]}")
        # Every page together is the day's listing.
        names = []
        for number in range(1, page["pages"] + 1):
            names += [r["fileName"] for r in (await owner.request("GET", f"{path}&page={number}")).json()["recordings"]]
        self.assertEqual(names, [f.file_name for f in on_day])
        # A time range within the day: the files overlapping it.
        last = on_day[-1]
        hour = last.start_time[8:10]
        ranged = (await owner.request("GET", f"{path}&from={hour}:00&to={hour}:30")).json()
        expected = [f.file_name for f in on_day if f.start_time < f"{day}{hour}30" and f.end_time > f"{day}{hour}00"]
        self.assertEqual([r["fileName"] for r in ranged["recordings"]], expected[:10])
        # Without a day: today on the camera's clock (Beijing time).
        today = datetime.datetime.fromtimestamp(reactor.seconds(), BEIJING).date().isoformat()
        self.assertEqual((await owner.request("GET", path.split("?")[0])).json()["day"], today)
        # A day with nothing: an empty page.
        empty = (await owner.request("GET", path.split("?")[0] + "?day=2001-01-01")).json()
        self.assertEqual((empty["total"], empty["recordings"], empty["pages"]), (0, [], 1))
        for bad in ("?day=2026-13-45", "?day=yesterday", "?from=10:00&to=09:00", "?page=0", "?to=25:00"):
            self.assertProblem(await owner.request("GET", path.split("?")[0] + bad), 400, "invalid-request")
        # A guest the camera is shared with may search its recordings (viewing), not change its settings.
        guest = await self.owner(account=GUEST)
        self.assertEqual((await owner.request("POST", f"/api/v1/devices/{CAMERA}/shares", {"account": GUEST})).code,
                         201)
        self.assertEqual((await guest.request("GET", path)).json()["total"], len(on_day))
        self.assertProblem(await guest.request("GET", f"/api/v1/devices/{CAMERA}/wifi"), 404, "no-such-device")
        self.assertProblem(await guest.request("PUT", f"/api/v1/devices/{CAMERA}/loop-recording",
                                               {"enabled": False}), 404, "no-such-device")
        self.assertEqual(camera.state.record_loop, 1)

    # Reboot, firmware, offline ------------------------------------------------------------------------

    async def test_firmware_upgrade_reboot_and_offline(self) -> None:
        camera = await self.camera()
        browser = await self.owner(CAMERA)
        firmware = await browser.request("GET", f"/api/v1/devices/{CAMERA}/firmware")
        self.assertEqual(firmware.json(), {"current": camera.state.dev_ver, "newest": "V2.0.0", "upgradable": True})
        upgrade = await browser.request("POST", f"/api/v1/devices/{CAMERA}/firmware/upgrade")
        self.assertEqual(upgrade.code, 202, upgrade.body)
        self.assertEqual(upgrade.json()["newest"], "V2.0.0")
        self.assertNotIn(b"fw-pass", upgrade.body)
        self.assertEqual((camera.state.upgrade_version, camera.state.upgrade_url),
                         ("V2.0.0", "ftp://upg@198.51.100.9:2121/fw/V2.0.0.bin"))
        rebooted = await browser.request("POST", f"/api/v1/devices/{CAMERA}/reboot")
        self.assertEqual((rebooted.code, rebooted.json()), (202, {"rebooting": True}), rebooted.body)
        self.assertEqual(camera.state.reboot_requested, 1)
        camera.stop()
        await until(lambda: not self.platform.gateway.is_online(CAMERA))
        for method, path, body in (("GET", "/wifi", None), ("GET", "/channels/0/video", None),
                                   ("PUT", "/loop-recording", {"enabled": True}), ("POST", "/reboot", None),
                                   ("GET", "/channels/0/recordings", None)):
            self.assertProblem(await browser.request(method, f"/api/v1/devices/{CAMERA}{path}", body), 503,
                               "camera-offline")

    def test_every_settings_route_is_in_the_table_with_a_valid_example(self) -> None:
        """The IDOR and CSRF loops of test_web_api send each route's example: ours are there."""
        ours = {route.handler: route for route in ROUTES}
        for handler in ("abilities", "get_video", "set_video", "wifi", "set_wifi", "reboot", "firmware", "upgrade",
                        "record_windows", "add_record_windows", "delete_record_window", "full_day_recording",
                        "set_full_day_recording", "loop_recording", "set_loop_recording", "recordings"):
            route = ours[handler]
            self.assertIn("{devId}", route.path)
            if route.body is not None:
                from jsonschema import validate

                validate(dict(route.example or {}), dict(route.body))


# Picture (snapshot) policies through the web API (/api/v1, 75H-77H), over real loopback: a real platform
# and simulated cameras.

PICTURE_OWNER, PICTURE_GUEST = "13300000311", "13300000312"
PICTURE_CAMERA, NO_CLOUD = "81100000311", "81100000312"


class WebPictureTests(TestCase):
    timeout = 90

    # The harness of the settings tests (a platform with the web role, simulated cameras, sign-up).
    setUp = WebSettingsTests.setUp
    camera = WebSettingsTests.camera
    owner = WebSettingsTests.owner
    assertProblem = WebSettingsTests.assertProblem  # noqa: N815

    async def test_policies_added_are_the_cameras_and_read_back(self) -> None:
        camera = await self.camera(PICTURE_CAMERA)
        browser = await self.owner(PICTURE_CAMERA, account=PICTURE_OWNER)
        url = f"/api/v1/devices/{PICTURE_CAMERA}/channels/0/picture-policies"
        empty = await browser.request("GET", url)
        self.assertEqual(empty.json(), {"maxPerStorage": 8, "maxInterval": 86400, "policies": []}, empty.body)
        # FTP: one snapshot a day; the platform sets EndTime = StartTime and Interval 0 (§7.5.24).
        ftp = await browser.request("POST", url, {"storage": "ftp", "policies": [{"start": "09:30"}]})
        self.assertEqual(ftp.code, 201, ftp.body)
        cloud = await browser.request("POST", url, {"storage": "cloud", "policies": [
            {"start": "08:00", "end": "12:00", "interval": 600}, {"start": "13:00", "end": "24:00", "interval": 60}]})
        self.assertEqual(cloud.code, 201, cloud.body)
        held = sorted((p.store_type, p.entry.start_time, p.entry.end_time, p.entry.interval)
                      for p in camera.state.picture_policies[0])
        self.assertEqual(held, [(0, "09:30", "09:30", 0), (1, "08:00", "12:00", 600), (1, "13:00", "24:00", 60)])
        listed = (await browser.request("GET", url)).json()["policies"]
        self.assertEqual([(p["storage"], p["start"], p["end"], p["interval"]) for p in listed],
                         [("ftp", "09:30", "09:30", 0), ("cloud", "08:00", "12:00", 600),
                          ("cloud", "13:00", "24:00", 60)])
        self.assertEqual({p["id"] for p in listed}, {p.entry.policy_id for p in camera.state.picture_policies[0]})
        # Delete one: gone from the camera; again is 404.
        first = listed[1]["id"]
        self.assertEqual((await browser.request("DELETE", url, {"id": first})).code, 204)
        self.assertNotIn(first, [p.entry.policy_id for p in camera.state.picture_policies[0]])
        self.assertProblem(await browser.request("DELETE", url, {"id": first}), 404, "not-found")
        self.assertEqual(len((await browser.request("GET", url)).json()["policies"]), 2)

    async def test_rule_violations_are_422_and_never_reach_the_camera(self) -> None:
        camera = await self.camera(PICTURE_CAMERA)
        browser = await self.owner(PICTURE_CAMERA, account=PICTURE_OWNER)
        url = f"/api/v1/devices/{PICTURE_CAMERA}/channels/0/picture-policies"
        self.assertEqual((await browser.request("POST", url, {"storage": "cloud", "policies": [
            {"start": "08:00", "end": "12:00", "interval": 300}]})).code, 201)
        self.assertEqual((await browser.request("POST", url, {"storage": "ftp", "policies": [
            {"start": "07:00"}]})).code, 201)
        before = list(camera.state.picture_policies[0])
        for body, words in (
                ({"storage": "cloud", "policies": [{"start": "11:00", "end": "13:00", "interval": 60}]}, "overlap"),
                ({"storage": "ftp", "policies": [{"start": "07:00"}]}, "two snapshots"),
                ({"storage": "ftp", "policies": [{"start": "10:00", "end": "11:00", "interval": 60}]}, "FTP"),
                ({"storage": "cloud", "policies": [{"start": "13:00", "end": "14:00", "interval": 0}]}, "Interval"),
                ({"storage": "cloud", "policies": [{"start": "13:00", "end": "14:00", "interval": 86401}]},
                 "Interval"),
                ({"storage": "ftp", "policies": [{"start": f"{h:02d}:15"} for h in range(12, 20)]}, "at most 8")):
            problem = self.assertProblem(await browser.request("POST", url, body), 422, "rule-violation")
            self.assertIn(words, problem["detail"], body)
        # Malformed: 400.
        for body in ({"storage": "cloud", "policies": [{"start": "14:00", "end": "13:00", "interval": 60}]},
                     {"storage": "cloud", "policies": [{"start": "25:00", "end": "26:00", "interval": 60}]},
                     {"storage": "usb", "policies": [{"start": "10:00"}]},
                     {"storage": "cloud", "policies": []}):
            self.assertProblem(await browser.request("POST", url, body), 400, "invalid-request")
        self.assertEqual(camera.state.picture_policies[0], before, "nothing reached the camera")
        # The simulator would have refused the overlap too: the platform's check is the first line, not the only.
        self.assertEqual(len(before), 2)

    async def test_cloud_needs_the_cameras_cloud_storage_and_a_guest_cannot_change(self) -> None:
        camera = await self.camera(NO_CLOUD, e_store_flag=False)
        browser = await self.owner(NO_CLOUD, account=PICTURE_OWNER)
        url = f"/api/v1/devices/{NO_CLOUD}/channels/0/picture-policies"
        problem = self.assertProblem(await browser.request("POST", url, {"storage": "cloud", "policies": [
            {"start": "08:00", "end": "09:00", "interval": 60}]}), 422, "not-supported")
        self.assertIn("32H", problem["detail"])
        self.assertEqual(camera.state.picture_policies, {})
        self.assertEqual((await browser.request("POST", url, {"storage": "ftp", "policies": [
            {"start": "08:00"}]})).code, 201)
        self.assertEqual([p.store_type for p in camera.state.picture_policies[0]], [m.PictureStoreType.FTP])
        # A guest the camera is shared with watches; settings are the owner's (404 like a stranger's).
        guest = await self.owner(account=PICTURE_GUEST)
        shared = await browser.request("POST", f"/api/v1/devices/{NO_CLOUD}/shares", {"account": PICTURE_GUEST})
        self.assertIn(shared.code, (200, 201, 204), shared.body)
        self.assertProblem(await guest.request("GET", url), 404, "no-such-device")
        self.assertProblem(await guest.request("POST", url, {"storage": "ftp", "policies": [{"start": "10:00"}]}),
                           404, "no-such-device")
        policy = camera.state.picture_policies[0][0].entry.policy_id
        self.assertProblem(await guest.request("DELETE", url, {"id": policy}), 404, "no-such-device")
        self.assertEqual(len(camera.state.picture_policies[0]), 1)

    def test_routes_are_in_the_table(self) -> None:
        mine = {r.handler for r in ROUTES if "picture-policies" in r.path}
        self.assertEqual(mine, {"picture_policies", "add_picture_policies", "delete_picture_policy"})
