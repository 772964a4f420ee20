"""The client-API extensions for the web client (§4): zeep against the real site, a simulated camera.

Recording windows (67H-69H) with §7.5.13's rules checked on the platform before the camera
sees them, the full-day and loop flags (78H-7BH), record search (72H) and playback URLs
verified through 74H, alarms from the store, sharing; and "device offline" instead of a hang.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import zeep
import zeep.exceptions
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from globaleye.app.recording import window_rules
from globaleye.device.protocol import messages as m
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import start_platform
from globaleye.users.accounts import RecordingSmsSender
from globaleye.util.clock import protocol_time
from tests.util import SOAP_PASSWORD as PASSWORD
from tests.util import http_client, soap_config, until

DEV = "81100000051"


def window(week: int, start: str, end: str, store: int = 0, stream: int = 1) -> dict[str, Any]:
    return {"StoreType": store, "StreamType": stream, "Week": week, "StartTime": start, "EndTime": end}


class SoapExtensionTests(TestCase):
    timeout = 60

    def start_platform(self) -> PlatformService:
        platform = start_platform(self, soap_config(self.mktemp() + ".sqlite3"), reactor)
        self.sms = RecordingSmsSender()
        platform.accounts.sms_sender = self.sms
        return platform

    async def camera(self, platform: PlatformService, dev_id: str) -> SimulatedCamera:
        camera = SimulatedCamera(
            CameraState.for_device(dev_id, device_key("test", dev_id), rtsp_local_port=8554, upnp_ip="203.0.113.5",
                                   rtsp_upnp_port=18554), reactor,
            register_url=f"http://127.0.0.1:{platform.port_of('http')}/register",
            timing=Timing(backoff_initial=0.05, backoff_max=0.2), rng=random.Random(1), http=http_client())
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: platform.gateway.is_online(dev_id))
        while await platform.store.get_ability(dev_id) is None:
            await deferLater(reactor, 0.02, lambda: None)
        return camera

    async def client(self, platform: PlatformService) -> zeep.Client:
        session = requests.Session()
        session.headers["Connection"] = "close"
        self.addCleanup(session.close)
        transport = zeep.Transport(session=session, timeout=20, operation_timeout=20)
        url = f"http://127.0.0.1:{platform.port_of('http')}/soap/mcu?wsdl"
        return await threads.deferToThread(zeep.Client, url, transport=transport)

    async def call(self, client: zeep.Client, operation: str, **values: Any) -> Any:
        return await threads.deferToThread(getattr(client.service, operation), **values)

    async def sign_up(self, client: zeep.Client, mobile: str) -> dict[str, str]:
        self.assertEqual(await self.call(client, "GetSmsCode", MobileTel=mobile, Type=0), 0)
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=PASSWORD,
                                         SmsKey=self.sms.last_code(mobile)), 0)
        login = await self.call(client, "Login", Account=mobile, Password=PASSWORD, Version="1.2")
        return {"Account": mobile, "LoginSession": login.LoginSession}

    async def owned(self) -> tuple[PlatformService, SimulatedCamera, zeep.Client, dict[str, Any]]:
        platform = self.start_platform()
        camera = await self.camera(platform, DEV)
        client = await self.client(platform)
        auth = await self.sign_up(client, "13300000051")
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID=DEV, DevKey=camera.state.dev_key), 0)
        return platform, camera, client, {**auth, "DevID": DEV}

    # Recording --------------------------------------------------------------------------------------

    async def test_recording_policies_and_flags(self) -> None:
        platform, camera, client, dev = await self.owned()
        monday = [window(1, "08:00", "12:00"), window(1, "12:00", "18:30", store=1, stream=2)]
        self.assertEqual(await self.call(client, "AddRecordPolicy", **dev, ChannelNo=0, RecordPolicy=monday), 0)
        listed = await self.call(client, "GetRecordPolicy", **dev, ChannelNo=0)
        self.assertEqual([(p.Week, p.StartTime, p.EndTime, p.StoreType, p.StreamType) for p in listed.RecordPolicy],
                         [(1, "08:00", "12:00", 0, 1), (1, "12:00", "18:30", 1, 2)])
        ids = [p.PolicyID for p in listed.RecordPolicy]

        # The platform refuses (5) before the camera sees 67H: a fifth window on Monday, an overlap.
        before = camera.commands_answered
        too_many = [window(1, "00:00", "01:00"), window(1, "02:00", "03:00"), window(1, "19:00", "20:00")]
        self.assertEqual(await self.call(client, "AddRecordPolicy", **dev, ChannelNo=0, RecordPolicy=too_many), 5)
        overlap = [window(1, "11:00", "13:00")]
        self.assertEqual(await self.call(client, "AddRecordPolicy", **dev, ChannelNo=0, RecordPolicy=overlap), 5)
        inside = [window(3, "10:00", "11:00"), window(3, "10:30", "12:00")]
        self.assertEqual(await self.call(client, "AddRecordPolicy", **dev, ChannelNo=0, RecordPolicy=inside), 5)
        self.assertEqual(camera.commands_answered - before, 3, "only the three 68H queries reached the camera")
        self.assertEqual(len(camera.state.record_policies[0]), 2)
        with self.assertRaises(zeep.exceptions.Fault):
            await self.call(client, "AddRecordPolicy", **dev, ChannelNo=0, RecordPolicy=[window(8, "01:00", "02:00")])
        with self.assertRaises(zeep.exceptions.Fault):
            await self.call(client, "AddRecordPolicy", **dev, ChannelNo=0, RecordPolicy=[window(2, "23:00", "01:00")])
        self.assertEqual(window_rules([], [m.RecordPolicy(week=2, start_time="10:00", end_time="12:00"),
                                           m.RecordPolicy(week=2, start_time="12:00", end_time="13:00")]), "")
        # The camera checks them too (a platform that forgets is caught by the device).
        direct = await platform.gateway.command(DEV, m.AddRecordPolicyRequest(
            dev_id=DEV, channel_no=0, week_policy=(m.RecordPolicy(0, 1, 1, "09:00", "10:00"),)))
        self.assertNotEqual(direct.result, 0)

        # 69H: an unknown PolicyID is 5; a known one is deleted on the camera.
        self.assertEqual(await self.call(client, "DeleteRecordPolicy", **dev, ChannelNo=0, PolicyID=999), 5)
        self.assertEqual(await self.call(client, "DeleteRecordPolicy", **dev, ChannelNo=0, PolicyID=ids[0]), 0)
        self.assertEqual([p.policy_id for p in camera.state.record_policies[0]], ids[1:])

        # 78H-7BH.
        self.assertEqual(await self.call(client, "SetFullDayRecord", **dev, ChannelNo=0, RecordFull=1), 0)
        self.assertEqual(camera.state.record_full[0], 1)
        self.assertEqual((await self.call(client, "GetFullDayRecord", **dev, ChannelNo=0)).RecordFull, 1)
        self.assertEqual(await self.call(client, "SetLoopRecord", **dev, RecordLoop=0), 0)
        self.assertEqual(camera.state.record_loop, 0)
        self.assertEqual((await self.call(client, "GetLoopRecord", **dev)).RecordLoop, 0)
        self.assertEqual(await self.call(client, "SetFullDayRecord", **dev, ChannelNo=3, RecordFull=1), 3)

        actions = [(r.action, r.result) for r in await platform.store.list_audit("13300000051")]
        self.assertIn(("add-record-policy", 5), actions)
        self.assertIn(("set-loop", 0), actions)

    # Search, playback, alarms, offline ----------------------------------------------------------------

    async def test_search_playback_alarms_offline(self) -> None:
        platform, camera, client, dev = await self.owned()
        now = reactor.seconds()
        start = now - now % 300 - 7200
        found = await self.call(client, "SearchRecords", **dev, ChannelNo=0, StartTime=protocol_time(start)[:12],
                                EndTime=protocol_time(start + 3600)[:12])
        self.assertEqual((found.Result, found.TotalRecordNum, len(found.RecordFile)), (0, 12, 10))
        page2 = await self.call(client, "SearchRecords", **dev, ChannelNo=0, StartTime=protocol_time(start)[:12],
                                EndTime=protocol_time(start + 3600)[:12], PageNo=2)
        self.assertEqual((page2.PageNo, len(page2.RecordFile)), (2, 2))
        name = found.RecordFile[0].FileName
        self.assertTrue(name.startswith(f"{DEV}_0_"), name)
        self.assertGreater(found.RecordFile[0].FileSize, 0)

        # Playback URL of §7.5.23, one token per URL; the camera verifies it with 74H once.
        urls = await self.call(client, "GetPlaybackUrl", **dev, ChannelNo=0, FileName=name)
        self.assertRegex(urls.LocalPlayUrl, rf"^rtsp://127\.0\.0\.1:8554/realplay\?devid={DEV}&channelno=0"
                                            rf"&filename={name}&hashtoken=[0-9a-f]{{32}}$")
        self.assertTrue(urls.UpnpPlayUrl.startswith("rtsp://203.0.113.5:18554/realplay?"))
        token = parse_qs(urlsplit(urls.LocalPlayUrl).query)["hashtoken"][0]
        verify = camera.session.request
        wrong = parse_qs(urlsplit(urls.UpnpPlayUrl).query)["hashtoken"][0]
        self.assertEqual((await verify(m.PlaybackVerifyRequest(dev_id=DEV, channel_no=0, file_name="other.ts",
                                                               hash_token=wrong), 5)).result, 1)
        self.assertEqual((await verify(m.PlaybackVerifyRequest(dev_id=DEV, channel_no=0, file_name=name,
                                                               hash_token=token), 5)).result, 0)
        self.assertEqual((await verify(m.PlaybackVerifyRequest(dev_id=DEV, channel_no=0, file_name=name,
                                                               hash_token=token), 5)).result, 1)
        with self.assertRaises(zeep.exceptions.Fault):
            await self.call(client, "GetPlaybackUrl", **dev, ChannelNo=0, FileName="../etc/passwd&x=1")

        # Alarms: what the camera reported (34H), from the store.
        await verify(m.ExceptionReportRequest(dev_id=DEV, channel_no=0, exception_type=6, exception_desc="disk"), 5)
        await verify(m.ExceptionReportRequest(dev_id=DEV, channel_no=0, exception_type=8, exception_desc="lens"), 5)
        alarms = await self.call(client, "SearchAlarms", **dev)
        self.assertEqual((alarms.TotalNum, [a.ExceptionType for a in alarms.Alarm]), (2, [8, 6]))
        self.assertRegex(alarms.Alarm[0].Time, r"^[0-9]{14}$")
        none = await self.call(client, "SearchAlarms", **dev, StartTime="20000101000000", EndTime="20000102000000")
        self.assertEqual(none.TotalNum, 0)

        # A camera that stops answering: "offline" (4) after the command timeout, not a hang.
        camera.session.request_received = lambda frame, message: None  # type: ignore[method-assign]
        started = reactor.seconds()
        self.assertEqual((await self.call(client, "GetLoopRecord", **dev)).Result, 4)
        self.assertLess(reactor.seconds() - started, 5)

        # Offline: every camera-touching extension answers 4 at once; alarms still answer.
        camera.stop()
        await until(lambda: not platform.gateway.is_online(DEV))
        for operation, extra in (("AddRecordPolicy", {"ChannelNo": 0, "RecordPolicy": [window(5, "01:00", "02:00")]}),
                                 ("GetRecordPolicy", {"ChannelNo": 0}),
                                 ("DeleteRecordPolicy", {"ChannelNo": 0, "PolicyID": 1}),
                                 ("SetFullDayRecord", {"ChannelNo": 0, "RecordFull": 0}),
                                 ("GetFullDayRecord", {"ChannelNo": 0}), ("SetLoopRecord", {"RecordLoop": 1}),
                                 ("GetLoopRecord", {}),
                                 ("SearchRecords", {"ChannelNo": 0, "StartTime": "202501010000",
                                                    "EndTime": "202501020000"}),
                                 ("GetPlaybackUrl", {"ChannelNo": 0, "FileName": name})):
            answer = await self.call(client, operation, **dev, **extra)
            self.assertEqual(answer if isinstance(answer, int) else answer.Result, 4, operation)
        self.assertEqual((await self.call(client, "SearchAlarms", **dev)).TotalNum, 2)

    # Sharing ----------------------------------------------------------------------------------------------

    async def test_sharing(self) -> None:
        platform, camera, client, dev = await self.owned()
        guest = await self.sign_up(client, "13300000052")
        self.assertEqual(await self.call(client, "ShareDevice", **dev, ShareAccount="13300000099"), 5, "no such account")
        self.assertEqual(await self.call(client, "ShareDevice", **dev, ShareAccount="13300000051"), 5, "the owner")
        self.assertEqual(await self.call(client, "ShareDevice", **guest, DevID=DEV, ShareAccount="13300000051"), 3)
        self.assertEqual(await self.call(client, "ShareDevice", **dev, ShareAccount="13300000052"), 0)
        self.assertEqual((await self.call(client, "GetShareList", **dev)).ShareAccount, ["13300000052"])

        listed = await self.call(client, "GetDeviceList", **guest)
        self.assertEqual([(d.DevID, d.ShareFlag, d.OnLine) for d in listed.Device], [(DEV, 1, 1)])
        self.assertEqual((await self.call(client, "GetPlayUrl", **guest, DevID=DEV, ChannelNo=0,
                                          StreamType=1)).Result, 0, "a guest may view")
        self.assertEqual((await self.call(client, "SearchAlarms", **guest, DevID=DEV)).Result, 0)
        self.assertEqual(await self.call(client, "SetLoopRecord", **guest, DevID=DEV, RecordLoop=0), 3, "not configure")
        self.assertEqual(await self.call(client, "RemoveDevice", **guest, DevID=DEV, DevKey=camera.state.dev_key), 3,
                         "a guest cannot remove a shared camera")
        self.assertEqual(await self.call(client, "UnshareDevice", **guest, DevID=DEV, ShareAccount="13300000052"), 3)

        # DevNum is 1 here: the shared camera does not count, the guest can still own one.
        other = await self.camera(platform, "81100000052")
        self.assertEqual(await self.call(client, "AddDevice", **guest, DevID="81100000052",
                                         DevKey=other.state.dev_key), 0)

        # The owner revokes; a second revoke is 5.
        self.assertEqual(await self.call(client, "UnshareDevice", **dev, ShareAccount="13300000052"), 0)
        self.assertEqual(await self.call(client, "UnshareDevice", **dev, ShareAccount="13300000052"), 5)
        self.assertEqual([d.DevID for d in (await self.call(client, "GetDeviceList", **guest)).Device],
                         ["81100000052"])

        # Releasing the camera ends its shares: a next owner does not inherit the old guests.
        self.assertEqual(await self.call(client, "ShareDevice", **dev, ShareAccount="13300000052"), 0)
        self.assertEqual(await self.call(client, "RemoveDevice", **dev, DevKey=camera.state.dev_key), 0)
        self.assertEqual(await platform.store.list_shares(DEV), [])
        actions = [(r.action, r.result) for r in await platform.store.list_audit("13300000051")]
        self.assertIn(("share", 0), actions)
        self.assertIn(("unshare", 5), actions)


# Picture policies (75H-77H) on the SOAP client API (docs/protocol.md item 25): zeep against the real
# platform and simulated camera.


class SoapPictureTests(TestCase):
    timeout = 60

    start_platform = SoapExtensionTests.start_platform
    camera = SoapExtensionTests.camera
    client = SoapExtensionTests.client
    call = SoapExtensionTests.call
    sign_up = SoapExtensionTests.sign_up
    owned = SoapExtensionTests.owned

    async def test_picture_policies(self) -> None:
        platform, camera, client, dev = await self.owned()
        self.assertEqual(await self.call(client, "AddPicturePolicy", **dev, ChannelNo=0, StoreType=0,
                                         PicturePolicy=[{"StartTime": "09:30"}]), 0)
        self.assertEqual(await self.call(client, "AddPicturePolicy", **dev, ChannelNo=0, StoreType=1, PicturePolicy=[
            {"StartTime": "08:00", "EndTime": "12:00", "Interval": 600}]), 0)
        held = sorted((p.store_type, p.entry.start_time, p.entry.end_time, p.entry.interval)
                      for p in camera.state.picture_policies[0])
        self.assertEqual(held, [(m.PictureStoreType.FTP, "09:30", "09:30", 0),
                                (m.PictureStoreType.ESTORE, "08:00", "12:00", 600)])
        listed = (await self.call(client, "GetPicturePolicy", **dev, ChannelNo=0)).PicturePolicy
        self.assertEqual([(p.StoreType, p.StartTime, p.EndTime, p.Interval) for p in listed],
                         [(0, "09:30", "09:30", 0), (1, "08:00", "12:00", 600)])
        # The rules: overlap, a second FTP snapshot at one time, an FTP window: 5, nothing sent.
        for store, policy in ((1, {"StartTime": "11:00", "EndTime": "13:00", "Interval": 60}),
                              (0, {"StartTime": "09:30"}),
                              (0, {"StartTime": "10:00", "EndTime": "11:00", "Interval": 60})):
            self.assertEqual(await self.call(client, "AddPicturePolicy", **dev, ChannelNo=0, StoreType=store,
                                             PicturePolicy=[policy]), 5, policy)
        self.assertEqual(len(camera.state.picture_policies[0]), 2)
        self.assertEqual(await self.call(client, "DeletePicturePolicy", **dev, ChannelNo=0, PolicyID=999), 5)
        self.assertEqual(await self.call(client, "DeletePicturePolicy", **dev, ChannelNo=0,
                                         PolicyID=listed[0].PolicyID), 0)
        self.assertEqual([p.entry.policy_id for p in camera.state.picture_policies[0]], [listed[1].PolicyID])
        # Another account: 3, like an absent device.
        other = await self.sign_up(client, "13300000052")
        self.assertEqual((await self.call(client, "GetPicturePolicy", **other, DevID=dev["DevID"], ChannelNo=0)).Result,
                         3)
