"""The application layer (:mod:`globaleye.app`) used directly: no SOAP, no sockets.

A store in memory, the real :class:`AccountService`, and a gateway stand-in that
satisfies :class:`globaleye.app.ports.DeviceGateway`; the services' typed results and
typed errors (the Result codes the SOAP face answers with) are checked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from globaleye.app import ClientApiSettings, ClientServices, build_services
from globaleye.app.errors import (
    AddRefused,
    AppError,
    DeviceOffline,
    DeviceRefused,
    InvalidRequest,
    NoSuchDevice,
    NotFound,
    RuleViolation,
)
from globaleye.app.media import Watch
from globaleye.app.recording import RecordWindow
from globaleye.device.messaging import CommandError
from globaleye.device.protocol import messages as m
from globaleye.store import Device, DeviceAbility, DeviceAddresses
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import (
    AccountService,
    AccountSettings,
    LoginSession,
    RecordingSmsSender,
)

PEER = "192.0.2.1:5000"
OWNER, GUEST, PASSWORD = "13300000001", "13300000002", "secret1"
DEV_ID, DEV_KEY = "10000000001", "key-0001"
HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def inline(function: Any, *args: Any) -> Deferred[Any]:
    return succeed(function(*args))


class FakeGateway:
    """A :class:`~globaleye.app.ports.DeviceGateway`: online devices, their addresses, canned answers."""

    def __init__(self) -> None:
        self.addresses: dict[str, DeviceAddresses] = {}
        self.answers: dict[str, m.Message | Exception] = {}
        self.sent: list[m.Message] = []

    def is_online(self, dev_id: str) -> bool:
        return dev_id in self.addresses

    def live_addresses(self, dev_id: str) -> DeviceAddresses | None:
        return self.addresses.get(dev_id)

    def live_version(self, dev_id: str) -> str | None:
        return "1.0.0" if dev_id in self.addresses else None

    async def command(self, dev_id: str, request: m.Message, timeout: float | None = None) -> Any:
        if dev_id not in self.addresses:
            raise CommandError(f"device {dev_id} is offline")
        self.sent.append(request)
        answer = self.answers.get(request.ROOT, m.PtzResponse(result=0, dev_id=dev_id))
        if isinstance(answer, Exception):
            raise answer
        return answer


class Streams:
    def device_streams(self, dev_id: str) -> list[dict[str, Any]]:
        return [{"Kind": "live", "ChannelNo": 0, "State": "running"}]


class ApplicationLayerTests(TestCase):
    async def asyncSetUp(self) -> None:  # called from setUp
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = SQLiteStore(":memory:")
        self.addCleanup(self.store.close)
        self.accounts = AccountService(self.store, self.clock, AccountSettings(hashtoken_lifetime=60),
                                       sms_sender=RecordingSmsSender(), hasher=HASHER, run_in_thread=inline)
        self.gateway = FakeGateway()
        self.app: ClientServices = build_services(self.accounts, self.store, self.gateway,
                                                  ClientApiSettings(stun_host="192.0.2.9", stun_port=3478))
        await self.store.enroll_device(Device(dev_id=DEV_ID, dev_key=DEV_KEY, model="IPC-1"))
        await self.store.record_ability(DEV_ID, DeviceAbility(channel_num=1, ptz_flag=1))

    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.asyncSetUp())

    async def sign_up(self, mobile: str) -> LoginSession:
        self.assertEqual(await self.app.accounts.request_sms_code(mobile, 0, PEER), 0)
        sms = self.accounts.sms_sender
        assert isinstance(sms, RecordingSmsSender)
        self.assertEqual(await self.app.accounts.register(mobile, PASSWORD, sms.last_code(mobile), PEER), 0)
        login = await self.app.accounts.login(mobile, PASSWORD, "1.0", PEER)
        self.assertEqual((login.result, login.dev_num, login.devices), (0, 10, ()))
        assert login.session is not None
        return login.session

    async def test_devices_and_sharing(self) -> None:
        owner = await self.sign_up(OWNER)
        with self.assertRaises(AddRefused) as refused:
            await self.app.devices.add(owner, DEV_ID, "wrong")
        self.assertEqual(refused.exception.result, 4)  # §8.6: wrong DevKey
        with self.assertRaises(AddRefused) as refused:
            await self.app.devices.add(owner, "19999999999", DEV_KEY)
        self.assertEqual(refused.exception.result, 3)  # unknown camera
        await self.app.devices.add(owner, DEV_ID, DEV_KEY)
        [entry] = await self.app.devices.list_for(owner)
        self.assertEqual((entry.dev_id, entry.name, entry.online, entry.ptz, entry.shared),
                         (DEV_ID, "IPC-1", False, True, 0))
        guest = await self.sign_up(GUEST)
        await self.app.devices.share(owner, DEV_ID, GUEST)
        self.assertEqual(await self.app.devices.shares(owner, DEV_ID), (GUEST,))
        self.assertTrue(await self.app.devices.may_watch(GUEST, DEV_ID, 0))
        self.assertFalse(await self.app.devices.may_watch(GUEST, DEV_ID, 1))  # no such channel
        with self.assertRaises(NoSuchDevice):  # a guest may view, not configure or share
            await self.app.devices.share(guest, DEV_ID, OWNER)
        with self.assertRaises(NotFound):
            await self.app.devices.unshare(owner, DEV_ID, "13300000009")
        with self.assertRaises(NoSuchDevice) as gone:
            await self.app.devices.remove(guest, DEV_ID, DEV_KEY)
        self.assertEqual(gone.exception.result, 3)

    async def test_play_urls_ipv6_tokens_and_offline(self) -> None:
        owner = await self.sign_up(OWNER)
        await self.app.devices.add(owner, DEV_ID, DEV_KEY)
        with self.assertRaises(DeviceOffline) as offline:
            await self.app.media.play_urls(owner, DEV_ID, 0, 1)
        self.assertEqual(offline.exception.result, 4)
        self.gateway.addresses[DEV_ID] = DeviceAddresses(local_ip="2001:db8::7", rtsp_local_port=554,
                                                         turn_relay_ip="192.0.2.50", rtsp_turn_relay_port=40000)
        urls = await self.app.media.play_urls(owner, DEV_ID, 0, 2)
        self.assertTrue(urls.local.startswith("rtsp://[2001:db8::7]:554/realplay?devid=10000000001&channelno=0"
                                              "&streamtype=2&hashtoken="), urls.local)
        self.assertTrue(urls.turn.startswith("rtsp://192.0.2.50:40000/realplay?"), urls.turn)
        self.assertEqual((urls.upnp, urls.stun_host, urls.stun_port), ("", "192.0.2.9", 3478))
        tokens = {parse_qs(urlsplit(u).query)["hashtoken"][0] for u in (urls.local, urls.turn)}
        self.assertEqual(len(tokens), 2)  # one token per URL (§15: a failed attempt burns its own)
        with self.assertRaises(InvalidRequest):
            await self.app.media.play_urls(owner, DEV_ID, 0, 3)
        with self.assertRaises(NoSuchDevice):
            await self.app.media.play_urls(owner, DEV_ID, 1, 1)
        # The RTSP proxy's view: one URL, for the path it tries, a playback file here.
        viewer = await self.app.media.viewer_urls(OWNER, Watch(DEV_ID, 0, 0, "rec_001.mp4"), "turn")
        self.assertEqual(viewer.local, "")
        self.assertIn("&filename=rec_001.mp4&hashtoken=", viewer.turn)

    async def test_camera_control_errors(self) -> None:
        owner = await self.sign_up(OWNER)
        await self.app.devices.add(owner, DEV_ID, DEV_KEY)
        with self.assertRaises(DeviceOffline):
            await self.app.control.ptz(owner, DEV_ID, 0, 1)
        self.gateway.addresses[DEV_ID] = DeviceAddresses(local_ip="192.0.2.7", rtsp_local_port=554)
        await self.app.control.ptz(owner, DEV_ID, 0, 1)
        self.assertEqual(self.gateway.sent[-1], m.PtzRequest(dev_id=DEV_ID, channel_no=0, ptz_direction=1))
        with self.assertRaises(InvalidRequest):
            await self.app.control.ptz(owner, DEV_ID, 0, 9)
        self.gateway.answers["VIDEO_PTZ_REQ"] = m.PtzResponse(result=7, dev_id=DEV_ID)
        with self.assertRaises(DeviceRefused) as refused:
            await self.app.control.ptz(owner, DEV_ID, 0, 1)
        self.assertEqual(refused.exception.device_result, 7)
        self.gateway.answers["REBOOT_REQ"] = CommandError("timed out")
        with self.assertRaises(DeviceOffline):  # silent: offline, never a hanging request
            await self.app.control.reboot(owner, DEV_ID)
        version = await self.app.control.firmware_version(owner, DEV_ID)
        self.assertEqual((version.current, version.newest), ("1.0.0", "1.0.0"))

    async def test_recording_rules_and_stream_status(self) -> None:
        owner = await self.sign_up(OWNER)
        await self.app.devices.add(owner, DEV_ID, DEV_KEY)
        five = [RecordWindow(0, 1, 1, f"{h:02d}:00", f"{h:02d}:30") for h in range(5)]
        with self.assertRaises(DeviceOffline):  # checked before anything is sent
            await self.app.recording.add_policy(owner, DEV_ID, 0, five[:1])
        self.assertEqual(self.gateway.sent, [])
        self.gateway.addresses[DEV_ID] = DeviceAddresses(local_ip="192.0.2.7", rtsp_local_port=554)
        self.gateway.answers["QUERY_RECORD_POLICY_REQ"] = m.GetRecordPolicyResponse(result=0, dev_id=DEV_ID)
        with self.assertRaises(RuleViolation) as rules:  # §7.5.13: at most 4 windows a day
            await self.app.recording.add_policy(owner, DEV_ID, 0, five)
        self.assertEqual(rules.exception.result, 5)
        self.assertEqual([r.ROOT for r in self.gateway.sent], ["QUERY_RECORD_POLICY_REQ"])
        with self.assertRaises(InvalidRequest):
            await self.app.recording.add_policy(owner, DEV_ID, 0, [RecordWindow(0, 1, 1, "10:00", None)])
        with self.assertRaises(NotFound) as none:  # no RTSP proxy in this process
            await self.app.media.stream_status(owner, DEV_ID)
        self.assertIsInstance(none.exception, AppError)
        self.app.streams.attach(Streams())
        self.assertEqual(await self.app.media.stream_status(owner, DEV_ID),
                         [{"Kind": "live", "ChannelNo": 0, "State": "running"}])
