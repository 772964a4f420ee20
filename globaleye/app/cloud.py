"""The platform's side of cloud storage (§7.1.2, issue 12): the index, the devices' keys, quotas, retention.

§7.1.1 has the camera push 5-minute MPEG-TS recordings and JPEG pictures straight to the cloud store,
into the buckets ``GlobalEyeRecord`` and ``GlobalEyePicture``, named ``DevID_ChannelNo_YYYYMMDDHHMMSS``;
§7.1.2 has the platform search them "by camera, time period and type", play back, download and delete.
:class:`CloudService` is that, with no transport in it:

* it is the store's :class:`~globaleye.s3.backend.CredentialLookup` — each device gets its own access
  key and secret on first need (LOGIN_RES EAccount/EPassword, §7.5.1; 65H, §7.5.11), the platform its
  own principal from ``[cloud]`` — and its :class:`~globaleye.s3.backend.StorageEvents`: ``admit``
  enforces the per-device and per-account quotas with §7.1.1's loop overwrite ("设备存储空间满，则根据摄像
  机配置参数决定是否进行循环覆盖（即自动删除时间最早的文件）"), ``stored`` and ``deleted`` keep the index;
* the index (:class:`~globaleye.store.CloudObject`) answers the searches; :meth:`reconcile` brings it
  back in line with what an external store holds (objects written there without passing through us,
  objects removed there);
* users search (owner and share guests: a share is for watching, so a guest may search, play and
  download), get a short-lived download URL (:class:`~globaleye.app.ports.Presigner`), and delete
  (owner only);
* retention per account (days) runs on the reactor's clock in bounded batches.

Decisions are written in docs/protocol.md ("Cloud storage (issue 12), the platform's side").
"""

from __future__ import annotations

import secrets
import string
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, DeferredLock
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from globaleye.app.access import CameraAccess
from globaleye.app.errors import AppError, InvalidRequest, NotFound, check
from globaleye.app.ports import DeviceGateway, Presigner
from globaleye.device.messaging import CommandError
from globaleye.device.protocol import messages as m
from globaleye.media import mpegts
from globaleye.media.names import RECORDING_SECONDS, PictureName, RecordingName
from globaleye.s3.backend import (
    PICTURE_BUCKET,
    RECORD_BUCKET,
    NoSuchBucket,
    ObjectBackend,
    ObjectInfo,
    Principal,
    StorageError,
)
from globaleye.store import (
    CLOUD_OTHER,
    CLOUD_PICTURE,
    CLOUD_RECORD,
    MAX_OBJECT_SECONDS,
    SOURCE_S3,
    SOURCE_SCAN,
    CloudCredential,
    CloudObject,
    Store,
)
from globaleye.users.accounts import LoginSession
from globaleye.util.clock import BEIJING, parse_protocol_time, protocol_time
from txturn.logsummary import LogSummary

MB = 1 << 20
DAY = 86400.0
#: The kinds a user searches, by the names the faces use, and their buckets.
KINDS = {CLOUD_RECORD: RECORD_BUCKET, CLOUD_PICTURE: PICTURE_BUCKET}
BUCKETS = {RECORD_BUCKET: CLOUD_RECORD, PICTURE_BUCKET: CLOUD_PICTURE}
#: Bytes read from each end of a recording to find its first and last PTS.
TS_PROBE = 188 * 1024
#: At most this many objects a range deletion removes in one request (the client asks again for more).
MAX_RANGE_DELETE = 5000
MAX_PAGE_SIZE = 200
#: The longest retention an account may ask for (10 years): days beyond are a typo, not a wish.
MAX_RETENTION_DAYS = 3650
KEY_ALPHABET = string.ascii_uppercase + string.digits


@attrs.frozen
class CloudSettings:
    """``[cloud]``: quotas in MB (2**20 bytes, 0: none), days, seconds."""

    retention_days: float = 30.0
    device_quota: int = 0
    account_quota: int = 0
    url_lifetime: float = 300.0
    reconcile_interval: float = 3600.0
    retention_interval: float = 3600.0
    #: The platform's own principal (full access to the store); empty: none.
    access_key: str = ""
    secret_key: str = ""
    #: EURL given to the cameras with their own account (the storage role's public URL); empty: none.
    url: str = ""
    #: Index entries handled per store call (retention, reconciliation).
    batch: int = 500
    #: Seconds a camera's loop flag (7BH) and a looked-up principal are kept.
    cache_seconds: float = 300.0


@attrs.frozen
class CloudFile:
    """One search result, as the faces show it."""

    name: str
    kind: str
    channel_no: int
    start: str  # YYYYMMDDHHMMSS, Beijing time (§7.1.1 names)
    duration: float
    size: int


@attrs.frozen
class CloudFilesPage:
    total: int
    page_no: int
    page_size: int
    files: tuple[CloudFile, ...]


@attrs.frozen
class PictureNotice:
    """A 36H notice (§7.5.27) and whether its picture is in the store (``stored`` False: it never came)."""

    file_name: str
    channel_no: int
    shot_time: str
    received_at: float
    stored: CloudObject | None


class StorageUnavailable(AppError):
    """No storage role or external store is configured here (Result 5)."""

    result = 5


class CloudService(service.Service):
    """:class:`~globaleye.s3.backend.CredentialLookup` and :class:`~globaleye.s3.backend.StorageEvents` for
    the store's faces, and §7.1.2 for the client faces."""

    log = Logger()

    def __init__(self, store: Store, backend: ObjectBackend, clock: Any, settings: CloudSettings,
                 access: CameraAccess, gateway: DeviceGateway | None = None, presigner: Presigner | None = None,
                 token: Callable[[int], str] = secrets.token_urlsafe) -> None:
        self.store = store
        self.backend = backend
        self.clock = clock
        self.settings = settings
        self.access = access
        self.gateway = gateway
        self.presigner = presigner
        self.token = token
        self._principals: dict[str, tuple[Principal | None, float]] = {}
        self._loops: dict[str, tuple[bool, float]] = {}
        #: The key last sent in 65H per device (one announcement per rotation).
        self._announced: dict[str, str] = {}
        self._creating = DeferredLock()
        self._loops_running: list[LoopingCall] = []
        self._work: set[Deferred[Any]] = set()
        self._stopping = False
        #: Refused uploads: the first per device and minute in full, the rest counted (a camera over its
        #: quota retries every segment).
        self.refusals = LogSummary(self.log, clock, level=LogLevel.warn, max_keys=1000, name="cloud refusals")
        self.platform = (Principal(settings.access_key, settings.secret_key)
                         if settings.access_key and settings.secret_key else None)

    def use_platform_key(self, access_key: str, secret: str) -> None:
        """The platform's own principal (full access: presigned downloads, the operator's tools), set by
        the composition root when ``[cloud]`` names none (a key for this run only)."""
        self.platform = Principal(access_key, secret)

    # Lifecycle: retention and reconciliation on the reactor's clock -----------------------------

    def startService(self) -> None:
        super().startService()
        if self.settings.retention_interval > 0:
            self._every(self.settings.retention_interval, self.purge, "retention")
        if self.settings.reconcile_interval > 0:
            self._every(self.settings.reconcile_interval, self.reconcile, "reconciliation")

    def _every(self, interval: float, work: Callable[[], Any], name: str) -> None:
        running: list[Deferred[Any]] = []

        def tick() -> None:
            if running:  # the last run is still going: skip this turn
                return
            d = Deferred.fromCoroutine(work())
            running.append(d)
            self._work.add(d)

            def done(result: Any) -> None:
                running.clear()
                self._work.discard(d)
                if isinstance(result, Failure) and not self._stopping:  # at shutdown the store closes under it
                    self.log.failure("cloud {name} failed", result, name=name)

            d.addBoth(done)

        loop = LoopingCall(tick)
        loop.clock = self.clock
        loop.start(interval, now=True)
        self._loops_running.append(loop)

    def stopService(self) -> Any:
        super().stopService()
        self._stopping = True  # a purge or reconciliation under way ends after its current batch
        for loop in self._loops_running:
            if loop.running:
                loop.stop()
        self._loops_running.clear()
        return DeferredList(list(self._work), consumeErrors=True)

    # Credentials (LOGIN_RES EAccount/EPassword, 65H) ----------------------------------------------

    async def credential_for(self, dev_id: str) -> CloudCredential:
        """The device's live credential, created on first need (one at a time per device)."""
        existing = await self.store.device_cloud_credential(dev_id)
        if existing is not None:
            return existing
        async with self._creating:  # two logins of one new device at once create one key
            existing = await self.store.device_cloud_credential(dev_id)
            return existing if existing is not None else await self._create(dev_id)

    async def _create(self, dev_id: str) -> CloudCredential:
        credential = new_credential(dev_id, self.clock.seconds(), self.token)
        access_key = credential.access_key
        await self.store.add_cloud_credential(credential)
        self.log.info("cloud: new storage credential {key} for {dev_id}", key=access_key, dev_id=dev_id)
        return credential

    async def cloud_account(self, dev_id: str) -> tuple[str, str, str] | None:
        """(EURL, EAccount, EPassword) for LOGIN_RES (§7.5.1): the storage URL and the device's own key;
        None when no storage is configured here (the gateway then gives its global account)."""
        if not self.settings.url:
            return None
        credential = await self.credential_for(dev_id)
        return self.settings.url, credential.access_key, credential.secret

    async def ftp_account(self, dev_id: str) -> tuple[str, str]:
        """REGISTER_RES's FtpAccount/FtpPassword (§7.2): the device's own key and secret, which the FTP
        role checks through :meth:`principal` as the S3 endpoint does."""
        credential = await self.credential_for(dev_id)
        return credential.access_key, credential.secret

    async def rotate(self, dev_id: str) -> tuple[CloudCredential, bool]:
        """A new key for *dev_id*, every older one revoked at once, and 65H (§7.5.11) sent right away
        when the device is online and reports cloud storage (32H EStoreFlag); returns the credential
        and whether the device took it (else it gets it at its next login, in LOGIN_RES)."""
        credential = await self._create(dev_id)
        await self.store.revoke_cloud_credentials(dev_id, self.clock.seconds(), keep=credential.access_key)
        for key, (principal, _) in list(self._principals.items()):
            if principal is not None and principal.dev_id == dev_id and key != credential.access_key:
                del self._principals[key]
        self._announced[dev_id] = credential.access_key
        sent = await self.send_account(dev_id, credential)
        if not sent:
            self._announced.pop(dev_id, None)
        return credential, sent

    async def send_account(self, dev_id: str, credential: CloudCredential) -> bool:
        if self.gateway is None or not self.gateway.is_online(dev_id) or not self.settings.url:
            return False
        ability = await self.store.get_ability(dev_id)
        if ability is not None and not ability.estore_flag:
            self.log.info("cloud: 65H not sent to {dev_id}: it reports no cloud storage (32H EStoreFlag 0)",
                          dev_id=dev_id)
            return False
        try:
            answer = await self.gateway.command(dev_id, m.SetCloudAccountRequest(
                dev_id=dev_id, url=self.settings.url, account=credential.access_key, password=credential.secret))
        except CommandError as e:
            self.log.info("cloud: 65H to {dev_id} failed: {error}", dev_id=dev_id, error=e)
            return False
        if answer.result != 0:
            self.log.info("cloud: {dev_id} refused 65H with Result {result}", dev_id=dev_id, result=answer.result)
        return bool(answer.result == 0)

    async def principal(self, access_key: str) -> Principal | None:
        """:class:`~globaleye.s3.backend.CredentialLookup`: the platform's own key, or a device's live one."""
        if self.platform is not None and access_key == self.platform.access_key:
            return self.platform
        now = self.clock.seconds()
        cached = self._principals.get(access_key)
        if cached is not None and cached[1] > now:
            return cached[0]
        credential = await self.store.get_cloud_credential(access_key)
        expires = now + self.settings.cache_seconds
        principal = None
        if credential is not None and (credential.revoked_at is None or credential.revoked_at > now):
            principal = Principal(credential.access_key, credential.secret, credential.dev_id)
        if credential is not None and credential.revoked_at is not None:
            # Revoked, or to be at revoked_at (the operator's `globaleye device rotate-cloud-key` gives the
            # old key a grace period): the camera still signs with it, so it has not heard of its new key.
            if credential.revoked_at > now:
                expires = min(expires, credential.revoked_at)
            self._announce(credential.dev_id, access_key)
        if len(self._principals) > 100_000:
            self._principals.clear()
        self._principals[access_key] = (principal, expires)
        return principal

    def _announce(self, dev_id: str, old_key: str) -> None:
        """65H (§7.5.11) with the device's live key, in the background, once per new key: a rotation made
        in the store by another process (the operator's command line) reaches an online camera the first
        time it uses an old key after that; an offline one gets the new key in LOGIN_RES anyway."""
        if self._stopping or self.gateway is None or not self.gateway.is_online(dev_id):
            return

        async def send() -> None:
            live = await self.store.device_cloud_credential(dev_id)
            if live is None or live.access_key == old_key or self._announced.get(dev_id) == live.access_key:
                return
            self._announced[dev_id] = live.access_key
            self.log.info("cloud: {dev_id} still signs with {old}: 65H with its new key {key}", dev_id=dev_id,
                          old=old_key, key=live.access_key)
            if not await self.send_account(dev_id, live):
                self._announced.pop(dev_id, None)  # try again at its next use of an old key

        d = Deferred.fromCoroutine(send())
        self._work.add(d)

        def done(result: Any) -> None:
            self._work.discard(d)
            if isinstance(result, Failure) and not self._stopping:
                self.log.failure("cloud: 65H to {dev_id} failed", result, dev_id=dev_id)

        d.addBoth(done)

    # StorageEvents: admit, stored, deleted --------------------------------------------------------

    async def admit(self, principal: Principal, bucket: str, key: str, size: int) -> str | None:
        """Quotas (``[cloud] device_quota``, ``account_quota``), with §7.1.1's loop overwrite: when the
        camera loops (7AH RecordLoop 1, asked with 7BH), its oldest objects go until the new one fits;
        else the upload is refused.  The platform's own writes are never refused."""
        if principal.is_platform:
            return None
        dev_id = principal.dev_id
        if not principal.owns(key):
            return self._refuse(dev_id, key, f"{key} is not an object of {dev_id}")
        if size < 0:
            return self._refuse(dev_id, key, "unknown size")
        replaced = await self.store.get_cloud_object(bucket, key)
        credit = replaced.size if replaced is not None else 0
        over = await self._over_quota(dev_id, size - credit)
        if over <= 0:
            return None
        used, _ = await self.store.cloud_usage(dev_id)
        if over > used - credit:  # even all of its other objects would not make room: remove nothing
            return self._refuse(dev_id, key, f"{dev_id}: the object does not fit in the quota ({over} bytes over, "
                                             f"{used - credit} bytes of its own stored)")
        if not await self.loops(dev_id):
            return self._refuse(dev_id, key, f"{dev_id}: quota reached ({over} bytes over), and the camera does "
                                             "not loop (7BH RecordLoop 0)")
        freed = 0
        while over > 0:
            oldest = [o for o in await self.store.oldest_cloud_objects(dev_id, 50) if o.key != key or o.bucket != bucket]
            if not oldest:
                break
            for obj in oldest:
                await self._remove(obj)
                freed += 1
                over -= obj.size
                if over <= 0:
                    break
        if freed:
            self.log.info("cloud: loop overwrite removed {count} oldest objects of {dev_id}", count=freed,
                          dev_id=dev_id)
        if over > 0:  # removed meanwhile by someone else, or grown by concurrent uploads
            return self._refuse(dev_id, key, f"{dev_id}: the loop overwrite did not make room")
        return None

    def _refuse(self, dev_id: str, key: str, why: str) -> str:
        self.refusals.event(dev_id, f"uploads of {dev_id} refused", "cloud: upload of {key} refused: {why}",
                            key=key, why=why)
        return why

    async def _over_quota(self, dev_id: str, growth: int) -> int:
        """Bytes over the tighter of the device's and its owner's quotas if *growth* bytes are added."""
        over = -1
        if self.settings.device_quota > 0:
            used, _ = await self.store.cloud_usage(dev_id)
            over = max(over, used + growth - self.settings.device_quota * MB)
        if self.settings.account_quota > 0:
            owner = await self.store.device_owner(dev_id)
            if owner is not None:
                used = await self.store.account_cloud_usage(owner)
                over = max(over, used + growth - self.settings.account_quota * MB)
        return over

    async def loops(self, dev_id: str) -> bool:
        """The camera's loop flag (7BH, §7.5.31), kept ``cache_seconds``; False when it cannot be asked."""
        now = self.clock.seconds()
        cached = self._loops.get(dev_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        loop = False
        if self.gateway is not None and self.gateway.is_online(dev_id):
            try:
                answer = await self.gateway.command(dev_id, m.GetLoopRecordRequest(dev_id=dev_id))
                loop = answer.result == 0 and int(answer.record_loop) == 1
            except CommandError as e:
                self.log.info("cloud: 7BH to {dev_id} failed: {error}", dev_id=dev_id, error=e)
        self._loops[dev_id] = (loop, now + self.settings.cache_seconds)
        return loop

    def loop_changed(self, dev_id: str, record_loop: int) -> None:
        """The owner set the loop flag (7AH): believe it at once."""
        self._loops[dev_id] = (record_loop == 1, self.clock.seconds() + self.settings.cache_seconds)

    async def stored(self, principal: Principal, info: ObjectInfo, source: str = SOURCE_S3) -> None:
        """Index a complete object (an overwrite of the same key replaces its entry); the FTP role may say
        ``source=SOURCE_FTP`` (the Protocol's call leaves it ``s3``)."""
        entry = await self.describe(info, source, principal.dev_id)
        if entry is None:
            self.log.info("cloud: {bucket}/{key} is no device's object; not indexed", bucket=info.bucket,
                          key=info.key)
            return
        await self.store.put_cloud_object(entry)

    async def deleted(self, principal: Principal, bucket: str, key: str) -> None:
        await self.store.delete_cloud_object(bucket, key)

    async def describe(self, info: ObjectInfo, source: str, dev_id: str = "") -> CloudObject | None:
        """The index entry of a stored object: from its §7.1.1 name, a recording's duration from its own
        PTS.  A name that is not §7.1.1's is indexed as kind ``other`` (it counts against the quotas and
        goes first in the loop overwrite by its upload time, but no search lists it) when it belongs to a
        device (its key's ``DevID_`` prefix), and not at all otherwise."""
        now = self.clock.seconds()
        name: RecordingName | PictureName | None
        name = RecordingName.parse(info.key) if info.bucket == RECORD_BUCKET else None
        if name is None and info.bucket == PICTURE_BUCKET:
            name = PictureName.parse(info.key)
        if name is None:
            owner = dev_id or info.key.partition("_")[0]
            if not owner or not info.key.startswith(owner + "_"):
                return None
            return CloudObject(owner, 0, CLOUD_OTHER, info.modified, 0.0, info.size, info.bucket, info.key,
                               info.etag, now, source)
        start = name.start.replace(tzinfo=BEIJING).timestamp()
        if isinstance(name, RecordingName):
            duration = await self.recording_duration(info)
            return CloudObject(name.dev_id, name.channel_no, CLOUD_RECORD, start, duration, info.size, info.bucket,
                               info.key, info.etag, now, source)
        return CloudObject(name.dev_id, name.channel_no, CLOUD_PICTURE, start, 0.0, info.size, info.bucket,
                           info.key, info.etag, now, source)

    async def recording_duration(self, info: ObjectInfo) -> float:
        """Seconds from the first to the last PTS of the video (first and last ``TS_PROBE`` bytes only);
        §7.1.1's 5 minutes (300 s) when the file does not say."""
        try:
            head = await self.backend.read(info.bucket, info.key, 0, TS_PROBE)
            tail_at = max(0, info.size - TS_PROBE)
            tail_at -= tail_at % mpegts.PACKET_SIZE
            # The head holds the tail only when it holds the whole file (a file between one and two
            # probes long has its tail beyond the head).
            tail = head[tail_at:] if len(head) >= info.size else await self.backend.read(info.bucket, info.key, tail_at)
            duration = ts_duration(head, tail, tail_at)
        except (StorageError, mpegts.TsError, ValueError) as e:
            self.log.info("cloud: {key}: duration not read ({error}); {default} s assumed", key=info.key,
                          error=e, default=RECORDING_SECONDS)
            duration = None
        if duration is None:
            return float(RECORDING_SECONDS)
        return min(duration, MAX_OBJECT_SECONDS)

    # Search, download, delete (§7.1.2) ---------------------------------------------------------

    async def search(self, session: LoginSession, dev_id: str, channel_no: int, kind: str, start: str, end: str,
                     page_no: int | None = None, page_size: int | None = None) -> CloudFilesPage:
        """The camera's stored files of one *kind* ("record" or "picture") that overlap [start, end)
        (YYYYMMDDHHMMSS, Beijing time): a recording that began before *start* and runs into it is in."""
        check(kind in KINDS, "Type must be record or picture")
        begin, finish = _time("StartTime", start), _time("EndTime", end)
        check(begin < finish, "StartTime must be before EndTime")
        page = page_no or 1
        size = page_size or 20
        check(page >= 1, "PageNo counts from 1")
        check(1 <= size <= MAX_PAGE_SIZE, f"PageSize is 1 to {MAX_PAGE_SIZE}")
        await self.access.require(session.account, dev_id, channel_no, own=False)
        found = await self.store.search_cloud_objects(dev_id, channel_no, kind, begin, finish, (page - 1) * size, size)
        return CloudFilesPage(found.total, page, size, tuple(_file(o) for o in found.objects))

    async def recordings(self, account: str, dev_id: str, channel_no: int, start: float, end: float,
                         limit: int = 1000) -> list[CloudObject] | None:
        """The camera's stored recordings overlapping [*start*, *end*) (POSIX seconds), oldest first, for
        the playback faces (the RTSP proxy's ``/cloud/`` URLs); None when *account* may not see the camera
        (owner or share guest) or it does not exist: the same answer, so nobody learns which."""
        try:
            await self.access.require(account, dev_id, channel_no, own=False)
        except AppError:
            return None
        found = await self.store.search_cloud_objects(dev_id, channel_no, "record", start, end, 0, limit)
        return list(found.objects)

    async def retention(self, session: LoginSession) -> tuple[float, bool]:
        """How many days this account's stored files are kept, and whether that is its own choice
        (else ``[cloud] retention_days``; 0: for ever)."""
        own = await self.store.get_cloud_retention(session.account)
        return (own, True) if own is not None else (self.settings.retention_days, False)

    async def set_retention(self, session: LoginSession, days: float | None) -> None:
        """Keep this account's stored files *days* days (§7.1.1's cloud is the owner's; None: the platform's
        default again).  Counted from when each file was indexed; the next retention run applies it."""
        if days is not None:
            check(0 < days <= MAX_RETENTION_DAYS, f"RetentionDays is 1 to {MAX_RETENTION_DAYS} (absent: the default)")
        await self.store.set_cloud_retention(session.account, days)

    async def download_url(self, session: LoginSession, dev_id: str, name: str) -> str:
        """A presigned GET of one stored file, valid ``[cloud] url_lifetime`` seconds (owner or guest)."""
        await self.access.require(session.account, dev_id, own=False)
        obj = await self._entry(dev_id, name)
        if self.presigner is None:
            raise StorageUnavailable("no cloud storage is configured on this platform")
        return self.presigner.presign_get(obj.bucket, obj.key, self.settings.url_lifetime, obj.key)

    async def delete(self, session: LoginSession, dev_id: str, name: str) -> int:
        """Delete one stored file (owner only): the object, then its index entry."""
        await self.access.require(session.account, dev_id, own=True)
        obj = await self._entry(dev_id, name)
        await self._remove(obj)
        self.log.info("cloud: {account} deleted {key}", account=session.account, key=obj.key)
        return 1

    async def delete_range(self, session: LoginSession, dev_id: str, channel_no: int, kind: str, start: str,
                           end: str) -> int:
        """Delete every file of one channel and kind that overlaps [start, end) (owner only), at most
        :data:`MAX_RANGE_DELETE` per request; returns how many went."""
        check(kind in KINDS, "Type must be record or picture")
        begin, finish = _time("StartTime", start), _time("EndTime", end)
        check(begin < finish, "StartTime must be before EndTime")
        await self.access.require(session.account, dev_id, channel_no, own=True)
        removed = 0
        while removed < MAX_RANGE_DELETE:
            found = await self.store.search_cloud_objects(dev_id, channel_no, kind, begin, finish, 0,
                                                          min(self.settings.batch, MAX_RANGE_DELETE - removed))
            if not found.objects:
                break
            for obj in found.objects:
                await self._remove(obj)
                removed += 1
        self.log.info("cloud: {account} deleted {count} {kind} files of {dev_id} channel {channel}",
                      account=session.account, count=removed, kind=kind, dev_id=dev_id, channel=channel_no)
        return removed

    async def picture_notices(self, session: LoginSession, dev_id: str, limit: int = 100) -> tuple[PictureNotice, ...]:
        """The camera's 36H notices (§7.5.27), newest first, each with its stored picture if it arrived."""
        await self.access.require(session.account, dev_id, own=False)
        out = []
        for notice in await self.store.list_pictures(dev_id, limit):
            stored = None
            if notice.file_name.startswith(dev_id + "_"):
                stored = await self.store.get_cloud_object(PICTURE_BUCKET, notice.file_name)
            out.append(PictureNotice(notice.file_name, notice.channel_no, notice.shot_time, notice.received_at,
                                     stored))
        return tuple(out)

    async def _entry(self, dev_id: str, name: str) -> CloudObject:
        check(bool(name) and "/" not in name, "FileName is a stored file's name")
        if not name.startswith(dev_id + "_"):
            raise NotFound(f"no stored file {name} of {dev_id}")
        for bucket in (RECORD_BUCKET, PICTURE_BUCKET):
            obj = await self.store.get_cloud_object(bucket, name)
            if obj is not None and obj.dev_id == dev_id:
                return obj
        raise NotFound(f"no stored file {name} of {dev_id}")

    async def _remove(self, obj: CloudObject) -> None:
        """The object, then its index entry (an entry whose object is already gone goes too)."""
        try:
            await self.backend.delete(obj.bucket, obj.key)
        except NoSuchBucket:
            pass
        await self.store.delete_cloud_object(obj.bucket, obj.key)

    # Retention and reconciliation -----------------------------------------------------------------

    async def purge(self) -> int:
        """Remove what is older than its account's retention (``[cloud] retention_days`` by default),
        ``batch`` entries per store call; returns how many."""
        total = 0
        while not self._stopping:
            expired = await self.store.expired_cloud_objects(self.clock.seconds(), self.settings.retention_days,
                                                             self.settings.batch)
            for obj in expired:
                await self._remove(obj)
            total += len(expired)
            if len(expired) < self.settings.batch:
                break
        if total:
            self.log.info("cloud retention: removed {count} objects", count=total)
        return total

    async def reconcile(self) -> tuple[int, int]:
        """Bring the index in line with the store: objects nobody told us of are indexed (source
        ``scan``; an overwrite seen by a changed ETag or size is indexed again), entries whose object
        vanished are dropped.  Returns (indexed, dropped)."""
        added = dropped = 0
        for bucket in (RECORD_BUCKET, PICTURE_BUCKET):
            if self._stopping:
                break
            if not await self.backend.bucket_exists(bucket):
                stored: AsyncIterator[ObjectInfo] = _empty()
            else:
                stored = self._listing(bucket)
            indexed = self._indexed(bucket)
            obj = await _next(stored)
            entry = await _next(indexed)
            while (obj is not None or entry is not None) and not self._stopping:
                if entry is None or (obj is not None and obj.key < entry.key):
                    assert obj is not None
                    if await self._scan(obj):
                        added += 1
                    obj = await _next(stored)
                elif obj is None or entry.key < obj.key:
                    # Not in the listing — unless it was uploaded after that page was listed: ask.
                    if await self._vanished(bucket, entry.key):
                        await self.store.delete_cloud_object(bucket, entry.key)
                        dropped += 1
                    entry = await _next(indexed)
                else:
                    if obj.etag != entry.etag or obj.size != entry.size:
                        if await self._scan(obj):
                            added += 1
                    obj, entry = await _next(stored), await _next(indexed)
        if added or dropped:
            self.log.info("cloud reconciliation: {added} objects indexed, {dropped} entries dropped", added=added,
                          dropped=dropped)
        return added, dropped

    async def _vanished(self, bucket: str, key: str) -> bool:
        try:
            return await self.backend.head(bucket, key) is None
        except NoSuchBucket:
            return True

    async def _scan(self, info: ObjectInfo) -> bool:
        # Listed, but perhaps deleted since (its deletion already unindexed it): ask before indexing.
        current = await self.backend.head(info.bucket, info.key)
        if current is None:
            return False
        entry = await self.describe(current, SOURCE_SCAN)
        if entry is None:
            return False
        await self.store.put_cloud_object(entry)
        return True

    async def _listing(self, bucket: str) -> AsyncIterator[ObjectInfo]:
        after = ""
        while True:
            infos, more = await self.backend.list(bucket, start_after=after, limit=self.settings.batch)
            for info in infos:
                yield info
            if not more or not infos:
                return
            after = infos[-1].key

    async def _indexed(self, bucket: str) -> AsyncIterator[CloudObject]:
        after = ""
        while True:
            entries = await self.store.cloud_objects_after(bucket, after, self.settings.batch)
            for entry in entries:
                yield entry
            if len(entries) < self.settings.batch:
                return
            after = entries[-1].key


def new_credential(dev_id: str, now: float, token: Callable[[int], str] = secrets.token_urlsafe) -> CloudCredential:
    """A fresh access key (``GE`` and 18 upper-case letters and digits) and secret for *dev_id*; the
    operator's command line makes them too (``globaleye device rotate-cloud-key``)."""
    access_key = "GE" + "".join(secrets.choice(KEY_ALPHABET) for _ in range(18))
    return CloudCredential(access_key, dev_id, token(30), now)


def ts_duration(head: bytes, tail: bytes, tail_at: int) -> float | None:
    """Seconds between the first PTS in *head* (the file's start) and the last in *tail* (its end, read
    from *tail_at*), of the video stream (else any stream), plus one frame; None if they cannot be read."""
    demuxer = mpegts.TsDemuxer()
    first = [p for p in demuxer.feed(head, 0) + demuxer.flush() if p.pts is not None]
    if not first or not demuxer.streams:
        return None
    video = [pid for pid, kind in demuxer.streams.items() if kind == mpegts.STREAM_TYPE_H264]
    pid = video[0] if video else first[0].pid
    starts = [p.pts for p in first if p.pid == pid and p.pts is not None]
    if not starts:
        return None
    ending = mpegts.TsDemuxer(dict(demuxer.streams))
    tail_pes = [p for p in ending.feed(tail, tail_at) + ending.flush() if p.pid == pid and p.pts is not None]
    if not tail_pes:
        return None
    start = min(starts)
    stamps = [mpegts.unwrap(start, p.pts) for p in tail_pes if p.pts is not None]
    ordered = sorted(stamps)
    frame = (ordered[-1] - ordered[-2]) if len(ordered) > 1 else 0
    seconds = (ordered[-1] - start + frame) / mpegts.TS_CLOCK
    return seconds if seconds > 0 else None


def _file(obj: CloudObject) -> CloudFile:
    return CloudFile(obj.key, obj.kind, obj.channel_no, protocol_time(obj.start), obj.duration, obj.size)


def _time(name: str, text: str) -> float:
    text = (text or "").strip()
    if len(text) == 12 and text.isdigit():
        text += "00"
    try:
        return parse_protocol_time(text)
    except ValueError:
        raise InvalidRequest(f"{name} must be YYYYMMDDHHMMSS (Beijing time)") from None


async def _empty() -> AsyncIterator[ObjectInfo]:
    return
    yield  # pragma: no cover


async def _next(iterator: AsyncIterator[Any]) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return None


__all__ = ["CloudFile", "CloudFilesPage", "CloudService", "CloudSettings", "PictureNotice", "StorageUnavailable",
           "new_credential", "ts_duration"]

