"""A simulated camera's FTP pictures end to end: the real platform, the ``ftp`` role, the camera.

The camera registers (REGISTER_RES gives it the FTP server and its account), logs in, receives a
75H picture policy with StoreType 0 through the gateway, takes its pictures on the reactor clock,
uploads each with Twisted's FTPClient (passive) to the FTP role, and sends 36H: the picture is in
the object store (bucket GlobalEyePicture, ``stored`` heard with the camera's principal) and the
platform has stored the notice for the same file name.  The policies' schedule itself is checked on
a driven clock.
"""

from __future__ import annotations

import datetime
import importlib.util
import random
import shutil
import tempfile

from twisted.internet import reactor, task
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.device.protocol import messages as m
from globaleye.ftp import FtpRole, FtpSettings, logged_in
from globaleye.s3.backend import PICTURE_BUCKET, Principal
from globaleye.s3.memory import MemoryBackend
from globaleye.sim.camera import SimulatedCamera, Timing, device_key
from globaleye.sim.ftpupload import FtpPictures
from globaleye.sim.state import CameraState, StoredPicturePolicy
from globaleye.testing import start_platform
from globaleye.util.clock import BEIJING
from tests.ftputil import DictCredentials, Events, free_range
from tests.util import closed_port, end_to_end_config, http_client, until

DEV = "81100000007"
ACCOUNT, PASSWORD = f"{DEV}_pictures", "the-camera's-ftp-secret"


class FtpCameraTests(TestCase):
    timeout = 60

    async def test_policy_upload_and_36h(self) -> None:
        if importlib.util.find_spec("av") is None:
            raise SkipTest("PyAV not installed (the simulator's JPEG)")
        staging = tempfile.mkdtemp(prefix="ge-ftp-sim-")
        self.addCleanup(shutil.rmtree, staging, True)
        backend = MemoryBackend(reactor.seconds)
        events = Events()
        ftp_port = closed_port()
        # The configured account is the fallback; REGISTER_RES carries the camera's own (its store keys).
        gateway_extra = "\n".join(["ftp_host = 127.0.0.1", f"ftp_port = {ftp_port}", "ftp_account = shared",
                                   "ftp_password = shared-secret"])
        platform = start_platform(self, end_to_end_config(self.mktemp() + ".sqlite3", gateway_extra), reactor)
        credentials = DictCredentials(Principal(ACCOUNT, PASSWORD, DEV))

        class OwnAccounts:
            async def ftp_account(self, dev_id: str) -> tuple[str, str] | None:
                principal = next((p for p in credentials.principals.values() if p.dev_id == dev_id), None)
                return (principal.access_key, principal.secret) if principal is not None else None

        platform.registrar.ftp = OwnAccounts()
        # Wired as the composition root will: the platform's KeyGuard, its connection limits (with
        # the role's login deadline), the role's service under the platform's.
        settings = FtpSettings(port=ftp_port, passive_ports=free_range(), staging_dir=staging)
        role = FtpRole(settings, credentials, backend, events, reactor,
                       guard=platform.keyguard)
        role.setServiceParent(platform)
        port = reactor.listenTCP(ftp_port, platform.limits.wrap("ftp", role.factory, deadline=settings.login_timeout,
                                                                established=logged_in), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        camera = SimulatedCamera(
            CameraState.for_device(DEV, device_key("test", DEV)), reactor,
            register_url=f"http://127.0.0.1:{platform.port_of('http')}/register",
            timing=Timing(backoff_initial=0.05, backoff_max=0.2), rng=random.Random(1), http=http_client())
        camera.start()
        self.addCleanup(camera.stop)
        pictures = FtpPictures(camera, check_interval=0.1)
        pictures.start()
        self.addCleanup(pictures.stop)
        await camera.went_online
        assert camera.registration is not None
        self.assertEqual((camera.registration.ftp_account, camera.registration.ftp_port), (ACCOUNT, ftp_port))

        # 75H through the gateway: a picture every 2 s all day, to FTP.
        added = await platform.gateway.command(DEV, m.AddPicturePolicyRequest(
            dev_id=DEV, channel_no=0, store_type=m.PictureStoreType.FTP,
            day_policy=(m.PicturePolicy(interval=2, start_time="00:00", end_time="24:00"),)))
        self.assertEqual(added.result, 0)
        await until(lambda: len(pictures.uploaded) >= 2, timeout=20)
        self.assertEqual(pictures.failures, 0, pictures.last_error)

        names = pictures.uploaded[:2]
        for name in names:
            self.assertRegex(name, rf"^{DEV}_0_\d{{14}}\.JPG$")
            data = await backend.read(PICTURE_BUCKET, name)
            self.assertTrue(data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9"))
        self.assertEqual([p.dev_id for p, info in events.stored_objects[:2]], [DEV, DEV])
        self.assertEqual([info.key for p, info in events.stored_objects[:2]], names)
        notices = await platform.store.list_pictures(DEV)
        noticed = {n.file_name for n in notices}
        self.assertTrue(set(names) <= noticed, (names, noticed))
        notice = next(n for n in notices if n.file_name == names[0])
        # The FTP logins were checked by the platform's KeyGuard (with the gateway's login).
        self.assertGreaterEqual(role.counters["logins"], 2)
        self.assertGreaterEqual(platform.keyguard.counters["succeeded"], 3)
        self.assertEqual(role.counters["refused"], 0)
        self.assertEqual((notice.channel_no, notice.shot_time), (0, names[0].split("_")[2][:14]))


class ScheduleTests(TestCase):
    """Which FTP policies are due, on a driven clock (no sockets)."""

    def test_due(self) -> None:
        clock = task.Clock()
        start = datetime.datetime(2026, 12, 2, 9, 59, 30, tzinfo=BEIJING).timestamp()
        clock.advance(start)
        state = CameraState.for_device(DEV, "k")
        state.picture_policies[0] = [
            StoredPicturePolicy(m.PictureStoreType.FTP, m.PicturePolicyEntry(1, 0, "10:00", "10:00")),
            StoredPicturePolicy(m.PictureStoreType.FTP, m.PicturePolicyEntry(2, 30, "11:00", "12:00")),
            StoredPicturePolicy(m.PictureStoreType.ESTORE, m.PicturePolicyEntry(3, 10, "00:00", "24:00")),
        ]
        camera = SimulatedCamera(state, clock)
        pictures = FtpPictures(camera)
        self.assertEqual(pictures.due(), [])  # 09:59: nothing (the cloud policy is not FTP's)
        clock.advance(30)
        self.assertEqual(pictures.due(), [(0, 1)])  # 10:00: the single snapshot
        pictures._last[1] = clock.seconds()
        clock.advance(30)
        self.assertEqual(pictures.due(), [])  # once in its minute
        clock.advance(3600)
        self.assertEqual(pictures.due(), [(0, 2)])  # 11:00:30, in the window
        pictures._last[2] = clock.seconds()
        clock.advance(29)
        self.assertEqual(pictures.due(), [])
        clock.advance(1)
        self.assertEqual(pictures.due(), [(0, 2)])  # Interval 30 s later
        clock.advance(3600)
        self.assertEqual(pictures.due(), [])  # 12:01: the window closed
