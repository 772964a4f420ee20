"""End to end on real loopback: the plugin's service tree and simulated cameras.

A camera is redirected by the group, registers with the province, logs in to the
gateway, reports abilities and heartbeats; the platform then sends it commands.
Failover to the backup gateway and replacement of a session are exercised with
real sockets too.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from globaleye.device.messaging import CommandTimeout
from globaleye.device.protocol import messages as m
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.testing import start_platform
from tests.util import end_to_end_config, http_client, until


class EndToEndTests(TestCase):
    timeout = 60

    def start_platform(self, gateway_extra: str = "", roles: str = "gateway, http, group") -> PlatformService:
        # start_platform reads the file the way twistd's --config does
        return start_platform(self, end_to_end_config(self.mktemp() + ".sqlite3", gateway_extra, roles), reactor)

    def camera(self, platform: PlatformService, dev_id: str, via_redirect: bool = True,
               timing: Timing | None = None, relay_factory: Factory | None = None) -> SimulatedCamera:
        base = f"http://127.0.0.1:{platform.port_of('http')}"
        http = http_client()
        camera = SimulatedCamera(
            CameraState.for_device(dev_id, device_key("test", dev_id)), reactor,
            redirect_url=base + "/redirect" if via_redirect else "",
            register_url="" if via_redirect else base + "/register",
            timing=timing or Timing(backoff_initial=0.05, backoff_max=0.2), rng=random.Random(1), http=http,
            relay_factory=relay_factory)
        camera.start()
        self.addCleanup(camera.stop)
        return camera

    async def test_camera_online_and_commands(self) -> None:
        platform = self.start_platform()
        camera = self.camera(platform, "81100000001")
        await camera.went_online
        gateway = platform.gateway
        await until(lambda: gateway.is_online("81100000001"))
        device = await platform.store.get_device("81100000001")
        self.assertEqual((device.source, device.manufacturer_no), ("open", "811"))
        ability = None
        while ability is None:
            await deferLater(reactor, 0.02, lambda: None)
            ability = await platform.store.get_ability("81100000001")
        self.assertEqual(ability.channel_num, camera.state.channel_num)

        ptz = await gateway.command("81100000001", m.PtzRequest(dev_id="81100000001", channel_no=0, ptz_direction=3))
        self.assertEqual((type(ptz), ptz.result, ptz.dev_id), (m.PtzResponse, 0, "81100000001"))
        params = await gateway.command("81100000001", m.GetVideoParamsRequest(dev_id="81100000001", channel_no=0,
                                                                               stream_type=1))
        self.assertIsInstance(params, m.GetVideoParamsResponse)
        self.assertEqual(params.result, 0)
        reboot = await gateway.command("81100000001", m.RebootRequest(dev_id="81100000001"))
        self.assertEqual(reboot.result, 0)
        self.assertEqual(camera.commands_answered, 3)

        # Many commands in flight at once, each answered by its own response.
        requests = [m.PtzRequest(dev_id="81100000001", channel_no=0, ptz_direction=d % 5) for d in range(200)]
        answers = await Deferred.fromCoroutine(_gather([gateway.command("81100000001", r) for r in requests]))
        self.assertEqual(len(answers), 200)
        self.assertTrue(all(isinstance(a, m.PtzResponse) for a in answers))

    async def test_wifi_outcome_reported_later(self) -> None:
        """63H is answered at once; the camera reports the outcome through 34H, which is stored."""
        platform = self.start_platform()
        camera = self.camera(platform, "81100000005")
        await camera.went_online
        await until(lambda: platform.gateway.is_online("81100000005"))
        answer = await platform.gateway.command("81100000005", m.SetWifiRequest(
            dev_id="81100000005", ssid="Store-Guest", security=0, password=""))
        self.assertEqual(answer.result, 0)
        reports: list[Any] = []

        async def poll() -> None:
            reports[:] = await platform.store.list_exceptions("81100000005")

        while not reports:
            await deferLater(reactor, 0.02, lambda: None)
            await poll()
        self.assertIn("Store-Guest", reports[0].description)

    async def test_turn_relay_reaches_camera(self) -> None:
        """§14 end to end: the camera allocates an RFC 6062 relay with its DevID/DevKey and the
        wildcard permission, reports the relayed address in its heartbeat, and a plain TCP client
        reaches the camera through it."""
        platform = self.start_platform(roles="gateway, http, group, turn")
        camera = self.camera(platform, "81100000006", relay_factory=Factory.forProtocol(Echo))
        await camera.went_online
        addresses: list[Any] = [None]

        async def reported() -> bool:
            addresses[0] = await platform.store.get_addresses("81100000006")
            return addresses[0] is not None and addresses[0].rtsp_turn_relay_port != 0

        while not await reported():
            await deferLater(reactor, 0.05, lambda: None)
        relay = (addresses[0].turn_relay_ip, addresses[0].rtsp_turn_relay_port)
        self.assertEqual(relay, camera.turn.relayed_address if camera.turn else None)
        client = Collector()
        await connectProtocol(TCP4ClientEndpoint(reactor, *relay), client)
        payload = bytes(range(256)) * 400
        client.transport.write(payload)
        await until(lambda: len(client.data) >= len(payload))
        self.assertEqual(bytes(client.data), payload)
        client.transport.loseConnection()

    async def test_many_cameras(self) -> None:
        platform = self.start_platform()
        cameras = [self.camera(platform, f"8120000{i:04d}", via_redirect=False) for i in range(50)]
        await until(lambda: all(c.online for c in cameras))
        await until(lambda: len(platform.gateway.sessions) == 50)

    async def test_unanswered_command_times_out(self) -> None:
        platform = self.start_platform()
        camera = self.camera(platform, "81100000002")
        await camera.went_online
        await until(lambda: platform.gateway.is_online("81100000002"))
        session = camera.session
        assert session is not None
        session.request_received = lambda frame, message: None  # type: ignore[method-assign]
        with self.assertRaises(CommandTimeout):
            await platform.gateway.command("81100000002", m.RebootRequest(dev_id="81100000002"), timeout=0.3)

    async def test_backup_gateway(self) -> None:
        """The primary gateway refuses connections: the camera logs in through the backup (§7.2)."""
        dead = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        dead_port = dead.getHost().port
        await dead.stopListening()  # now nothing listens there: connections are refused
        platform = self.start_platform()
        # Point the primary at the dead port and the backup at the real gateway.
        platform.registrar.settings = attrs.evolve(
            platform.registrar.settings, gateway_port=dead_port, backup_gateway_host="127.0.0.1",
            backup_gateway_port=platform.port_of("gateway"))
        camera = self.camera(platform, "81100000003", via_redirect=False)
        await camera.went_online
        self.assertTrue(platform.gateway.is_online("81100000003"))
        self.assertIn(str(dead_port), camera.last_error)

    async def test_reconnect_after_gateway_drops_session(self) -> None:
        platform = self.start_platform()
        camera = self.camera(platform, "81100000004", via_redirect=False)
        await camera.went_online
        await until(lambda: platform.gateway.is_online("81100000004"))
        first = platform.gateway.sessions["81100000004"]
        first.close("test drops the session")
        await until(lambda: camera.logins == 2 and platform.gateway.is_online("81100000004"))
        self.assertIsNot(platform.gateway.sessions["81100000004"], first)


class Echo(Protocol):
    """Stands in for the camera's RTSP server behind the relay: echoes what it receives."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class Collector(Protocol):
    def __init__(self) -> None:
        self.data = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.data += data


async def _gather(coroutines: list[Any]) -> list[Any]:
    from twisted.internet.defer import gatherResults

    return await gatherResults([Deferred.fromCoroutine(c) for c in coroutines])
