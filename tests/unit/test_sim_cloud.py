"""The simulated camera's cloud side (§7.1.1) on ``task.Clock``: the recorder's file cutting and
naming, the rule of when a channel records to the cloud, the picture schedule, and the upload
queue (account switch, retries, exception reports, bounded local storage) with the S3 call faked.

The real S3 peer (moto's server), ffprobe and ffmpeg are in tests/interop/test_sim_cloud.py.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from globaleye.device.protocol import messages as m
from globaleye.media.names import RecordingName
from globaleye.media.tsfile import index_recording
from globaleye.sim.camera import SimulatedCamera
from globaleye.sim.cloud import (
    CloudFailure,
    CloudService,
    CloudSettings,
    classify,
    cloud_stream,
    next_shot,
)
from globaleye.sim.media.source import LoopParams, MediaLibrary
from globaleye.sim.recorder import ChannelRecorder, RecordedFile, thread_runner
from globaleye.sim.state import CameraState, CloudAccount, StoredPicturePolicy
from globaleye.util.clock import BEIJING

DEV_ID = "81100000001"
#: A small loop: 160x120, 10 fps, an IDR a second, 2 s long (encoded in place in a few ms).
SMALL = LoopParams(160, 120, fps=10, seconds=2, gop=10)
#: Monday 2026-11-02 10:00:00.4 Beijing time.
START = datetime.datetime(2026, 11, 2, 10, 0, 0, 400000, tzinfo=BEIJING).timestamp()
_media = MediaLibrary()


def beijing(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, BEIJING).replace(tzinfo=None)


class RecorderTests(SynchronousTestCase):
    def recorder(self, clock: Clock, period: int, wanted: Any = lambda: SMALL) -> tuple[ChannelRecorder, list[Any]]:
        spool = Path(self.mktemp())
        spool.mkdir()
        files: list[RecordedFile] = []
        recorder = ChannelRecorder(clock, _media, DEV_ID, 0, period=period, spool=spool, wanted=wanted,
                                   on_file=files.append, run=thread_runner(clock))
        return recorder, files

    def test_files_cut_named_and_continuous(self) -> None:
        """Files start at multiples of the period on the device clock, are named after that (Beijing)
        time, start with an IDR carrying SPS/PPS, hold period x fps pictures, and the next file's
        first timestamp is one frame after the previous file's last."""
        clock = Clock()
        clock.advance(START)
        recorder, files = self.recorder(clock, 3)
        recorder.start()
        for _ in range(10):
            clock.advance(1)
        # Cuts at 10:00:03 (first file opens), :06, :09 -> two files, [03, 06) and [06, 09).
        self.assertEqual([f.name for f in files], [f"{DEV_ID}_0_20261102100003.ts", f"{DEV_ID}_0_20261102100006.ts"])
        parsed = RecordingName.parse(files[0].name)
        assert parsed is not None
        self.assertEqual(parsed.start, datetime.datetime(2026, 11, 2, 10, 0, 3))
        indexes = [index_recording(f.path) for f in files]
        for f, ix in zip(files, indexes, strict=True):
            self.assertEqual(ix.frames, 30)  # every picture from the first on (pictures before an IDR are not indexed)
            self.assertEqual(ix.keys[0], 0)
            self.assertEqual(ix.gops, 3)
            self.assertAlmostEqual(ix.duration, 3.0)
            self.assertEqual((f.frames, f.seconds, f.size), (30, 3.0, f.path.stat().st_size))
            self.assertEqual((ix.width, ix.height), (160, 120))
        self.assertEqual(indexes[1].v_dts[0] - indexes[0].v_dts[-1], 9000)
        self.assertEqual(recorder.failures, 0)

    def test_nothing_when_not_wanted(self) -> None:
        """A period for which ``wanted`` says None gives no file; the next wanted one records again."""
        clock = Clock()
        clock.advance(START)
        answers = iter([SMALL, None, SMALL, None, None])
        recorder, files = self.recorder(clock, 2, lambda: next(answers))
        recorder.start()
        for _ in range(10):
            clock.advance(1)
        self.assertEqual([f.name for f in files], [f"{DEV_ID}_0_20261102100002.ts", f"{DEV_ID}_0_20261102100006.ts"])
        ix = [index_recording(f.path) for f in files]
        # The timestamps follow the clock: the gap of the unrecorded period stays a gap (4 s).
        self.assertEqual(ix[1].v_dts[0] - ix[0].v_dts[0], 4 * 90000)

    def test_stop_drops_the_open_file(self) -> None:
        clock = Clock()
        clock.advance(START)
        recorder, files = self.recorder(clock, 2)
        recorder.start()
        clock.advance(3)
        self.assertTrue(recorder.recording)
        recorder.stop()
        clock.advance(10)
        self.assertEqual(files, [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_period_whole_seconds(self) -> None:
        clock = Clock()
        for bad in (0, 2.5, -1):
            with self.assertRaises(ValueError):
                self.recorder(clock, bad)  # type: ignore[arg-type]


def state(**overrides: Any) -> CameraState:
    return CameraState.for_device(DEV_ID, "k", **overrides)


class RuleTests(SynchronousTestCase):
    monday_10 = datetime.datetime(2026, 11, 2, 10, 0)

    def test_needs_account_and_estore(self) -> None:
        s = state()
        s.record_full[0] = 1
        s.recording(0).store_type = m.RecordStoreType.ESTORE
        self.assertIsNone(cloud_stream(s, 0, self.monday_10))  # no account yet
        s.cloud = CloudAccount("http://127.0.0.1:9000", "a", "b")
        self.assertEqual(cloud_stream(s, 0, self.monday_10), m.StreamType.MAIN)
        s.e_store_flag = False
        self.assertIsNone(cloud_stream(s, 0, self.monday_10))

    def test_full_day_needs_cloud_store_type(self) -> None:
        s = state(cloud=CloudAccount("http://h", "a", "b"))
        s.record_full[0] = 1  # 6AH StoreType stays 0 (local)
        self.assertIsNone(cloud_stream(s, 0, self.monday_10))

    def test_policy_window(self) -> None:
        s = state(cloud=CloudAccount("http://h", "a", "b"))
        s.record_policies[0] = [
            m.RecordPolicyEntry(policy_id=1, store_type=1, stream_type=2, week=1, start_time="09:30", end_time="10:00"),
            m.RecordPolicyEntry(policy_id=2, store_type=1, stream_type=1, week=1, start_time="10:00", end_time="11:00"),
            m.RecordPolicyEntry(policy_id=3, store_type=0, stream_type=2, week=1, start_time="11:00", end_time="12:00"),
        ]
        self.assertEqual(cloud_stream(s, 0, self.monday_10), 1)
        self.assertEqual(cloud_stream(s, 0, self.monday_10 - datetime.timedelta(minutes=1)), 2)
        self.assertIsNone(cloud_stream(s, 0, self.monday_10 + datetime.timedelta(hours=1)))  # local only
        self.assertIsNone(cloud_stream(s, 0, self.monday_10 + datetime.timedelta(days=1)))  # Tuesday

    def test_next_shot(self) -> None:
        every_10s = m.PicturePolicyEntry(policy_id=1, interval=10, start_time="10:00", end_time="10:01")
        once = m.PicturePolicyEntry(policy_id=2, interval=0, start_time="12:00", end_time="12:00")
        at = self.monday_10
        self.assertEqual(next_shot([every_10s], at - datetime.timedelta(seconds=1)), at)
        self.assertEqual(next_shot([every_10s], at), at + datetime.timedelta(seconds=10))
        self.assertEqual(next_shot([every_10s], at + datetime.timedelta(seconds=55)),
                         at + datetime.timedelta(days=1))  # 10:01 ends the window
        self.assertEqual(next_shot([every_10s, once], at + datetime.timedelta(minutes=5)),
                         at + datetime.timedelta(hours=2))
        self.assertIsNone(next_shot([], at))

    def test_classify(self) -> None:
        from botocore.exceptions import ClientError, EndpointConnectionError

        def error(code: str, status: int) -> ClientError:
            return ClientError({"Error": {"Code": code, "Message": code},
                                "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

        self.assertEqual(classify(error("InvalidAccessKeyId", 403)).exception_type, m.ExceptionType.ESTORE_LOGIN_FAILED)
        self.assertEqual(classify(error("SignatureDoesNotMatch", 403)).exception_type,
                         m.ExceptionType.ESTORE_LOGIN_FAILED)
        self.assertEqual(classify(error("QuotaExceeded", 403)).exception_type, m.ExceptionType.ESTORE_FULL)
        self.assertEqual(classify(error("", 507)).exception_type, m.ExceptionType.ESTORE_FULL)
        self.assertEqual(classify(error("InternalError", 500)).exception_type, m.ExceptionType.ESTORE_UPLOAD_FAILED)
        self.assertEqual(classify(error("InternalError", 500), creating=True).exception_type,
                         m.ExceptionType.ESTORE_MKDIR_FAILED)
        self.assertEqual(classify(EndpointConnectionError(endpoint_url="http://x")).exception_type,
                         m.ExceptionType.ESTORE_UPLOAD_FAILED)
        self.assertEqual(classify(EndpointConnectionError(endpoint_url="http://x"), creating=True).exception_type,
                         m.ExceptionType.ESTORE_UPLOAD_FAILED)  # no answer at all: not the bucket's fault


class UploaderTests(SynchronousTestCase):
    """CameraCloud with the S3 call replaced: what it uploads, with which account, and on failure."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        spool = self.mktemp()
        self.service = CloudService(self.clock, CloudSettings(period=2, spool_dir=spool, max_files=3, attempts=2,
                                                              retry_delay=5, report_interval=60), _media)
        self.calls: list[tuple[str, str, str]] = []
        self.errors: list[BaseException] = []

        def put(account: CloudAccount, dev_id: str, item: Any, loop: bool) -> int:
            self.calls.append((account.account, item.bucket, item.key))
            if self.errors:
                raise self.errors.pop(0)
            return len(item.data) if item.data is not None else item.path.stat().st_size

        self.service.put = put  # type: ignore[method-assign]
        s = state(cloud=CloudAccount("http://127.0.0.1:1", "acct1", "pw1"))
        s.video_params[(0, 1)] = s.video(0, 1)
        self.camera = SimulatedCamera(s, self.clock, http=object())
        self.cloud = self.service.attach(self.camera)
        s.record_full[0] = 1
        s.recording(0).store_type = m.RecordStoreType.ESTORE
        self.cloud.recorders[0].wanted = lambda: SMALL

    def tick(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.advance(1)

    def test_uploads_with_the_current_account(self) -> None:
        """Every finished file is uploaded to GlobalEyeRecord and removed locally; after a 65H the
        next upload uses the new account."""
        self.cloud.start()
        self.tick(6)  # cuts at :02 (open), :04, :06 -> two files
        self.assertEqual([c[2] for c in self.calls], [f"{DEV_ID}_0_20261102100002.ts", f"{DEV_ID}_0_20261102100004.ts"])
        self.assertEqual({c[:2] for c in self.calls}, {("acct1", "GlobalEyeRecord")})
        self.camera.state.cloud = CloudAccount("http://127.0.0.1:2", "acct2", "pw2")  # what 65H stores
        self.tick(2)
        self.assertEqual(self.calls[-1][0], "acct2")
        self.assertEqual([u.access_key for u in self.cloud.uploads], ["acct1", "acct1", "acct2"])
        self.assertEqual(list(self.service.spool.iterdir()), [])  # nothing left locally

    def test_failure_reported_retried_then_dropped(self) -> None:
        from botocore.exceptions import ClientError

        denied = ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "no"},
                              "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
        self.errors[:] = [denied, denied]
        self.cloud.start()
        self.tick(4)  # the first file fails once...
        self.assertEqual(len(self.calls), 1)
        self.assertEqual(self.cloud.reports, [(m.ExceptionType.ESTORE_LOGIN_FAILED, self.cloud.reports[0][1])])
        self.tick(5)  # ... retried after retry_delay, fails again: dropped (attempts = 2)
        self.assertIn(f"{DEV_ID}_0_20261102100002.ts", self.cloud.dropped)
        self.assertEqual(len(self.cloud.reports), 1)  # one 34H a minute per type
        self.assertEqual(len(self.calls), 2)
        # While the upload waits for its retry, files pile up: beyond max_files (3) the oldest go.
        self.tick(5)  # the next retry (at :14.4): the store answers again, what waits goes out in order
        name = f"{DEV_ID}_0_202611021000{{:02d}}.ts".format
        self.assertEqual(self.cloud.dropped, [name(2), name(4), name(6)])
        self.assertEqual([c[2] for c in self.calls[2:]], [name(8), name(10), name(12)])
        self.assertEqual(len(self.cloud.uploads), 3)
        self.assertEqual({p.name for p in self.service.spool.iterdir()}, set())

    def test_local_storage_bounded(self) -> None:
        """Without an account files wait, at most max_files of them, the oldest dropped first."""
        self.camera.state.cloud = CloudAccount()
        self.cloud.recorders[0].wanted = lambda: SMALL  # records anyway (the rule is tested above)
        self.cloud.start()
        self.tick(12)  # five files
        self.assertEqual(len(self.cloud.queue), 3)
        self.assertEqual(self.cloud.dropped, [f"{DEV_ID}_0_20261102100002.ts", f"{DEV_ID}_0_20261102100004.ts"])
        self.assertEqual(len(list(self.service.spool.iterdir())), 3)
        self.assertEqual(self.calls, [])
        self.camera.state.cloud = CloudAccount("http://127.0.0.1:1", "acct1", "pw1")
        self.tick(2)  # one more file (the oldest waiting dropped), and the three waiting go out
        self.assertEqual(len(self.calls), 3)
        self.assertEqual(self.cloud.queue, [])

    def test_backlog_of_an_earlier_run(self) -> None:
        """Files an earlier run left in the spool are uploaded at start, oldest first; half-written ones
        are removed; another camera's are left alone."""
        spool = self.service.spool
        for name in (f"{DEV_ID}_0_20261102090500.ts", f"{DEV_ID}_0_20261102090000.ts",
                     f"{DEV_ID}_0_20261102091000.ts.part", "81100000002_0_20261102090000.ts"):
            (spool / name).write_bytes(b"x")
        self.cloud.recorders[0].wanted = lambda: None
        self.cloud.start()
        self.assertEqual([c[2] for c in self.calls], [f"{DEV_ID}_0_20261102090000.ts", f"{DEV_ID}_0_20261102090500.ts"])
        self.assertEqual(sorted(p.name for p in spool.iterdir()), ["81100000002_0_20261102090000.ts"])

    def test_pictures_by_policy_and_alarm(self) -> None:
        """A 75H cloud policy every 2 s from 10:00 takes JPEGs named by their time into GlobalEyePicture;
        an alarm takes one at once."""
        self.cloud.recorders[0].wanted = lambda: None
        self.camera.state.video_params[(0, 1)].frame_size = m.FrameSize.QVGA  # a small picture
        entry = m.PicturePolicyEntry(policy_id=1, interval=2, start_time="10:00", end_time="10:01")
        self.camera.state.picture_policies[0] = [StoredPicturePolicy(store_type=1, entry=entry)]
        self.cloud.start()
        self.tick(5)
        keys = [c[2] for c in self.calls]
        self.assertEqual(keys, [f"{DEV_ID}_0_2026110210000{s}.jpg" for s in (2, 4)])
        self.assertEqual({c[1] for c in self.calls}, {"GlobalEyePicture"})
        for hook in self.camera.on_alarm:
            hook(0, m.ExceptionType.LENS_ERROR)
        self.assertEqual(self.calls[-1][2], f"{DEV_ID}_0_20261102100005.jpg")
        self.assertEqual(len(self.calls), 3)

    def tearDown(self) -> None:
        self.cloud._stopped = True
        for call in self.clock.getDelayedCalls():
            call.cancel()


class FakeS3:
    """A boto3 client's calls as CloudService.put makes them; *full* PutObjects answer QuotaExceeded."""

    def __init__(self, keys: list[str], full: int = 0, bucket_error: str = "") -> None:
        self.keys = keys
        self.full = full
        self.bucket_error = bucket_error
        self.calls: list[tuple[str, str]] = []

    @staticmethod
    def error(code: str, status: int, op: str) -> Exception:
        from botocore.exceptions import ClientError

        return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)

    def create_bucket(self, Bucket: str) -> None:  # noqa: N803
        self.calls.append(("create_bucket", Bucket))
        if self.bucket_error:
            raise self.error(self.bucket_error, 409 if "Already" in self.bucket_error else 400, "CreateBucket")

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentMD5: str, ContentType: str) -> None:  # noqa: N803
        import base64
        import hashlib

        self.calls.append(("put_object", Key))
        data = Body if isinstance(Body, bytes) else Body.read()
        assert ContentMD5 == base64.b64encode(hashlib.md5(data).digest()).decode()
        if self.full:
            self.full -= 1
            raise self.error("QuotaExceeded", 403, "PutObject")
        self.keys.append(Key)

    def list_objects_v2(self, Bucket: str, Prefix: str, MaxKeys: int) -> dict[str, Any]:  # noqa: N803
        self.calls.append(("list", Prefix))
        return {"Contents": [{"Key": k} for k in self.keys if k.startswith(Prefix)]}

    def delete_object(self, Bucket: str, Key: str) -> None:  # noqa: N803
        self.calls.append(("delete_object", Key))
        self.keys.remove(Key)


class PutTests(SynchronousTestCase):
    """CloudService.put: the buckets first, Content-MD5, and §7.1.1's loop overwrite when the store is full."""

    account = CloudAccount("http://127.0.0.1:1", "a", "b")

    def put(self, fake: FakeS3, key: str, loop: bool = True, from_file: bool = False) -> int:
        from globaleye.sim.cloud import _Item

        service = CloudService(Clock(), CloudSettings(spool_dir=self.mktemp()), _media)
        service._clients[("http://127.0.0.1:1", "a", "b")] = fake
        item = _Item("GlobalEyeRecord", key, 0, data=b"ts")
        if from_file:
            item = _Item("GlobalEyeRecord", key, 0, path=service.spool / key)
            item.path.write_bytes(b"ts")  # type: ignore[union-attr]
        return service.put(self.account, DEV_ID, item, loop)

    def test_loop_overwrite_deletes_the_oldest(self) -> None:
        old = [f"{DEV_ID}_0_2026110210{m:02d}00.ts" for m in (15, 5, 10, 0, 20)] + ["81100000002_0_20261102000000.ts"]
        fake = FakeS3(list(old), full=1)
        self.assertEqual(self.put(fake, f"{DEV_ID}_0_20261102102500.ts", from_file=True), 2)  # sent twice, whole
        deleted = [k for op, k in fake.calls if op == "delete_object"]
        self.assertEqual(deleted, [f"{DEV_ID}_0_2026110210{m:02d}00.ts" for m in (0, 5, 10)])  # its own, oldest first
        self.assertIn(f"{DEV_ID}_0_20261102102500.ts", fake.keys)
        self.assertIn("81100000002_0_20261102000000.ts", fake.keys)

    def test_full_without_loop_is_type_5(self) -> None:
        fake = FakeS3([f"{DEV_ID}_0_20261102100000.ts"], full=1)
        with self.assertRaises(CloudFailure) as caught:
            self.put(fake, f"{DEV_ID}_0_20261102102500.ts", loop=False)
        self.assertEqual(caught.exception.exception_type, m.ExceptionType.ESTORE_FULL)
        self.assertNotIn("delete_object", [op for op, _ in fake.calls])

    def test_full_with_nothing_to_delete_is_type_5(self) -> None:
        with self.assertRaises(CloudFailure) as caught:
            self.put(FakeS3([], full=2), f"{DEV_ID}_0_20261102102500.ts")
        self.assertEqual(caught.exception.exception_type, m.ExceptionType.ESTORE_FULL)

    def test_bucket_errors(self) -> None:
        fake = FakeS3([], bucket_error="BucketAlreadyOwnedByYou")
        self.put(fake, "k.ts")
        self.assertEqual(fake.calls, [("create_bucket", "GlobalEyeRecord"), ("put_object", "k.ts")])
        with self.assertRaises(CloudFailure) as caught:
            self.put(FakeS3([], bucket_error="InvalidBucketName"), "k.ts")
        self.assertEqual(caught.exception.exception_type, m.ExceptionType.ESTORE_MKDIR_FAILED)


class CommandLineTests(SynchronousTestCase):
    def test_options(self) -> None:
        from globaleye.sim.__main__ import build_parser, cloud_settings

        settings = cloud_settings(build_parser().parse_args(["--cloud-period", "10", "--cloud-max-files", "5",
                                                             "--cloud-spool", "/tmp/x", "--cloud-retry", "2"]))
        assert settings is not None
        self.assertEqual((settings.period, settings.max_files, settings.spool_dir, settings.retry_delay, settings.attempts),
                         (10, 5, "/tmp/x", 2.0, 3))
        self.assertEqual(cloud_settings(build_parser().parse_args([])), CloudSettings())
        self.assertIsNone(cloud_settings(build_parser().parse_args(["--no-cloud"])))
        with self.assertRaises(SystemExit):
            cloud_settings(build_parser().parse_args(["--cloud-period", "0"]))


class FailureTypeTests(SynchronousTestCase):
    def test_cloud_failure_keeps_type(self) -> None:
        failure = CloudFailure(m.ExceptionType.ESTORE_DELETE_FAILED, "x")
        self.assertIs(classify(failure), failure)


class LoginAccountTests(SynchronousTestCase):
    """§7.5.1 through the real gateway session, in memory: LOGIN_RES's EURL/EAccount/EPassword become the
    camera's cloud account and a 65H replaces it; a camera without cloud storage keeps none."""

    def test_login_res_account(self) -> None:
        from twisted.internet.defer import Deferred

        from globaleye.device.gateway import GatewaySettings
        from globaleye.testing import InlineStore, known_device, pump_camera_and_gateway

        store = InlineStore()
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        Deferred.fromCoroutine(store.import_devices([known_device(DEV_ID, "pumped-key")]))
        settings = GatewaySettings(cloud_url="http://127.0.0.1:9000", cloud_account=f"{DEV_ID}_acct",
                                   cloud_password="secret")
        link = pump_camera_and_gateway(store, DEV_ID, "pumped-key", settings=settings)
        self.addCleanup(link.stop)
        self.assertTrue(link.camera.online)
        self.assertEqual(link.camera.state.cloud, CloudAccount("http://127.0.0.1:9000", f"{DEV_ID}_acct", "secret"))
        d = Deferred.fromCoroutine(link.gateway.command(DEV_ID, m.SetCloudAccountRequest(
            dev_id=DEV_ID, url="http://127.0.0.1:9001", account=f"{DEV_ID}_new", password="s2")))
        link.flush()
        self.assertEqual(self.successResultOf(d).result, 0)
        self.assertEqual(link.camera.state.cloud.account, f"{DEV_ID}_new")

    def test_no_estore_no_account(self) -> None:
        from twisted.internet.defer import Deferred

        from globaleye.device.gateway import GatewaySettings
        from globaleye.testing import InlineStore, known_device, pump_camera_and_gateway

        store = InlineStore()
        self.addCleanup(lambda: Deferred.fromCoroutine(store.close()))
        Deferred.fromCoroutine(store.import_devices([known_device(DEV_ID, "pumped-key")]))
        link = pump_camera_and_gateway(store, DEV_ID, "pumped-key", e_store_flag=False,
                                       settings=GatewaySettings(cloud_url="http://127.0.0.1:9000", cloud_account="a"))
        self.addCleanup(link.stop)
        self.assertTrue(link.camera.online)
        self.assertEqual(link.camera.state.cloud, CloudAccount())


class TsMuxerTests(SynchronousTestCase):
    """The muxer's wire format: whole 188-byte packets, the PSI CRC, continuity kept across files."""

    def test_crc_check_value(self) -> None:
        from globaleye.sim.media.tsmux import PAT_SECTION, crc32_mpeg2

        self.assertEqual(crc32_mpeg2(b"123456789"), 0x0376E6E7)  # CRC-32/MPEG-2's check value
        self.assertEqual(crc32_mpeg2(PAT_SECTION), 0)  # a section with its CRC checks to zero

    def test_packets_and_continuity(self) -> None:
        from globaleye.media import mpegts
        from globaleye.sim.media.tsmux import VIDEO_PID, TsMuxer

        mux = TsMuxer()
        sizes = [1, 183, 184, 185, 3000]
        files = [b"".join(mux.access_unit([b"\x65" + b"\x00" * (n - 1)], 9000 + 3600 * i, i == 0)
                          for i, n in enumerate(sizes)) for _ in range(2)]
        counters: dict[int, int] = {}
        for data in files:  # the second "file" goes on where the first stopped
            self.assertEqual(len(data) % 188, 0)
            for at in range(0, len(data), 188):
                packet = data[at:at + 188]
                self.assertEqual(packet[0], 0x47)
                pid, cc = (packet[1] & 0x1F) << 8 | packet[2], packet[3] & 0x0F
                if pid in counters:
                    self.assertEqual(cc, (counters[pid] + 1) & 0x0F, f"pid {pid:#x} at {at}")
                counters[pid] = cc
        demux = mpegts.TsDemuxer()
        pes = [p for p in [*demux.feed(files[0], 0), *demux.flush()] if p.pid == VIDEO_PID]
        self.assertEqual([len(p.data) - 6 - 4 for p in pes], sizes)  # AUD and start code in front of each
        self.assertEqual([p.pts for p in pes], [9000 + 3600 * i for i in range(5)])
        self.assertTrue(pes[0].random_access)
