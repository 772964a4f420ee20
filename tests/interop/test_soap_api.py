"""The client API (§8, §9.1) end to end: zeep against the real twisted.web site, simulated cameras.

zeep is a blocking client, so every call runs in a worker thread (deferToThread) while
the reactor goes on serving the SOAP site, the gateway and the cameras.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import zeep
import zeep.exceptions
from treq.client import HTTPClient
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.device.protocol import messages as m
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import start_platform
from globaleye.users.accounts import RecordingSmsSender
from tests.util import SOAP_PASSWORD, soap_config, until

PASSWORD = SOAP_PASSWORD


class SoapApiTests(TestCase):
    timeout = 60

    def start_platform(self, soap_extra: str = "") -> PlatformService:
        platform = start_platform(self, soap_config(self.mktemp() + ".sqlite3", soap_extra), reactor)
        self.sms = RecordingSmsSender()
        platform.accounts.sms_sender = self.sms
        return platform

    async def camera(self, platform: PlatformService, dev_id: str, **state: Any) -> SimulatedCamera:
        base = f"http://127.0.0.1:{platform.port_of('http')}"
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        defaults: dict[str, Any] = {"rtsp_local_port": 8554, "upnp_ip": "203.0.113.5", "rtsp_upnp_port": 18554}
        camera = SimulatedCamera(
            CameraState.for_device(dev_id, device_key("test", dev_id), **{**defaults, **state}), reactor,
            register_url=base + "/register", timing=Timing(backoff_initial=0.05, backoff_max=0.2),
            rng=random.Random(1), http=http)
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: platform.gateway.is_online(dev_id))
        while await platform.store.get_ability(dev_id) is None:
            await deferLater(reactor, 0.02, lambda: None)
        return camera

    async def client(self, platform: PlatformService, endpoint: str = "mcu") -> zeep.Client:
        session = requests.Session()
        session.headers["Connection"] = "close"  # no keep-alive socket left behind for Trial
        self.addCleanup(session.close)
        transport = zeep.Transport(session=session, timeout=20, operation_timeout=20)
        url = f"http://127.0.0.1:{platform.port_of('http')}/soap/{endpoint}?wsdl"
        return await threads.deferToThread(zeep.Client, url, transport=transport)

    async def call(self, client: zeep.Client, operation: str, **values: Any) -> Any:
        return await threads.deferToThread(getattr(client.service, operation), **values)

    async def sign_up(self, client: zeep.Client, mobile: str, password: str = PASSWORD) -> str:
        """§8.1 + §8.2 + §8.3: a registered, logged-in account; returns the LoginSession."""
        self.assertEqual(await self.call(client, "GetSmsCode", MobileTel=mobile, Type=0), 0)
        code = self.sms.last_code(mobile)
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=password, SmsKey=code), 0)
        login = await self.call(client, "Login", Account=mobile, Password=password, Version="1.2")
        self.assertEqual(login.Result, 0)
        return str(login.LoginSession)

    # The vertical slice ---------------------------------------------------------------------------

    async def test_sign_up_login_devices_live_view_ptz(self) -> None:
        platform = self.start_platform()
        camera = await self.camera(platform, "81100000001")
        client = await self.client(platform)
        mobile = "13300000001"

        # §8.1/§8.2: a wrong code is refused, the right one registers, a second sign-up says "already".
        self.assertEqual(await self.call(client, "GetSmsCode", MobileTel=mobile, Type=0), 0)
        code = self.sms.last_code(mobile)
        self.assertRegex(code, r"^[0-9]{6}$")
        wrong = "000000" if code != "000000" else "111111"
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=PASSWORD,
                                         SmsKey=wrong), 2)
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=PASSWORD,
                                         SmsKey=code), 0)
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=PASSWORD,
                                         SmsKey=code), 2, "a code is single use")
        self.assertEqual(await self.call(client, "GetSmsCode", MobileTel=mobile, Type=0), 0)
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=PASSWORD,
                                         SmsKey=self.sms.last_code(mobile)), 1)
        self.assertEqual(await self.call(client, "GetSmsCode", MobileTel="12345", Type=0), 2)

        # §8.3: old MCU, unknown account, wrong password, success.
        old = await self.call(client, "Login", Account=mobile, Password=PASSWORD, Version="1.1")
        self.assertEqual((old.Result, old.UpdateUrl, old.LoginSession), (3, "http://apps.example.cn/mcu.apk", None))
        self.assertEqual((await self.call(client, "Login", Account="13300000099", Password=PASSWORD,
                                          Version="1.2")).Result, 1)
        self.assertEqual((await self.call(client, "Login", Account=mobile, Password="wrong password",
                                          Version="1.2")).Result, 2)
        login = await self.call(client, "Login", Account=mobile, Password=PASSWORD, Version="1.10")
        self.assertEqual((login.Result, login.DevNum, login.Device), (0, 1, []))
        session = login.LoginSession
        self.assertGreaterEqual(len(session), 40)
        auth = {"Account": mobile, "LoginSession": session}

        # §8.6: unknown camera, wrong key, success (twice: idempotent).
        key = device_key("test", "81100000001")
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID="81100000999", DevKey=key), 3)
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID="81100000001", DevKey="nope"), 4)
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID="81100000001", DevKey=key), 0)
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID="81100000001", DevKey=key), 0)

        # §8.5: the list shows the camera online with its PTZ flag and §8 frame sizes.
        devices = await self.call(client, "GetDeviceList", **auth)
        self.assertEqual(devices.Result, 0)
        [entry] = devices.Device
        self.assertEqual((entry.DevID, entry.ChannelNo, entry.OnLine, entry.PtzFlag, entry.ShareFlag),
                         ("81100000001", 0, 1, 1, 0))
        self.assertIn((1, 1), [(v.StreamType, v.FrameSize) for v in entry.Video])  # main 720P
        self.assertIn((2, 3), [(v.StreamType, v.FrameSize) for v in entry.Video])  # sub CIF
        self.assertEqual(entry.Name, camera.state.model)

        # §8.9: live URLs in the exact form, one single-use token each; STUN from the configuration.
        urls = await self.call(client, "GetPlayUrl", **auth, DevID="81100000001", ChannelNo=0, StreamType=1)
        self.assertEqual(urls.Result, 0)
        self.assertRegex(urls.LocalPlayUrl, r"^rtsp://127\.0\.0\.1:8554/realplay\?devid=81100000001&channelno=0"
                                            r"&streamtype=1&hashtoken=[0-9a-f]{32}$")
        self.assertTrue(urls.UpnpPlayUrl.startswith("rtsp://203.0.113.5:18554/realplay?devid=81100000001&"))
        self.assertIn(urls.TurnPlayUrl, (None, ""))  # this camera has no TURN relay: empty element
        self.assertEqual((urls.StunIP, urls.StunPort), ("198.51.100.1", 3478))
        local = parse_qs(urlsplit(urls.LocalPlayUrl).query)["hashtoken"][0]
        upnp = parse_qs(urlsplit(urls.UpnpPlayUrl).query)["hashtoken"][0]
        self.assertNotEqual(local, upnp)

        # 35H as the camera sends it: accepted once, then refused; the wrong stream burns a token.
        verify = camera.session.request
        ok = await verify(m.TokenVerifyRequest(dev_id="81100000001", channel_no=0, stream_type=1, hash_token=local), 5)
        again = await verify(m.TokenVerifyRequest(dev_id="81100000001", channel_no=0, stream_type=1,
                                                  hash_token=local), 5)
        wrong_stream = await verify(m.TokenVerifyRequest(dev_id="81100000001", channel_no=0, stream_type=2,
                                                         hash_token=upnp), 5)
        self.assertEqual((ok.result, again.result, wrong_stream.result), (0, 1, 1))

        # §8.10: PTZ reaches the camera as 64H.
        self.assertEqual(await self.call(client, "PtzControl", **auth, DevID="81100000001", ChannelNo=0,
                                         PtzDirection=3), 0)
        self.assertEqual([(e.channel_no, e.direction) for e in camera.state.ptz_log], [(0, 3)])
        self.assertEqual(await self.call(client, "PtzControl", **auth, DevID="81100000001", ChannelNo=5,
                                         PtzDirection=3), 3, "no such channel")

        # Another account cannot take the bound camera (255), nor act on it (3).
        other = await self.sign_up(client, "13300000002")
        other_auth = {"Account": "13300000002", "LoginSession": other}
        self.assertEqual(await self.call(client, "AddDevice", **other_auth, DevID="81100000001", DevKey=key), 255)
        self.assertEqual(await self.call(client, "PtzControl", **other_auth, DevID="81100000001", ChannelNo=0,
                                         PtzDirection=1), 3)

        # DevNum 1: a second own camera exceeds the limit (5).
        await self.camera(platform, "81100000002")
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID="81100000002",
                                         DevKey=device_key("test", "81100000002")), 5)

        # Every action is in the audit log with the account and the peer.
        actions = [(r.action, r.result) for r in await platform.store.list_audit(mobile, 100)]
        self.assertIn(("add-device", 5), actions)
        self.assertIn(("login", 3), actions)
        self.assertTrue(all(r.peer.startswith("127.0.0.1:") for r in await platform.store.list_audit(mobile)))

    # Camera settings ------------------------------------------------------------------------------

    async def test_camera_settings_reboot_firmware(self) -> None:
        platform = self.start_platform()
        camera = await self.camera(platform, "81100000011")
        client = await self.client(platform)
        mobile = "13300000011"
        auth = {"Account": mobile, "LoginSession": await self.sign_up(client, mobile)}
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID="81100000011",
                                         DevKey=device_key("test", "81100000011")), 0)
        dev = {**auth, "DevID": "81100000011"}

        # §8.11/§8.12: §8 FrameSize 2 (D1) is the device's 3; round trip through 60H/61H.
        params = await self.call(client, "GetVideoParams", **dev, ChannelNo=0, StreamType=1)
        self.assertEqual((params.Result, params.DevID, params.FrameSize, params.FrameRate), (0, "81100000011", 1, 25))
        self.assertEqual(await self.call(client, "SetVideoParams", **dev, ChannelNo=0, StreamType=1, FrameSize=2,
                                         FrameRate=12), 0)
        self.assertEqual((camera.state.video(0, 1).frame_size, camera.state.video(0, 1).frame_rate),
                         (m.FrameSize.D1, 12))
        self.assertEqual(camera.state.video(0, 1).bit_rate, 8, "absent fields are left unchanged")
        params = await self.call(client, "GetVideoParams", **dev, ChannelNo=0, StreamType=1)
        self.assertEqual((params.FrameSize, params.FrameRate, params.BitRate), (2, 12, 8))
        with self.assertRaises(zeep.exceptions.Fault) as refused:
            await self.call(client, "SetVideoParams", **dev, ChannelNo=0, StreamType=2, FrameSize=1)
        self.assertIn("Result", refused.exception.message)  # the sub stream cannot do 720P
        with self.assertRaises(zeep.exceptions.Fault):
            await self.call(client, "SetVideoParams", **dev, ChannelNo=0, StreamType=1, FrameSize=7)

        # §8.13/§8.14: Wi-Fi list (strongest first) and configuration through 62H/63H.
        wifi = await self.call(client, "QueryWifi", **dev)
        self.assertEqual(wifi.Result, 0)
        self.assertEqual(wifi.Wifi[0].SSID, "ChinaNet-8A3F")
        self.assertEqual(await self.call(client, "SetWifi", **dev, SSID="Store-Guest", Security=0, Password=""), 0)
        self.assertEqual(camera.state.wifi.ssid, "Store-Guest")

        # §8.16/§8.17: versions, and the upgrade order (6DH) built from the configured FTP URL.
        versions = await self.call(client, "GetFirmwareVersion", **dev)
        self.assertEqual((versions.Result, versions.CurDevVer, versions.NewDevVer),
                         (0, camera.state.dev_ver, "V2.0.0"))
        self.assertEqual(await self.call(client, "UpgradeDevice", **dev), 0)
        self.assertEqual((camera.state.upgrade_version, camera.state.upgrade_url),
                         ("V2.0.0", "ftp://upg@198.51.100.9:2121/fw/V2.0.0.bin"))

        # §8.15: reboot reaches the camera as 6CH.
        self.assertEqual(await self.call(client, "RebootDevice", **dev), 0)
        self.assertEqual(camera.state.reboot_requested, 1)

        # Offline: PTZ says 4 (defined), the others 3 (the nearest code), at once.
        camera.stop()
        await until(lambda: not platform.gateway.is_online("81100000011"))
        self.assertEqual(await self.call(client, "PtzControl", **dev, ChannelNo=0, PtzDirection=0), 4)
        self.assertEqual(await self.call(client, "RebootDevice", **dev), 3)
        self.assertEqual((await self.call(client, "GetPlayUrl", **dev, ChannelNo=0, StreamType=1)).Result, 3)
        listed = await self.call(client, "GetDeviceList", **auth)
        self.assertEqual(listed.Device[0].OnLine, 0)

        # §8.7: wrong key or not mine: 3; then released.
        self.assertEqual(await self.call(client, "RemoveDevice", **dev, DevKey="nope"), 3)
        self.assertEqual(await self.call(client, "RemoveDevice", **dev, DevKey=device_key("test", "81100000011")), 0)
        self.assertEqual((await self.call(client, "GetDeviceList", **auth)).Device, [])

    # Sessions ----------------------------------------------------------------------------------------

    async def test_session_expiry_logout_and_closure(self) -> None:
        # 2 s idle: short enough to wait out, long enough that a loaded machine's pause between two
        # calls of the steps below never expires a session the test expects alive.
        platform = self.start_platform("session_idle_timeout = 2")
        await self.camera(platform, "81100000021")
        client = await self.client(platform)
        mobile = "13300000021"
        session = await self.sign_up(client, mobile)
        auth = {"Account": mobile, "LoginSession": session}
        self.assertEqual((await self.call(client, "GetDeviceList", **auth)).Result, 0)
        await deferLater(reactor, 2.3, lambda: None)
        self.assertEqual((await self.call(client, "GetDeviceList", **auth)).Result, 2, "idle session expired")

        # Logout ends the session; a second logout is still 0 (nothing revealed).
        login = await self.call(client, "Login", Account=mobile, Password=PASSWORD, Version="1.2")
        auth = {"Account": mobile, "LoginSession": login.LoginSession}
        self.assertEqual(await self.call(client, "Logout", **auth), 0)
        self.assertEqual((await self.call(client, "GetDeviceList", **auth)).Result, 2)
        self.assertEqual(await self.call(client, "Logout", **auth), 0)
        self.assertEqual((await self.call(client, "GetDeviceList", Account="13300000022",
                                          LoginSession=login.LoginSession)).Result, 2, "someone else's session")

        # Password change ends every session; the new password works.
        login = await self.call(client, "Login", Account=mobile, Password=PASSWORD, Version="1.2")
        auth = {"Account": mobile, "LoginSession": login.LoginSession}
        self.assertEqual(await self.call(client, "ChangePassword", **auth, OldPassword="wrong!", NewPassword="n3w pass"), 3)
        self.assertEqual(await self.call(client, "ChangePassword", **auth, OldPassword=PASSWORD,
                                         NewPassword="n3w pass"), 0)
        self.assertEqual((await self.call(client, "GetDeviceList", **auth)).Result, 2)
        login = await self.call(client, "Login", Account=mobile, Password="n3w pass", Version="1.2")
        auth = {"Account": mobile, "LoginSession": login.LoginSession}

        # §8.8: closure releases the camera and ends the sessions; the number is free again.
        key = device_key("test", "81100000021")
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID="81100000021", DevKey=key), 0)
        second = await self.call(client, "Login", Account=mobile, Password="n3w pass", Version="1.2")
        self.assertEqual(await self.call(client, "CloseAccount", **auth), 0)
        self.assertEqual((await self.call(client, "GetDeviceList", Account=mobile,
                                          LoginSession=second.LoginSession)).Result, 2)
        self.assertEqual((await self.call(client, "Login", Account=mobile, Password="n3w pass",
                                          Version="1.2")).Result, 1)
        other = await self.sign_up(client, "13300000023")
        self.assertEqual(await self.call(client, "AddDevice", Account="13300000023", LoginSession=other,
                                         DevID="81100000021", DevKey=key), 0, "the camera was released")

    async def test_token_expires(self) -> None:
        platform = self.start_platform("hashtoken_lifetime = 0.3")
        camera = await self.camera(platform, "81100000031")
        client = await self.client(platform)
        mobile = "13300000031"
        auth = {"Account": mobile, "LoginSession": await self.sign_up(client, mobile)}
        await self.call(client, "AddDevice", **auth, DevID="81100000031", DevKey=device_key("test", "81100000031"))
        urls = await self.call(client, "GetPlayUrl", **auth, DevID="81100000031", ChannelNo=0, StreamType=2)
        token = parse_qs(urlsplit(urls.LocalPlayUrl).query)["hashtoken"][0]
        await deferLater(reactor, 0.5, lambda: None)
        answer = await camera.session.request(m.TokenVerifyRequest(dev_id="81100000031", channel_no=0, stream_type=2,
                                                                   hash_token=token), 5)
        self.assertEqual(answer.result, 1)

    # SOAP itself ---------------------------------------------------------------------------------------

    async def post(self, platform: PlatformService, body: bytes, path: str = "/soap/mcu") -> requests.Response:
        url = f"http://127.0.0.1:{platform.port_of('http')}{path}"
        return await threads.deferToThread(requests.post, url, data=body, timeout=10,
                                           headers={"Content-Type": "text/xml; charset=utf-8", "Connection": "close"})

    async def test_faults(self) -> None:
        platform = self.start_platform()
        bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
                b']><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                b'<GetSmsCodeRequest xmlns="urn:globaleye:soap:mcu:1"><MobileTel>&lol2;</MobileTel><Type>0</Type>'
                b'</GetSmsCodeRequest></soap:Body></soap:Envelope>')
        cases = {
            b"not xml at all": "not well-formed",
            bomb: "DOCTYPE",
            b"<Envelope/>": "not a SOAP 1.1 Envelope",
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>': "exactly one",
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><x:Nope xmlns:x="urn:x"/>'
            b'</s:Body></s:Envelope>': "unknown operation",
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b'<GetSmsCodeRequest xmlns="urn:globaleye:soap:mcu:1"><MobileTel>13300000001</MobileTel>'
            b'<Type>zero</Type></GetSmsCodeRequest></s:Body></s:Envelope>': "is not an xs:int",
        }
        for body, reason in cases.items():
            response = await self.post(platform, body)
            self.assertEqual(response.status_code, 500, body[:60])
            self.assertIn(b"Fault>", response.content)
            self.assertIn(reason, response.text, body[:60])
        # A body above [http] max_body is refused by the HTTP site on its Content-Length, unread (413).
        response = await self.post(platform, b"x" * 70000)
        self.assertEqual(response.status_code, 413)
        self.assertIn("larger than", response.text)
        # A well-formed envelope posted by hand (the README's curl example) works.
        ok = await self.post(platform, b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
                                       b'<GetSmsCodeRequest xmlns="urn:globaleye:soap:mcu:1"><MobileTel>13300000001'
                                       b'</MobileTel><Type>0</Type></GetSmsCodeRequest></s:Body></s:Envelope>')
        self.assertEqual(ok.status_code, 200)
        self.assertIn(b"<Result>0</Result>", ok.content)

    async def test_wsdl_address_follows_host(self) -> None:
        platform = self.start_platform()
        url = f"http://127.0.0.1:{platform.port_of('http')}/soap/mcu?wsdl"
        response = await threads.deferToThread(requests.get, url, timeout=10,
                                               headers={"Host": "mcu.example.cn:8080", "Connection": "close"})
        self.assertIn(b'location="http://mcu.example.cn:8080/soap/mcu"', response.content)
        evil = await threads.deferToThread(requests.get, url, timeout=10,
                                           headers={"Host": 'x"/><evil', "Connection": "close"})
        self.assertIn(f'location="http://127.0.0.1:{platform.port_of("http")}/soap/mcu"'.encode(), evil.content)

    async def test_group_mcu_url(self) -> None:
        """§9.1 on the group: longest number prefix wins; the demo's default is this process's /soap/mcu."""
        platform = self.start_platform()
        client = await self.client(platform, "group")
        special = await self.call(client, "GetMcuUrl", MobileTel="13390000000")
        self.assertEqual((special.Result, special.McuUrl, special.CmsName),
                         (0, "http://special.example.cn/soap/mcu", "GlobalEye Test"))
        self.assertEqual((await self.call(client, "GetMcuUrl", MobileTel="13300000000")).McuUrl,
                         "http://sh.example.cn/soap/mcu")
        own = await self.call(client, "GetMcuUrl", MobileTel="18900000000")
        self.assertEqual(own.McuUrl, f"http://127.0.0.1:{platform.port_of('http')}/soap/mcu")
        self.assertEqual((await self.call(client, "GetMcuUrl", MobileTel="abc")).Result, 255)
