"""The real gateway session against the real simulated camera, in memory (issue 10 item 6).

Both sides are :class:`~globaleye.device.messaging.MessageProtocol`: the gateway's DeviceSession and the
simulated camera's CameraSession, joined by ``twisted.test.iosim`` on one ``MemoryReactorClock``
(:func:`globaleye.testing.pump_camera_and_gateway`). No socket, no thread, no wall-clock wait.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from globaleye.device.gateway import GatewaySettings
from globaleye.device.protocol import messages as m
from globaleye.sim.camera import Timing
from globaleye.testing import CameraLink, InlineStore, known_device, pump_camera_and_gateway

DEV, KEY = "81100000001", "pumped-key"


def result_of(d: Deferred[Any]) -> Any:
    """The result of a Deferred that has fired (the pump ran everything synchronously)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


class PumpedSessionTests(TestCase):
    def setUp(self) -> Any:
        self.store = InlineStore()
        return Deferred.fromCoroutine(self.store.import_devices([known_device(DEV, KEY)]))

    def tearDown(self) -> Any:
        return Deferred.fromCoroutine(self.store.close())

    def link(self, **kwargs: Any) -> CameraLink:
        link = pump_camera_and_gateway(self.store, DEV, KEY, **kwargs)
        self.addCleanup(link.stop)
        return link

    def test_login_and_ability(self) -> None:
        """§7.3.3 login and §7.5.2 ability report, pumped: the gateway has the device online."""
        link = self.link()
        self.assertTrue(link.camera.online)
        self.assertEqual(link.camera.logins, 1)
        self.assertTrue(link.gateway.is_online(DEV))
        self.assertEqual(link.gateway.online_devices(), [DEV])
        addresses = link.gateway.live_addresses(DEV)
        assert addresses is not None
        self.assertEqual(addresses.public_ip, "192.0.2.7")
        self.assertIsNotNone(result_of(Deferred.fromCoroutine(self.store.get_device(DEV))).login_at)

    def test_heartbeats(self) -> None:
        """§7.3.4: the camera beats every heartbeat_interval; the gateway answers each and keeps it."""
        link = self.link(timing=Timing(heartbeat_interval=30, request_timeout=5))
        link.advance(30 * 20)  # 10 minutes: longer than the gateway's 360 s without a beat
        self.assertTrue(link.gateway.is_online(DEV))
        self.assertTrue(link.camera.online)
        self.assertEqual(link.camera.logins, 1)
        self.assertEqual(link.camera.last_error, "")

    def test_command_answered_by_the_camera(self) -> None:
        """Platform -> device (61H, then 64H): Gateway.command, answered by the simulator's state."""
        link = self.link()
        asked = Deferred.fromCoroutine(link.gateway.command(
            DEV, m.GetVideoParamsRequest(dev_id=DEV, channel_no=0, stream_type=1)))
        link.flush()
        params = result_of(asked)
        self.assertIsInstance(params, m.GetVideoParamsResponse)
        self.assertEqual(params.result, 0)
        state = link.camera.state
        video = state.video(0, 1)
        self.assertEqual((params.dev_id, params.frame_rate, params.bit_rate), (DEV, video.frame_rate, video.bit_rate))
        ptz = Deferred.fromCoroutine(link.gateway.command(DEV, m.PtzRequest(dev_id=DEV, channel_no=0,
                                                                          ptz_direction=3)))
        link.flush()
        self.assertEqual(result_of(ptz).result, 0)
        self.assertEqual(link.camera.commands_answered, 2)

    def test_heartbeat_timeout_when_nothing_is_delivered(self) -> None:
        """§7.3.4: when no byte arrives for heartbeat_timeout the gateway closes the session; the
        camera, its heartbeats unanswered, gives up and dials again."""
        link = self.link(settings=GatewaySettings(heartbeat_timeout=90),
                         timing=Timing(heartbeat_interval=30, request_timeout=5, heartbeat_misses=3,
                                       backoff_initial=1, backoff_max=1))
        self.assertTrue(link.gateway.is_online(DEV))
        link.clock.advance(89)  # the pump delivers nothing: beats pile up in the camera's buffer
        self.assertTrue(link.gateway.is_online(DEV))
        link.clock.advance(2)
        link.flush()  # the gateway's close is delivered now
        self.assertFalse(link.gateway.is_online(DEV))
        self.assertFalse(link.camera.online)
        link.clock.advance(5)  # the camera backs off, then dials again
        self.assertEqual(len(link.clock.tcpClients), 1)
        link.connect()
        self.assertTrue(link.gateway.is_online(DEV))
        self.assertEqual(link.camera.logins, 2)
