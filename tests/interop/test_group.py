"""§5/§6/§6.6 with real platforms: ONE group and TWO provinces, each its own process object and database.

Three :class:`PlatformService` instances on loopback (ports 0): the group runs only the
group role; provinces A and B run the gateway and talk to the group over SOAP (§6).  A
simulated camera boots against the group's /redirect and is unclaimed (Result 1); a user of
B adds it with zeep, the group assigns it to B, the camera's next redirect goes to B's
/register, and it comes online at B.  Province A cannot take it.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import requests
import zeep
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from globaleye.api.soap.client import parse_response, request_envelope
from globaleye.api.soap.operations import GROUP_NS, GROUP_OPERATIONS
from globaleye.app.group import GroupService
from globaleye.cli import change_dev_num
from globaleye.group.province import GroupClient, ProvinceSettings
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import platform_config, start_platform
from globaleye.users.accounts import RecordingSmsSender
from tests.util import http_client, until


def group_config(db: str) -> str:
    """A group (§6) alone: two provinces, their numbers, the MCU app's URL."""
    return platform_config("http, group", public_host=None, enrollment_mode=None, cms_password=None,
                           database=f"sqlite:///{db}", group={
                               "provinces": "3100-01=shanghai-secret, 1100-01=beijing-secret",
                               "province_numbers": "3100-01=133, 1100-01=189",
                               "mcu_android_url": "http://apps.example.cn/mcu.apk", "mcu_android_ver": "2.1"})


def province_config(db: str, group_url: str, province_no: str, password: str) -> str:
    """A province of that group: gateway and client API, open enrollment, its group client."""
    return platform_config("gateway, http", public_host=None, database=f"sqlite:///{db}", cms_password=password,
                           gateway={"command_timeout": 2},
                           province={"group_url": group_url, "province_no": province_no, "cms_no": "01",
                                     "group_timeout": 2, "retry_interval": 0.2},
                           soap={"sms_interval": 0.01, "max_devices_per_account": 4})


PASSWORD = "correct horse"
DEV_ID = "81200000001"


class GroupProvinceTests(TestCase):
    timeout = 60

    def start(self, config: Callable[..., str], **values: Any) -> PlatformService:
        return start_platform(self, config(self.mktemp() + ".sqlite3", **values), reactor)

    def start_province(self, group: PlatformService | None, province_no: str, password: str,
                       group_url: str = "") -> PlatformService:
        url = group_url or f"http://127.0.0.1:{group.port_of('http') if group else 1}/soap/group"
        platform = self.start(province_config, group_url=url, province_no=province_no, password=password)
        platform.accounts.sms_sender = RecordingSmsSender()
        return platform

    async def client(self, platform: PlatformService, endpoint: str = "mcu") -> zeep.Client:
        session = requests.Session()
        session.headers["Connection"] = "close"
        self.addCleanup(session.close)
        transport = zeep.Transport(session=session, timeout=20, operation_timeout=20)
        url = f"http://127.0.0.1:{platform.port_of('http')}/soap/{endpoint}?wsdl"
        return await threads.deferToThread(zeep.Client, url, transport=transport)

    async def call(self, client: zeep.Client, operation: str, **values: Any) -> Any:
        return await threads.deferToThread(getattr(client.service, operation), **values)

    async def sign_up(self, platform: PlatformService, client: zeep.Client, mobile: str) -> dict[str, str]:
        self.assertEqual(await self.call(client, "GetSmsCode", MobileTel=mobile, Type=0), 0)
        code = platform.accounts.sms_sender.last_code(mobile)  # type: ignore[attr-defined]
        self.assertEqual(await self.call(client, "RegisterUser", MobileTel=mobile, Password=PASSWORD, SmsKey=code), 0)
        login = await self.call(client, "Login", Account=mobile, Password=PASSWORD, Version="1.0")
        self.assertEqual(login.Result, 0)
        return {"Account": mobile, "LoginSession": login.LoginSession}

    def camera(self, group: PlatformService) -> SimulatedCamera:
        camera = SimulatedCamera(
            CameraState.for_device(DEV_ID, device_key("group", DEV_ID), rtsp_local_port=8554), reactor,
            redirect_url=f"http://127.0.0.1:{group.port_of('http')}/redirect",
            timing=Timing(backoff_initial=0.05, backoff_max=0.2), rng=random.Random(2), http=http_client())
        camera.start()
        self.addCleanup(camera.stop)
        return camera

    async def test_claim_redirect_register_and_service_notices(self) -> None:
        group = self.start(group_config)
        a = self.start_province(group, "3100", "shanghai-secret")
        b = self.start_province(group, "1100", "beijing-secret")
        b_url = f"http://127.0.0.1:{b.port_of('http')}"

        # §6.1: both provinces report their addresses at start-up and learn the client download URL.
        assert a.group_client is not None and b.group_client is not None
        await until(lambda: a.group_client.reported and b.group_client.reported)  # type: ignore[union-attr]
        self.assertEqual(b.group_client.client_urls["McuAndroidUrl"], "http://apps.example.cn/mcu.apk")
        report = await group.store.get_province_report("1100-01")
        assert report is not None
        self.assertEqual((report.dev_url, report.mcu_url), (b_url + "/register", b_url + "/soap/mcu"))

        # §5/§6.6 steps 1-3: the camera asks the group; nobody has claimed it: Result 1, but the group
        # now knows it (and its key).
        camera = self.camera(group)
        await until(lambda: "redirect refused (Result 1)" in camera.last_error)
        known = await group.store.get_group_device(DEV_ID)
        assert known is not None
        self.assertEqual((known.dev_key, known.model), (camera.state.dev_key, camera.state.model))
        self.assertFalse(camera.online)

        # §6.2: a sign-up at B is announced to the group (in the background, from B's outbox).
        b_mcu = await self.client(b)
        b_auth = await self.sign_up(b, b_mcu, "18900000001")
        await self._until_subscriber(group, "18900000001", lambda s: s is not None)
        subscriber = await group.store.get_subscriber("18900000001")
        assert subscriber is not None
        self.assertEqual((subscriber.province, subscriber.ipcam_num), ("1100-01", 4))
        group_soap = await self.client(group, "group")
        mcu = await self.call(group_soap, "GetMcuUrl", MobileTel="18900000001")
        self.assertEqual((mcu.Result, mcu.McuUrl), (0, b_url + "/soap/mcu"), "§9.1 follows the subscription")

        # §6.5/§6.6 steps 4-7: B does not know the camera; it asks the group, which checks the key and
        # assigns the camera to B.  A wrong key is refused first (4).
        key = camera.state.dev_key
        self.assertEqual(await self.call(b_mcu, "AddDevice", **b_auth, DevID=DEV_ID, DevKey="wrong-key"), 4)
        self.assertEqual(await self.call(b_mcu, "AddDevice", **b_auth, DevID="81200000999", DevKey=key), 3)
        self.assertEqual(await self.call(b_mcu, "AddDevice", **b_auth, DevID=DEV_ID, DevKey=key), 0)
        self.assertEqual(await group.store.get_province_of(DEV_ID), "1100-01")
        device = await b.store.get_device(DEV_ID)
        assert device is not None
        self.assertEqual((device.source, device.model), ("group", camera.state.model))

        # Steps 8-10: the camera's next redirect returns B's /register; it registers and logs in at B.
        await until(lambda: b.gateway.is_online(DEV_ID), timeout=15)
        self.assertEqual(camera.register_url, b_url + "/register")
        self.assertFalse(a.gateway.is_online(DEV_ID))
        listed = await self.call(b_mcu, "GetDeviceList", **b_auth)
        self.assertEqual([(d.DevID, d.OnLine, d.ShareFlag) for d in listed.Device], [(DEV_ID, 1, 0)])

        # Province A cannot claim it (the group answers §6.5 Result 255; AddDevice says 255).
        a_mcu = await self.client(a)
        a_auth = await self.sign_up(a, a_mcu, "13300000001")
        self.assertEqual(await self.call(a_mcu, "AddDevice", **a_auth, DevID=DEV_ID, DevKey=key), 255)
        self.assertIsNone(await a.store.get_device(DEV_ID))
        self.assertEqual(await group.store.get_province_of(DEV_ID), "1100-01")
        refused = [(r.action, r.result) for r in await group.store.list_audit("3100-01")]
        self.assertIn(("notify-device-usage", 255), refused)

        # §6.3 and §6.4 reach the group: B changes the user's DevNum, then the user closes the account.
        self.assertTrue(await b.client.accounts.change_service("18900000001", 8))
        self.assertEqual((await self.call(b_mcu, "Login", Account="18900000001", Password=PASSWORD,
                                          Version="1.0")).DevNum, 8)
        await self._until_subscriber(group, "18900000001", lambda s: s is not None and s.ipcam_num == 8)
        # The operator's command writes the outbox; the running platform delivers it.
        out = io.StringIO()
        await change_dev_num(b.store, "18900000001", 6, out)  # type: ignore[arg-type]
        await self._until_subscriber(group, "18900000001", lambda s: s is not None and s.ipcam_num == 6)
        self.assertEqual(await self.call(b_mcu, "CloseAccount", **b_auth), 0)
        await self._until_subscriber(group, "18900000001", lambda s: s is None)
        actions = [(r.action, r.result) for r in await group.store.list_audit("1100-01")]
        for action in ("report-address", "open-service", "change-service", "cancel-service", "notify-device-usage"):
            self.assertIn((action, 0), actions)
        for _ in range(250):  # the group has it; the province drops its copy right after
            if not await b.store.due_outbox(reactor.seconds() + 3600):
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(await b.store.due_outbox(reactor.seconds() + 3600), [], "every notice delivered")

    async def _until_subscriber(self, group: PlatformService, mobile: str, condition: Any) -> None:
        for _ in range(250):
            if condition(await group.store.get_subscriber(mobile)):
                return
            await deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"group subscriber {mobile} never reached the expected state")

    async def test_passwords_and_unreachable_group(self) -> None:
        group = self.start(group_config)
        service: GroupService = group.group_service
        op = {o.name: o for o in GROUP_OPERATIONS}["OpenService"]
        url = f"http://127.0.0.1:{group.port_of('http')}/soap/group"
        http = http_client()

        async def open_service(province_no: str, password: str) -> int:
            body = request_envelope(op, {"ProvinceNo": province_no, "CmsNo": "01", "CmsPassword": password,
                                         "MobileTel": "13300000009", "IpcamNum": 2}, GROUP_NS)
            response = await http.post(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
            return int(parse_response(op, await response.content(), GROUP_NS)["Result"])

        self.assertEqual(await open_service("9900", "x"), 1, "unknown province")
        self.assertEqual(await open_service("3100", "wrong"), 2, "wrong CmsPassword")
        self.assertEqual(await open_service("3100", "shanghai-secret"), 0)
        self.assertEqual(await open_service("1100", "beijing-secret"), 255, "open in another province")
        self.assertEqual(service.provinces["3100-01"], "shanghai-secret")

        # A province whose group is unreachable still serves its users: sign-up works (the notice
        # waits in the outbox), a camera it does not know cannot be claimed (255, at once).
        lonely = self.start_province(None, "3100", "shanghai-secret", group_url="http://127.0.0.1:1/soap/group")
        assert lonely.group_client is not None
        client = await self.client(lonely)
        auth = await self.sign_up(lonely, client, "13300000010")
        self.assertEqual(await self.call(client, "AddDevice", **auth, DevID=DEV_ID, DevKey="k"), 255)
        self.assertFalse(lonely.group_client.reported)
        waiting = await lonely.store.due_outbox(reactor.seconds() + 3600)
        self.assertEqual([(w.operation, w.attempts >= 1) for w in waiting], [("OpenService", True)])

    async def test_group_client_timeout(self) -> None:
        """A group that accepts the connection but never answers costs group_timeout, not a hang."""
        from twisted.internet.protocol import Factory, Protocol

        silent = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        store = (await self._store())
        client = GroupClient(ProvinceSettings(group_url=f"http://127.0.0.1:{silent.getHost().port}/soap/group",
                                              timeout=0.3, register_url="http://x/register",
                                              mcu_url="http://x/soap/mcu"), reactor, store, http_client())
        started = reactor.seconds()
        self.assertEqual(await client.claim_device(DEV_ID, "k"), (-1, {}))
        self.assertLess(reactor.seconds() - started, 3)
        await client.stop()

    async def _store(self) -> Any:
        from globaleye.store.sqlite import SQLiteStore

        store = SQLiteStore(self.mktemp() + ".sqlite3")
        self.addCleanup(store.close)
        return store
