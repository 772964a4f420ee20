"""Hardening (issue 9 items 2 and 16, issue 14 item 14): enrollment policy, relay quotas, re-registration
after the platform was away.  Real sockets on loopback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from globaleye.platform.config import parse_config
from globaleye.platform.tap import PlatformService
from globaleye.sim.camera import Timing
from globaleye.sim.fleet import Fleet
from globaleye.store.sqlite import SQLiteStore
from globaleye.testing import platform_config
from tests.util import ROOT, http_client, until

DEV = "81100000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestartTests(TestCase):
    """§7.2's 5-minute rule must not make the platform's own restart cost every camera 5 minutes."""

    def platform(self, database: Path, http_port: int, gateway_port: int) -> PlatformService:
        config = parse_config(platform_config("gateway, http", database=None, cms_password=None,
                                              http={"port": http_port},
                                              gateway={"port": gateway_port, "turn_port": 3478}))
        platform = PlatformService(config, SQLiteStore(str(database)), reactor)
        platform.startService()
        return platform

    async def test_i9_16_reregistration_after_restart_accepted(self) -> None:
        """A camera registered and logged in; the platform restarts over the same SQLite file; the
        camera (one that re-registers as soon as both gateways failed) is accepted well within the
        300 s interval and logs in again."""
        database = Path(self.mktemp()) / "globaleye.sqlite3"
        http_port, gateway_port = free_port(), free_port()
        first = self.platform(database, http_port, gateway_port)
        stopped = False

        async def stop_first() -> None:
            if not stopped:
                await first.stopService()

        self.addCleanup(stop_first)
        fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{http_port}/register", relay=False,
                      timing=Timing(register_interval=0, backoff_initial=0.05, backoff_max=0.2),
                      http=http_client())
        self.addCleanup(fleet.stop)
        camera = fleet.add(DEV)
        fleet.start()
        await camera.went_online
        device = await first.store.get_device(DEV)
        assert device is not None and device.registered_at is not None and device.login_at is not None

        await first.stopService()  # the platform goes away: the camera's session is lost
        stopped = True
        await until(lambda: camera.registration is None and not camera.online)  # both gateways failed
        second = self.platform(database, http_port, gateway_port)
        self.addCleanup(second.stopService)
        await until(lambda: second.gateway.is_online(DEV), timeout=10)
        after = await second.store.get_device(DEV)
        assert after is not None and after.registered_at is not None
        self.assertLess(after.registered_at - device.registered_at, 300)
        self.assertGreater(after.registered_at, device.registered_at)  # it did register again, and was taken

    async def test_i14_14_unanswered_registration_answered_again(self) -> None:
        """In a storm a camera may never get the answer to its registration (its HTTP request timed
        out); its next registration, seconds later and with no gateway session, gets the same answer."""
        from globaleye.store import Device

        database = Path(self.mktemp()) / "globaleye.sqlite3"
        platform = self.platform(database, 0, 0)
        self.addCleanup(platform.stopService)
        await platform.store.import_devices([Device(dev_id=DEV, dev_key="label-key")])
        base = f"http://127.0.0.1:{platform.port_of('http')}"
        self.assertEqual(await register(base, DEV, "label-key"), 0)
        self.assertEqual(await register(base, DEV, "label-key"), 0)
        self.assertEqual(await register(base, DEV, "wrong-key"), 2)

    async def test_i9_16_live_session_still_too_soon(self) -> None:
        """The waiver is for lost sessions only: a camera online now that registers again is refused."""
        from globaleye.device.protocol import messages as m

        database = Path(self.mktemp()) / "globaleye.sqlite3"
        platform = self.platform(database, 0, 0)
        self.addCleanup(platform.stopService)
        fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{platform.port_of('http')}/register",
                      relay=False, timing=Timing(backoff_initial=0.05), http=http_client())
        self.addCleanup(fleet.stop)
        camera = fleet.add(DEV)
        fleet.start()
        await camera.went_online
        request = m.RegisterRequest(manufacturer_no="811", mode="IPC", dev_type=1, dev_id=DEV,
                                    dev_key=camera.state.dev_key)
        response = await http_client().post(f"http://127.0.0.1:{platform.port_of('http')}/register",
                                            data=request.to_xml())
        self.assertEqual(m.RegisterResponse.from_xml(await response.content()).result, 255)


# --------------------------------------------------------------------------- issue 9 item 2


async def register(base: str, dev_id: str, key: str) -> int:
    from globaleye.device.protocol import messages as m

    request = m.RegisterRequest(manufacturer_no=dev_id[:3], mode="IPC", dev_type=1, dev_id=dev_id, dev_key=key)
    response = await http_client().post(base + "/register", data=request.to_xml())
    return m.RegisterResponse.from_xml(await response.content()).result


class Allocations:
    """Raw TURN Allocates over TCP (one control connection each), kept until the test ends."""

    def __init__(self, test: TestCase, port: int) -> None:
        self.port = port
        self.held: list[Any] = []
        test.addCleanup(self.close)

    async def allocate(self, username: str, password: str) -> int:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        from txturn import stun
        from txturn.turnclient import TurnError, _Auth, _StunStream

        stream = _StunStream(reactor, _Auth(username, password), timeout=5)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), stream)
        self.held.append(stream)
        try:
            await stream.request(stun.Method.ALLOCATE, {stun.Attr.REQUESTED_TRANSPORT: 6})
        except TurnError as e:
            return e.code
        return 200

    def close(self) -> None:
        for stream in self.held:
            if stream.transport is not None:
                stream.transport.loseConnection()


class EnrollmentTests(TestCase):
    def start(self, config: Any) -> PlatformService:
        platform = PlatformService(config, SQLiteStore(":memory:"), reactor)
        platform.startService()
        self.addCleanup(platform.stopService)
        return platform

    async def test_i9_02_shipped_configuration_is_closed(self) -> None:
        """The shipped file and the schema's default refuse a stranger's DevID: no enrolment, no relay."""
        from globaleye.platform.config import load_config

        self.assertEqual(parse_config("")["enrollment"]["mode"], "closed")
        shipped = load_config(ROOT / "etc" / "globaleye.ini")
        self.assertEqual(shipped["enrollment"]["mode"], "closed")
        platform = self.start(shipped.replace(
            globaleye={"roles": ("gateway", "http", "turn")}, database={"url": "sqlite:///:memory:"},
            http={"port": 0}, gateway={"port": 0}, turn={"port": 0, "relay_ports": (54000, 54099)}))
        base = f"http://127.0.0.1:{platform.port_of('http')}"
        self.assertEqual(await register(base, "81100000777", "strangers-key"), 1)
        self.assertIsNone(await platform.store.get_device("81100000777"))
        assert platform.turn is not None
        relays = Allocations(self, platform.turn.addresses["tcp"][1])
        self.assertEqual(await relays.allocate("81100000777", "strangers-key"), 401)
        # An imported device registers and gets its relay as before.
        from globaleye.store import Device

        await platform.store.import_devices([Device(dev_id="81100000001", dev_key="label-key")])
        self.assertEqual(await register(base, "81100000001", "label-key"), 0)
        self.assertEqual(await relays.allocate("81100000001", "label-key"), 200)

    async def test_i9_02_simulated_cameras_importable(self) -> None:
        """Closed enrollment and the simulator: `globaleye-sim --devices-csv` rows import, and the
        imported simulated camera registers and logs in."""
        import argparse

        from globaleye.cli import parse_devices
        from globaleye.sim.__main__ import devices_csv

        config = parse_config(platform_config("gateway, http", public_host=None, enrollment_mode=None,
                                              cms_password=None))
        platform = self.start(config)
        rows = devices_csv(argparse.Namespace(count=2, first_id=DEV, seed="globaleye-sim"))
        await platform.store.import_devices(parse_devices(rows, config["enrollment"]["vendors"], 0.0))
        fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{platform.port_of('http')}/register",
                      relay=False, timing=Timing(backoff_initial=0.05), http=http_client())
        self.addCleanup(fleet.stop)
        camera = fleet.add(DEV)
        fleet.start()
        await camera.went_online
        self.assertTrue(platform.gateway.is_online(DEV))

    async def test_i9_02_demo_runs_open(self) -> None:
        """Only the demo enrols on first contact: `globaleye demo` turns open enrollment on itself."""
        import argparse
        import io

        from globaleye import cli

        seen: list[Any] = []

        async def fake_demo(config: Any, cameras: int, out: Any) -> None:
            seen.append(config)

        self.patch(cli, "demo", fake_demo)
        await cli.run(parse_config(""), argparse.Namespace(area="demo", cameras=1), io.StringIO())
        self.assertEqual(seen[0]["enrollment"]["mode"], "open")

    async def test_i9_02_open_enrollment_rate_limited(self) -> None:
        """Open mode: new devices per source (IPv6 by /64) and in all per window; known devices unaffected,
        attempts that enrol nothing not counted."""
        from twisted.internet.task import Clock

        from globaleye.device.protocol import messages as m
        from globaleye.device.registration import Registrar, RegistrationSettings
        from globaleye.store import Device

        clock = Clock()
        clock.advance(1_000_000)
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        await store.import_devices([Device(dev_id="81100000999", dev_key="imported")])
        registrar = Registrar(store, clock, RegistrationSettings(
            gateway_host="127.0.0.1", gateway_port=1, enrollment="open", peer_limit=3, total_limit=7,
            limit_window=60))

        async def enrol(number: int, peer: str, key: str = "k") -> int:
            request = m.RegisterRequest(dev_id=f"{81100000000 + number:011d}", dev_key=key)
            return (await registrar.register(request, peer)).result

        self.assertEqual([await enrol(n, f"127.0.0.9:{n}") for n in range(1, 5)], [0, 0, 0, 255])
        self.assertIsNone(await store.get_device("81100000004"))
        self.assertEqual(await enrol(1, "127.0.0.9:9", key="wrong"), 2)  # enrols nothing: not counted
        # The known device registers from the limited address all the same.
        self.assertEqual((await registrar.register(m.RegisterRequest(dev_id="81100000999", dev_key="imported"),
                                                   "127.0.0.9:10")).result, 0)
        # One IPv6 /64 is one source (peers as the HTTP site writes them: host:port).
        self.assertEqual([await enrol(n, f"2001:db8:0:1::{n}:5000") for n in range(10, 14)], [0, 0, 0, 255])
        # Another /64 is another source, until the total of 7 in the window is reached.
        self.assertEqual([await enrol(n, f"2001:db8:0:2::{n}:5000") for n in range(20, 22)], [0, 255])
        self.assertEqual(len(await store.list_devices()), 1 + 3 + 3 + 1)
        clock.advance(61)
        self.assertEqual(await enrol(21, "127.0.0.9:11"), 0)  # a new window

    async def test_i9_02_new_devices_cannot_drain_relays(self) -> None:
        """Strangers enrolling DevIDs in open mode share a small pool of relays, each device at most
        device_quota; a vouched (imported) or logged-in device still gets its relay."""
        from globaleye.store import Device

        platform = self.start(parse_config(platform_config(
            "gateway, http, turn", public_host=None, cms_password=None, turn_peers=None,
            turn={"relay_ports": "54100-54199", "total_quota": 8, "new_device_quota": 3, "device_quota": 2})))
        base = f"http://127.0.0.1:{platform.port_of('http')}"
        assert platform.turn is not None
        relays = Allocations(self, platform.turn.addresses["tcp"][1])
        strangers = [f"{81100000500 + n:011d}" for n in range(4)]
        for dev_id in strangers:
            self.assertEqual(await register(base, dev_id, "mine"), 0)
        # One stranger: two relays, then its own cap (486).
        self.assertEqual([await relays.allocate(strangers[0], "mine") for _ in range(3)], [200, 200, 486])
        # The others share what is left of the new devices' pool of 3: one, then 508.
        self.assertEqual([await relays.allocate(dev_id, "mine") for dev_id in strangers[1:]], [200, 508, 508])
        # A device the operator imported is outside that pool.
        await platform.store.import_devices([Device(dev_id="81100000001", dev_key="label-key")])
        self.assertEqual(await relays.allocate("81100000001", "label-key"), 200)
        # So is a self-enrolled device once it has completed a gateway login.
        from globaleye.store import DeviceAddresses

        await platform.store.record_login(strangers[3], reactor.seconds(), "V1", DeviceAddresses())
        self.assertEqual(await relays.allocate(strangers[3], "mine"), 200)

    def test_i9_02_txturn_class_quotas(self) -> None:
        """txturn's generic hook: a credential's own quota and class; a class's pool inside the total."""
        from txturn.policy import Quotas

        quotas = Quotas(user_quota=10, total_quota=3, class_quotas={"new": 1})
        self.assertIsNone(quotas.refusal("a", quota=1, quota_class="new"))
        quotas.acquire("a", "new")
        self.assertEqual(quotas.refusal("a", quota=1, quota_class="new"), (486, "Allocation Quota Reached"))
        self.assertEqual(quotas.refusal("b", quota_class="new")[0], 508)  # the class's pool is full
        self.assertIsNone(quotas.refusal("c"))  # the rest of the total is not
        quotas.release("a", "new")
        self.assertIsNone(quotas.refusal("b", quota_class="new"))
        self.assertEqual((quotas.total, quotas.per_class), (0, {}))
