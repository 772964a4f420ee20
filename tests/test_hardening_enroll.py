"""Hardening (issue 9 items 2 and 16, issue 14 item 14): enrollment policy, relay quotas, re-registration
after the platform was away.  Real sockets on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from globaleye.config import parse_config
from globaleye.sim.camera import Timing
from globaleye.sim.fleet import Fleet
from globaleye.store.sqlite import SQLiteStore
from globaleye.tap import PlatformService
from tests.util import http_client, until

DEV = "81100000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestartTests(TestCase):
    """§7.2's 5-minute rule must not make the platform's own restart cost every camera 5 minutes."""

    def platform(self, database: Path, http_port: int, gateway_port: int) -> PlatformService:
        config = parse_config(f"""
[globaleye]
roles = gateway, http
public_host = 127.0.0.1
[http]
port = {http_port}
[gateway]
port = {gateway_port}
turn_port = 3478
[enrollment]
mode = open
""")
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

    async def test_i9_16_live_session_still_too_soon(self) -> None:
        """The waiver is for lost sessions only: a camera online now that registers again is refused."""
        from globaleye.protocol import messages as m

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
