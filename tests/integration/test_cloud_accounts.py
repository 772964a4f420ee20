"""A camera's own cloud account (issue 12): REGISTER_RES's FTP account, LOGIN_RES's EURL/EAccount/EPassword, 65H.

A simulated camera registers over HTTP and logs in over TCP to a platform on loopback whose gateway
and registrar ask the cloud service for the device's own key; a rotation sends 65H at once and the
camera (its 66H answer) holds the new key, while the old one no longer signs anything.
"""

from __future__ import annotations

import random
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from globaleye.app.access import CameraAccess
from globaleye.app.cloud import CloudService, CloudSettings
from globaleye.device.protocol import messages as m
from globaleye.device.registration import Registrar, RegistrationSettings
from globaleye.s3.memory import MemoryBackend
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.state import CameraState
from globaleye.store import Device
from globaleye.store.sqlite import SQLiteStore
from globaleye.testing import platform_config, start_platform
from tests.util import until

DEV = "81100000001"
STORAGE_URL = "http://127.0.0.1:9000"


class CloudAccountTests(TestCase):
    timeout = 60

    async def test_login_gives_the_own_key_and_rotation_sends_65h(self) -> None:
        platform = start_platform(self, platform_config(
            "gateway, http", database=f"sqlite:///{self.mktemp()}.sqlite3",
            gateway={"port": 0, "command_timeout": 3, "cloud_url": "http://global.example/cloud",
                     "cloud_account": "global", "cloud_password": "global-pw"}), reactor)
        cloud = CloudService(platform.store, MemoryBackend(reactor.seconds), reactor, CloudSettings(url=STORAGE_URL),
                             CameraAccess(platform.store, platform.gateway), platform.gateway)
        platform.gateway.cloud = cloud  # what the composition root does when a storage role is configured

        base = f"http://127.0.0.1:{platform.port_of('http')}"
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        camera = SimulatedCamera(
            CameraState.for_device(DEV, device_key("test", DEV), rtsp_local_port=8554), reactor,
            register_url=base + "/register", timing=Timing(backoff_initial=0.05, backoff_max=0.2),
            rng=random.Random(1), http=http)
        camera.start()
        self.addCleanup(camera.stop)
        await camera.went_online
        await until(lambda: platform.gateway.is_online(DEV))

        # The login asked the cloud service: the device's own key exists, and LOGIN_RES carried it (the
        # simulated camera keeps the login's account, §7.5.1, and shows it in its 66H answer).
        first = await platform.store.device_cloud_credential(DEV)
        assert first is not None
        principal = await cloud.principal(first.access_key)
        assert principal is not None
        self.assertEqual(principal.dev_id, DEV)
        held = await platform.gateway.command(DEV, m.GetCloudAccountRequest(dev_id=DEV))
        self.assertEqual((held.url, held.account, held.password), (STORAGE_URL, first.access_key, first.secret))

        new, sent = await cloud.rotate(DEV)
        self.assertTrue(sent)
        held = await platform.gateway.command(DEV, m.GetCloudAccountRequest(dev_id=DEV))
        self.assertEqual((held.url, held.account, held.password), (STORAGE_URL, new.access_key, new.secret))
        self.assertIsNone(await cloud.principal(first.access_key), "the old key is revoked")

    async def test_register_gives_the_own_ftp_account(self) -> None:
        from twisted.internet.task import Clock

        clock = Clock()
        store = SQLiteStore(":memory:")
        self.addCleanup(store.close)
        await store.import_devices([Device(dev_id=DEV, dev_key="k"), Device(dev_id="81100000002", dev_key="k")])
        cloud = CloudService(store, MemoryBackend(clock.seconds), clock, CloudSettings(url=STORAGE_URL),
                             CameraAccess(store, _NoGateway()))
        settings = RegistrationSettings(gateway_host="127.0.0.1", gateway_port=1, ftp_host="127.0.0.1", ftp_port=2121,
                                        ftp_account="shared", ftp_password="shared-pw", enrollment="closed")
        registrar = Registrar(store, clock, settings, ftp=cloud)
        answer = await registrar.register(m.RegisterRequest(dev_id=DEV, dev_key="k"), "127.0.0.1:1")
        credential = await cloud.credential_for(DEV)
        self.assertEqual((answer.result, answer.ftp_ip, answer.ftp_port, answer.ftp_account, answer.ftp_password),
                         (0, "127.0.0.1", 2121, credential.access_key, credential.secret))

        class Broken:
            async def ftp_account(self, dev_id: str) -> tuple[str, str] | None:
                raise RuntimeError("store down")

        registrar.ftp = Broken()
        answer = await registrar.register(m.RegisterRequest(dev_id="81100000002", dev_key="k"), "127.0.0.1:1")
        self.assertEqual((answer.result, answer.ftp_account, answer.ftp_password), (0, "shared", "shared-pw"))
        self.flushLoggedErrors(RuntimeError)


class _NoGateway:
    def is_online(self, dev_id: str) -> bool:
        return False

    def live_addresses(self, dev_id: str) -> Any:
        return None

    def live_version(self, dev_id: str) -> str | None:
        return None

    async def command(self, dev_id: str, request: m.Message, timeout: float | None = None) -> Any:
        raise AssertionError("no command expected")



