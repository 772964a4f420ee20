"""The platform's side of cloud storage (:mod:`globaleye.app.cloud`) with the in-memory backend and a Clock.

No sockets: a SQLite store on a temporary file, :class:`~globaleye.s3.memory.MemoryBackend`, a gateway
stand-in that answers 65H and 7BH, and a presigner stand-in.  Each test drives the service as the S3
endpoint (admit, stored, deleted, principal) or a face (search, download URL, delete) would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from globaleye.app.access import CameraAccess
from globaleye.app.cloud import CloudService, CloudSettings, StorageUnavailable, ts_duration
from globaleye.app.errors import InvalidRequest, NoSuchDevice, NotFound
from globaleye.app.recording import RecordingService
from globaleye.device.messaging import CommandError
from globaleye.device.protocol import messages as m
from globaleye.media.names import PictureName
from globaleye.s3.backend import PICTURE_BUCKET, RECORD_BUCKET, Principal
from globaleye.s3.memory import MemoryBackend
from globaleye.store import (
    CLOUD_OTHER,
    CLOUD_PICTURE,
    CLOUD_RECORD,
    SOURCE_FTP,
    SOURCE_SCAN,
    Account,
    Binding,
    Device,
    DeviceAbility,
    PictureRecord,
)
from globaleye.store.sqlite import SQLiteStore
from globaleye.users.accounts import LoginSession
from globaleye.util.clock import parse_protocol_time

DEV, OTHER_DEV = "81100000001", "81100000002"
OWNER, GUEST, STRANGER = "13900000001", "13900000002", "13900000003"
NOW = parse_protocol_time("20261201120000")
MB = 1 << 20


def session(account: str) -> LoginSession:
    return LoginSession("t", account, "192.0.2.1:1", NOW, NOW, b"s")


def key(dev: str, stamp: str, channel: int = 0, ext: str = "ts") -> str:
    return f"{dev}_{channel}_{stamp}.{ext}"


class Gateway:
    """Online devices, their RecordLoop, what was sent."""

    def __init__(self) -> None:
        self.online: set[str] = set()
        self.loop: dict[str, int] = {}
        self.sent: list[m.Message] = []

    def is_online(self, dev_id: str) -> bool:
        return dev_id in self.online

    def live_addresses(self, dev_id: str) -> Any:
        return None

    def live_version(self, dev_id: str) -> str | None:
        return None

    async def command(self, dev_id: str, request: m.Message, timeout: float | None = None) -> Any:
        if dev_id not in self.online:
            raise CommandError("offline")
        self.sent.append(request)
        if isinstance(request, m.GetLoopRecordRequest):
            return m.GetLoopRecordResponse(result=0, record_loop=self.loop.get(dev_id, 0))
        return m.SetCloudAccountResponse(result=0)


class Presigner:
    def presign_get(self, bucket: str, key: str, expires: float, filename: str) -> str:
        return f"http://127.0.0.1:9/{bucket}/{key}?expires={expires:g}&filename={filename}"


_TS: bytes | None = None


def recording(seconds: int = 40) -> bytes:
    """A real H.264 MPEG-TS recording of *seconds* (the simulator's generator, small and without audio)."""
    global _TS
    if _TS is None:
        from globaleye.sim.media.recording import RecordingParams, write_generated_recording
        params = RecordingParams(width=320, height=240, fps=10, seconds=seconds, audio=False)
        path = write_generated_recording(params, os.path.join(tempfile.mkdtemp(), params.file_name))
        _TS = Path(path).read_bytes()
    return _TS


class CloudServiceTests(TestCase):
    def setUp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.async_setup())

    async def async_setup(self, **settings: Any) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = SQLiteStore(str(Path(tempfile.mkdtemp()) / "store.sqlite3"))
        self.addCleanup(self.store.close)
        self.backend = MemoryBackend(self.clock.seconds)
        await self.backend.create_bucket(RECORD_BUCKET)
        await self.backend.create_bucket(PICTURE_BUCKET)
        self.gateway = Gateway()
        self.access = CameraAccess(self.store, self.gateway)
        self.make(**settings)
        await self.store.import_devices([Device(DEV, "k"), Device(OTHER_DEV, "k")])
        await self.store.record_ability(DEV, DeviceAbility(channel_num=2, estore_flag=1))
        for account in (OWNER, GUEST, STRANGER):
            await self.store.create_account(Account(account, "h"))
        await self.store.bind_device(Binding(OWNER, DEV), 10)
        await self.store.share_device(OWNER, DEV, GUEST, NOW)
        await self.store.bind_device(Binding(STRANGER, OTHER_DEV), 10)
        self.camera = Principal("AK", "secret", DEV)

    def make(self, **settings: Any) -> None:
        values: dict[str, Any] = {"url": "http://198.51.100.1:9000", "access_key": "PLATFORM", "secret_key": "p" * 20,
                                  "batch": 3}
        values.update(settings)
        self.cloud = CloudService(self.store, self.backend, self.clock, CloudSettings(**values), self.access,
                                  self.gateway, Presigner())

    async def upload(self, name: str, data: bytes = b"x" * 100, principal: Principal | None = None,
                     bucket: str = RECORD_BUCKET) -> None:
        who = principal or self.camera
        why = await self.cloud.admit(who, bucket, name, len(data))
        self.assertIsNone(why)
        info = await self.backend.put_bytes(bucket, name, data)
        await self.cloud.stored(who, info)

    # Credentials --------------------------------------------------------------------------------

    async def test_credentials_created_once_and_revoked_on_rotation(self) -> None:
        a, b = await gatherResults([Deferred.fromCoroutine(self.cloud.credential_for(DEV)) for _ in range(2)])
        self.assertEqual(a, b, "two logins at once make one key")
        self.assertEqual(await self.cloud.cloud_account(DEV), ("http://198.51.100.1:9000", a.access_key, a.secret))
        principal = await self.cloud.principal(a.access_key)
        self.assertEqual(principal, Principal(a.access_key, a.secret, DEV))
        platform = await self.cloud.principal("PLATFORM")
        assert platform is not None
        self.assertTrue(platform.is_platform)
        self.assertIsNone(await self.cloud.principal("unknown"))

        self.gateway.online.add(DEV)
        new, sent = await self.cloud.rotate(DEV)
        self.assertTrue(sent)
        [request] = self.gateway.sent
        assert isinstance(request, m.SetCloudAccountRequest)
        self.assertEqual((request.url, request.account, request.password),
                         ("http://198.51.100.1:9000", new.access_key, new.secret))
        self.assertIsNone(await self.cloud.principal(a.access_key), "the old key is refused at once, cache or not")
        self.assertEqual((await self.cloud.credential_for(DEV)).access_key, new.access_key)

    async def test_rotation_respects_estore_flag_and_offline(self) -> None:
        _, sent = await self.cloud.rotate(DEV)
        self.assertFalse(sent, "offline: it gets the key at its next login")
        self.gateway.online.add(DEV)
        await self.store.record_ability(DEV, DeviceAbility(channel_num=1, estore_flag=0))
        _, sent = await self.cloud.rotate(DEV)
        self.assertFalse(sent)
        self.assertEqual(self.gateway.sent, [], "no 65H to a camera that reports no cloud storage")

    async def test_no_storage_url_means_the_global_account(self) -> None:
        self.make(url="")
        self.assertIsNone(await self.cloud.cloud_account(DEV))

    # Index ---------------------------------------------------------------------------------------

    async def test_stored_indexes_recordings_with_their_own_duration(self) -> None:
        data = recording()
        self.assertGreater(len(data), 2 * 188 * 1024, "head and tail are read separately")
        await self.upload(key(DEV, "20261201100000"), data)
        [entry] = (await self.store.search_cloud_objects(DEV, 0, CLOUD_RECORD, NOW - 7200, NOW)).objects
        self.assertEqual(entry.start, parse_protocol_time("20261201100000"))
        self.assertAlmostEqual(entry.duration, 40.0, delta=0.2)
        self.assertEqual(entry.size, len(data))
        # Not a TS at all: §7.1.1's five minutes.
        await self.upload(key(DEV, "20261201101000"), b"garbage" * 100)
        entry2 = await self.store.get_cloud_object(RECORD_BUCKET, key(DEV, "20261201101000"))
        assert entry2 is not None
        self.assertEqual(entry2.duration, 300.0)
        # An overwrite replaces the entry.
        await self.upload(key(DEV, "20261201101000"), b"g" * 10)
        self.assertEqual(await self.store.cloud_usage(DEV), (len(data) + 10, 2))
        await self.cloud.deleted(self.camera, RECORD_BUCKET, key(DEV, "20261201101000"))
        self.assertEqual(await self.store.cloud_usage(DEV), (len(data), 1))

    async def test_pictures_and_other_names(self) -> None:
        await self.upload(key(DEV, "20261201100000", ext="JPG"), b"jpeg", bucket=PICTURE_BUCKET)
        await self.upload(f"{DEV}_notes.txt", b"other", bucket=PICTURE_BUCKET)
        info = await self.backend.put_bytes(PICTURE_BUCKET, key(DEV, "20261201100100", ext="jpg"), b"ftp")
        await self.cloud.stored(self.camera, info, source=SOURCE_FTP)
        ftp = await self.store.get_cloud_object(PICTURE_BUCKET, key(DEV, "20261201100100", ext="jpg"))
        assert ftp is not None
        self.assertEqual((ftp.source, ftp.kind), (SOURCE_FTP, CLOUD_PICTURE))
        picture = await self.store.get_cloud_object(PICTURE_BUCKET, key(DEV, "20261201100000", ext="JPG"))
        other = await self.store.get_cloud_object(PICTURE_BUCKET, f"{DEV}_notes.txt")
        assert picture is not None and other is not None
        self.assertEqual((picture.kind, picture.duration), (CLOUD_PICTURE, 0.0))
        self.assertEqual((other.kind, other.dev_id), (CLOUD_OTHER, DEV))
        self.assertEqual(await self.store.cloud_usage(DEV), (12, 3), "other objects count against the quota")
        # The platform writing a name of no device: not indexed.
        info = await self.backend.put_bytes(PICTURE_BUCKET, "README", b"r")
        await self.cloud.stored(Principal("PLATFORM", "p"), info)
        self.assertIsNone(await self.store.get_cloud_object(PICTURE_BUCKET, "README"))

    def test_picture_names(self) -> None:
        name = PictureName.parse("81100000001_1_20261201100000.JPG")
        assert name is not None
        self.assertEqual((name.dev_id, name.channel_no, name.extension), ("81100000001", 1, "JPG"))
        self.assertEqual(str(name), "81100000001_1_20261201100000.JPG")
        self.assertIsNone(PictureName.parse("81100000001_1_20261301100000.jpg"))
        self.assertIsNone(PictureName.parse("../81100000001_1_20261201100000.jpg"))

    def test_ts_duration_needs_timestamps(self) -> None:
        self.assertIsNone(ts_duration(b"", b"", 0))
        data = recording()
        self.assertAlmostEqual(ts_duration(data, data, 0) or 0, 40.0, delta=0.2)

    async def test_duration_of_a_file_between_one_and_two_probes_long(self) -> None:
        """The tail is read from the file's end, not from the head's bytes (a 2-second file of ~300 KB once
        got its duration from the middle of the file)."""
        from globaleye.app.cloud import TS_PROBE

        size = TS_PROBE + (TS_PROBE // 2) // 188 * 188
        data = recording()[:size]
        self.assertEqual(len(data), size)
        whole = ts_duration(data, data, 0) or 0
        middle = ts_duration(data[:TS_PROBE], data[:TS_PROBE], 0) or 0
        self.assertGreater(whole, middle + 1)
        await self.upload(key(DEV, "20261201100000"), data)
        entry = await self.store.get_cloud_object(RECORD_BUCKET, key(DEV, "20261201100000"))
        assert entry is not None
        self.assertAlmostEqual(entry.duration, whole, delta=0.01)

    # Quotas and the loop overwrite (§7.1.1) ---------------------------------------------------------

    async def test_device_quota_refuses_unless_the_camera_loops(self) -> None:
        self.make(device_quota=1)
        self.gateway.online.add(DEV)
        for minute in range(3):
            await self.upload(key(DEV, f"2026120110{minute:02d}00"), b"x" * (300 * 1024))
        why = await self.cloud.admit(self.camera, RECORD_BUCKET, key(DEV, "20261201100500"), 300 * 1024)
        self.assertIn("does not loop", why or "")
        # Overwriting an object with one of the same size fits: its old size is credited.
        self.assertIsNone(await self.cloud.admit(self.camera, RECORD_BUCKET, key(DEV, "20261201100000"), 300 * 1024))
        # The camera loops: the oldest go (object and entry) until the new one fits.
        self.gateway.loop[DEV] = 1
        self.cloud.loop_changed(DEV, 1)
        self.assertIsNone(await self.cloud.admit(self.camera, RECORD_BUCKET, key(DEV, "20261201100500"), 600 * 1024))
        left = await self.store.oldest_cloud_objects(DEV, 10)
        self.assertEqual([o.key for o in left], [key(DEV, "20261201100200")])
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, key(DEV, "20261201100000")))
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, key(DEV, "20261201100100")))
        # Larger than the whole quota: refused even when looping, and nothing is removed for it.
        why = await self.cloud.admit(self.camera, RECORD_BUCKET, key(DEV, "20261201100600"), 2 * MB)
        self.assertIn("does not fit", why or "")
        self.assertEqual(len(await self.store.oldest_cloud_objects(DEV, 10)), 1)
        # Another device's name is refused whatever the quota.
        self.assertIn("not an object", await self.cloud.admit(self.camera, RECORD_BUCKET, key(OTHER_DEV, "1"), 1) or "")
        self.assertIsNone(await self.cloud.admit(Principal("PLATFORM", "p"), RECORD_BUCKET, "x", 10 * MB))
        self.assertEqual(self.cloud.refusals.lines, 1, "three refusals of one camera in a minute: one line, then counted")

    async def test_loop_flag_asked_with_7bh_and_offline_means_no(self) -> None:
        self.assertFalse(await self.cloud.loops(DEV))
        self.gateway.online.add(DEV)
        self.gateway.loop[DEV] = 1
        self.assertFalse(await self.cloud.loops(DEV), "kept for cache_seconds")
        self.clock.advance(301)
        self.assertTrue(await self.cloud.loops(DEV))
        self.assertIsInstance(self.gateway.sent[-1], m.GetLoopRecordRequest)

    async def test_loop_flag_set_by_the_owner_is_believed_at_once(self) -> None:
        recording = RecordingService(self.access)
        recording.loop_listeners.append(self.cloud.loop_changed)
        self.gateway.online.add(DEV)
        self.assertFalse(await self.cloud.loops(DEV))  # asked (7BH): 0, kept 300 s
        await recording.set_loop(session(OWNER), DEV, 1)
        self.assertIsInstance(self.gateway.sent[-1], m.SetLoopRecordRequest)
        self.assertTrue(await self.cloud.loops(DEV), "7AH accepted: no need to wait for the cache")

    async def test_account_quota(self) -> None:
        self.make(account_quota=1)
        await self.upload(key(DEV, "20261201100000"), b"x" * (700 * 1024))
        why = await self.cloud.admit(self.camera, RECORD_BUCKET, key(DEV, "20261201100500"), 400 * 1024)
        self.assertIn("does not loop", why or "")
        # Another camera of the account fills it: this one's own objects cannot make room, none is removed.
        await self.store.import_devices([Device("81100000003", "k")])
        await self.store.bind_device(Binding(OWNER, "81100000003"), 10)
        self.gateway.online.add(DEV)
        self.cloud.loop_changed(DEV, 1)
        third = Principal("AK3", "s", "81100000003")
        self.assertIsNone(await self.cloud.admit(third, RECORD_BUCKET, key("81100000003", "20261201100000"), 1))
        await self.upload(key("81100000003", "20261201100000"), b"z" * (300 * 1024), third)
        why = await self.cloud.admit(self.camera, RECORD_BUCKET, key(DEV, "20261201100500"), 1000 * 1024)
        self.assertIn("does not fit", why or "")
        self.assertEqual(await self.store.cloud_usage(DEV), (700 * 1024, 1))
        # It fits once this camera's own oldest goes (the loop overwrite, across the account's quota).
        self.assertIsNone(await self.cloud.admit(self.camera, RECORD_BUCKET, key(DEV, "20261201100500"), 600 * 1024))
        self.assertEqual(await self.store.cloud_usage(DEV), (0, 0))
        self.assertEqual(await self.store.cloud_usage("81100000003"), (300 * 1024, 1))
        # The stranger's device, another account, is not affected.
        stranger_cam = Principal("AK2", "s", OTHER_DEV)
        self.assertIsNone(await self.cloud.admit(stranger_cam, RECORD_BUCKET, key(OTHER_DEV, "20261201100500"),
                                                 400 * 1024))

    # Search, URL, delete -------------------------------------------------------------------------

    async def test_search_by_owner_and_guest_not_by_others(self) -> None:
        for minute in range(0, 60, 5):
            await self.upload(key(DEV, f"2026120110{minute:02d}00"))
        page = await self.cloud.search(session(OWNER), DEV, 0, "record", "20261201100700", "20261201101200")
        self.assertEqual([f.name for f in page.files], [key(DEV, "20261201100500"), key(DEV, "20261201101000")])
        self.assertEqual((page.files[0].start, page.files[0].duration), ("20261201100500", 300.0))
        paged = await self.cloud.search(session(GUEST), DEV, 0, "record", "20261201100000", "20261201110000", 3, 5)
        self.assertEqual((paged.total, len(paged.files)), (12, 2))
        for account, dev, channel in ((STRANGER, DEV, 0), (OWNER, OTHER_DEV, 0), (OWNER, "89999999999", 0),
                                      (OWNER, DEV, 5)):
            with self.assertRaises(NoSuchDevice):
                await self.cloud.search(session(account), dev, channel, "record", "20261201100000", "20261201110000")
        for bad in (("video", "20261201100000", "20261201110000"), ("record", "2026", "20261201110000"),
                    ("record", "20261201110000", "20261201100000")):
            with self.assertRaises(InvalidRequest):
                await self.cloud.search(session(OWNER), DEV, 0, *bad)

    async def test_download_url(self) -> None:
        await self.upload(key(DEV, "20261201100000"))
        url = await self.cloud.download_url(session(GUEST), DEV, key(DEV, "20261201100000"))
        self.assertEqual(url, f"http://127.0.0.1:9/{RECORD_BUCKET}/{key(DEV, '20261201100000')}?expires=300"
                              f"&filename={key(DEV, '20261201100000')}")
        with self.assertRaises(NotFound):
            await self.cloud.download_url(session(OWNER), DEV, key(DEV, "20261201100500"))
        with self.assertRaises(NoSuchDevice):
            await self.cloud.download_url(session(STRANGER), DEV, key(DEV, "20261201100000"))
        with self.assertRaises(NotFound):  # another device's file named under this one
            await self.cloud.download_url(session(OWNER), DEV, key(OTHER_DEV, "20261201100000"))
        for bad in (f"{DEV}_0/../{OTHER_DEV}_0_20261201100000.ts", ""):
            with self.assertRaises(InvalidRequest):
                await self.cloud.download_url(session(OWNER), DEV, bad)
        self.cloud.presigner = None
        with self.assertRaises(StorageUnavailable):
            await self.cloud.download_url(session(OWNER), DEV, key(DEV, "20261201100000"))

    async def test_delete_single_and_range_owner_only(self) -> None:
        for minute in range(0, 60, 5):
            await self.upload(key(DEV, f"2026120110{minute:02d}00"))
        name = key(DEV, "20261201100000")
        with self.assertRaises(NoSuchDevice):
            await self.cloud.delete(session(GUEST), DEV, name)
        self.assertEqual(await self.cloud.delete(session(OWNER), DEV, name), 1)
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, name))
        self.assertIsNone(await self.store.get_cloud_object(RECORD_BUCKET, name))
        with self.assertRaises(NotFound):
            await self.cloud.delete(session(OWNER), DEV, name)
        # An entry whose object is already gone goes too.
        await self.backend.delete(RECORD_BUCKET, key(DEV, "20261201100500"))
        self.assertEqual(await self.cloud.delete(session(OWNER), DEV, key(DEV, "20261201100500")), 1)
        self.assertIsNone(await self.store.get_cloud_object(RECORD_BUCKET, key(DEV, "20261201100500")))
        # A range (batch 3: several store calls): 10:12-10:31 touches 10:10 .. 10:30.
        with self.assertRaises(NoSuchDevice):
            await self.cloud.delete_range(session(GUEST), DEV, 0, "record", "20261201101200", "20261201103100")
        self.assertEqual(await self.cloud.delete_range(session(OWNER), DEV, 0, "record", "20261201101200",
                                                       "20261201103100"), 5)
        left = [o.key[-9:-3] for o in await self.store.oldest_cloud_objects(DEV, 20)]
        self.assertEqual(left, ["103500", "104000", "104500", "105000", "105500"])
        self.assertEqual(len(self.backend.buckets[RECORD_BUCKET]), 5)

    # Retention and reconciliation -------------------------------------------------------------------

    async def test_retention_on_the_clock(self) -> None:
        self.make(retention_days=2, retention_interval=3600, reconcile_interval=0)
        for minute in range(0, 25, 5):
            await self.upload(key(DEV, f"2026120110{minute:02d}00"))
        self.clock.advance(86400)
        await self.upload(key(DEV, "20261202100000"))
        self.cloud.startService()
        self.addCleanup(self.cloud.stopService)
        self.assertEqual(len(self.backend.buckets[RECORD_BUCKET]), 6, "nothing is two days old yet")
        self.clock.advance(86400 + 3600)
        await self.cloud.purge()  # the looping call's run is under way; make sure it finished
        self.assertEqual(list(self.backend.buckets[RECORD_BUCKET]), [key(DEV, "20261202100000")])
        self.assertEqual(await self.store.cloud_usage(DEV), (100, 1))

    async def test_a_failed_run_is_logged_and_the_next_one_comes(self) -> None:
        self.make(retention_interval=60, reconcile_interval=0)
        calls: list[float] = []

        async def broken(now: float, default_days: float, limit: int) -> Any:
            calls.append(now)
            raise RuntimeError("disk on fire")

        self.store.expired_cloud_objects = broken  # type: ignore[method-assign]
        self.cloud.startService()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(60)
        self.assertEqual(calls, [NOW, NOW + 60])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        await self.cloud.stopService()
        self.clock.advance(60)
        self.assertEqual(len(calls), 2, "stopped")

    async def test_reconcile_indexes_scanned_and_drops_vanished(self) -> None:
        await self.upload(key(DEV, "20261201100000"))
        await self.upload(key(DEV, "20261201100500"))
        # Written to the store behind our back (an external S3 service), and one removed there.
        for minute in range(10, 40, 5):
            await self.backend.put_bytes(RECORD_BUCKET, key(DEV, f"2026120110{minute:02d}00"), b"y" * 10)
        await self.backend.put_bytes(PICTURE_BUCKET, key(DEV, "20261201100000", ext="jpg"), b"j")
        await self.backend.put_bytes(RECORD_BUCKET, key(DEV, "20261201100500"), b"changed")
        await self.backend.delete(RECORD_BUCKET, key(DEV, "20261201100000"))
        self.assertEqual(await self.cloud.reconcile(), (8, 1))
        scanned = await self.store.get_cloud_object(RECORD_BUCKET, key(DEV, "20261201103500"))
        assert scanned is not None
        self.assertEqual(scanned.source, SOURCE_SCAN)
        changed = await self.store.get_cloud_object(RECORD_BUCKET, key(DEV, "20261201100500"))
        assert changed is not None
        self.assertEqual(changed.size, 7)
        self.assertIsNone(await self.store.get_cloud_object(RECORD_BUCKET, key(DEV, "20261201100000")))
        self.assertEqual(await self.store.cloud_usage(DEV), (6 * 10 + 1 + 7, 8))
        self.assertEqual(await self.cloud.reconcile(), (0, 0), "a second run finds nothing to do")

    async def test_reconcile_races_with_uploads_and_deletions(self) -> None:
        """An upload indexed after its page was listed is not dropped; an object listed and then deleted
        (its deletion unindexed it) is not indexed again."""
        late, gone = key(DEV, "20261201100000"), key(DEV, "20261201100500")
        await self.upload(late)
        await self.backend.put_bytes(RECORD_BUCKET, gone, b"z")
        listed = self.backend.list

        async def stale_list(bucket: str, prefix: str = "", start_after: str = "", limit: int = 1000) -> Any:
            infos, more = await listed(bucket, prefix, start_after, limit)
            if bucket == RECORD_BUCKET:
                await self.backend.delete(RECORD_BUCKET, gone)  # deleted right after the listing
                infos = [i for i in infos if i.key != late]  # uploaded right after the listing
            return infos, more

        self.backend.list = stale_list  # type: ignore[method-assign]
        self.assertEqual(await self.cloud.reconcile(), (0, 0))
        self.assertIsNotNone(await self.store.get_cloud_object(RECORD_BUCKET, late))
        self.assertIsNone(await self.store.get_cloud_object(RECORD_BUCKET, gone))

    async def test_picture_notices_matched_to_stored_pictures(self) -> None:
        arrived, lost = key(DEV, "20261201100000", ext="JPG"), key(DEV, "20261201100100", ext="JPG")
        for name in (arrived, lost):
            await self.store.add_picture(PictureRecord(DEV, 0, name, name[-18:-4], NOW))
        await self.upload(arrived, b"jpeg", bucket=PICTURE_BUCKET)
        notices = await self.cloud.picture_notices(session(GUEST), DEV)
        self.assertEqual({n.file_name: n.stored is not None for n in notices}, {arrived: True, lost: False})
        with self.assertRaises(NoSuchDevice):
            await self.cloud.picture_notices(session(STRANGER), DEV)
