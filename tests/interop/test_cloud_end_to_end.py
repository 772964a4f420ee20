"""Cloud storage end to end (issue 12, §7.1): the wired platform, a simulated camera, real peers.

One platform from its configuration (``gateway, http, group, storage, rtsp``; the storage role's
embedded file store under a temporary data directory), and one simulated camera that registers,
logs in, receives its OWN key and the storage role's URL in LOGIN_RES (§7.5.1), is told through the
gateway to record to the cloud (6AH StoreType 1, 78H full day) and uploads 2-second TS files to our
S3 endpoint.  Peers: zeep (SOAP), urllib (presigned downloads), ffprobe/ffmpeg (files and the RTSP
proxy's ``/cloud/`` URLs), boto3 (the camera's key against the endpoint).  Each class proves one
part, so a failure says what broke.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase

from globaleye.device.protocol import messages as m
from globaleye.s3.backend import PICTURE_BUCKET, RECORD_BUCKET
from globaleye.store import CloudObject
from globaleye.testing import platform_config, start_platform
from tests.util import FFMPEG, FFPROBE, ROOT, SOAP_PASSWORD, http_client, run, until

DEV = "81100000001"
OWNER, STRANGER = "13300000001", "13300000002"
PERIOD = 2  # seconds per TS file (§7.1.1 says 5 minutes; the simulator's test period)
FPS = 25  # the simulated camera's main stream
BEIJING = datetime.timezone(datetime.timedelta(hours=8))
#: A range (§7.1.1 names' Beijing time) that covers every file of the test.
FAR_PAST, FAR_FUTURE = "20000101000000", "20991231235959"


def _name_time(start: float) -> str:
    return datetime.datetime.fromtimestamp(start, BEIJING).strftime("%Y%m%d%H%M%S")


def _get(url: str) -> tuple[int, bytes]:
    """A plain HTTP GET (urllib, in a thread): status and body, also of an error answer."""
    status, _, body = _get_with_headers(url)
    return status, body


def _get_with_headers(url: str) -> tuple[int, Any, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class CloudPlatform(TestCase):
    """The harness: a wired platform with the storage role, its owner and a stranger, one recording camera."""

    timeout = 120
    #: Extra ``[cloud]`` lines of the platform.
    cloud_config: dict[str, object] = {}

    async def start(self, files: int = 3, record: bool = True) -> None:
        if FFPROBE is None or FFMPEG is None:
            raise SkipTest("needs ffprobe and ffmpeg (apt-get install -y ffmpeg)")
        try:
            import av  # noqa: F401
            import boto3  # noqa: F401
            import zeep  # noqa: F401
        except ImportError as e:
            raise SkipTest(f"needs PyAV (the simulator's recordings), boto3 and zeep: {e}") from None
        from globaleye.sim.camera import Timing
        from globaleye.sim.cloud import CloudSettings
        from globaleye.sim.fleet import Fleet
        from globaleye.store import Account, Binding, Device

        data = Path(self.mktemp()).absolute()
        self.platform = start_platform(self, platform_config(
            "gateway, http, group, storage, rtsp", data_dir=str(data),
            database=f"sqlite:///{data}.sqlite3", gateway={"command_timeout": 5},
            cloud={"retention_interval": 0, "reconcile_interval": 0, **self.cloud_config}), reactor)
        assert self.platform.cloud is not None and self.platform.storage is not None
        self.cloud = self.platform.cloud
        self.store = self.platform.store
        self.backend = self.cloud.backend
        accounts, now = self.platform.accounts, reactor.seconds()
        for mobile in (OWNER, STRANGER):
            await self.store.create_account(Account(mobile, await accounts.hash_password(SOAP_PASSWORD), now, now))
        self.fleet = Fleet(reactor, register_url=f"http://127.0.0.1:{self.platform.port_of('http')}/register",
                           relay=False, timing=Timing(backoff_initial=0.05), http=http_client(),
                           cloud=CloudSettings(period=PERIOD, spool_dir=self.mktemp(), retry_delay=1.0, replan=1.0))
        self.addCleanup(self.fleet.stop)
        self.camera = self.fleet.add(DEV)
        self.sim_cloud = self.fleet.clouds[DEV]
        await self.fleet.prepare()
        await self.store.enroll_device(Device(dev_id=DEV, dev_key=self.camera.state.dev_key, model="SIM"))
        await self.store.bind_device(Binding(OWNER, DEV, 0, DEV, now), 10)
        self.fleet.start()
        await self.camera.went_online
        await until(lambda: self.platform.gateway.is_online(DEV))
        self.client = await threads.deferToThread(self._zeep)
        self.owner = await self.login(OWNER)
        self.stranger = await self.login(STRANGER)
        if record:
            await self.record()
        if files:
            await self.wait_for(files)

    def _zeep(self) -> Any:
        import requests
        import zeep

        session = requests.Session()
        session.headers["Connection"] = "close"
        self.addCleanup(session.close)
        return zeep.Client(f"http://127.0.0.1:{self.platform.port_of('http')}/soap/mcu?wsdl",
                           transport=zeep.Transport(session=session, timeout=20, operation_timeout=20))

    async def call(self, operation: str, **values: Any) -> Any:
        return await threads.deferToThread(getattr(self.client.service, operation), **values)

    async def login(self, mobile: str) -> dict[str, str]:
        """The app's Login (§8.3; it also keeps the Digest secret the RTSP proxy checks)."""
        login = await self.call("Login", Account=mobile, Password=SOAP_PASSWORD, Version="1.2")
        self.assertEqual(login.Result, 0)
        return {"Account": mobile, "LoginSession": str(login.LoginSession)}

    async def record(self) -> None:
        """What test_sim_cloud sends: 6AH StoreType 1 (cloud), 78H full-day recording on."""
        for request in (m.SetRecordParamsRequest(dev_id=DEV, channel_no=0, stream_type=1, store_type=1),
                        m.SetFullDayRecordRequest(dev_id=DEV, channel_no=0, record_full=1)):
            self.assertEqual((await self.platform.gateway.command(DEV, request)).result, 0, request)

    async def indexed(self) -> list[CloudObject]:
        found = await self.store.search_cloud_objects(DEV, 0, "record", 0, 4e9, 0, 1000)
        return sorted(found.objects, key=lambda o: o.start)

    async def wait_for(self, count: int, timeout: float = 60.0) -> list[CloudObject]:
        """Until *count* recordings are indexed (polling the store: the index is what is proved)."""
        latest: list[CloudObject] = []
        for _ in range(int(timeout / 0.2)):
            latest = await self.indexed()
            if len(latest) >= count:
                return latest
            await _sleep(0.2)
        self.fail(f"{len(latest)} of {count} recordings indexed: {[o.key for o in latest]}, "
                  f"uploads {self.sim_cloud.uploads}, reports {self.sim_cloud.reports}")

    async def stop_recording(self) -> list[CloudObject]:
        """78H off; then what is indexed once the last file's upload is in (no change for a second)."""
        stop = m.SetFullDayRecordRequest(dev_id=DEV, channel_no=0, record_full=0)
        self.assertEqual((await self.platform.gateway.command(DEV, stop)).result, 0)
        await _sleep(PERIOD)
        before = await self.indexed()
        for _ in range(20):
            await _sleep(1)
            after = await self.indexed()
            if after == before:
                return after
            before = after
        self.fail("the index kept changing after the camera stopped recording")

    def consecutive(self, objects: list[CloudObject]) -> tuple[CloudObject, CloudObject]:
        for a, b in zip(objects, objects[1:], strict=False):
            if b.start - a.start == PERIOD:
                return a, b
        self.fail(f"no two consecutive files: {[o.key for o in objects]}")

    def rtsp_url(self, start: float, user: str = OWNER, dev: str = DEV, end: float | None = None) -> str:
        query = f"?end={_name_time(end)}" if end is not None else ""
        return (f"rtsp://{user}:{urllib.parse.quote(SOAP_PASSWORD)}@127.0.0.1:{self.platform.port_of('rtsp')}"
                f"/cloud/{dev}/0/{_name_time(start)}{query}")


class UploadAndIndex(CloudPlatform):
    #: Reconciliation every second while the camera uploads: the index stays one entry per object.
    cloud_config = {"reconcile_interval": 1}

    async def test_camera_uploads_with_its_own_key_into_store_and_index(self) -> None:
        """Item 1: LOGIN_RES gave the camera its own key and our endpoint; its files are stored and indexed
        with device, channel, start (the name's Beijing time) and the duration read from the TS."""
        await self.start(files=3)
        credential = await self.store.device_cloud_credential(DEV)
        assert credential is not None
        self.assertEqual((self.camera.state.cloud.url, self.camera.state.cloud.account),
                         (f"http://127.0.0.1:{self.platform.port_of('storage')}", credential.access_key))
        self.assertEqual(credential.dev_id, DEV)
        uploads = [u for u in self.sim_cloud.uploads if u.key.endswith(".ts")]
        self.assertTrue(uploads)
        self.assertEqual({u.access_key for u in uploads}, {credential.access_key})
        objects = await self.indexed()
        listed, _ = await self.backend.list(RECORD_BUCKET, DEV + "_", "", 1000)
        self.assertTrue(set(o.key for o in objects) <= {i.key for i in listed})
        for obj in objects:
            info = await self.backend.head(RECORD_BUCKET, obj.key)
            assert info is not None
            self.assertEqual((obj.dev_id, obj.channel_no, obj.kind, obj.bucket, obj.size, obj.etag),
                             (DEV, 0, "record", RECORD_BUCKET, info.size, info.etag))
            self.assertEqual(obj.key, f"{DEV}_0_{_name_time(obj.start)}.ts")
            self.assertAlmostEqual(obj.duration, PERIOD, delta=0.15)
        # The CloudService search (the SOAP operation's application call) lists the same files.
        session = self.platform.accounts.authenticate(self.owner["Account"], self.owner["LoginSession"])
        assert session is not None
        page = await self.cloud.search(session, DEV, 0, "record", FAR_PAST, FAR_FUTURE, 1, 100)
        self.assertEqual([(f.name, f.start, f.duration) for f in page.files],
                         [(o.key, _name_time(o.start), o.duration) for o in objects])

        # Pictures by a 75H cloud policy (StoreType 1, every 2 s): GlobalEyePicture, indexed as pictures,
        # found by SOAP with Type picture.
        policy = m.AddPicturePolicyRequest(dev_id=DEV, channel_no=0, store_type=1, day_policy=(
            m.PicturePolicy(interval=2, start_time="00:00", end_time="24:00"),))
        self.assertEqual((await self.platform.gateway.command(DEV, policy)).result, 0)
        pictures: list[CloudObject] = []
        for _ in range(150):
            pictures = list((await self.store.search_cloud_objects(DEV, 0, "picture", 0, 4e9, 0, 100)).objects)
            if pictures:
                break
            await _sleep(0.2)
        self.assertTrue(pictures, self.sim_cloud.uploads)
        picture = pictures[0]
        self.assertEqual((picture.bucket, picture.key, picture.duration),
                         (PICTURE_BUCKET, f"{DEV}_0_{_name_time(picture.start)}.jpg", 0.0))
        self.assertEqual((await self.backend.read(PICTURE_BUCKET, picture.key, 0, 2)), b"\xff\xd8")
        found = await self.call("SearchCloudFiles", **self.owner, DevID=DEV, ChannelNo=0, Type="picture",
                                StartTime=FAR_PAST, EndTime=FAR_FUTURE)
        self.assertIn((picture.key, "picture"), [(f.FileName, f.Type) for f in found.CloudFile])

    async def test_a_new_key_by_65h_is_used_at_once_and_the_old_one_refused(self) -> None:
        """§7.5.11 against our endpoint: the platform rotates the camera's key (65H at once); the next
        uploads carry the new key and are indexed, and the old key is refused (boto3: 403)."""
        await self.start(files=1)
        old = await self.store.device_cloud_credential(DEV)
        assert old is not None
        new, sent = await self.cloud.rotate(DEV)
        self.assertTrue(sent)
        self.assertEqual(self.camera.state.cloud.account, new.access_key)
        before = len(self.sim_cloud.uploads)
        await until(lambda: len([u for u in self.sim_cloud.uploads[before:] if u.access_key == new.access_key]) >= 2,
                    timeout=30)
        renewed = {u.key for u in self.sim_cloud.uploads[before:] if u.access_key == new.access_key}
        self.assertTrue(renewed <= {o.key for o in await self.indexed()})

        import boto3
        import botocore.exceptions
        from botocore.config import Config

        def old_key_reads() -> int:
            client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.platform.port_of('storage')}",
                                  aws_access_key_id=old.access_key, aws_secret_access_key=old.secret,
                                  region_name="us-east-1",
                                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
            try:
                client.get_object(Bucket=RECORD_BUCKET, Key=sorted(renewed)[0])
            except botocore.exceptions.ClientError as e:
                return int(e.response["ResponseMetadata"]["HTTPStatusCode"])
            return 200

        self.assertEqual(await threads.deferToThread(old_key_reads), 403)


class SoapSearchAndDownload(CloudPlatform):
    async def test_search_by_time_download_and_ffprobe(self) -> None:
        """Item 2: the owner finds the files by time through SOAP (zeep), also a range crossing two files;
        a presigned URL downloads bytes identical to the stored object, and ffprobe reads H.264 from them;
        a tampered URL and an expired one are refused (403)."""
        await self.start(files=3)
        first, second = self.consecutive(await self.indexed())
        # A one-second range across the boundary of first and second: both files, and only them.
        found = await self.call("SearchCloudFiles", **self.owner, DevID=DEV, ChannelNo=0, Type="record",
                                StartTime=_name_time(second.start - 1), EndTime=_name_time(second.start + 1))
        self.assertEqual(found.Result, 0)
        self.assertEqual([(f.FileName, f.StartTime, f.Duration, f.FileSize, f.ChannelNo) for f in found.CloudFile],
                         [(o.key, _name_time(o.start), PERIOD, o.size, 0) for o in (first, second)])
        self.assertEqual(found.TotalNum, 2)
        url = await self.call("GetCloudFileUrl", **self.owner, DevID=DEV, FileName=second.key)
        self.assertEqual((url.Result, url.Expires), (0, 300))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url.Url).query)
        self.assertEqual(query["X-Amz-Expires"], ["300"])
        self.assertTrue(url.Url.startswith(f"http://127.0.0.1:{self.platform.port_of('storage')}/"), url.Url)
        status, headers, body = await threads.deferToThread(_get_with_headers, url.Url)
        self.assertEqual(status, 200)
        self.assertIn(f'filename="{second.key}"', headers["Content-Disposition"])
        stored = await self.backend.read(RECORD_BUCKET, second.key, 0)
        self.assertEqual(body, stored)
        work = Path(self.mktemp())
        work.mkdir()
        (work / second.key).write_bytes(body)
        assert FFPROBE is not None
        probe = await run(FFPROBE, ["-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "json",
                                    str(work / second.key)])
        self.assertEqual(probe.code, 0, probe.err)
        info = json.loads(probe.out)
        self.assertEqual([s["codec_name"] for s in info["streams"]], ["h264"])
        self.assertAlmostEqual(float(info["format"]["duration"]), PERIOD, delta=0.15)
        # A tampered URL (another object under the same signature) is refused.
        tampered = url.Url.replace(second.key, first.key)
        self.assertEqual((await threads.deferToThread(_get, tampered))[0], 403)

        # A URL of a short lifetime downloads at once and is refused (403) once it has expired.
        obj = first
        self.cloud.settings = attrs.evolve(self.cloud.settings, url_lifetime=2)
        url = await self.call("GetCloudFileUrl", **self.owner, DevID=DEV, FileName=obj.key)
        self.assertEqual((url.Result, url.Expires), (0, 2))
        self.assertEqual((await threads.deferToThread(_get, url.Url))[0], 200)
        await _sleep(3.2)
        status, body = await threads.deferToThread(_get, url.Url)
        self.assertEqual(status, 403, body)
        self.assertIn(b"expired", body.lower())


class RtspPlayback(CloudPlatform):
    async def play(self, url: str) -> list[float]:
        """ffprobe over RTSP/TCP to the end of the programme (RTCP BYE): every decoded picture's time."""
        assert FFPROBE is not None
        result = await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v",
                                     "-show_frames", "-show_entries", "frame=pts_time,key_frame", "-of", "json",
                                     url], timeout=40)
        self.assertEqual((result.code, result.err.strip()), (0, ""))
        frames = json.loads(result.out)["frames"]
        self.assertTrue(frames and frames[0].get("key_frame") == 1, "the stream starts with an IDR")
        # ffmpeg's RTSP demuxer leaves the first picture unstamped (as from a camera): one interval before.
        times = [float(f["pts_time"]) for f in frames[1:]]
        times.insert(0, times[0] - 1 / FPS)
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        self.assertTrue(all(0 < s <= 2 / FPS + 1e-3 for s in steps), [s for s in steps if not 0 < s <= 2 / FPS])
        return times

    async def test_plays_across_the_file_boundary_without_a_gap(self) -> None:
        """Item 3: ffprobe over RTSP/TCP with the owner's credentials plays /cloud/<DevID>/0/<start>?end=...
        through two consecutive files: every picture, decoded duration = the files' sum, no jump over 2
        frame intervals; without an end, every stored file from the start on, end to end."""
        await self.start(files=3)
        first, second = self.consecutive(await self.indexed())
        times = await self.play(self.rtsp_url(first.start, end=second.start + PERIOD))
        self.assertAlmostEqual(len(times), 2 * PERIOD * FPS, delta=1)
        self.assertAlmostEqual(times[-1] - times[0] + 1 / FPS, 2 * PERIOD, delta=1.5 / FPS)

        # The camera stops; the open-ended URL plays all that is stored from the first file on.
        objects = await self.stop_recording()
        total = sum(o.duration for o in objects)
        times = await self.play(self.rtsp_url(objects[0].start))
        self.assertAlmostEqual(len(times) / FPS, total, delta=len(objects) * 1.5 / FPS)
        self.assertAlmostEqual(times[-1] - times[0] + 1 / FPS, total, delta=len(objects) * 1.5 / FPS)


class DeleteAndIsolation(CloudPlatform):
    async def test_delete_one_and_a_range(self) -> None:
        """Item 4: DeleteCloudFiles removes object and index entry; a range delete removes several."""
        await self.start(files=4)
        objects = await self.stop_recording()
        one = objects[0]
        gone = await self.call("DeleteCloudFiles", **self.owner, DevID=DEV, FileName=one.key)
        self.assertEqual((gone.Result, gone.DeletedNum), (0, 1))
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, one.key))
        self.assertIsNone(await self.store.get_cloud_object(RECORD_BUCKET, one.key))
        rest = objects[1:]
        ranged = await self.call("DeleteCloudFiles", **self.owner, DevID=DEV, ChannelNo=0, Type="record",
                                 StartTime=_name_time(rest[0].start), EndTime=_name_time(rest[-1].start + PERIOD))
        self.assertEqual((ranged.Result, ranged.DeletedNum), (0, len(rest)))
        self.assertEqual(await self.indexed(), [])
        listed, _ = await self.backend.list(RECORD_BUCKET, DEV + "_", "", 1000)
        self.assertEqual([i.key for i in listed], [])

    async def test_another_account_and_another_cameras_key_see_nothing(self) -> None:
        """Item 5: the stranger gets SOAP Result 3 as for an unknown camera, and 404 from the RTSP proxy's
        /cloud/ URL; another camera's key (boto3) cannot read, list or delete this camera's objects, nor
        this camera's key write under another's name (403)."""
        await self.start(files=1)
        obj = (await self.indexed())[0]
        for who, dev in ((self.stranger, DEV), (self.owner, "81199999999")):
            found = await self.call("SearchCloudFiles", **who, DevID=dev, ChannelNo=0, Type="record",
                                    StartTime=FAR_PAST, EndTime=FAR_FUTURE)
            self.assertEqual((found.Result, found.CloudFile), (3, []))
            url = await self.call("GetCloudFileUrl", **who, DevID=dev, FileName=obj.key)
            self.assertEqual((url.Result, url.Url), (3, None))
            gone = await self.call("DeleteCloudFiles", **who, DevID=dev, FileName=obj.key)
            self.assertEqual(gone.Result, 3)
        self.assertIsNotNone(await self.store.get_cloud_object(RECORD_BUCKET, obj.key))
        # The RTSP proxy's /cloud/ URL: 404 for the stranger, as for a camera that does not exist.
        assert FFPROBE is not None
        for user, dev in ((STRANGER, DEV), (OWNER, "81199999999")):
            result = await run(FFPROBE, ["-v", "error", "-rtsp_transport", "tcp", "-show_entries", "format=duration",
                                         self.rtsp_url(obj.start, user=user, dev=dev)], timeout=20)
            self.assertNotEqual(result.code, 0)
            self.assertIn("404", result.err, (user, dev))

        # Another camera's key: it exists once the platform has given it one (its own LOGIN_RES would).
        other = await self.cloud.credential_for("81100000002")
        mine = await self.store.device_cloud_credential(DEV)
        assert mine is not None
        import boto3
        import botocore.exceptions
        from botocore.config import Config

        def s3(access_key: str, secret: str) -> Any:
            return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.platform.port_of('storage')}",
                                aws_access_key_id=access_key, aws_secret_access_key=secret, region_name="us-east-1",
                                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

        def attempt(client: Any, call: str, **kwargs: Any) -> str:
            try:
                getattr(client, call)(**kwargs)
            except botocore.exceptions.ClientError as e:
                return str(e.response["ResponseMetadata"]["HTTPStatusCode"])
            return "ok"

        theirs = s3(other.access_key, other.secret)
        own = s3(mine.access_key, mine.secret)
        results = await threads.deferToThread(lambda: (
            attempt(own, "get_object", Bucket=RECORD_BUCKET, Key=obj.key),
            attempt(theirs, "get_object", Bucket=RECORD_BUCKET, Key=obj.key),
            attempt(theirs, "head_object", Bucket=RECORD_BUCKET, Key=obj.key),
            attempt(theirs, "list_objects_v2", Bucket=RECORD_BUCKET, Prefix=DEV + "_"),
            attempt(theirs, "delete_object", Bucket=RECORD_BUCKET, Key=obj.key),
            # ...and the camera's own key cannot write under the other camera's name.
            attempt(own, "put_object", Bucket=RECORD_BUCKET, Key=f"81100000002_0_{_name_time(obj.start)}.ts",
                    Body=b"x")))
        self.assertEqual(results, ("ok", "403", "403", "403", "403", "403"))
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, f"81100000002_0_{_name_time(obj.start)}.ts"))
        self.assertIsNotNone(await self.store.get_cloud_object(RECORD_BUCKET, obj.key))


async def _sleep(seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)



class QuotaLoopOverwrite(CloudPlatform):
    """Item 7: ``[cloud] device_quota = 1`` (MB) holds three or four 2-second files of ~300 KB."""

    cloud_config = {"device_quota": 1}

    def ts_uploads(self) -> list[str]:
        return [u.key for u in self.sim_cloud.uploads if u.key.endswith(".ts")]

    async def test_a_looping_camera_overwrites_the_oldest_first(self) -> None:
        """The owner turns the loop on (SOAP SetLoopRecord: 7AH through the gateway); later uploads go in,
        and what is left is the newest files, in store and index alike, within the quota."""
        overwrites: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if "loop overwrite removed" in event.get("log_format", ""):
                overwrites.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        await self.start(files=0, record=False)
        self.assertEqual((await self.call("SetLoopRecord", **self.owner, DevID=DEV, RecordLoop=1)), 0)
        self.assertEqual(self.camera.state.record_loop, 1)
        await self.record()
        await until(lambda: len(self.ts_uploads()) >= 6, timeout=60)
        uploaded = self.ts_uploads()
        objects = await self.indexed()
        keys = [o.key for o in objects]
        # The newest uploads are kept, the oldest gone: the index is a tail of the upload order.
        self.assertGreaterEqual(len(keys), 2)
        self.assertEqual(keys, uploaded[len(uploaded) - len(keys):], (keys, uploaded))
        self.assertNotIn(uploaded[0], keys)
        self.assertLessEqual(sum(o.size for o in objects), 1 << 20)
        listed, _ = await self.backend.list(RECORD_BUCKET, DEV + "_", "", 1000)
        self.assertEqual(sorted(i.key for i in listed), sorted(keys))
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, uploaded[0]))
        full = [e for e in await self.store.list_exceptions(DEV) if e.exception_type == m.ExceptionType.ESTORE_FULL]
        self.assertEqual(full, [])
        # The platform made the room (admit's loop overwrite), not the camera's own delete after a refusal.
        self.assertTrue(overwrites)
        self.assertEqual({e["dev_id"] for e in overwrites}, {DEV})

    async def test_a_camera_that_does_not_loop_is_refused_and_reports_34h_type_5(self) -> None:
        """RecordLoop 0: the upload that does not fit is refused (QuotaExceeded), nothing old is removed,
        and the camera reports §7.5.4's 34H type 5 (store full)."""
        await self.start(files=0, record=False)
        self.assertEqual((await self.call("SetLoopRecord", **self.owner, DevID=DEV, RecordLoop=0)), 0)
        self.assertEqual(self.camera.state.record_loop, 0)
        await self.record()
        full: list[Any] = []

        async def reported() -> bool:
            full[:] = [e for e in await self.store.list_exceptions(DEV)
                       if e.exception_type == m.ExceptionType.ESTORE_FULL]
            return bool(full)

        for _ in range(300):
            if await reported():
                break
            await _sleep(0.2)
        else:
            self.fail(f"no 34H type 5: uploads {self.ts_uploads()}, reports {self.sim_cloud.reports}")
        uploaded = self.ts_uploads()
        objects = await self.indexed()
        # The first files stay: everything indexed is what was accepted, oldest first, within the quota.
        self.assertEqual([o.key for o in objects], uploaded)
        self.assertLessEqual(sum(o.size for o in objects), 1 << 20)
        listed, _ = await self.backend.list(RECORD_BUCKET, DEV + "_", "", 1000)
        self.assertEqual(sorted(i.key for i in listed), uploaded)


class _Twistd(ProcessProtocol):
    """``twistd -n globaleye``: its log (the listening ports), its end."""

    def __init__(self) -> None:
        self.output = b""
        self.ports: dict[str, int] = {}
        self.ended: Deferred[Any] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output += data
        for role, port in re.findall(rb"(\w+) listening on 127\.0\.0\.1:(\d+)", self.output):
            self.ports[role.decode()] = int(port)

    errReceived = outReceived  # noqa: N815

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(reason.value)


def _signed_put(port: int, bucket: str, key: str, body: bytes, access_key: str, secret: str) -> bytes:
    """The request line and headers of a SigV4 PUT of *body* (botocore signs it), to send by hand."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://127.0.0.1:{port}/{bucket}/{key}"
    request = AWSRequest(method="PUT", url=url, data=body, headers={"Content-Length": str(len(body))})
    S3SigV4Auth(Credentials(access_key, secret), "s3", "us-east-1").add_auth(request)
    lines = [f"PUT /{bucket}/{key} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items() if name.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class CrashMidUpload(TestCase):
    """Item 6: SIGKILL of the platform process (``twistd -n globaleye``) in the middle of a camera's PUT
    leaves no partial object and no index entry; the upload completed before it is kept, in both."""

    timeout = 90

    async def test_sigkill_mid_upload_leaves_nothing_half_written(self) -> None:
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError as e:
            raise SkipTest(f"needs boto3: {e}") from None
        from globaleye.platform.tap import Options, PlatformService
        from globaleye.store import Device

        work = Path(self.mktemp()).absolute()
        work.mkdir()
        text = platform_config("gateway, http, storage", data_dir=str(work / "data"),
                               database=f"sqlite:///{work}/platform.sqlite3",
                               cloud={"retention_interval": 0, "reconcile_interval": 0})
        config = work / "globaleye.ini"
        config.write_text(text, encoding="utf-8")
        # The camera's own key, as its first LOGIN_RES would have created it (a platform run before).
        options = Options()
        options.parseOptions(["--config", str(config)])
        first = PlatformService(options.config, options.store, reactor)
        first.startService()
        await first.store.enroll_device(Device(dev_id=DEV, dev_key="crash-key", model="SIM"))
        assert first.cloud is not None
        credential = await first.cloud.credential_for(DEV)
        await first.stopService()

        twistd = _Twistd()
        process = reactor.spawnProcess(
            twistd, sys.executable,
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             "--logfile=-", "globaleye", "--config", str(config)],
            env=dict(os.environ, PYTHONPATH=str(ROOT)), path=str(work))

        def kill() -> None:
            if not twistd.ended.called:
                process.signalProcess("KILL")

        self.addCleanup(kill)
        await until(lambda: "storage" in twistd.ports or twistd.ended.called, timeout=30)
        self.assertIn("storage", twistd.ports, twistd.output[-3000:].decode(errors="replace"))
        port = twistd.ports["storage"]

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=credential.access_key,
                          aws_secret_access_key=credential.secret, region_name="us-east-1",
                          config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        whole, partial = f"{DEV}_0_20261202100000.ts", f"{DEV}_0_20261202100002.ts"
        complete = os.urandom(300_000)

        def control() -> None:
            s3.create_bucket(Bucket=RECORD_BUCKET)
            s3.put_object(Bucket=RECORD_BUCKET, Key=whole, Body=complete)

        await threads.deferToThread(control)

        # Half of a signed 2 MB PUT, then SIGKILL while the endpoint holds it in its staging file.
        body = os.urandom(2 << 20)
        head = _signed_put(port, RECORD_BUCKET, partial, body, credential.access_key, credential.secret)
        sock = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(sock.close)
        await threads.deferToThread(sock.sendall, head + body[:1 << 20])
        staging = work / "data" / "storage" / ".staging"

        def receiving() -> bool:
            return any(p.stat().st_size > 0 for p in staging.iterdir()) if staging.is_dir() else False

        await until(receiving, timeout=20)
        process.signalProcess("KILL")
        reason = await twistd.ended
        self.assertEqual(getattr(reason, "signal", None), signal.SIGKILL)
        self.assertTrue(receiving(), "the half upload was in the staging area when the process died")

        # The next start: the staging area emptied, no partial object, no entry; the complete upload kept.
        platform = start_platform(self, text, reactor)
        assert platform.cloud is not None
        self.assertFalse(receiving())
        self.assertIsNone(await platform.cloud.backend.head(RECORD_BUCKET, partial))
        self.assertIsNone(await platform.store.get_cloud_object(RECORD_BUCKET, partial))
        kept = await platform.cloud.backend.head(RECORD_BUCKET, whole)
        entry = await platform.store.get_cloud_object(RECORD_BUCKET, whole)
        assert kept is not None and entry is not None
        self.assertEqual((kept.size, entry.size, entry.dev_id), (len(complete), len(complete), DEV))
        self.assertEqual(await platform.cloud.backend.read(RECORD_BUCKET, whole, 0), complete)
        listed, _ = await platform.cloud.backend.list(RECORD_BUCKET, "", "", 100)
        self.assertEqual([i.key for i in listed], [whole])


class Retention(CloudPlatform):
    """Item 7's other half: ``[cloud] retention_days`` (here 8.64 s) purged every second, with the real
    endpoint: the oldest go first, from store and index alike, while the camera keeps uploading."""

    cloud_config = {"retention_days": 0.0001, "retention_interval": 1}

    async def test_retention_removes_the_oldest_first(self) -> None:
        await self.start(files=0)
        uploads = self.sim_cloud.uploads
        await until(lambda: len([u for u in uploads if u.key.endswith(".ts")]) >= 8, timeout=60)
        uploaded = [u.key for u in uploads if u.key.endswith(".ts")]
        keys = [o.key for o in await self.indexed()]
        self.assertNotIn(uploaded[0], keys)
        self.assertIsNone(await self.backend.head(RECORD_BUCKET, uploaded[0]))
        self.assertTrue(keys, "the newest files are kept")
        self.assertEqual(keys, [k for k in uploaded if k in keys])
        self.assertEqual(keys, uploaded[len(uploaded) - len(keys):], (keys, uploaded))
        listed, _ = await self.backend.list(RECORD_BUCKET, DEV + "_", "", 1000)
        self.assertTrue({i.key for i in listed} <= set(uploaded))
        self.assertNotIn(uploaded[0], {i.key for i in listed})
