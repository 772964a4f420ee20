"""Picture (snapshot) policies through the web API (/api/v1, 75H-77H), over real loopback: a real platform
with the web role, simulated cameras (their own 75H-77H handlers keep the policies in their state),
treq as the browser's HTTP client.

What the API adds is what the camera then holds and what the get route reads back; the platform's rules
(globaleye.app.pictures) refuse with 422 before the camera sees a request.  The CSRF and IDOR loops of
tests/integration/test_web_api.py cover these routes too (the route table's examples).
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from globaleye.device.protocol import messages as m
from globaleye.web.routes import ROUTES
from tests.integration import test_web_settings as settings

OWNER, GUEST = "13300000311", "13300000312"
CAMERA, NO_CLOUD = "81100000311", "81100000312"


class WebPictureTests(TestCase):
    timeout = 90

    # The harness of the settings tests (a platform with the web role, simulated cameras, sign-up).
    setUp = settings.WebSettingsTests.setUp
    camera = settings.WebSettingsTests.camera
    owner = settings.WebSettingsTests.owner
    assertProblem = settings.WebSettingsTests.assertProblem  # noqa: N815

    async def test_policies_added_are_the_cameras_and_read_back(self) -> None:
        camera = await self.camera(CAMERA)
        browser = await self.owner(CAMERA, account=OWNER)
        url = f"/api/v1/devices/{CAMERA}/channels/0/picture-policies"
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
        camera = await self.camera(CAMERA)
        browser = await self.owner(CAMERA, account=OWNER)
        url = f"/api/v1/devices/{CAMERA}/channels/0/picture-policies"
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
        browser = await self.owner(NO_CLOUD, account=OWNER)
        url = f"/api/v1/devices/{NO_CLOUD}/channels/0/picture-policies"
        problem = self.assertProblem(await browser.request("POST", url, {"storage": "cloud", "policies": [
            {"start": "08:00", "end": "09:00", "interval": 60}]}), 422, "not-supported")
        self.assertIn("32H", problem["detail"])
        self.assertEqual(camera.state.picture_policies, {})
        self.assertEqual((await browser.request("POST", url, {"storage": "ftp", "policies": [
            {"start": "08:00"}]})).code, 201)
        self.assertEqual([p.store_type for p in camera.state.picture_policies[0]], [m.PictureStoreType.FTP])
        # A guest the camera is shared with watches; settings are the owner's (404 like a stranger's).
        guest = await self.owner(account=GUEST)
        shared = await browser.request("POST", f"/api/v1/devices/{NO_CLOUD}/shares", {"account": GUEST})
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
