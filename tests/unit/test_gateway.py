"""The gateway's device sessions: login rules, heartbeats, reports, tokens and the command API.

These drive the real :class:`Gateway` and a real SQLite store (in memory) through
fake transports, with ``task.Clock`` for every timer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from globaleye.device.gateway import DeviceOffline, Gateway, GatewaySettings
from globaleye.device.messaging import CommandTimeout, MalformedResponse, SessionLost
from globaleye.device.protocol import messages as m
from globaleye.device.protocol.frame import Frame, encode_frame
from globaleye.store import Device, DeviceAddresses, HashToken
from globaleye.store.sqlite import SQLiteStore
from tests.util import Device_, until

DEV = "81100000001"
KEY = "secret-key-1"


class CountingStore(SQLiteStore):
    """The real store, counting address writes (heartbeats must not cost one each)."""

    address_writes = 0

    async def update_addresses(self, dev_id: str, addresses: DeviceAddresses) -> None:
        self.address_writes += 1
        await super().update_addresses(dev_id, addresses)


class GatewayTestCase(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = CountingStore(":memory:")
        self.gateway = Gateway(self.store, self.clock, GatewaySettings(cloud_url="http://cloud.example/auth"))
        return Deferred.fromCoroutine(self.store.import_devices([Device(dev_id=DEV, dev_key=KEY, model="IPC-1")]))

    def tearDown(self) -> Any:
        return Deferred.fromCoroutine(self.store.close())

    def login_request(self, key: str = KEY, dev_id: str = DEV) -> m.LoginRequest:
        return m.LoginRequest(dev_ver="1.0", dev_id=dev_id, dev_key=key, upnp_ip="0.0.0.0", local_ip="192.168.1.9",
                              rtsp_local_port=554, turn_relay_ip="127.0.0.9", rtsp_turn_relay_port=50000, net_type=1)

    async def online(self, **kwargs: Any) -> Device_:
        device = Device_(self.gateway, **kwargs)
        device.send(self.login_request())
        frame, response = (await device.answer())[0]
        self.assertIsInstance(response, m.LoginResponse)
        self.assertEqual(response.result, 0)
        return device


class LoginTests(GatewayTestCase):
    async def test_login(self) -> None:
        device = Device_(self.gateway)
        seq = device.send(self.login_request())
        frame, response = (await device.answer())[0]
        self.assertEqual(frame.seq, seq)
        self.assertEqual(frame.cmd, 0x31)
        self.assertEqual((response.result, response.dev_id, response.eurl), (0, DEV, "http://cloud.example/auth"))
        self.assertEqual(len(response.time), 14)
        self.assertTrue(self.gateway.is_online(DEV))
        self.assertFalse(device.closed)
        stored = await self.store.get_addresses(DEV)
        self.assertEqual((stored.public_ip, stored.local_ip, stored.rtsp_turn_relay_port),
                         ("127.0.0.5", "192.168.1.9", 50000))
        self.assertIsNotNone((await self.store.get_device(DEV)).login_at)

    async def test_login_gives_the_devices_own_cloud_account(self) -> None:
        """Issue 12: with a cloud account provider, LOGIN_RES carries the device's own EURL/EAccount/EPassword;
        the provider's None or failure gives the configured global account, and the login goes on."""
        answers: dict[str, Any] = {DEV: ("http://198.51.100.1:9000", "GEDEVICEKEY", "device-secret")}

        class Accounts:
            async def cloud_account(self, dev_id: str) -> tuple[str, str, str] | None:
                answer = answers[dev_id]
                if isinstance(answer, Exception):
                    raise answer
                return answer  # type: ignore[no-any-return]

        self.gateway.cloud = Accounts()
        for answer, expected in ((answers[DEV], ("http://198.51.100.1:9000", "GEDEVICEKEY", "device-secret")),
                                 (None, ("http://cloud.example/auth", "", "")),
                                 (RuntimeError("store down"), ("http://cloud.example/auth", "", ""))):
            answers[DEV] = answer
            device = Device_(self.gateway)
            device.send(self.login_request())
            response = (await device.answer())[0][1]
            self.assertEqual(response.result, 0)
            self.assertEqual((response.eurl, response.e_account, response.e_password), expected)
            device.transport.loseConnection()
        self.flushLoggedErrors(RuntimeError)

    async def test_wrong_key_then_retry_rule(self) -> None:
        """Result 2 and the session closes; a retry within 3 minutes is refused unchecked (§7.3.3)."""
        device = Device_(self.gateway)
        device.send(self.login_request(key="wrong"))
        self.assertEqual((await device.answer())[0][1].result, 2)
        self.assertTrue(device.closed)
        self.clock.advance(179)
        again = Device_(self.gateway)
        again.send(self.login_request())
        self.assertEqual((await again.answer())[0][1].result, 255)
        self.assertTrue(again.closed)
        self.clock.advance(2)
        await self.online()

    async def test_unknown_device(self) -> None:
        device = Device_(self.gateway)
        device.send(self.login_request(dev_id="81199999999"))
        self.assertEqual((await device.answer())[0][1].result, 1)
        self.assertTrue(device.closed)

    async def test_malformed_devid(self) -> None:
        device = Device_(self.gateway)
        device.send(self.login_request(dev_id="abc"))
        self.assertEqual((await device.answer())[0][1].result, 1)

    def test_nothing_before_login(self) -> None:
        device = Device_(self.gateway)
        device.send(m.HeartbeatRequest(dev_id=DEV))
        self.assertTrue(device.closed)
        self.assertEqual(device.transport.value(), b"")

    def test_login_timeout(self) -> None:
        device = Device_(self.gateway)
        self.clock.advance(29)
        self.assertFalse(device.closed)
        self.clock.advance(1)
        self.assertTrue(device.closed)

    async def test_second_login_replaces_first(self) -> None:
        first = await self.online()
        second = await self.online(port=40001)
        self.assertTrue(first.closed)
        self.assertFalse(second.closed)
        self.assertIs(self.gateway.sessions[DEV], second.session)
        first.session.connectionLost(None)
        self.assertIs(self.gateway.sessions[DEV], second.session, "the old session's end must not log out the new")

    async def test_spec_example_login(self) -> None:
        """A device copying §7.5.1's example, noise included, logs in."""
        xml = ('<?xml version="1.0" encoding=" UTF-8" ?>\n<LOGIN_REQ>\n<DevVer>1.0</ DevVer >\n'
               f'<DevID> {DEV}</ DevID>\n<DevKey>{KEY}</DevKey>\n<UpnpIP>0.0.0.0</UpnpIP>\n'
               '<RtspUpnpPort>0</UpnpPort>\n<LocalIP>192.168.1.2</LocalIP>\n<RtspLocalPort>554</LocalPort>\n'
               '<TurnRelayIP>0.0.0.0</TurnRelayIP>\n<RtspTurnRelayPort>0\n</RtspTurnRelayPort>\n'
               '<NetType>0</NetType>\n</LOGIN_REQ>').encode()
        device = Device_(self.gateway)
        device.session.dataReceived(encode_frame(Frame(cmd=0x31, seq=0, data=xml)))
        self.assertEqual((await device.answer())[0][1].result, 0)


class SessionTests(GatewayTestCase):
    async def test_heartbeat_and_timeout(self) -> None:
        """A session silent for 360 s is closed (§7.3.4); heartbeats keep it open without DB writes."""
        device = await self.online()
        writes = self.store.address_writes
        for _ in range(5):
            self.clock.advance(300)
            device.send(m.HeartbeatRequest(dev_id=DEV, cur_video_num=1, upnp_ip="0.0.0.0", local_ip="192.168.1.9",
                                           rtsp_local_port=554, turn_relay_ip="127.0.0.9",
                                           rtsp_turn_relay_port=50000))
        replies = await device.answer(6)
        self.assertTrue(all(isinstance(r, m.HeartbeatResponse) for _, r in replies[1:]))
        self.assertEqual(self.store.address_writes, writes)
        self.assertEqual(self.gateway.live[DEV].cur_video_num, 1)
        self.clock.advance(359)
        self.assertFalse(device.closed)
        self.clock.advance(1)
        self.assertTrue(device.closed)
        device.session.connectionLost(None)
        self.assertFalse(self.gateway.is_online(DEV))

    async def test_heartbeat_address_change_written(self) -> None:
        device = await self.online()
        device.send(m.HeartbeatRequest(dev_id=DEV, upnp_ip="127.0.0.77", rtsp_upnp_port=12345,
                                       local_ip="192.168.1.9", rtsp_local_port=554))
        await device.answer(2)
        await until(lambda: self.store.address_writes == 1)
        self.assertEqual((await self.store.get_addresses(DEV)).rtsp_upnp_port, 12345)

    async def test_exception_and_picture_stored(self) -> None:
        device = await self.online()
        device.send(m.ExceptionReportRequest(dev_id=DEV, channel_no=1, exception_type=12, exception_desc="UPnP failed"))
        device.send(m.FtpPictureNoticeRequest(dev_id=DEV, channel_no=1, file_name=f"{DEV}_1_20261125120000.JPG",
                                              time="20261125120000"))
        replies = await device.answer(3)
        self.assertEqual(replies[1][1], m.ExceptionReportResponse(result=0, dev_id=DEV))
        self.assertIsInstance(replies[2][1], m.FtpPictureNoticeResponse)
        [exception] = await self.store.list_exceptions(DEV)
        self.assertEqual((exception.exception_type, exception.description), (12, "UPnP failed"))
        [picture] = await self.store.list_pictures(DEV)
        self.assertEqual(picture.shot_time, "20261125120000")

    async def test_other_devid_refused(self) -> None:
        device = await self.online()
        device.send(m.ExceptionReportRequest(dev_id="81100000002", channel_no=1, exception_type=1))
        reply = (await device.answer(2))[1][1]
        self.assertEqual(reply.result, 255)
        self.assertEqual(await self.store.list_exceptions("81100000002"), [])

    async def test_bad_digest_dropped_session_continues(self) -> None:
        device = await self.online()
        raw = bytearray(encode_frame(Frame(cmd=0x33, seq=50, data=m.HeartbeatRequest(dev_id=DEV).to_xml())))
        raw[-1] ^= 0xFF
        device.session.dataReceived(bytes(raw))
        device.send(m.HeartbeatRequest(dev_id=DEV), seq=51)
        replies = await device.answer(2)
        self.assertEqual([f.seq for f, _ in replies[1:]], [51])
        self.assertEqual(device.session.stats.bad_digests, 1)
        self.assertFalse(device.closed)

    async def test_garbage_stream_closed(self) -> None:
        device = await self.online()
        device.session.dataReceived(b"\x00" * 70000)
        self.assertTrue(device.closed)

    async def test_malformed_xml_counted(self) -> None:
        device = await self.online()
        device.session.dataReceived(encode_frame(Frame(cmd=0x33, seq=9, data=b"<HEARTBEAT_REQ><DevID>")))
        self.assertEqual(device.session.stats.malformed, 1)
        self.assertFalse(device.closed)


class TokenTests(GatewayTestCase):
    async def issue(self, token: str, **kwargs: Any) -> None:
        values = {"dev_id": DEV, "channel_no": 1, "expires_at": self.clock.seconds() + 60, "stream_type": 1,
                  "account": "13300000000"}
        values.update(kwargs)
        await self.store.add_token(HashToken(token=token, **values))

    async def test_single_use(self) -> None:
        await self.issue("t1")
        device = await self.online()
        device.send(m.TokenVerifyRequest(dev_id=DEV, channel_no=1, stream_type=1, hash_token="t1"))
        device.send(m.TokenVerifyRequest(dev_id=DEV, channel_no=1, stream_type=1, hash_token="t1"))
        replies = await device.answer(3)
        self.assertEqual([r.result for _, r in replies[1:]], [0, 1])

    async def test_expired(self) -> None:
        await self.issue("t2")
        device = await self.online()
        self.clock.advance(61)
        device.send(m.TokenVerifyRequest(dev_id=DEV, channel_no=1, stream_type=1, hash_token="t2"))
        self.assertEqual((await device.answer(2))[1][1].result, 1)

    async def test_wrong_stream(self) -> None:
        await self.issue("t3")
        device = await self.online()
        device.send(m.TokenVerifyRequest(dev_id=DEV, channel_no=1, stream_type=2, hash_token="t3"))
        self.assertEqual((await device.answer(2))[1][1].result, 1)

    async def test_playback(self) -> None:
        name = f"{DEV}_1_20261125120000.ts"
        await self.issue("p1", stream_type=0, file_name=name)
        device = await self.online()
        device.send(m.PlaybackVerifyRequest(dev_id=DEV, channel_no=1, file_name=name, hash_token="p1"))
        device.send(m.PlaybackVerifyRequest(dev_id=DEV, channel_no=1, file_name=name, hash_token="p1"))
        replies = await device.answer(3)
        self.assertEqual([(r.ROOT, r.result) for _, r in replies[1:]], [("RECORD_PLAY_RES", 0), ("RECORD_PLAY_RES", 1)])


class CommandTests(GatewayTestCase):
    async def command(self, device: Device_, request: m.Message, timeout: float = 10) -> tuple[Deferred[Any], Frame]:
        before = len(device.read())
        d = Deferred.fromCoroutine(self.gateway.command(DEV, request, timeout))
        frame, message = device.read()[before]
        self.assertEqual(message, request)
        return d, frame

    async def test_round_trip(self) -> None:
        device = await self.online()
        d, frame = await self.command(device, m.PtzRequest(dev_id=DEV, channel_no=1, ptz_direction=3))
        self.assertEqual(frame.cmd, 0x64)
        device.send(m.PtzResponse(result=0, dev_id=DEV), seq=frame.seq)
        self.assertEqual(await d, m.PtzResponse(result=0, dev_id=DEV))

    async def test_offline(self) -> None:
        with self.assertRaises(DeviceOffline):
            await self.gateway.command(DEV, m.RebootRequest(dev_id=DEV))

    async def test_timeout(self) -> None:
        device = await self.online()
        d, frame = await self.command(device, m.RebootRequest(dev_id=DEV), timeout=5)
        self.clock.advance(5)
        with self.assertRaises(CommandTimeout):
            await d
        # A late answer is matched to nothing.
        device.send(m.RebootResponse(result=0, dev_id=DEV), seq=frame.seq)
        self.assertEqual(device.session.stats.unmatched, 1)

    async def test_session_drop(self) -> None:
        device = await self.online()
        d, _ = await self.command(device, m.RebootRequest(dev_id=DEV))
        device.session.connectionLost(None)
        with self.assertRaises(SessionLost):
            await d

    async def test_never_matched_to_wrong_request(self) -> None:
        """Answers with the wrong SEQ or the wrong command settle nothing."""
        device = await self.online()
        ptz, ptz_frame = await self.command(device, m.PtzRequest(dev_id=DEV, channel_no=1, ptz_direction=1))
        reboot, reboot_frame = await self.command(device, m.RebootRequest(dev_id=DEV))
        device.send(m.RebootResponse(result=0, dev_id=DEV), seq=ptz_frame.seq)  # right seq, wrong command
        device.send(m.PtzResponse(result=0, dev_id=DEV), seq=65000)  # unknown seq
        self.assertFalse(ptz.called)
        self.assertFalse(reboot.called)
        device.send(m.RebootResponse(result=0, dev_id=DEV), seq=reboot_frame.seq)
        device.send(m.PtzResponse(result=7, dev_id=DEV), seq=ptz_frame.seq)
        self.assertEqual((await ptz).result, 7)
        self.assertIsInstance(await reboot, m.RebootResponse)

    async def test_malformed_answer_fails_request(self) -> None:
        device = await self.online()
        d, frame = await self.command(device, m.RebootRequest(dev_id=DEV))
        device.session.dataReceived(encode_frame(Frame(cmd=frame.cmd, seq=frame.seq, data=b"<broken")))
        with self.assertRaises(MalformedResponse):
            await d

    async def test_seq_wraps(self) -> None:
        """§7.4.4: after 65535 the platform's counter goes back to 0, skipping SEQs still pending."""
        device = await self.online()
        device.session._seq = 65534
        first, f1 = await self.command(device, m.RebootRequest(dev_id=DEV))
        second, f2 = await self.command(device, m.RebootRequest(dev_id=DEV))
        self.assertEqual((f1.seq, f2.seq), (65535, 0))
        device.session._seq = 65534
        third, f3 = await self.command(device, m.RebootRequest(dev_id=DEV))
        self.assertEqual(f3.seq, 1, "65535 and 0 are still waiting for answers")
        for frame in (f1, f2, f3):
            device.send(m.RebootResponse(result=0, dev_id=DEV), seq=frame.seq)
        for d in (first, second, third):
            self.assertEqual((await d).result, 0)
