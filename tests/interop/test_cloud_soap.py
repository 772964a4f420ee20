"""Cloud storage's SOAP operations (§7.1.2 extensions) end to end: zeep against the real twisted.web site.

The platform runs from its configuration on loopback; its cloud service works over the in-memory
object backend (the storage role and the external S3 backend are other modules' tests) with a
presigner stand-in.  Objects are "uploaded" the way the S3 endpoint reports them (admit, then the
backend's write, then stored), and the user finds, gets a URL for and deletes them through zeep.
Another account sees nothing: the same answer (3) as for a camera that does not exist.
"""

from __future__ import annotations

from typing import Any

import attrs
import requests
import zeep
import zeep.exceptions
from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase

from globaleye.platform.tap import PlatformService
from globaleye.s3.backend import PICTURE_BUCKET, RECORD_BUCKET, Principal
from globaleye.s3.memory import MemoryBackend
from globaleye.store import Device
from globaleye.testing import start_platform
from globaleye.users.accounts import RecordingSmsSender
from tests.util import SOAP_PASSWORD, soap_config

#: [cloud] of the test platform: download URLs live 120 s.
CLOUD = "url_lifetime = 120"

DEV, KEY = "81100000001", "key-cloud-1"
OWNER, GUEST, STRANGER = "13300000001", "13300000002", "13300000003"


class Presigner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, str]] = []

    def presign_get(self, bucket: str, key: str, expires: float, filename: str) -> str:
        self.calls.append((bucket, key, expires, filename))
        return f"http://127.0.0.1:9/{bucket}/{key}?X-Amz-Expires={expires:g}"


class CloudSoapTests(TestCase):
    timeout = 60

    async def asyncSetUp(self) -> None:
        self.platform: PlatformService = start_platform(self, soap_config(self.mktemp() + ".sqlite3") + f"\n[cloud]\n{CLOUD}\n", reactor)
        self.sms = RecordingSmsSender()
        self.platform.accounts.sms_sender = self.sms
        store = self.platform.store
        self.backend = MemoryBackend(reactor.seconds)
        await self.backend.create_bucket(RECORD_BUCKET)
        await self.backend.create_bucket(PICTURE_BUCKET)
        self.presigner = Presigner()
        # What the composition root does once a store backend is configured.
        self.cloud = self.platform.attach_cloud(self.backend, self.presigner, "http://127.0.0.1:9000")
        await store.import_devices([Device(DEV, KEY), Device("81100000002", KEY)])
        self.client = await self.zeep()

    def setUp(self) -> Any:
        from twisted.internet.defer import Deferred
        return Deferred.fromCoroutine(self.asyncSetUp())

    async def zeep(self) -> zeep.Client:
        session = requests.Session()
        session.headers["Connection"] = "close"
        self.addCleanup(session.close)
        transport = zeep.Transport(session=session, timeout=20, operation_timeout=20)
        url = f"http://127.0.0.1:{self.platform.port_of('http')}/soap/mcu?wsdl"
        return await threads.deferToThread(zeep.Client, url, transport=transport)

    async def call(self, operation: str, **values: Any) -> Any:
        return await threads.deferToThread(getattr(self.client.service, operation), **values)

    async def sign_up(self, mobile: str) -> dict[str, str]:
        self.assertEqual(await self.call("GetSmsCode", MobileTel=mobile, Type=0), 0)
        self.assertEqual(await self.call("RegisterUser", MobileTel=mobile, Password=SOAP_PASSWORD,
                                         SmsKey=self.sms.last_code(mobile)), 0)
        login = await self.call("Login", Account=mobile, Password=SOAP_PASSWORD, Version="1.2")
        self.assertEqual(login.Result, 0)
        return {"Account": mobile, "LoginSession": str(login.LoginSession)}

    async def upload(self, name: str, size: int = 1000, bucket: str = RECORD_BUCKET) -> None:
        camera = Principal("AK", "secret", DEV)
        self.assertIsNone(await self.cloud.admit(camera, bucket, name, size))
        await self.cloud.stored(camera, await self.backend.put_bytes(bucket, name, b"x" * size))

    async def test_search_url_delete_and_another_account_sees_nothing(self) -> None:
        owner = await self.sign_up(OWNER)
        self.assertEqual(await self.call("AddDevice", **owner, DevID=DEV, DevKey=KEY), 0)
        guest = await self.sign_up(GUEST)
        self.assertEqual(await self.call("ShareDevice", **owner, DevID=DEV, ShareAccount=GUEST), 0)
        stranger = await self.sign_up(STRANGER)
        self.assertEqual(await self.call("AddDevice", **stranger, DevID="81100000002", DevKey=KEY), 0)
        for minute in range(0, 60, 5):  # 10:00 .. 10:55, five minutes each (§7.1.1)
            await self.upload(f"{DEV}_0_2026120110{minute:02d}00.ts")
        await self.upload(f"{DEV}_0_20261201100730.jpg", 50, PICTURE_BUCKET)

        # Search: 10:07-10:12 touches 10:05 (runs into it) and 10:10; pages of 5 over the hour.
        found = await self.call("SearchCloudFiles", **owner, DevID=DEV, ChannelNo=0, Type="record",
                                StartTime="20261201100700", EndTime="20261201101200")
        self.assertEqual((found.Result, found.TotalNum, found.PageNo), (0, 2, 1))
        self.assertEqual([(f.FileName, f.StartTime, f.Duration, f.FileSize, f.Type) for f in found.CloudFile],
                         [(f"{DEV}_0_20261201100500.ts", "20261201100500", 300, 1000, "record"),
                          (f"{DEV}_0_20261201101000.ts", "20261201101000", 300, 1000, "record")])
        page3 = await self.call("SearchCloudFiles", **guest, DevID=DEV, ChannelNo=0, Type="record",
                                StartTime="20261201100000", EndTime="20261201110000", PageNo=3, PageSize=5)
        self.assertEqual((page3.TotalNum, [f.FileName[-9:-3] for f in page3.CloudFile]), (12, ["105000", "105500"]))
        pictures = await self.call("SearchCloudFiles", **guest, DevID=DEV, ChannelNo=0, Type="picture",
                                   StartTime="20261201100000", EndTime="20261201110000")
        self.assertEqual([(f.FileName, f.Duration) for f in pictures.CloudFile], [(f"{DEV}_0_20261201100730.jpg", 0)])

        # Another account sees nothing: the same 3 as a camera that does not exist.
        for who, dev in ((stranger, DEV), (owner, "81100000002"), (owner, "81199999999")):
            answer = await self.call("SearchCloudFiles", **who, DevID=dev, ChannelNo=0, Type="record",
                                     StartTime="20261201100000", EndTime="20261201110000")
            self.assertEqual((answer.Result, answer.CloudFile), (3, []))
            url = await self.call("GetCloudFileUrl", **who, DevID=dev, FileName=f"{DEV}_0_20261201100000.ts")
            self.assertEqual((url.Result, url.Url), (3, None))
            gone = await self.call("DeleteCloudFiles", **who, DevID=dev, FileName=f"{DEV}_0_20261201100000.ts")
            self.assertEqual(gone.Result, 3)
        self.assertEqual(len(self.backend.buckets[RECORD_BUCKET]), 12)
        # No session: 2, whatever the camera.
        answer = await self.call("SearchCloudFiles", Account=OWNER, LoginSession="x" * 40, DevID=DEV, ChannelNo=0,
                                 Type="record", StartTime="20261201100000", EndTime="20261201110000")
        self.assertEqual(answer.Result, 2)
        # Malformed: a Client fault.
        with self.assertRaises(zeep.exceptions.Fault):
            await self.call("SearchCloudFiles", **owner, DevID=DEV, ChannelNo=0, Type="video",
                            StartTime="20261201100000", EndTime="20261201110000")

        # A short-lived URL for owner and guest; an unknown file is 5.
        url = await self.call("GetCloudFileUrl", **guest, DevID=DEV, FileName=f"{DEV}_0_20261201100000.ts")
        self.assertEqual((url.Result, url.Expires), (0, 120))
        self.assertEqual(url.Url, f"http://127.0.0.1:9/{RECORD_BUCKET}/{DEV}_0_20261201100000.ts?X-Amz-Expires=120")
        self.assertEqual(self.presigner.calls[-1], (RECORD_BUCKET, f"{DEV}_0_20261201100000.ts", 120.0,
                                                    f"{DEV}_0_20261201100000.ts"))
        missing = await self.call("GetCloudFileUrl", **owner, DevID=DEV, FileName=f"{DEV}_0_20261201120000.ts")
        self.assertEqual(missing.Result, 5)

        # Delete: the guest may not (3); the owner deletes one file, then a range.
        refused = await self.call("DeleteCloudFiles", **guest, DevID=DEV, FileName=f"{DEV}_0_20261201100000.ts")
        self.assertEqual(refused.Result, 3)
        one = await self.call("DeleteCloudFiles", **owner, DevID=DEV, FileName=f"{DEV}_0_20261201100000.ts")
        self.assertEqual((one.Result, one.DeletedNum), (0, 1))
        self.assertNotIn(f"{DEV}_0_20261201100000.ts", self.backend.buckets[RECORD_BUCKET])
        again = await self.call("DeleteCloudFiles", **owner, DevID=DEV, FileName=f"{DEV}_0_20261201100000.ts")
        self.assertEqual(again.Result, 5)
        ranged = await self.call("DeleteCloudFiles", **owner, DevID=DEV, ChannelNo=0, Type="record",
                                 StartTime="20261201101200", EndTime="20261201103100")
        self.assertEqual((ranged.Result, ranged.DeletedNum), (0, 5))
        left = await self.call("SearchCloudFiles", **owner, DevID=DEV, ChannelNo=0, Type="record",
                               StartTime="20261201100000", EndTime="20261201110000")
        self.assertEqual([f.FileName[-9:-3] for f in left.CloudFile],
                         ["100500", "103500", "104000", "104500", "105000", "105500"])
        self.assertEqual(sorted(k[-9:-3] for k in self.backend.buckets[RECORD_BUCKET]),
                         ["100500", "103500", "104000", "104500", "105000", "105500"])
        with self.assertRaises(zeep.exceptions.Fault):  # neither a file nor a whole range
            await self.call("DeleteCloudFiles", **owner, DevID=DEV, ChannelNo=0)

    async def test_without_cloud_storage_the_answer_is_5(self) -> None:
        self.platform.mcu_api.services = attrs.evolve(self.platform.client, cloud=None)  # no cloud storage here
        owner = await self.sign_up(OWNER)
        self.assertEqual(await self.call("AddDevice", **owner, DevID=DEV, DevKey=KEY), 0)
        answer = await self.call("SearchCloudFiles", **owner, DevID=DEV, ChannelNo=0, Type="record",
                                 StartTime="20261201100000", EndTime="20261201110000")
        self.assertEqual(answer.Result, 5)

    async def test_retention_is_the_accounts_own_choice(self) -> None:
        """SetCloudRetention keeps one account's files its own number of days: the next retention run
        removes that account's older files (object and entry) and leaves another account's alone."""
        owner = await self.sign_up(OWNER)
        self.assertEqual(await self.call("AddDevice", **owner, DevID=DEV, DevKey=KEY), 0)
        answer = await self.call("GetCloudRetention", **owner)
        self.assertEqual((answer.Result, answer.RetentionDays, answer.OwnChoice), (0, 30, 0))  # [cloud] default
        with self.assertRaises(zeep.exceptions.Fault):
            await self.call("SetCloudRetention", **owner, RetentionDays=0)
        with self.assertRaises(zeep.exceptions.Fault):
            await self.call("SetCloudRetention", **owner, RetentionDays=5000)
        await self.upload(f"{DEV}_0_20261201100000.ts")
        stored_at = self.platform.reactor.seconds()
        self.assertEqual(await self.call("SetCloudRetention", **owner, RetentionDays=2), 0)
        answer = await self.call("GetCloudRetention", **owner)
        self.assertEqual((answer.RetentionDays, answer.OwnChoice), (2, 1))
        # Retention counts from the upload: a run now keeps the file, one three days on removes it.
        self.assertEqual(await self.cloud.purge(), 0)
        self.cloud.clock = _Later(stored_at + 3 * 86400)
        self.assertEqual(await self.cloud.purge(), 1)
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, f"{DEV}_0_20261201100000.ts"))
        self.assertEqual(await self.call("SetCloudRetention", **owner), 0)  # absent: the default again
        self.assertEqual((await self.call("GetCloudRetention", **owner)).OwnChoice, 0)


class _Later:
    """The reactor's clock, moved on (retention reads only ``seconds``)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def seconds(self) -> float:
        return self.now
