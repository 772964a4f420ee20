"""The simulated camera's cloud side (§7.1.1): recordings and pictures pushed to the 天翼云 store.

§7.1.1: "整个存储过程不需要手机看店平台参与" -- the camera itself records its main
stream into 5-minute TS files and uploads them, and its pictures as JPEG, over HTTP to
the S3-compatible cloud store, after creating the buckets ``GlobalEyeRecord`` and
``GlobalEyePicture`` itself.  It does so with the account the platform handed it:
LOGIN_RES ``EURL``/``EAccount``/``EPassword`` (§7.5.1) or 65H (§7.5.11), kept in
``state.cloud``; EURL is the store's endpoint, EAccount/EPassword the access and secret key.

**When a channel records to the cloud** (the rule, documented in docs/simulator.md):
the camera has cloud storage (EStoreFlag 1) and an account with a URL, and either

* a 67H window with StoreType 1 (cloud) covers the device's current weekday and time
  (Week 1 Monday .. 7 Sunday, ``[StartTime, EndTime)``): the window's StreamType is
  recorded; or
* 78H full-day recording is on for the channel and its 6AH StoreType is 1: the 6AH
  StreamType is recorded.

It is decided at each cut (every period), so a window starts at the next cut.

**Pictures**: every 75H policy with StoreType 1 takes the channel's picture every
Interval seconds from StartTime to EndTime (Interval 0: once at StartTime), and an alarm
(:meth:`~globaleye.sim.camera.SimulatedCamera.raise_alarm`) takes one at once on a
channel that has such a policy; both go to ``GlobalEyePicture`` as
``DevID_ChannelNo_YYYYMMDDHHMMSS.jpg``, the JPEG of what the live main stream shows.

**Uploads** run in the fleet's thread pool through boto3 (signing, retries and the S3
wire format are not ours to write), one at a time per camera, oldest first.  Each
upload reads ``state.cloud`` when it starts, so a new 65H account is used by the next
one (one in flight finishes with the old).  A failure is reported by 34H with the §7.5.4
type (1 login failed: the store refused the credentials; 2 bucket not created; 3 delete
failed; 4 upload failed; 5 space full), at most once a minute per type, and the file
retried ``attempts`` times ``retry_delay`` apart, then dropped.  Local storage is
bounded: at most ``max_files`` files wait per camera, the oldest dropped first.  When
the store says it is full and the camera loops (7AH RecordLoop 1, the default), the
camera deletes its own oldest objects of that bucket and tries again, as §7.1.1 says
("自动删除时间最早的文件，一次性可根据需要删除多个文件").
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from globaleye.device.protocol import messages as m
from globaleye.media.names import RECORDING_SECONDS, RecordingName
from globaleye.s3.backend import PICTURE_BUCKET, RECORD_BUCKET
from globaleye.sim.media.source import LoopParams, MediaLibrary, render_frame
from globaleye.sim.recorder import ChannelRecorder, RecordedFile, Runner, device_time, thread_runner
from globaleye.sim.state import CameraState, CloudAccount
from globaleye.util.clock import BEIJING
from txturn.logsummary import LogSummary

if TYPE_CHECKING:
    from globaleye.sim.camera import SimulatedCamera

log = Logger()

#: S3 error codes (and HTTP statuses) that mean "these credentials are refused": §7.5.4 type 1.
LOGIN_ERRORS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                          "ExpiredToken", "TokenRefreshRequired", "InvalidSecurity", "AuthorizationHeaderMalformed",
                          "401", "403"})
#: ... and "the store is full" (the S3 API has no one code: those of quotas in common stores): type 5.
FULL_ERRORS = frozenset({"QuotaExceeded", "StorageFull", "XMinioStorageFull", "InsufficientStorage",
                         "QuotaExceededException", "TooManyObjects", "507"})
#: How many of its oldest objects the camera deletes at a time when the store is full (§7.1.1).
LOOP_DELETE = 3
#: Uploads, drops and reports a camera remembers (its status, and tests).
HISTORY = 100
#: A JPEG's quality as FFmpeg's qscale (2 best .. 31 worst).
JPEG_QSCALE = 5
_NAME_TIME = re.compile(r"_(\d{14})\.")


@attrs.define
class CloudSettings:
    """How the simulated cameras record and upload; tests shrink the period."""

    period: int = RECORDING_SECONDS  # seconds per file (§7.1.1: 5 minutes)
    spool_dir: str = ""  # where files wait for their upload ("": a temporary directory)
    max_files: int = 12  # files (and pictures) waiting per camera; the oldest dropped beyond
    attempts: int = 3  # uploads of one file before it is dropped
    retry_delay: float = 30.0
    report_interval: float = 60.0  # at most one 34H a minute per exception type
    replan: float = 30.0  # picture policies are re-read at least this often
    threads: int = 4  # the uploads' and writers' thread pool
    region: str = "us-east-1"
    timeout: float = 60.0  # connect/read timeout of one S3 request


class CloudFailure(Exception):
    """An upload that failed, with its §7.5.4 ExceptionType."""

    def __init__(self, exception_type: int, description: str) -> None:
        super().__init__(description)
        self.exception_type = exception_type
        self.description = description


@attrs.frozen
class Upload:
    """One object stored: where, and with which account (tests and the status line read it)."""

    bucket: str
    key: str
    url: str
    access_key: str
    size: int
    at: float


@attrs.define(eq=False)
class _Item:
    bucket: str
    key: str
    channel_no: int
    path: Path | None = None
    data: bytes | None = None
    attempts: int = 0


# --------------------------------------------------------------------------- rules (pure)


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.strip().partition(":")
    return int(hours) * 60 + int(minutes)


def cloud_stream(state: CameraState, channel_no: int, now: datetime.datetime) -> int | None:
    """The stream type channel *channel_no* records to the cloud at device time *now*, or None."""
    if not state.e_store_flag or not state.cloud.url:
        return None
    params = state.recording(channel_no)
    if state.record_full.get(channel_no) == 1 and params.store_type == m.RecordStoreType.ESTORE:
        return params.stream_type
    minute = now.hour * 60 + now.minute
    for entry in state.record_policies.get(channel_no, []):
        if (entry.store_type == m.RecordStoreType.ESTORE and entry.week == now.isoweekday()
                and _minutes(entry.start_time) <= minute < _minutes(entry.end_time)):
            return entry.stream_type
    return None


def next_shot(policies: list[m.PicturePolicyEntry], after: datetime.datetime) -> datetime.datetime | None:
    """The first picture time strictly after *after* by these 75H policies (today or tomorrow)."""
    best: datetime.datetime | None = None
    for day in (after.date(), after.date() + datetime.timedelta(days=1)):
        midnight = datetime.datetime.combine(day, datetime.time())
        for p in policies:
            try:
                start = midnight + datetime.timedelta(minutes=_minutes(p.start_time))
                end = midnight + datetime.timedelta(minutes=_minutes(p.end_time))
            except ValueError:
                continue
            if p.interval <= 0:
                shot: datetime.datetime | None = start if start > after else None
            elif after < start:
                shot = start
            else:
                steps = int((after - start).total_seconds() // p.interval) + 1
                shot = start + datetime.timedelta(seconds=steps * p.interval)
                if shot >= end:
                    shot = None
            if shot is not None and (best is None or shot < best):
                best = shot
        if best is not None:
            return best
    return None


def picture_jpeg(params: LoopParams, frame: int, qscale: int = JPEG_QSCALE) -> bytes:
    """The live picture at stream frame *frame* as a JPEG (rendered, not decoded).  Blocking: a thread."""
    import av

    picture = av.VideoFrame.from_ndarray(render_frame(params, frame % params.frames), format="yuv420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = params.width, params.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, params.fps)
    encoder.flags |= av.codec.context.Flags.qscale
    encoder.global_quality = qscale * 118  # FF_QP2LAMBDA
    packets = list(encoder.encode(picture.reformat(format="yuvj420p"))) + list(encoder.encode(None))
    return b"".join(bytes(p) for p in packets)


def classify(error: BaseException, *, creating: bool = False) -> CloudFailure:
    """An S3 client's exception as the §7.5.4 ExceptionType a camera reports.

    Credentials refused: 1; the store full: 5; a bucket the store refused to create (an S3
    error answer while *creating*): 2; anything else, a store that does not answer included: 4.
    """
    if isinstance(error, CloudFailure):
        return error
    code = ""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        code = code or status
        if status in ("401", "403", "507"):
            code = code if code in LOGIN_ERRORS | FULL_ERRORS else status
    text = f"{code}: {error}" if code else f"{type(error).__name__}: {error}"
    if code in LOGIN_ERRORS:
        return CloudFailure(m.ExceptionType.ESTORE_LOGIN_FAILED, text)
    if code in FULL_ERRORS:
        return CloudFailure(m.ExceptionType.ESTORE_FULL, text)
    if creating and isinstance(response, dict):  # the store answered, and refused the bucket
        return CloudFailure(m.ExceptionType.ESTORE_MKDIR_FAILED, text)
    return CloudFailure(m.ExceptionType.ESTORE_UPLOAD_FAILED, text)


# --------------------------------------------------------------------------- the fleet's side


class CloudService:
    """What a fleet's cameras share for the cloud: settings, the spool, a thread pool, S3 clients."""

    def __init__(self, reactor: Any, settings: CloudSettings | None = None, media: MediaLibrary | None = None) -> None:
        from twisted.python.threadpool import ThreadPool

        from globaleye.sim.media.source import default_library

        self.reactor = reactor
        self.settings = settings or CloudSettings()
        self.media = media or default_library()
        if self.settings.spool_dir:
            self.spool = Path(self.settings.spool_dir)
            self._own_spool = False
        else:
            self.spool = Path(tempfile.mkdtemp(prefix="globaleye-sim-cloud-"))
            self._own_spool = True
        self.spool.mkdir(parents=True, exist_ok=True)
        self.pool: ThreadPool | None = None
        self._shutdown: Any = None
        if hasattr(reactor, "getThreadPool"):
            self.pool = ThreadPool(1, max(1, self.settings.threads), name="globaleye-sim-cloud")
            self.pool.start()
            # A process that ends without Fleet.stop (Ctrl-C) must not wait on the pool's threads.
            self._shutdown = reactor.addSystemEventTrigger("during", "shutdown", self.pool.stop)
        self.run: Runner = thread_runner(reactor, self.pool)
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._buckets: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self.cameras: list[CameraCloud] = []
        #: A store that is down fails every camera's uploads: one line per camera and failure type a minute.
        self.failures = LogSummary(log, reactor, interval=60.0, max_keys=1000, level=LogLevel.warn,
                                   name="cloud upload failures")

    def attach(self, camera: SimulatedCamera) -> CameraCloud:
        cloud = CameraCloud(self, camera)
        self.cameras.append(cloud)
        return cloud

    async def stop(self) -> None:
        for cloud in self.cameras:
            await cloud.stop()
        if self._own_spool:
            await self.run(shutil.rmtree, self.spool, True)
        if self.pool is not None:
            pool, self.pool = self.pool, None
            self.reactor.removeSystemEventTrigger(self._shutdown)
            pool.stop()

    # -- blocking S3 calls (worker threads)

    def client(self, account: CloudAccount) -> Any:
        """A boto3 S3 client of *account* (one per account, shared: boto3 clients are thread-safe)."""
        key = (account.url, account.account, account.password)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                return found
        import boto3
        from botocore.config import Config

        s = self.settings
        client = boto3.session.Session().client(
            "s3", endpoint_url=account.url, aws_access_key_id=account.account,
            aws_secret_access_key=account.password, region_name=s.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=s.timeout,
                          read_timeout=s.timeout, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))
        with self._lock:
            return self._clients.setdefault(key, client)

    def put(self, account: CloudAccount, dev_id: str, item: _Item, loop: bool) -> int:
        """Create the bucket (once per account), store the object; the overwrite loop when full."""
        client = self.client(account)
        marker = (account.url, account.account, item.bucket)
        if marker not in self._buckets:
            try:
                client.create_bucket(Bucket=item.bucket)
            except Exception as e:
                code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    failure = classify(e, creating=True)
                    if failure.exception_type != m.ExceptionType.ESTORE_LOGIN_FAILED:
                        raise failure from None
                    # Refused to create: the store may keep the buckets itself; the upload decides.
            with self._lock:
                self._buckets.add(marker)
        content_type = "image/jpeg" if item.key.endswith(".jpg") else "video/mp2t"
        with contextlib.ExitStack() as stack:
            # A recording is read from its file as it is sent (38 MB for 5 minutes), not held in memory.
            if item.data is not None:
                body: Any = item.data
                digest, size = hashlib.md5(item.data), len(item.data)
            elif item.path is not None:
                body = stack.enter_context(open(item.path, "rb"))
                digest, size = hashlib.md5(), 0
                while chunk := body.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
            else:
                raise CloudFailure(m.ExceptionType.ESTORE_UPLOAD_FAILED, f"{item.key}: nothing to upload")
            md5 = base64.b64encode(digest.digest()).decode()
            for attempt in range(2):
                if not isinstance(body, bytes):
                    body.seek(0)
                try:
                    client.put_object(Bucket=item.bucket, Key=item.key, Body=body, ContentMD5=md5,
                                      ContentType=content_type)
                    return size
                except Exception as e:
                    failure = classify(e)
                    if failure.exception_type != m.ExceptionType.ESTORE_FULL or not loop or attempt:
                        raise failure from None
                    self._delete_oldest(client, item.bucket, dev_id, item.key)
        raise AssertionError("unreachable")

    def _delete_oldest(self, client: Any, bucket: str, dev_id: str, keep: str) -> None:
        try:
            listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{dev_id}_", MaxKeys=1000)
            keys = [o["Key"] for o in listed.get("Contents", []) if o["Key"] != keep]
            keys.sort(key=_name_time)
            for key in keys[:LOOP_DELETE]:
                client.delete_object(Bucket=bucket, Key=key)
            if not keys:
                raise CloudFailure(m.ExceptionType.ESTORE_FULL, f"{bucket} is full and holds nothing of {dev_id}")
        except CloudFailure:
            raise
        except Exception as e:
            raise CloudFailure(m.ExceptionType.ESTORE_DELETE_FAILED, f"loop overwrite: {e}") from None


# --------------------------------------------------------------------------- one camera's side


class CameraCloud:
    """One simulated camera's recorders, picture timer and upload queue."""

    def __init__(self, service: CloudService, camera: SimulatedCamera) -> None:
        self.service = service
        self.camera = camera
        self.state: CameraState = camera.state
        self.clock = service.reactor
        self.settings = service.settings
        self.queue: list[_Item] = []
        self.uploaded = 0
        #: The last HISTORY uploads, drops and 34H reports (tests and status read them).
        self.uploads: list[Upload] = []
        self.dropped: list[str] = []
        self.reports: list[tuple[int, str]] = []
        self.recorders = [
            ChannelRecorder(self.clock, service.media, self.state.dev_id, channel, period=self.settings.period,
                            spool=service.spool, wanted=self._wanted(channel), on_file=self._recorded,
                            run=service.run, reactor=service.reactor)
            for channel in range(self.state.channel_num)]
        self._busy = False
        self._stopped = False
        self._retry: IDelayedCall | None = None
        self._pictures: IDelayedCall | None = None
        self._shot_after: dict[int, datetime.datetime] = {}
        self._reported: dict[int, float] = {}
        self._inflight: Deferred[Any] | None = None

    # -- life

    def start(self) -> None:
        self._stopped = False
        for recorder in self.recorders:
            recorder.start()
        self.camera.on_alarm.append(self._alarm)
        self._plan_pictures()
        self.service.run(self._backlog).addCallbacks(self._resume, lambda f: log.failure(
            "camera {dev}: cannot read its local storage", f, dev=self.state.dev_id))

    def _backlog(self) -> list[Path]:
        """This camera's files left in the spool by an earlier run (a worker thread): half-written
        ones (``.part``) are removed, whole ones are uploaded, oldest first."""
        found = []
        for path in self.service.spool.glob(f"{self.state.dev_id}_*"):
            if path.name.endswith(".part"):
                path.unlink(missing_ok=True)
            elif RecordingName.parse(path.name) is not None and path.name.split("_", 1)[0] == self.state.dev_id:
                found.append(path)
        return sorted(found, key=lambda p: _name_time(p.name))

    def _resume(self, paths: list[Path]) -> None:
        for path in paths:
            parsed = RecordingName.parse(path.name)
            if parsed is not None and not any(i.path == path for i in self.queue):
                self._enqueue(_Item(RECORD_BUCKET, path.name, parsed.channel_no, path=path))

    async def stop(self) -> None:
        self._stopped = True
        for call in (self._retry, self._pictures):
            if call is not None and call.active():
                call.cancel()
        if self._alarm in self.camera.on_alarm:
            self.camera.on_alarm.remove(self._alarm)
        for recorder in self.recorders:
            await recorder.stop()
        if self._inflight is not None:
            try:
                await self._inflight
            except Exception:
                pass
        for item in self.queue:
            self._unlink(item)
        self.queue.clear()

    # -- recording

    def _wanted(self, channel_no: int) -> Callable[[], LoopParams | None]:
        def wanted() -> LoopParams | None:
            stream = cloud_stream(self.state, channel_no, device_time(self.clock.seconds()))
            return None if stream is None else stream_params(self.state, channel_no, stream)

        return wanted

    def _recorded(self, recorded: RecordedFile) -> None:
        self._enqueue(_Item(RECORD_BUCKET, recorded.name, recorded.channel_no, path=recorded.path))

    # -- pictures

    def _policies(self, channel_no: int) -> list[m.PicturePolicyEntry]:
        return [p.entry for p in self.state.picture_policies.get(channel_no, [])
                if p.store_type == m.PictureStoreType.ESTORE]

    def _plan_pictures(self) -> None:
        """Take the pictures due now, and sleep until the next one (or ``replan``, to see new 75H/77H)."""
        if self._stopped:
            return
        self._pump()  # an account that appeared (65H) takes what waits without waiting for the next file
        now = self.clock.seconds()
        now_dt = device_time(now)
        wait = self.settings.replan
        for channel in range(self.state.channel_num):
            policies = self._policies(channel)
            after = self._shot_after.setdefault(channel, now_dt - datetime.timedelta(microseconds=1))
            shot = next_shot(policies, after) if policies else None
            if shot is not None and shot <= now_dt:
                if (now_dt - shot).total_seconds() < 2.0:  # a shot missed by more (the clock jumped) is skipped
                    self._take_picture(channel, shot)
                self._shot_after[channel] = max(shot, now_dt if (now_dt - shot).total_seconds() >= 2.0 else shot)
                shot = next_shot(policies, self._shot_after[channel])
            if not policies:
                self._shot_after[channel] = now_dt
            if shot is not None:
                wait = min(wait, (shot - now_dt).total_seconds())
        self._pictures = self.clock.callLater(max(0.0, wait), self._plan_pictures)

    def _alarm(self, channel_no: int, exception_type: int) -> None:
        if self._policies(channel_no) and self.state.cloud.url:
            self._take_picture(channel_no, device_time(self.clock.seconds()))

    def _take_picture(self, channel_no: int, at: datetime.datetime) -> None:
        if not self.state.e_store_flag or not self.state.cloud.url:
            return
        params = stream_params(self.state, channel_no, m.StreamType.MAIN)
        key = f"{self.state.dev_id}_{channel_no}_{at:%Y%m%d%H%M%S}.jpg"
        frame = int(at.replace(tzinfo=BEIJING).timestamp() * params.fps)
        d = self.service.run(picture_jpeg, params, frame)
        d.addCallbacks(lambda jpeg: self._enqueue(_Item(PICTURE_BUCKET, key, channel_no, data=jpeg)),
                       lambda f: log.failure("camera {dev}: picture {key} failed", f, dev=self.state.dev_id, key=key))

    # -- uploads

    def _enqueue(self, item: _Item) -> None:
        if self._stopped:
            self._unlink(item)
            return
        self.queue.append(item)
        while len(self.queue) > max(1, self.settings.max_files):
            oldest = next((i for i in self.queue if not (self._busy and i is self.queue[0])), None)
            if oldest is None:
                break
            self.queue.remove(oldest)
            self._drop(oldest, "local storage full")
        self._pump()

    def _pump(self) -> None:
        if self._busy or self._stopped or not self.queue:
            return
        if self._retry is not None and self._retry.active():
            return
        account = self.state.cloud
        if not account.url or not self.state.e_store_flag:
            return  # waits (bounded) for an account
        item = self.queue[0]
        self._busy = True
        loop = self.state.record_loop == 1
        d = self._inflight = self.service.run(self.service.put, account, self.state.dev_id, item, loop)
        d.addBoth(self._uploaded, item, account)

    def _uploaded(self, result: Any, item: _Item, account: CloudAccount) -> None:
        self._busy = False
        self._inflight = None
        if item not in self.queue:  # dropped meanwhile (stopped)
            self._pump()
            return
        if isinstance(result, Failure):
            failure = classify(result.value or RuntimeError("unknown"))
            item.attempts += 1
            self._report(item.channel_no, item.key, failure)
            if item.attempts >= self.settings.attempts:
                self.queue.remove(item)
                self._drop(item, f"{item.attempts} failed uploads ({failure.description})")
            if not self._stopped:
                self._retry = self.clock.callLater(self.settings.retry_delay, self._pump)
            return
        self.queue.remove(item)
        self._unlink(item)
        self.uploads.append(Upload(item.bucket, item.key, account.url, account.account, int(result),
                                   self.clock.seconds()))
        del self.uploads[:-HISTORY]
        self.uploaded += 1
        log.debug("camera {dev}: uploaded {bucket}/{key} ({size} bytes)", dev=self.state.dev_id,
                  bucket=item.bucket, key=item.key, size=result)
        self._pump()

    def _drop(self, item: _Item, why: str) -> None:
        self.dropped.append(item.key)
        del self.dropped[:-HISTORY]
        self.service.failures.event((self.state.dev_id, "dropped"), f"camera {self.state.dev_id} files dropped",
                                    "camera {dev}: dropped {key}: {why}", dev=self.state.dev_id, key=item.key, why=why)
        self._unlink(item)

    def _unlink(self, item: _Item) -> None:
        """Remove a file from local storage (in a worker thread: no disk I/O on the reactor's)."""
        if item.path is not None:
            self.service.run(item.path.unlink, True).addErrback(
                lambda f: log.failure("camera {dev}: cannot remove {path}", f, dev=self.state.dev_id, path=item.path))

    def _report(self, channel_no: int, key: str, failure: CloudFailure) -> None:
        """34H (§7.5.4) with the failure's type, at most once per ``report_interval`` per type."""
        now = self.clock.seconds()
        last = self._reported.get(failure.exception_type)
        self.service.failures.event((self.state.dev_id, failure.exception_type),
                                    f"camera {self.state.dev_id} cloud upload failures (type {failure.exception_type})",
                                    "camera {dev}: cloud upload of {key} failed ({type}): {why}", dev=self.state.dev_id,
                                    key=key, type=int(failure.exception_type), why=failure.description)
        if last is not None and now - last < self.settings.report_interval:
            return
        self._reported[failure.exception_type] = now
        self.reports.append((failure.exception_type, failure.description))
        del self.reports[:-HISTORY]
        session = self.camera.session
        if session is None or not self.camera.online:
            return
        report = m.ExceptionReportRequest(dev_id=self.state.dev_id, channel_no=channel_no,
                                          exception_type=failure.exception_type,
                                          exception_desc=failure.description[:200])
        session.request(report, self.camera.timing.request_timeout).addErrback(lambda f: None)


def stream_params(state: CameraState, channel_no: int, stream_type: int) -> LoopParams:
    """The live loop a stream plays now (its 60H settings, as the fleet's RTSP side streams it)."""
    video = state.video(channel_no, stream_type)
    width, height = video.pixels
    return LoopParams.live(width, height, video.frame_rate, video.bits_per_second)


def _name_time(key: str) -> str:
    """The YYYYMMDDHHMMSS of a §7.1 name (oldest first across channels), else the key."""
    found = _NAME_TIME.search(key)
    return found.group(1) if found else key
